//! Box coding: the (dx, dy, dw, dh) deltas that turn one box into another.
//!
//! Mirrors detectron2 `modeling/box_regression.py::Box2BoxTransform`
//! (`get_deltas`, `apply_deltas`); the arithmetic is the same f32 operations
//! in the same order as torchvision `BoxCoder.encode_single/decode_single`,
//! which `tests/box_transform.rs` checks against.
//!
//! Shapes: N boxes, K classes (class-specific deltas are laid out (N, K·4),
//! row-major, as the box predictor emits them).

use crate::{Boxes, Error, Result};

/// detectron2 `_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)`: dw and dh are
/// clamped to it before `exp`, so no predicted box grows more than 1000/16
/// times its reference box (a 16 px anchor cannot become wider than 1000 px).
pub const DEFAULT_SCALE_CLAMP: f64 = 4.135_166_556_742_356;

/// Weights of the RPN's box coding (detectron2 `RPN.BBOX_REG_WEIGHTS`).
pub const RPN_WEIGHTS: [f32; 4] = [1.0, 1.0, 1.0, 1.0];

/// Weights of the ROI box head's box coding (detectron2
/// `ROI_BOX_HEAD.BBOX_REG_WEIGHTS`): scales the deltas of the second stage,
/// which are small, to about unit variance.
pub const ROI_HEADS_WEIGHTS: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// detectron2 `Box2BoxTransform`: encodes a target box relative to a reference
/// box as `(wx·dx/w, wy·dy/h, ww·ln(w'/w), wh·ln(h'/h))` of the centres and
/// sizes, and decodes deltas back to boxes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxTransform {
    weights: [f32; 4],
    scale_clamp: f32,
}

impl BoxTransform {
    /// A transform with weights `(wx, wy, ww, wh)` and the clamp applied to
    /// dw, dh before `exp` when decoding.
    pub fn new(weights: [f32; 4], scale_clamp: f64) -> Self {
        // torch clamps an f32 tensor with a Python float by first rounding it to f32.
        Self { weights, scale_clamp: scale_clamp as f32 }
    }

    /// The RPN's transform: weights (1, 1, 1, 1), clamp ln(1000/16).
    pub fn rpn() -> Self {
        Self::new(RPN_WEIGHTS, DEFAULT_SCALE_CLAMP)
    }

    /// The box head's transform: weights (10, 10, 5, 5), clamp ln(1000/16).
    pub fn roi_heads() -> Self {
        Self::new(ROI_HEADS_WEIGHTS, DEFAULT_SCALE_CLAMP)
    }

    /// The weights `(wx, wy, ww, wh)`.
    pub fn weights(&self) -> [f32; 4] {
        self.weights
    }

    /// Deltas that turn each `src` box into the `target` box of the same index
    /// (the regression targets). No clamp is applied here, as in detectron2.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if the lists differ in length;
    /// [`Error::DegenerateBox`] for a source box without positive width and
    /// height (detectron2 asserts this; the log would be undefined).
    pub fn get_deltas(&self, src: &Boxes, target: &Boxes) -> Result<Vec<[f32; 4]>> {
        if src.len() != target.len() {
            return Err(Error::LengthMismatch { what: "target boxes", expected: src.len(), found: target.len() });
        }
        let [wx, wy, ww, wh] = self.weights;
        src.as_slice()
            .iter()
            .zip(target.as_slice())
            .enumerate()
            .map(|(index, (s, t))| {
                let src_w = s[2] - s[0];
                let src_h = s[3] - s[1];
                if !(src_w > 0.0 && src_h > 0.0) {
                    return Err(Error::DegenerateBox { index, width: src_w, height: src_h });
                }
                let src_cx = s[0] + 0.5 * src_w;
                let src_cy = s[1] + 0.5 * src_h;
                let tgt_w = t[2] - t[0];
                let tgt_h = t[3] - t[1];
                let tgt_cx = t[0] + 0.5 * tgt_w;
                let tgt_cy = t[1] + 0.5 * tgt_h;
                Ok([
                    wx * (tgt_cx - src_cx) / src_w,
                    wy * (tgt_cy - src_cy) / src_h,
                    ww * (tgt_w / src_w).ln(),
                    wh * (tgt_h / src_h).ln(),
                ])
            })
            .collect()
    }

