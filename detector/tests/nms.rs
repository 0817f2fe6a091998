//! `nms` / `batched_nms` against torchvision `ops.nms` / `ops.batched_nms` on
//! 400 boxes with distinct scores (no ties, whose order torchvision leaves to
//! the sort) and no IoU within 1e-5 of a threshold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{f32s, fixture, i64s, rows4};
use detector::nms::{batched_nms, nms};
use detector::Boxes;

#[test]
fn nms_and_batched_nms_match_torchvision() {
    let f = fixture("nms.json");
    let boxes = Boxes::new(rows4(&f["boxes"]));
    let scores = f32s(&f["scores"]);
    let classes: Vec<usize> = i64s(&f["idxs"]).into_iter().map(|c| c as usize).collect();
    for case in f["cases"].as_array().unwrap() {
        let t = case["threshold"].as_f64().unwrap();
        let expected: Vec<usize> = i64s(&case["keep"]).into_iter().map(|i| i as usize).collect();
        let got = nms(&boxes, &scores, t).unwrap();
        assert_eq!(got, expected, "nms at {t}");
        let expected: Vec<usize> = i64s(&case["batched_keep"]).into_iter().map(|i| i as usize).collect();
        let got = batched_nms(&boxes, &scores, &classes, t).unwrap();
        assert_eq!(got, expected, "batched_nms at {t}");
    }
}
