//! Greedy non-maximum suppression, plain and class-wise.
//!
//! Mirrors torchvision `ops.nms` (CPU kernel `nms_kernel.cpp`) and
//! `ops.batched_nms`: boxes are visited in decreasing score order; a kept box
//! suppresses every later box whose IoU with it is **strictly greater** than
//! the threshold. IoU is computed in f32 as `inter / (area_i + area_j - inter)`
//! and compared with the f64 threshold, as the kernel does. Checked against
//! torchvision in `tests/nms.rs`.
//!
//! Tie rule: equal scores keep their input order (a stable sort by
//! decreasing score, as torchvision's CPU kernel sorts with `stable=true`).
//! NaN scores are rejected.
//!
//! Speed (RPN proposals: 2000–5000 boxes per level and image; box head:
//! up to 100k boxes over 80 classes): the scores are sorted once, the boxes
//! are copied into score-ordered coordinate arrays so the inner loop reads
//! memory sequentially, and a box whose x-range cannot overlap the kept box
//! is rejected before computing its IoU. Class-wise NMS splits the sorted
//! order by class, so each class pays only for its own boxes.
//!
//! Shapes: N boxes.

use crate::{Boxes, Error, Result};

/// Indices of the boxes kept by NMS, in decreasing score order.
///
/// # Errors
/// [`Error::LengthMismatch`] if `scores` is not one per box;
/// [`Error::NanScore`] for a NaN score.
pub fn nms(boxes: &Boxes, scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    let order = score_order(boxes, scores)?;
    Ok(greedy(boxes, &order, iou_threshold))
}

/// Class-wise NMS (torchvision `batched_nms`): boxes of different classes
/// never suppress each other. Returns the kept indices in decreasing score
/// order (ties by index). The RPN uses the feature level as the class.
///
/// # Errors
/// [`Error::LengthMismatch`] if `scores` or `classes` is not one per box;
/// [`Error::NanScore`] for a NaN score.
pub fn batched_nms(boxes: &Boxes, scores: &[f32], classes: &[usize], iou_threshold: f64) -> Result<Vec<usize>> {
    if classes.len() != boxes.len() {
        return Err(Error::LengthMismatch { what: "classes", expected: boxes.len(), found: classes.len() });
    }
    let order = score_order(boxes, scores)?;
    let num_classes = classes.iter().copied().max().map_or(0, |c| c + 1);
    // Rank of each box in the global order, so the per-class results merge
    // back into score order.
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for &i in &order {
        if let Some(list) = per_class.get_mut(classes[i]) {
            list.push(i);
        }
    }
    let mut rank = vec![0usize; boxes.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let mut keep: Vec<usize> = per_class.iter().flat_map(|o| greedy(boxes, o, iou_threshold)).collect();
    keep.sort_unstable_by_key(|&i| rank[i]);
    Ok(keep)
}

/// Indices sorted by decreasing score, stable for ties.
fn score_order(boxes: &Boxes, scores: &[f32]) -> Result<Vec<usize>> {
    if scores.len() != boxes.len() {
        return Err(Error::LengthMismatch { what: "scores", expected: boxes.len(), found: scores.len() });
    }
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::NanScore { index });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    Ok(order)
}

/// Greedy NMS over `order` (indices into `boxes`, already in score order).
fn greedy(boxes: &Boxes, order: &[usize], iou_threshold: f64) -> Vec<usize> {
    let b = boxes.as_slice();
    let n = order.len();
    let (mut x1, mut y1, mut x2, mut y2, mut area) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for &i in order {
        let [a, c, d, e] = b[i];
        x1.push(a);
        y1.push(c);
        x2.push(d);
        y2.push(e);
        area.push((d - a) * (e - c));
    }
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for i in 0..n {
        if suppressed[i] {
            continue;
        }
        keep.push(order[i]);
        let (ix1, iy1, ix2, iy2, iarea) = (x1[i], y1[i], x2[i], y2[i], area[i]);
        for j in i + 1..n {
            if suppressed[j] {
                continue;
            }
            let w = (ix2.min(x2[j]) - ix1.max(x1[j])).max(0.0);
            if w == 0.0 && iou_threshold >= 0.0 {
                // No overlap: IoU 0 is never above a threshold >= 0.
                continue;
            }
            let h = (iy2.min(y2[j]) - iy1.max(y1[j])).max(0.0);
            let inter = w * h;
            let ovr = inter / (iarea + area[j] - inter);
            if f64::from(ovr) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn suppression_is_strictly_above_threshold() {
        // [0,0,10,10] vs [0,0,10,5]: inter 50, union 100, IoU exactly 0.5.
        let boxes = Boxes::new(vec![[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 30.0, 30.0]]);
        let scores = [0.9, 0.8, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 1, 2]);
        assert_eq!(nms(&boxes, &scores, 0.49).unwrap(), vec![0, 2]);
    }

    #[test]
    fn processes_in_score_order_with_stable_ties() {
        let boxes = Boxes::new(vec![[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [2.0, 0.0, 12.0, 10.0]]);
        // Box 2 has the best score and suppresses box 1; box 0 survives (IoU 8/12 with box 2).
        assert_eq!(nms(&boxes, &[0.5, 0.6, 0.9], 0.7).unwrap(), vec![2, 0]);
        // All tied: the first index wins and suppresses box 1 (IoU 0.818).
        assert_eq!(nms(&boxes, &[0.5, 0.5, 0.5], 0.7).unwrap(), vec![0, 2]);
    }

    #[test]
    fn batched_nms_keeps_classes_apart() {
        let boxes = Boxes::new(vec![[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]);
        let scores = [0.3, 0.9, 0.5];
        assert_eq!(batched_nms(&boxes, &scores, &[0, 1, 0], 0.5).unwrap(), vec![1, 2]);
        assert_eq!(batched_nms(&boxes, &scores, &[0, 1, 2], 0.5).unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn empty_and_invalid_inputs() {
        assert!(nms(&Boxes::default(), &[], 0.5).unwrap().is_empty());
        assert!(batched_nms(&Boxes::default(), &[], &[], 0.5).unwrap().is_empty());
        let boxes = Boxes::new(vec![[0.0, 0.0, 1.0, 1.0]]);
        assert!(matches!(nms(&boxes, &[0.1, 0.2], 0.5), Err(Error::LengthMismatch { .. })));
        assert!(matches!(nms(&boxes, &[f32::NAN], 0.5), Err(Error::NanScore { index: 0 })));
        assert!(batched_nms(&boxes, &[0.1], &[], 0.5).is_err());
    }
}
