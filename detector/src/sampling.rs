//! Random subsampling of labelled predictions into a fixed-size,
//! foreground-balanced training batch.
//!
//! Mirrors detectron2 `modeling/sampling.py::subsample_labels`, with the
//! randomness drawn from a caller-supplied seeded RNG instead of torch's
//! global generator (so runs are reproducible per seed; the draws differ from
//! torch's).

use rand::Rng;

use crate::{Error, Result};

/// The label that marks a prediction as ignored (detectron2 -1): it is never sampled.
pub const IGNORE_LABEL: i64 = -1;

/// The indices [`subsample_labels`] picked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SampledIndices {
    /// Indices of sampled positives, in random order.
    pub positive: Vec<usize>,
    /// Indices of sampled negatives, in random order.
    pub negative: Vec<usize>,
}

/// Samples at most `num_samples` predictions, aiming at a fraction
/// `positive_fraction` of positives.
///
/// `labels[i]` is [`IGNORE_LABEL`] (ignored), `bg_label` (negative), or any
/// other value (positive; e.g. a class index in the ROI heads, 1 in the RPN).
/// Exactly as detectron2: `num_pos = min(#positives, floor(num_samples ·
/// positive_fraction))`; `num_neg = min(#negatives, num_samples - num_pos)`,
/// so when there are too few positives the negatives fill the rest of the
/// batch, and when there are too few of both the batch is smaller. Each side
/// is a uniformly random subset without replacement.
///
/// # Errors
/// [`Error::Config`] if `positive_fraction` is not in [0, 1].
pub fn subsample_labels<R: Rng + ?Sized>(
    labels: &[i64],
    num_samples: usize,
    positive_fraction: f64,
    bg_label: i64,
    rng: &mut R,
) -> Result<SampledIndices> {
    if !(0.0..=1.0).contains(&positive_fraction) {
        return Err(Error::Config { key: "positive_fraction", msg: format!("{positive_fraction} is not in [0, 1]") });
    }
    let positive: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != IGNORE_LABEL && labels[i] != bg_label).collect();
    let negative: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == bg_label).collect();
    // Python's int() truncates the product towards zero.
    let num_pos = ((num_samples as f64 * positive_fraction) as usize).min(positive.len());
    let num_neg = (num_samples - num_pos).min(negative.len());
    let pick = |from: &[usize], amount: usize, rng: &mut R| -> Vec<usize> {
        rand::seq::index::sample(rng, from.len(), amount).into_iter().map(|i| from[i]).collect()
    };
    let positive = pick(&positive, num_pos, rng);
    let negative = pick(&negative, num_neg, rng);
    Ok(SampledIndices { positive, negative })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashSet;

    /// 1 = positive (RPN convention), 0 = negative, -1 = ignore.
    fn labels(pos: usize, neg: usize, ign: usize) -> Vec<i64> {
        let mut l = vec![1; pos];
        l.extend(vec![0; neg]);
        l.extend(vec![IGNORE_LABEL; ign]);
        // Interleave deterministically so the classes are not in blocks.
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        rand::seq::SliceRandom::shuffle(l.as_mut_slice(), &mut rng);
        l
    }

    fn check_membership(l: &[i64], s: &SampledIndices, bg: i64) {
        assert!(s.positive.iter().all(|&i| l[i] != bg && l[i] != IGNORE_LABEL));
        assert!(s.negative.iter().all(|&i| l[i] == bg));
        let unique: HashSet<usize> = s.positive.iter().chain(&s.negative).copied().collect();
        assert_eq!(unique.len(), s.positive.len() + s.negative.len(), "an index was sampled twice");
    }

    #[test]
    fn exact_counts_when_enough_of_both() {
        let l = labels(300, 1000, 50);
        let s = subsample_labels(&l, 256, 0.5, 0, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!((s.positive.len(), s.negative.len()), (128, 128));
        check_membership(&l, &s, 0);
    }

    #[test]
    fn all_positives_when_too_few_and_negatives_fill_the_rest() {
        let l = labels(20, 1000, 500);
        let s = subsample_labels(&l, 256, 0.5, 0, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        assert_eq!((s.positive.len(), s.negative.len()), (20, 236));
        let mut pos = s.positive.clone();
        pos.sort_unstable();
        let all_pos: Vec<usize> = (0..l.len()).filter(|&i| l[i] == 1).collect();
        assert_eq!(pos, all_pos);
        check_membership(&l, &s, 0);
    }

    #[test]
    fn ignored_labels_are_never_sampled_even_when_short() {
        let l = labels(3, 5, 400);
        let s = subsample_labels(&l, 256, 0.5, 0, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_eq!((s.positive.len(), s.negative.len()), (3, 5));
        check_membership(&l, &s, 0);
    }

    #[test]
    fn roi_heads_convention_with_class_labels() {
        // Classes 0..79 are foreground, 80 is background.
        let l: Vec<i64> = (0..1000).map(|i| if i % 10 == 0 { (i / 10) % 80 } else { 80 }).collect();
        let s = subsample_labels(&l, 512, 0.25, 80, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
        // floor(512 * 0.25) = 128 of the 100 foreground → all 100, then 412 background.
        assert_eq!((s.positive.len(), s.negative.len()), (100, 412));
        check_membership(&l, &s, 80);
    }

    #[test]
    fn deterministic_per_seed_and_different_across_seeds() {
        let l = labels(300, 1000, 0);
        let a = subsample_labels(&l, 256, 0.5, 0, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let b = subsample_labels(&l, 256, 0.5, 0, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let c = subsample_labels(&l, 256, 0.5, 0, &mut ChaCha8Rng::seed_from_u64(8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn fraction_out_of_range_is_an_error() {
        assert!(subsample_labels(&[1, 0], 2, 1.5, 0, &mut ChaCha8Rng::seed_from_u64(0)).is_err());
        assert!(subsample_labels(&[1, 0], 2, f64::NAN, 0, &mut ChaCha8Rng::seed_from_u64(0)).is_err());
    }
}
