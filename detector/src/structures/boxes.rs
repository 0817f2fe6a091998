//! Axis-aligned boxes in XYXY_ABS form and their pairwise IoU.
//!
//! Mirrors detectron2 `structures/boxes.py::Boxes` (`area`, `clip`,
//! `nonempty`, `pairwise_iou`) and torchvision `ops/boxes.py` (`box_iou`,
//! `box_area`, `clip_boxes_to_image`, `box_convert`). Checked against
//! torchvision in `tests/boxes.rs`.
//!
//! Shapes: N, M numbers of boxes. A `Boxes` is an (N, 4) table of
//! `[x1, y1, x2, y2]` in absolute pixels of the (resized, padded) input image:
//! (x1, y1) is the top-left corner, (x2, y2) the bottom-right one, and a box
//! covers `x2 - x1` pixels horizontally.
//!
//! Why host data (`Vec<[f32; 4]>`) rather than a tensor: every consumer of
//! boxes in the RPN and ROI heads (anchor matching, sampling, box-target
//! encoding, NMS, pooler level assignment, the RoIAlign box argument) is
//! branchy per-box CPU work that needs no gradient. The only tensors involved
//! are the predicted deltas and scores, which are read to the host once per
//! image; [`Boxes::to_tensor`] and [`Boxes::from_tensor`] cross over.
//!
//! Deliberate deviation: [`Boxes::pairwise_iou`] follows detectron2 and
//! returns 0 for pairs that do not intersect, where torchvision's `box_iou`
//! returns NaN for two empty boxes (0 / 0).

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// N boxes `[x1, y1, x2, y2]` in absolute pixels (detectron2 `XYXY_ABS`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Boxes {
    data: Vec<[f32; 4]>,
}

impl Boxes {
    /// Wraps `[x1, y1, x2, y2]` rows. No ordering of the corners is enforced:
    /// degenerate boxes are representable and are what [`Boxes::nonempty`] finds.
    pub fn new(data: Vec<[f32; 4]>) -> Self {
        Self { data }
    }

    /// Converts `[x, y, w, h]` rows ((x, y) top-left corner, pixels) to XYXY.
    pub fn from_xywh(xywh: &[[f32; 4]]) -> Self {
        Self::new(xywh.iter().map(|&[x, y, w, h]| [x, y, x + w, y + h]).collect())
    }

    /// The boxes as `[x, y, w, h]` rows, (x, y) the top-left corner (COCO's
    /// `bbox` convention).
    pub fn to_xywh(&self) -> Vec<[f32; 4]> {
        self.data.iter().map(|&[x1, y1, x2, y2]| [x1, y1, x2 - x1, y2 - y1]).collect()
    }

    /// Reads an (N, 4) float tensor of XYXY boxes (any float dtype, any device).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the tensor is not (N, 4); a candle error if
    /// it cannot be converted to f32.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let dims = t.dims();
        if dims.len() != 2 || dims[1] != 4 {
            return Err(Error::ShapeMismatch { what: "boxes tensor", expected: "(N, 4)", found: dims.to_vec() });
        }
        let rows = t.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        Ok(Self::new(rows.into_iter().map(|r| [r[0], r[1], r[2], r[3]]).collect()))
    }

    /// The boxes as an (N, 4) f32 tensor on `device`.
    ///
    /// # Errors
    /// A candle error if the tensor cannot be created on `device`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let flat: Vec<f32> = self.data.iter().flatten().copied().collect();
        Ok(Tensor::from_vec(flat, (self.data.len(), 4), device)?)
    }

    /// Number of boxes N.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no boxes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The rows `[x1, y1, x2, y2]`.
    pub fn as_slice(&self) -> &[[f32; 4]] {
        &self.data
    }

    /// Consumes the boxes, returning the rows.
    pub fn into_inner(self) -> Vec<[f32; 4]> {
        self.data
    }

    /// The boxes at `indices`, in that order (detectron2 `boxes[indices]`).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] naming the first index that is out of range.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        indices
            .iter()
            .map(|&i| {
                self.data.get(i).copied().ok_or(Error::LengthMismatch {
                    what: "box index (expected < number of boxes)",
                    expected: self.data.len(),
                    found: i,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Self::new)
    }

    /// Concatenates box lists in order (detectron2 `Boxes.cat`).
    pub fn cat(lists: &[Boxes]) -> Self {
        Self::new(lists.iter().flat_map(|b| b.data.iter().copied()).collect())
    }

    /// Area `(x2 - x1) * (y2 - y1)` of each box in pixels², as torchvision
    /// `box_area` computes it (negative for inverted boxes, not clamped).
    pub fn area(&self) -> Vec<f32> {
        self.data.iter().map(box_area).collect()
    }

    /// Clamps x to [0, width] and y to [0, height] (detectron2 `Boxes.clip`,
    /// torchvision `clip_boxes_to_image`). `image_hw` is (height, width) in pixels.
    pub fn clip(&mut self, image_hw: (usize, usize)) {
        let (h, w) = (image_hw.0 as f32, image_hw.1 as f32);
        for b in &mut self.data {
            b[0] = b[0].clamp(0.0, w);
            b[1] = b[1].clamp(0.0, h);
            b[2] = b[2].clamp(0.0, w);
            b[3] = b[3].clamp(0.0, h);
        }
    }

    /// For each box, whether both its width and height exceed `threshold`
    /// pixels (detectron2 `Boxes.nonempty`; the RPN uses threshold 0).
    pub fn nonempty(&self, threshold: f32) -> Vec<bool> {
        self.data.iter().map(|&[x1, y1, x2, y2]| x2 - x1 > threshold && y2 - y1 > threshold).collect()
    }

    /// The (N, M) IoU matrix between `self` (rows) and `other` (columns), as
    /// torchvision `box_iou`: `inter / (area_a + area_b - inter)` in f32 with
    /// the same operation order, except that pairs that do not intersect get 0
    /// (detectron2 `pairwise_iou`) instead of torchvision's NaN for two empty boxes.
    pub fn pairwise_iou(&self, other: &Boxes) -> IouMatrix {
        let area_b = other.area();
        let mut values = Vec::with_capacity(self.len() * other.len());
        for a in &self.data {
            let area_a = box_area(a);
            for (b, &ab) in other.data.iter().zip(&area_b) {
                values.push(iou_with_areas(a, area_a, b, ab));
            }
        }
        IouMatrix { num_rows: self.len(), num_cols: other.len(), values }
    }
}

/// `(x2 - x1) * (y2 - y1)` of one XYXY box.
pub(crate) fn box_area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// IoU of two boxes whose areas are already known; 0 when they do not intersect.
pub(crate) fn iou_with_areas(a: &[f32; 4], area_a: f32, b: &[f32; 4], area_b: f32) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    if inter > 0.0 {
        inter / (area_a + area_b - inter)
    } else {
        0.0
    }
}

