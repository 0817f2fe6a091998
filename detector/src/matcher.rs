//! Assigns each prediction (anchor or proposal) to a ground-truth box and
//! labels it positive, negative or ignored from its best IoU.
//!
//! Mirrors detectron2 `modeling/matcher.py::Matcher` (`__call__`,
//! `set_low_quality_matches_`). Checked in `tests/matcher.rs` against
//! torchvision `det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)`,
//! which encodes the same result as -1 (below low) / -2 (between) / gt index.
//!
//! Shapes: M ground-truth boxes (rows of the IoU matrix), N predictions
//! (columns).
//!
//! Tie rules (as torch on CPU): a prediction whose best IoU is shared by
//! several ground truths is matched to the first of them (lowest row index);
//! with `allow_low_quality_matches`, *every* prediction that attains a ground
//! truth's highest IoU becomes positive, ties included, and keeps its own
//! argmax match (which may be a different ground truth). A ground truth whose
//! best IoU is 0 therefore turns every prediction with IoU 0 to it positive,
//! as in detectron2 and torchvision.

use crate::structures::boxes::IouMatrix;
use crate::{Error, Result};

/// The label a matcher gives a prediction (detectron2 uses 0, -1, 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchLabel {
    /// Background (detectron2 0).
    Negative,
    /// Neither: excluded from the loss (detectron2 -1).
    Ignore,
    /// Foreground, matched to its ground truth (detectron2 1).
    Positive,
}

impl MatchLabel {
    /// detectron2's integer code: 0, -1 or 1.
    pub fn code(self) -> i64 {
        match self {
            MatchLabel::Negative => 0,
            MatchLabel::Ignore => -1,
            MatchLabel::Positive => 1,
        }
    }
}

/// The matcher's result for N predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matches {
    /// For each prediction, the ground truth with its highest IoU (first one
    /// on ties), whatever its label; `None` for every prediction when there
    /// are no ground-truth boxes.
    pub matched_gt: Vec<Option<usize>>,
    /// For each prediction, its label.
    pub labels: Vec<MatchLabel>,
}

/// detectron2 `Matcher`: thresholds split a prediction's best IoU into
/// intervals `[t_{i-1}, t_i)`, each with a label.
///
/// Example: thresholds `[0.3, 0.7]` with labels `[Negative, Ignore, Positive]`
/// (the RPN) gives IoU < 0.3 → negative, 0.3 ≤ IoU < 0.7 → ignored,
/// IoU ≥ 0.7 → positive. Values exactly at a threshold fall in the upper
/// interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    thresholds: Vec<f32>,
    labels: Vec<MatchLabel>,
    allow_low_quality_matches: bool,
}

