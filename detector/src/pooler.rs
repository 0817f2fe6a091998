//! Multi-level RoI pooling: each box is pooled from the pyramid level that
//! matches its size.
//!
//! Mirrors detectron2 `modeling/poolers.py` (`assign_boxes_to_levels`,
//! `convert_boxes_to_pooler_format`, `ROIPooler.forward`); the pooling itself
//! is `engine::ops::detection::roi_align` (torchvision semantics, with a backward).
//!
//! Shapes: N images, C channels, L levels (P2..P5 for the ViTDet box and
//! mask heads), level l's features (N, C, Hl, Wl) at stride 2^l, R boxes over
//! all images (image by image, in each image's order), (PH, PW) the output
//! size. The output is (R, C, PH, PW), row r pooled for box r.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Boxes, Error, Result};

/// detectron2's canonical box size: a 224×224 box (an ImageNet image) ...
pub const CANONICAL_BOX_SIZE: f32 = 224.0;
/// ... is pooled from level 4 (stride 16), as in the FPN paper, eq. (1).
pub const CANONICAL_LEVEL: u32 = 4;

/// The RoIAlign flavour (detectron2 `pooler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolerType {
    /// RoIAlign without the half-pixel shift (detectron2 `ROIAlign`).
    RoiAlign,
    /// RoIAlign with the half-pixel shift (detectron2 `ROIAlignV2`; ViTDet).
    RoiAlignV2,
}

/// The pyramid level offset (0 = `min_level`) of each box of `box_lists`
/// (concatenated in order): `floor(canonical_level + log2(sqrt(area) /
/// canonical_box_size + 1e-8))` clamped to [min_level, max_level], in f32 as
/// detectron2 computes it. A box of side 224 goes to level 4, one of side
/// 112 to level 3, one of side 223.9 to level 3. Boxes with a negative area
/// (inverted corners; NaN size) go to `min_level`.
pub fn assign_boxes_to_levels(
    box_lists: &[Boxes],
    min_level: u32,
    max_level: u32,
    canonical_box_size: f32,
    canonical_level: u32,
) -> Vec<usize> {
    box_lists
        .iter()
        .flat_map(|b| b.area())
        .map(|area| {
            let level = (canonical_level as f32 + (area.sqrt() / canonical_box_size + 1e-8).log2()).floor();
            if level.is_nan() {
                0
            } else {
                (level.clamp(min_level as f32, max_level as f32) as u32 - min_level) as usize
            }
        })
        .collect()
}

/// Rows `[batch_index, x1, y1, x2, y2]` for RoIAlign, image by image
/// (detectron2 `convert_boxes_to_pooler_format`).
pub fn convert_boxes_to_pooler_format(box_lists: &[Boxes]) -> Vec<[f32; 5]> {
    box_lists
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.as_slice().iter().map(move |&[x1, y1, x2, y2]| [i as f32, x1, y1, x2, y2]))
        .collect()
}

/// detectron2 `ROIPooler`: RoIAlign of every box from its assigned level.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiPooler {
    output_size: (usize, usize),
    scales: Vec<f64>,
    sampling_ratio: usize,
    aligned: bool,
    min_level: u32,
    max_level: u32,
    canonical_box_size: f32,
    canonical_level: u32,
}

impl RoiPooler {
    /// A pooler over levels with `scales` (1/stride, finest first, each half
    /// the previous: 1/4, 1/8, 1/16, 1/32 for P2..P5), pooling to
    /// `output_size` bins (7×7 for the box head, 14×14 for the mask head) with
    /// `sampling_ratio` samples per bin and axis (0 = adaptive). Uses
    /// [`CANONICAL_BOX_SIZE`] and [`CANONICAL_LEVEL`].
    ///
    /// # Errors
    /// [`Error::Config`] if a scale is not a power of 1/2, the levels are not
    /// consecutive, or an output size is 0.
    pub fn new(output_size: (usize, usize), scales: &[f64], sampling_ratio: usize, pooler_type: PoolerType) -> Result<Self> {
        let bad = |msg: String| Err(Error::Config { key: "pooler.scales", msg });
        if output_size.0 == 0 || output_size.1 == 0 {
            return Err(Error::Config { key: "pooler.output_size", msg: format!("{output_size:?} must be positive") });
        }
        let levels: Vec<f64> = scales.iter().map(|s| -s.log2()).collect();
        if levels.is_empty() || levels.iter().any(|l| !l.is_finite() || *l < 0.0 || l.fract() != 0.0) {
            return bad(format!("{scales:?}: every scale must be 1 / 2^k"));
        }
        if levels.windows(2).any(|w| w[1] != w[0] + 1.0) {
            return bad(format!("{scales:?}: levels must be consecutive, finest first"));
        }
        let (min_level, max_level) = (levels[0] as u32, levels[levels.len() - 1] as u32);
        Ok(Self {
            output_size,
            scales: scales.to_vec(),
            sampling_ratio,
            aligned: pooler_type == PoolerType::RoiAlignV2,
            min_level,
            max_level,
            canonical_box_size: CANONICAL_BOX_SIZE,
            canonical_level: CANONICAL_LEVEL,
        })
    }