/// A dense (rows × cols) matrix of match qualities, row-major. In the
/// detector rows are ground-truth boxes (M) and columns predictions or
/// anchors (N), as detectron2's `match_quality_matrix`.
#[derive(Debug, Clone, PartialEq)]
pub struct IouMatrix {
    num_rows: usize,
    num_cols: usize,
    values: Vec<f32>,
}

impl IouMatrix {
    /// Wraps row-major `values`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `values.len() != num_rows * num_cols`.
    pub fn new(num_rows: usize, num_cols: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != num_rows * num_cols {
            return Err(Error::LengthMismatch { what: "IoU matrix values", expected: num_rows * num_cols, found: values.len() });
        }
        Ok(Self { num_rows, num_cols, values })
    }

    /// Number of rows (ground-truth boxes, M).
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns (predictions, N).
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }

    /// Row `r` as a slice of `num_cols` values. Panics-free: an out-of-range
    /// row gives an empty slice.
    pub fn row(&self, r: usize) -> &[f32] {
        self.values.get(r * self.num_cols..(r + 1) * self.num_cols).unwrap_or(&[])
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn iou_hand_worked() {
        // Two 2x2 boxes overlapping in a 1x2 strip: inter 2, union 6.
        let a = Boxes::new(vec![[0.0, 0.0, 2.0, 2.0]]);
        let b = Boxes::new(vec![[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]]);
        let iou = a.pairwise_iou(&b);
        assert_eq!((iou.num_rows(), iou.num_cols()), (1, 3));
        assert_eq!(iou.row(0), &[2.0 / 6.0, 0.0, 1.0]);
    }

    #[test]
    fn empty_boxes_have_zero_iou_not_nan() {
        let a = Boxes::new(vec![[1.0, 1.0, 1.0, 1.0]]);
        assert_eq!(a.pairwise_iou(&a).values(), &[0.0]);
        let none = Boxes::default();
        let iou = a.pairwise_iou(&none);
        assert_eq!((iou.num_rows(), iou.num_cols(), iou.values().len()), (1, 0, 0));
    }

    #[test]
    fn nonempty_uses_strict_threshold() {
        let b = Boxes::new(vec![[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 2.0, 1.0]]);
        assert_eq!(b.nonempty(0.0), vec![true, false, true]);
        assert_eq!(b.nonempty(1.0), vec![false, false, false]);
    }

    #[test]
    fn select_out_of_range_is_an_error() {
        let b = Boxes::new(vec![[0.0, 0.0, 1.0, 1.0]]);
        assert_eq!(b.select(&[0, 0]).unwrap().len(), 2);
        assert!(matches!(b.select(&[1]), Err(Error::LengthMismatch { found: 1, .. })));
    }

    #[test]
    fn tensor_round_trip_and_shape_check() {
        let b = Boxes::new(vec![[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]);
        let t = b.to_tensor(&Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 4]);
        assert_eq!(Boxes::from_tensor(&t).unwrap(), b);
        let bad = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(Boxes::from_tensor(&bad), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn iou_matrix_checks_its_length() {
        assert!(IouMatrix::new(2, 3, vec![0.0; 5]).is_err());
        assert_eq!(IouMatrix::new(2, 3, vec![0.5; 6]).unwrap().row(1).len(), 3);
    }
}
