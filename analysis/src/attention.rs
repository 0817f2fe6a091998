//! Attention distance and entropy per layer and head (the paper's Fig. 5),
//! as MAE-Lite's `projects/eval_tools/visualize/attn_analyzer.py` computes
//! them: the scaled pre-softmax logits are sliced to patch-to-patch
//! (`[:, :, 1:, 1:]`, cls removed) and re-softmaxed over the patches, so
//! each query's attention over the patches sums to 1 (the mass cls took is
//! redistributed, not lost); then per head
//!
//! - entropy `-Σ_j p_ij ln(p_ij + eps)` in nats, `eps` = 0 by default (a
//!   uniform row over M patches gives exactly ln M; `p ln p` = 0 at p = 0),
//!   [`RELEASED_ENTROPY_EPS`] reproduces the released code;
//! - distance `Σ_j p_ij d_ij`, d the Euclidean distance between the two
//!   patches' grid positions times the [`DistanceUnit`] scale: the patch size
//!   (pixels, default), 1 (patches) or [`RELEASED_DISTANCE_SCALE`] (the
//!   released figures' x14, not the 16-px patch);
//!
//! both averaged over the query tokens i and over images (an exact mean over
//! images; the released code averages batch means, the same for equal batches).
//!
//! Shapes: B images, H heads, N = 1 + M tokens (cls first), M = h*w patches.

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The released code's `log(p + 1e-6)`.
pub const RELEASED_ENTROPY_EPS: f64 = 1e-6;
/// The released figures multiply grid distances by 14 (the grid side of a
/// 224-px image), not by the 16-px patch size.
pub const RELEASED_DISTANCE_SCALE: f64 = 14.0;

/// The unit attention distances are reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DistanceUnit {
    /// Pixels of the input image: grid distance x patch size (Raghu et al.).
    #[default]
    Pixels,
    /// Grid units: one patch = 1.
    Patches,
    /// The released figures' scale: grid distance x 14.
    Released,
}

impl DistanceUnit {
    /// The factor from grid distance to this unit for `patch_size`-px patches.
    pub fn scale(self, patch_size: usize) -> f64 {
        match self {
            DistanceUnit::Pixels => patch_size as f64,
            DistanceUnit::Patches => 1.0,
            DistanceUnit::Released => RELEASED_DISTANCE_SCALE,
        }
    }
}

/// Euclidean distances between the patches of an (h, w) grid, row-major
/// (M x M, M = h*w), in grid units.
pub fn grid_distances(h: usize, w: usize) -> Vec<f64> {
    let m = h * w;
    let pos = |i: usize| ((i / w) as f64, (i % w) as f64);
    (0..m * m)
        .map(|k| {
            let ((ya, xa), (yb, xb)) = (pos(k / m), pos(k % m));
            ((ya - yb).powi(2) + (xa - xb).powi(2)).sqrt()
        })
        .collect()
}

/// Entropy (nats) and distance (the units of `distances`) of one query's
/// attention: `logits` over the M patches are softmaxed in f64.
pub fn row_stats(logits: &[f32], distances: &[f64], eps: f64) -> (f64, f64) {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exps: Vec<f64> = logits.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let (mut entropy, mut distance) = (0.0, 0.0);
    for (e, d) in exps.iter().zip(distances) {
        let p = e / sum;
        if p > 0.0 {
            entropy -= p * (p + eps).ln();
        }
        distance += p * d;
    }
    (entropy, distance)
}

/// Per head, the sums over images of the query-mean entropy and distance
/// (grid units) of one layer's logits (B, H, N, N), cls first, patches
/// forming an (h, w) grid.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the logits are not (B, H, 1 + h*w, 1 + h*w).
pub fn head_sums(logits: &Tensor, hw: (usize, usize), eps: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let (b, heads, n, n2) = logits.dims4()?;
    let m = hw.0 * hw.1;
    if n != 1 + m || n2 != n {
        return Err(Error::ShapeMismatch { what: "attention logits".into(), expected: format!("(B, H, {0}, {0}) for a {1}x{2} grid plus cls", 1 + m, hw.0, hw.1), found: format!("{:?}", logits.dims()) });
    }
    let values = logits.narrow(2, 1, m)?.narrow(3, 1, m)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let distances = grid_distances(hw.0, hw.1);
    // One (image, head) block of M query rows per task; query means summed per head.
    let per_block: Vec<(f64, f64)> = values
        .par_chunks(m * m)
        .map(|block| {
            let (e, d) = block.chunks(m).enumerate().fold((0.0, 0.0), |(e, d), (i, row)| {
                let (re, rd) = row_stats(row, &distances[i * m..(i + 1) * m], eps);
                (e + re, d + rd)
            });
            (e / m as f64, d / m as f64)
        })
        .collect();
    let mut entropy = vec![0.0; heads];
    let mut distance = vec![0.0; heads];
    for (k, (e, d)) in per_block.into_iter().enumerate().take(b * heads) {
        entropy[k % heads] += e;
        distance[k % heads] += d;
    }
    Ok((entropy, distance))
}

/// Running per-layer, per-head sums over images.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSums {
    /// Σ over images of the query-mean entropy, [layer][head].
    pub entropy: Vec<Vec<f64>>,
    /// Σ over images of the query-mean distance in grid units, [layer][head].
    pub distance: Vec<Vec<f64>>,
    /// Images added.
    pub images: usize,
}

impl AttentionSums {
    /// Empty sums for `layers` layers of `heads` heads.
    pub fn new(layers: usize, heads: usize) -> Self {
        Self { entropy: vec![vec![0.0; heads]; layers], distance: vec![vec![0.0; heads]; layers], images: 0 }
    }

    /// Adds layer `layer`'s [`head_sums`] (the caller counts images once per batch with [`AttentionSums::count`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a layer or head count out of range.
    pub fn add_layer(&mut self, layer: usize, entropy: &[f64], distance: &[f64]) -> Result<()> {
        let (Some(e), Some(d)) = (self.entropy.get_mut(layer), self.distance.get_mut(layer)) else {
            return Err(Error::ShapeMismatch { what: "attention layer".into(), expected: format!("< {}", self.entropy.len()), found: layer.to_string() });
        };
        if entropy.len() != e.len() || distance.len() != d.len() {
            return Err(Error::ShapeMismatch { what: "attention heads".into(), expected: e.len().to_string(), found: entropy.len().to_string() });
        }
        e.iter_mut().zip(entropy).for_each(|(s, v)| *s += v);
        d.iter_mut().zip(distance).for_each(|(s, v)| *s += v);
        Ok(())
    }

    /// Counts `n` more images.
    pub fn count(&mut self, n: usize) {
        self.images += n;
    }

    /// The means over images: (entropy, distance x `scale`), [layer][head].
    pub fn means(&self, scale: f64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let n = self.images.max(1) as f64;
        let mean = |rows: &Vec<Vec<f64>>, s: f64| rows.iter().map(|r| r.iter().map(|v| v / n * s).collect()).collect();
        (mean(&self.entropy, 1.0), mean(&self.distance, scale))
    }
}
