//! Anchor boxes of the RPN: a few cell anchors per feature level, repeated at
//! every location of that level's grid.
//!
//! Mirrors detectron2 `modeling/anchor_generator.py::DefaultAnchorGenerator`
//! (`generate_cell_anchors`, `_create_grid_offsets`, `_grid_anchors`).
//! Deliberate note: torchvision's `AnchorGenerator` *rounds* its cell anchors
//! to integers; detectron2 does not, and neither does this module, so the
//! reference in `tests/fixtures/make_fixtures.py` is numpy code following
//! detectron2's formula, checked in `tests/anchors.rs`.
//!
//! Shapes: L levels (P2..P6 in ViTDet), A cell anchors per location
//! (sizes × aspect ratios of a level; 3 in ViTDet), (Hi, Wi) the grid of level
//! i. Level i yields Hi·Wi·A anchors ordered location-major (row by row, then
//! column), and within a location in cell-anchor order, exactly like the
//! RPN head's (A, Hi, Wi) outputs once permuted to (Hi, Wi, A).

use serde::{Deserialize, Serialize};

use crate::{Boxes, Error, Result};

/// The anchor generator's settings (detectron2 `ANCHOR_GENERATOR`). The
/// default is ViTDet's: one size per level P2..P6, three aspect ratios,
/// offset 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorConfig {
    /// Anchor sizes per level in input pixels: the square root of the area.
    pub sizes: Vec<Vec<f64>>,
    /// Aspect ratios h / w, shared by all levels.
    pub aspect_ratios: Vec<f64>,
    /// Stride of each level in input pixels (4..64 for P2..P6).
    pub strides: Vec<usize>,
    /// Anchor centre offset as a fraction of the stride: centres are at
    /// `(k + offset) · stride`. 0 in detectron2 (centres on multiples of the stride).
    pub offset: f64,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            sizes: vec![vec![32.0], vec![64.0], vec![128.0], vec![256.0], vec![512.0]],
            aspect_ratios: vec![0.5, 1.0, 2.0],
            strides: vec![4, 8, 16, 32, 64],
            offset: 0.0,
        }
    }
}

impl AnchorConfig {
    /// Checks the cross-field rules: one size list per stride, positive sizes,
    /// ratios and strides, the same number of cell anchors on every level
    /// (the RPN head is shared across levels), offset in [0, 1).
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that breaks a rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |key, msg: String| Err(Error::Config { key, msg });
        if self.sizes.len() != self.strides.len() || self.sizes.is_empty() {
            return bad("anchors.sizes", format!("{} levels of sizes for {} strides", self.sizes.len(), self.strides.len()));
        }
        if self.sizes.iter().flatten().any(|&s| s.is_nan() || s <= 0.0) || self.sizes.iter().any(|l| l.is_empty()) {
            return bad("anchors.sizes", "every level needs sizes > 0".into());
        }
        if self.sizes.iter().any(|l| l.len() != self.sizes[0].len()) {
            return bad("anchors.sizes", "every level must have the same number of sizes".into());
        }
        if self.aspect_ratios.is_empty() || self.aspect_ratios.iter().any(|&r| r.is_nan() || r <= 0.0) {
            return bad("anchors.aspect_ratios", "needs at least one ratio, all > 0".into());
        }
        if self.strides.contains(&0) {
            return bad("anchors.strides", "strides must be > 0".into());
        }
        if !(0.0..1.0).contains(&self.offset) {
            return bad("anchors.offset", format!("{} is not in [0, 1)", self.offset));
        }
        Ok(())
    }
}

/// Cell anchors centred at (0, 0), one per (size, aspect ratio), sizes in the
/// outer loop, as detectron2 `generate_cell_anchors`: `w = sqrt(size² / ar)`,
/// `h = ar · w`, box `[-w/2, -h/2, w/2, h/2]`, computed in f64 and stored as
/// f32, *not* rounded.
pub fn generate_cell_anchors(sizes: &[f64], aspect_ratios: &[f64]) -> Vec<[f32; 4]> {
    let mut anchors = Vec::with_capacity(sizes.len() * aspect_ratios.len());
    for &size in sizes {
        let area = size * size;
        for &ar in aspect_ratios {
            let w = (area / ar).sqrt();
            let h = ar * w;
            anchors.push([(-w / 2.0) as f32, (-h / 2.0) as f32, (w / 2.0) as f32, (h / 2.0) as f32]);
        }
    }
    anchors
}

/// detectron2 `DefaultAnchorGenerator`: the cell anchors of each level and
/// their placement on each level's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGenerator {
    cell_anchors: Vec<Vec<[f32; 4]>>,
    strides: Vec<usize>,
    offset: f64,
}