impl Matcher {
    /// A matcher with increasing `thresholds` (T values) and T + 1 `labels`.
    /// With `allow_low_quality_matches`, each ground truth's best predictions
    /// (ties included) become positive even below the top threshold, so every
    /// ground truth gets at least one positive (Faster R-CNN §3.1.2).
    ///
    /// # Errors
    /// [`Error::Config`] if the thresholds are not sorted, not finite, or the
    /// label count is not T + 1.
    pub fn new(thresholds: Vec<f32>, labels: Vec<MatchLabel>, allow_low_quality_matches: bool) -> Result<Self> {
        if thresholds.iter().any(|t| !t.is_finite()) || thresholds.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::Config { key: "matcher.thresholds", msg: format!("{thresholds:?} must be finite and increasing") });
        }
        if labels.len() != thresholds.len() + 1 {
            return Err(Error::Config {
                key: "matcher.labels",
                msg: format!("{} labels for {} thresholds; need one more label than thresholds", labels.len(), thresholds.len()),
            });
        }
        Ok(Self { thresholds, labels, allow_low_quality_matches })
    }

    /// The RPN's anchor matcher: thresholds [0.3, 0.7], labels
    /// [Negative, Ignore, Positive], low-quality matches allowed.
    pub fn rpn() -> Self {
        Self {
            thresholds: vec![0.3, 0.7],
            labels: vec![MatchLabel::Negative, MatchLabel::Ignore, MatchLabel::Positive],
            allow_low_quality_matches: true,
        }
    }

    /// The ROI heads' proposal matcher: threshold [0.5], labels
    /// [Negative, Positive], no low-quality matches.
    pub fn roi_heads() -> Self {
        Self { thresholds: vec![0.5], labels: vec![MatchLabel::Negative, MatchLabel::Positive], allow_low_quality_matches: false }
    }

    /// Matches the N predictions (columns of `iou`) to the M ground truths (rows).
    /// With M = 0 every prediction gets the first label and no match.
    ///
    /// # Errors
    /// [`Error::InvalidIou`] for a negative or NaN entry (detectron2 asserts
    /// the matrix is non-negative).
    pub fn apply(&self, iou: &IouMatrix) -> Result<Matches> {
        let (m, n) = (iou.num_rows(), iou.num_cols());
        if let Some(pos) = iou.values().iter().position(|v| v.is_nan() || *v < 0.0) {
            return Err(Error::InvalidIou { gt: pos / n.max(1), pred: pos % n.max(1), value: iou.values()[pos] });
        }
        let first_label = self.labels.first().copied().unwrap_or(MatchLabel::Negative);
        if m == 0 {
            return Ok(Matches { matched_gt: vec![None; n], labels: vec![first_label; n] });
        }
        // Column-wise max over the rows, first row on ties (torch.max(dim=0) on CPU).
        let mut best = iou.row(0).to_vec();
        let mut argmax = vec![0usize; n];
        for g in 1..m {
            for ((b, a), &v) in best.iter_mut().zip(argmax.iter_mut()).zip(iou.row(g)) {
                if v > *b {
                    *b = v;
                    *a = g;
                }
            }
        }
        let mut labels: Vec<MatchLabel> = best.iter().map(|&v| self.label_of(v)).collect();
        if self.allow_low_quality_matches {
            for g in 0..m {
                let row = iou.row(g);
                let highest = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                for (label, &v) in labels.iter_mut().zip(row) {
                    if v == highest {
                        *label = MatchLabel::Positive;
                    }
                }
            }
        }
        Ok(Matches { matched_gt: argmax.into_iter().map(Some).collect(), labels })
    }

    /// The label of the interval `[t_{i-1}, t_i)` that holds `v`.
    fn label_of(&self, v: f32) -> MatchLabel {
        let interval = self.thresholds.iter().take_while(|&&t| v >= t).count();
        self.labels.get(interval).copied().unwrap_or(MatchLabel::Negative)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use MatchLabel::{Ignore, Negative, Positive};

    fn matrix(rows: &[&[f32]]) -> IouMatrix {
        IouMatrix::new(rows.len(), rows[0].len(), rows.iter().flat_map(|r| r.iter().copied()).collect()).unwrap()
    }

    #[test]
    fn thresholds_are_inclusive_below() {
        let iou = matrix(&[&[0.29, 0.3, 0.69, 0.7, 0.95]]);
        let m = Matcher::new(vec![0.3, 0.7], vec![Negative, Ignore, Positive], false).unwrap().apply(&iou).unwrap();
        assert_eq!(m.labels, vec![Negative, Ignore, Ignore, Positive, Positive]);
    }

    #[test]
    fn low_quality_matches_include_ties() {
        // gt 0's best IoU 0.4 is attained by predictions 0 and 2; prediction 2
        // would be ignored (best 0.5) but is a tie of gt 0's best, so it is
        // positive, and keeps its argmax match to gt 1 (0.5 > 0.4).
        let iou = matrix(&[&[0.4, 0.1, 0.4, 0.0], &[0.0, 0.2, 0.5, 0.9]]);
        let m = Matcher::rpn().apply(&iou).unwrap();
        assert_eq!(m.labels, vec![Positive, Negative, Positive, Positive]);
        assert_eq!(m.matched_gt, vec![Some(0), Some(1), Some(1), Some(1)]);
    }

    #[test]
    fn column_ties_match_the_first_gt() {
        let iou = matrix(&[&[0.8, 0.2], &[0.8, 0.9]]);
        assert_eq!(Matcher::roi_heads().apply(&iou).unwrap().matched_gt, vec![Some(0), Some(1)]);
    }

    #[test]
    fn no_ground_truth_gives_first_label() {
        let iou = IouMatrix::new(0, 3, vec![]).unwrap();
        let m = Matcher::rpn().apply(&iou).unwrap();
        assert_eq!(m.labels, vec![Negative; 3]);
        assert_eq!(m.matched_gt, vec![None; 3]);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(Matcher::new(vec![0.7, 0.3], vec![Negative, Ignore, Positive], true).is_err());
        assert!(Matcher::new(vec![0.5], vec![Negative], true).is_err());
        let iou = matrix(&[&[0.5, -0.1]]);
        assert!(matches!(Matcher::rpn().apply(&iou), Err(Error::InvalidIou { gt: 0, pred: 1, .. })));
        let iou = matrix(&[&[0.5], &[f32::NAN]]);
        assert!(matches!(Matcher::rpn().apply(&iou), Err(Error::InvalidIou { gt: 1, pred: 0, .. })));
    }
}
