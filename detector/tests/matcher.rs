//! `Matcher::rpn()` against torchvision `det_utils.Matcher(0.7, 0.3,
//! allow_low_quality_matches=True)` on quantised IoU matrices with ties and
//! values exactly at the thresholds.
//!
//! torchvision's encoding: a gt index for positives, -1 below the low
//! threshold (negative), -2 between the thresholds (ignored). For negative and
//! ignored predictions detectron2 still reports the argmax gt, which the
//! fixture records as `argmax` (torch `max(dim=0)`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{f32s, fixture, i64s};
use detector::matcher::{MatchLabel, Matcher};
use detector::structures::boxes::IouMatrix;

#[test]
fn rpn_matcher_matches_torchvision() {
    let f = fixture("matcher.json");
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    let (mut pos, mut neg, mut ign) = (0, 0, 0);
    for (c, case) in cases.iter().enumerate() {
        let rows = case["iou"].as_array().unwrap();
        let values: Vec<f32> = rows.iter().flat_map(f32s).collect();
        let iou = IouMatrix::new(rows.len(), values.len() / rows.len(), values).unwrap();
        let m = Matcher::rpn().apply(&iou).unwrap();
        let tv = i64s(&case["torchvision_matches"]);
        let argmax = i64s(&case["argmax"]);
        for (j, (&t, (&label, &gt))) in tv.iter().zip(m.labels.iter().zip(&m.matched_gt)).enumerate() {
            let expected = match t {
                -1 => MatchLabel::Negative,
                -2 => MatchLabel::Ignore,
                _ => MatchLabel::Positive,
            };
            assert_eq!(label, expected, "case {c} prediction {j}");
            assert_eq!(gt, Some(argmax[j] as usize), "case {c} prediction {j}: matched gt");
            if t >= 0 {
                assert_eq!(t, argmax[j], "case {c} prediction {j}: torchvision's positive match is the argmax");
            }
            match label {
                MatchLabel::Positive => pos += 1,
                MatchLabel::Negative => neg += 1,
                MatchLabel::Ignore => ign += 1,
            }
        }
    }
    // The fixture exercises all three outcomes.
    assert!(pos > 10 && neg > 10 && ign > 10, "pos {pos} neg {neg} ign {ign}");
}