impl AnchorGenerator {
    /// Builds the cell anchors of every level.
    ///
    /// # Errors
    /// [`Error::Config`] if `cfg` fails [`AnchorConfig::validate`].
    pub fn new(cfg: &AnchorConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cell_anchors: cfg.sizes.iter().map(|s| generate_cell_anchors(s, &cfg.aspect_ratios)).collect(),
            strides: cfg.strides.clone(),
            offset: cfg.offset,
        })
    }

    /// Number of levels L.
    pub fn num_levels(&self) -> usize {
        self.strides.len()
    }

    /// Number of cell anchors A per location (the same on every level).
    pub fn num_anchors_per_location(&self) -> usize {
        self.cell_anchors.first().map_or(0, Vec::len)
    }

    /// The cell anchors of each level, centred at (0, 0).
    pub fn cell_anchors(&self) -> &[Vec<[f32; 4]>] {
        &self.cell_anchors
    }

    /// The anchors of every level for feature grids `grid_sizes[i] = (Hi, Wi)`:
    /// level i gives Hi·Wi·A boxes, location-major (row-major over the grid),
    /// cell anchors innermost. A location's shift is `(k + offset) · stride`
    /// computed in f64 and rounded to f32, then added to the f32 cell anchor
    /// in f32, as detectron2 (`torch.arange` in float32, then an f32 add).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `grid_sizes` does not have one entry per level.
    pub fn grid_anchors(&self, grid_sizes: &[(usize, usize)]) -> Result<Vec<Boxes>> {
        if grid_sizes.len() != self.num_levels() {
            return Err(Error::LengthMismatch { what: "grid sizes (one per level)", expected: self.num_levels(), found: grid_sizes.len() });
        }
        Ok(grid_sizes
            .iter()
            .zip(&self.strides)
            .zip(&self.cell_anchors)
            .map(|((&(gh, gw), &stride), cell)| {
                let shift = |k: usize| ((k as f64 + self.offset) * stride as f64) as f32;
                let mut anchors = Vec::with_capacity(gh * gw * cell.len());
                for y in 0..gh {
                    let sy = shift(y);
                    for x in 0..gw {
                        let sx = shift(x);
                        anchors.extend(cell.iter().map(|c| [sx + c[0], sy + c[1], sx + c[2], sy + c[3]]));
                    }
                }
                Boxes::new(anchors)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn cell_anchors_keep_area_and_ratio() {
        let cell = generate_cell_anchors(&[32.0], &[0.5, 1.0, 2.0]);
        // ratio 0.5: w = sqrt(2048) = 45.2548..., h = 22.6274...
        let w = (2048.0f64).sqrt();
        assert_eq!(cell[0], [(-w / 2.0) as f32, (-w / 4.0) as f32, (w / 2.0) as f32, (w / 4.0) as f32]);
        assert_eq!(cell[1], [-16.0, -16.0, 16.0, 16.0]);
        // Not rounded: torchvision would give [-11, -23, 11, 23] for ratio 2.
        assert!((cell[2][0] + 11.3137).abs() < 1e-3, "{:?}", cell[2]);
    }

    #[test]
    fn vitdet_default_counts_at_1024() {
        let g = AnchorGenerator::new(&AnchorConfig::default()).unwrap();
        assert_eq!(g.num_anchors_per_location(), 3);
        let grids: Vec<(usize, usize)> = [4, 8, 16, 32, 64].iter().map(|s| (1024 / s, 1024 / s)).collect();
        let total: usize = g.grid_anchors(&grids).unwrap().iter().map(Boxes::len).sum();
        assert_eq!(total, 261_888);
    }

    #[test]
    fn location_major_order_with_offset() {
        let cfg = AnchorConfig { sizes: vec![vec![8.0]], aspect_ratios: vec![1.0, 4.0], strides: vec![10], offset: 0.5 };
        let a = AnchorGenerator::new(&cfg).unwrap().grid_anchors(&[(2, 3)]).unwrap();
        let a = a[0].as_slice();
        assert_eq!(a.len(), 12);
        // Location (row 0, col 1) is the second location: anchors 2 and 3, centred at (15, 5).
        assert_eq!(a[2], [11.0, 1.0, 19.0, 9.0]);
        assert_eq!(a[3], [13.0, -3.0, 17.0, 13.0]);
        // Location (row 1, col 0) is the fourth: centre (5, 15).
        assert_eq!(a[6], [1.0, 11.0, 9.0, 19.0]);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut cfg = AnchorConfig::default();
        cfg.strides.pop();
        assert!(matches!(AnchorGenerator::new(&cfg), Err(Error::Config { key: "anchors.sizes", .. })));
        let cfg = AnchorConfig { offset: 1.0, ..AnchorConfig::default() };
        assert!(matches!(cfg.validate(), Err(Error::Config { key: "anchors.offset", .. })));
        let cfg = AnchorConfig { aspect_ratios: vec![0.0], ..AnchorConfig::default() };
        assert!(cfg.validate().is_err());
        let g = AnchorGenerator::new(&AnchorConfig::default()).unwrap();
        assert!(g.grid_anchors(&[(1, 1)]).is_err());
    }
}
