//! `BoxTransform` against torchvision `BoxCoder.encode_single/decode_single`
//! (the same math as detectron2 `Box2BoxTransform`), and the round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_close, f32s, fixture, rows4};
use detector::box_transform::{BoxTransform, DEFAULT_SCALE_CLAMP};
use detector::Boxes;

#[test]
fn get_and_apply_deltas_match_torchvision() {
    let f = fixture("box_transform.json");
    let src = Boxes::new(rows4(&f["src"]));
    let tgt = Boxes::new(rows4(&f["tgt"]));
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let w: [f32; 4] = f32s(&case["weights"]).try_into().unwrap();
        let t = BoxTransform::new(w, DEFAULT_SCALE_CLAMP);
        let deltas: Vec<f32> = t.get_deltas(&src, &tgt).unwrap().into_iter().flatten().collect();
        let expected: Vec<f32> = rows4(&case["deltas"]).into_iter().flatten().collect();
        assert_close(&format!("deltas {w:?}"), &deltas, &expected);

        // Class-specific (N, 3·4) deltas, some far beyond the scale clamp.
        let rel: Vec<f32> = case["rel_codes"].as_array().unwrap().iter().flat_map(f32s).collect();
        let decoded = t.apply_deltas(&rel, &src).unwrap();
        let expected: Vec<f32> = case["decoded"].as_array().unwrap().iter().flat_map(f32s).collect();
        assert_close(&format!("decoded {w:?}"), &decoded, &expected);
    }
}

#[test]
fn apply_inverts_get_for_both_weightings() {
    let f = fixture("box_transform.json");
    let src = Boxes::new(rows4(&f["src"]));
    let tgt = Boxes::new(rows4(&f["tgt"]));
    for t in [BoxTransform::rpn(), BoxTransform::roi_heads()] {
        let deltas: Vec<f32> = t.get_deltas(&src, &tgt).unwrap().into_iter().flatten().collect();
        let back = t.apply_deltas(&deltas, &src).unwrap();
        let expected: Vec<f32> = tgt.as_slice().iter().flatten().copied().collect();
        // Coordinates are up to ~320 px; the round trip loses a few f32 ulps.
        for (i, (a, b)) in back.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{:?} [{i}]: {a} vs {b}", t.weights());
        }
    }
}