    /// Applies deltas to boxes. `deltas` is (N, K·4) row-major: K boxes per
    /// reference box (K = 1 for the RPN, K classes for the class-specific box
    /// head); the result has the same layout, `[x1, y1, x2, y2]` per box.
    /// dw and dh are clamped from above at the scale clamp.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `deltas.len()` is not a multiple of
    /// `4 · boxes.len()` (or is non-empty while there are no boxes).
    pub fn apply_deltas(&self, deltas: &[f32], boxes: &Boxes) -> Result<Vec<f32>> {
        let n = boxes.len();
        let per_box = deltas.len().checked_div(n).unwrap_or(0);
        if per_box * n != deltas.len() || !per_box.is_multiple_of(4) {
            return Err(Error::LengthMismatch {
                what: "deltas (expected N * K * 4 values)",
                expected: n * per_box.div_ceil(4).max(1) * 4,
                found: deltas.len(),
            });
        }
        let [wx, wy, ww, wh] = self.weights;
        let mut out = Vec::with_capacity(deltas.len());
        for (b, row) in boxes.as_slice().iter().zip(deltas.chunks_exact(per_box.max(1))) {
            let width = b[2] - b[0];
            let height = b[3] - b[1];
            let ctr_x = b[0] + 0.5 * width;
            let ctr_y = b[1] + 0.5 * height;
            for d in row.chunks_exact(4) {
                let dx = d[0] / wx;
                let dy = d[1] / wy;
                let dw = (d[2] / ww).min(self.scale_clamp);
                let dh = (d[3] / wh).min(self.scale_clamp);
                let pred_ctr_x = dx * width + ctr_x;
                let pred_ctr_y = dy * height + ctr_y;
                let pred_w = dw.exp() * width;
                let pred_h = dh.exp() * height;
                out.extend_from_slice(&[
                    pred_ctr_x - 0.5 * pred_w,
                    pred_ctr_y - 0.5 * pred_h,
                    pred_ctr_x + 0.5 * pred_w,
                    pred_ctr_y + 0.5 * pred_h,
                ]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn scale_clamp_is_ln_1000_over_16() {
        assert_eq!(DEFAULT_SCALE_CLAMP, (1000.0f64 / 16.0).ln());
    }

    #[test]
    fn hand_worked_deltas() {
        // src centre (5, 5) size 10x10; target centre (7, 4) size 20x5.
        let src = Boxes::new(vec![[0.0, 0.0, 10.0, 10.0]]);
        let tgt = Boxes::new(vec![[-3.0, 1.5, 17.0, 6.5]]);
        let d = BoxTransform::roi_heads().get_deltas(&src, &tgt).unwrap();
        let expected = [10.0 * 0.2, 10.0 * -0.1, 5.0 * 2.0f32.ln(), 5.0 * 0.5f32.ln()];
        for (a, b) in d[0].iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn degenerate_source_box_is_an_error() {
        let src = Boxes::new(vec![[0.0, 0.0, 10.0, 10.0], [3.0, 3.0, 3.0, 8.0]]);
        let tgt = src.clone();
        assert!(matches!(BoxTransform::rpn().get_deltas(&src, &tgt), Err(Error::DegenerateBox { index: 1, .. })));
    }

    #[test]
    fn clamp_limits_growth() {
        let b = Boxes::new(vec![[0.0, 0.0, 16.0, 16.0]]);
        let out = BoxTransform::rpn().apply_deltas(&[0.0, 0.0, 100.0, 100.0], &b).unwrap();
        assert!((out[2] - out[0] - 1000.0).abs() < 1e-2, "{out:?}");
    }

    #[test]
    fn apply_deltas_checks_layout() {
        let b = Boxes::new(vec![[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 8.0, 8.0]]);
        assert!(BoxTransform::rpn().apply_deltas(&[0.0; 6], &b).is_err());
        assert!(BoxTransform::rpn().apply_deltas(&[0.0; 4], &Boxes::default()).is_err());
        assert_eq!(BoxTransform::rpn().apply_deltas(&[], &Boxes::default()).unwrap().len(), 0);
        assert_eq!(BoxTransform::rpn().apply_deltas(&[0.0; 16], &b).unwrap().len(), 16);
    }
}