    /// Pools every box of `box_lists` (one list per image) from `features`
    /// (one (N, C, Hl, Wl) tensor per level, finest first). Returns
    /// (R, C, PH, PW) in box order; differentiable with respect to the features.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if the number of feature levels or of box
    /// lists does not match; [`Error::ShapeMismatch`] if a feature map is not
    /// rank 4; a candle error from RoIAlign.
    pub fn forward(&self, features: &[Tensor], box_lists: &[Boxes]) -> Result<Tensor> {
        if features.len() != self.scales.len() {
            return Err(Error::LengthMismatch { what: "feature levels", expected: self.scales.len(), found: features.len() });
        }
        let first = &features[0];
        let (n, c, _, _) = first
            .dims4()
            .map_err(|_| Error::ShapeMismatch { what: "pooler features", expected: "(N, C, H, W)", found: first.dims().to_vec() })?;
        if box_lists.len() != n {
            return Err(Error::LengthMismatch { what: "box lists (one per image)", expected: n, found: box_lists.len() });
        }
        let rows = convert_boxes_to_pooler_format(box_lists);
        let device = first.device();
        let (ph, pw) = self.output_size;
        if rows.is_empty() {
            return Ok(Tensor::zeros((0, c, ph, pw), first.dtype(), device)?);
        }
        let rois_of = |idx: &[usize]| -> Result<Tensor> {
            let flat: Vec<f32> = idx.iter().flat_map(|&i| rows[i]).collect();
            Ok(Tensor::from_vec(flat, (idx.len(), 5), device)?)
        };
        let pool = |level: usize, rois: &Tensor| -> Result<Tensor> {
            Ok(engine::ops::detection::roi_align(
                &features[level],
                rois,
                self.output_size,
                self.scales[level],
                self.sampling_ratio,
                self.aligned,
            )?)
        };
        if features.len() == 1 {
            let all: Vec<usize> = (0..rows.len()).collect();
            return pool(0, &rois_of(&all)?);
        }
        let levels = assign_boxes_to_levels(box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level);
        let mut order = Vec::with_capacity(rows.len());
        let mut pooled = Vec::new();
        for level in 0..features.len() {
            let idx: Vec<usize> = (0..rows.len()).filter(|&i| levels[i] == level).collect();
            if idx.is_empty() {
                continue;
            }
            pooled.push(pool(level, &rois_of(&idx)?)?);
            order.extend(idx);
        }
        // pooled rows are in `order`; position[i] is where box i landed.
        let mut position = vec![0u32; rows.len()];
        for (j, &i) in order.iter().enumerate() {
            position[i] = j as u32;
        }
        let cat = Tensor::cat(&pooled, 0)?;
        let position = Tensor::from_vec(position, rows.len(), device)?.to_dtype(DType::U32)?;
        Ok(cat.index_select(&position, 0)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use candle_core::{Device, Var};

    fn square(side: f32) -> [f32; 4] {
        [10.0, 10.0, 10.0 + side, 10.0 + side]
    }

    #[test]
    fn level_boundaries_hand_worked() {
        // sqrt(area) / 224 = 2^k exactly → level 4 + k; just below → one level lower.
        let boxes = Boxes::new(vec![
            square(224.0),             // 4 + log2(1) = 4
            [0.0, 0.0, 112.0, 448.0],  // sqrt(50176) = 224 → 4 (area decides, not the side)
            square(223.9),             // log2(0.99955) < 0 → 3
            square(112.0),             // 4 - 1 = 3
            square(111.9),             // 2
            square(448.0),             // 5
            square(447.9),             // 4
            square(896.0),             // 6, clamped to 5
            square(1.0),               // 4 + log2(1/224) = -3.8 → clamped to 2
            [5.0, 5.0, 5.0, 5.0],      // empty: log2(1e-8) → clamped to 2
        ]);
        let levels = assign_boxes_to_levels(&[boxes], 2, 5, CANONICAL_BOX_SIZE, CANONICAL_LEVEL);
        assert_eq!(levels, vec![2, 2, 1, 1, 0, 3, 2, 3, 0, 0]);
    }

    #[test]
    fn pooler_format_numbers_images() {
        let a = Boxes::new(vec![[1.0, 2.0, 3.0, 4.0]]);
        let b = Boxes::new(vec![[5.0, 6.0, 7.0, 8.0], [9.0, 9.0, 9.5, 9.5]]);
        let rows = convert_boxes_to_pooler_format(&[a, Boxes::default(), b]);
        assert_eq!(rows, vec![[0.0, 1.0, 2.0, 3.0, 4.0], [2.0, 5.0, 6.0, 7.0, 8.0], [2.0, 9.0, 9.0, 9.5, 9.5]]);
    }

    #[test]
    fn invalid_scales_are_rejected() {
        assert!(RoiPooler::new((7, 7), &[0.25, 0.125, 1.0 / 16.0, 1.0 / 32.0], 0, PoolerType::RoiAlignV2).is_ok());
        assert!(RoiPooler::new((7, 7), &[0.3], 0, PoolerType::RoiAlignV2).is_err());
        assert!(RoiPooler::new((7, 7), &[0.25, 1.0 / 16.0], 0, PoolerType::RoiAlignV2).is_err());
        assert!(RoiPooler::new((0, 7), &[0.25], 0, PoolerType::RoiAlignV2).is_err());
    }

    /// Pooling through the pyramid equals pooling each box from its own level
    /// directly, in box order, and gradients reach every level that got a box.
    #[test]
    fn forward_routes_boxes_to_levels_in_order() {
        let dev = Device::Cpu;
        let scales = [0.25, 0.125, 1.0 / 16.0, 1.0 / 32.0];
        let feats: Vec<Var> = (0..4)
            .map(|l| {
                let s = 256 >> (l + 2);
                Var::from_tensor(&engine::testing::random_tensor(&[2, 3, s, s], l as u64).to_dtype(DType::F32).unwrap()).unwrap()
            })
            .collect();
        let ft: Vec<Tensor> = feats.iter().map(|v| v.as_tensor().clone()).collect();
        // Sides 40 (P2), 300 (P4), 120 (P3), 250 (P4), 460 (P5) over two images.
        let img0 = Boxes::new(vec![[0.0, 0.0, 40.0, 40.0], [10.0, 20.0, 310.0, 320.0]]);
        let img1 = Boxes::new(vec![[5.0, 5.0, 125.0, 125.0], [0.0, 0.0, 250.0, 250.0], [-20.0, -20.0, 440.0, 440.0]]);
        let pooler = RoiPooler::new((7, 7), &scales, 0, PoolerType::RoiAlignV2).unwrap();
        let out = pooler.forward(&ft, &[img0.clone(), img1.clone()]).unwrap();
        assert_eq!(out.dims(), &[5, 3, 7, 7]);
        let expected_levels = [0usize, 2, 1, 2, 3];
        let rows = convert_boxes_to_pooler_format(&[img0, img1]);
        for (r, (&level, row)) in expected_levels.iter().zip(&rows).enumerate() {
            let rois = Tensor::new(&[*row], &dev).unwrap();
            let direct = engine::ops::detection::roi_align(&ft[level], &rois, (7, 7), scales[level], 0, true).unwrap();
            let got = out.narrow(0, r, 1).unwrap();
            let diff = (got - direct).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
            assert_eq!(diff, 0.0, "box {r}");
        }
        let grads = out.sum_all().unwrap().backward().unwrap();
        for (l, v) in feats.iter().enumerate() {
            let g = grads.get(v).unwrap().abs().unwrap().sum_all().unwrap().to_vec0::<f32>().unwrap();
            assert!(g > 0.0, "level {l} got no gradient");
        }
    }

    #[test]
    fn forward_checks_inputs_and_handles_no_boxes() {
        let f = Tensor::zeros((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let pooler = RoiPooler::new((7, 7), &[0.25], 0, PoolerType::RoiAlignV2).unwrap();
        let out = pooler.forward(std::slice::from_ref(&f), &[Boxes::default(), Boxes::default()]).unwrap();
        assert_eq!(out.dims(), &[0, 3, 7, 7]);
        assert!(matches!(pooler.forward(std::slice::from_ref(&f), &[Boxes::default()]), Err(Error::LengthMismatch { .. })));
        assert!(matches!(pooler.forward(&[f.clone(), f], &[]), Err(Error::LengthMismatch { .. })));
    }
}
