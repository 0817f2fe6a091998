//! Per-image instance sets: the ground truth a training step learns from and
//! the detections inference produces (detectron2 `Instances`, as typed
//! structs instead of a dynamic field dict).

use crate::Boxes;

/// The annotated objects of one training image, in input pixels.
#[derive(Debug, Clone, Default)]
pub struct GroundTruth {
    /// Boxes, xyxy.
    pub boxes: Boxes,
    /// Contiguous class index of each box, in 0..num_classes.
    pub classes: Vec<usize>,
    /// Each object's polygon parts `[x0, y0, x1, y1, ...]` (mask targets).
    pub polygons: Vec<Vec<Vec<f64>>>,
}

/// The detections of one image, sorted by decreasing score.
#[derive(Debug, Clone, Default)]
pub struct Detections {
    /// Boxes, xyxy, in the pixels of the image they were predicted on.
    pub boxes: Boxes,
    /// Class probability of each detection.
    pub scores: Vec<f32>,
    /// Contiguous class index of each detection.
    pub classes: Vec<usize>,
    /// Mask probabilities, `mask_size` x `mask_size` per detection inside
    /// its box, row-major, concatenated; empty when the model has no mask head.
    pub masks: Vec<f32>,
    /// Side of each mask.
    pub mask_size: usize,
}

impl Detections {
    /// Number of detections.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when nothing was detected.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The mask probabilities of detection `i` (`mask_size`² values), if any.
    pub fn mask(&self, i: usize) -> Option<&[f32]> {
        let m = self.mask_size * self.mask_size;
        self.masks.get(i * m..(i + 1) * m)
    }
}
