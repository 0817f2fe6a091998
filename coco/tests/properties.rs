//! Property tests of COCO's parsers and mask code (issue 17): on any input
//! they return a value or a typed error, never panic and never run away;
//! valid inputs round-trip. The exact values are pinned elsewhere, against
//! pycocotools (`masks.rs`, `eval_cases.rs`); these tests cover the inputs no
//! fixture lists.
//!
//! Case counts are bounded (`CASES`) so the file runs in a few seconds; the
//! `fuzz/` crate at the repository root runs the same entry points for as long
//! as one likes.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::path::Path;

use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate, summarize, IouType, Params};
use coco::mask::{iou, segmentation_to_rle, MergeOp, Rle};
use coco::results::Results;
use coco::types::{CompressedRle, InstancesFile, Segmentation, UncompressedRle};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Cases per property: enough to reach the odd branches, few enough for CI.
const CASES: u32 = 256;
/// Cases for the properties that parse whole files (each pads one to 1 MiB).
const FILE_CASES: u32 = 24;
/// The size from which the instances and results parsers take their fast,
/// parallel path (`instances_json::FAST_PATH_MIN_BYTES`,
/// `results::PARALLEL_PARSE_MIN_BYTES`); padding a document past it with
/// whitespace runs that path on the same value.
const FAST_PATH_BYTES: usize = 1 << 20;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A mask size: mostly small, sometimes 0 or huge.
fn side() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..20, 1 => any::<u32>()]
}

/// A polygon coordinate: mostly near a small image, sometimes anything.
fn coord() -> impl Strategy<Value = f64> {
    prop_oneof![8 => -5.0f64..25.0, 1 => any::<f64>()]
}

/// A bitmap of `h * w` 0/1 bytes with its size.
fn bitmap() -> impl Strategy<Value = (u32, u32, Vec<u8>)> {
    (0u32..12, 0u32..12).prop_flat_map(|(h, w)| (Just(h), Just(w), prop::collection::vec(0u8..2, (h * w) as usize)))
}

/// The brute-force IoU of two column-major bitmaps (crowd: over the detection's area).
fn bitmap_iou(dt: &[u8], gt: &[u8], crowd: bool) -> f64 {
    let inter = dt.iter().zip(gt).filter(|(a, b)| **a == 1 && **b == 1).count() as f64;
    let (a_dt, a_gt) = (dt.iter().filter(|v| **v == 1).count() as f64, gt.iter().filter(|v| **v == 1).count() as f64);
    let union = if crowd { a_dt } else { a_dt + a_gt - inter };
    if union == 0.0 {
        0.0
    } else {
        inter / union
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn rle_string_decoder_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64), h in side(), w in side()) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(rle) = Rle::from_compressed(&text, h, w) {
            // Whatever decoded is usable: the checks and the geometry return.
            let _ = rle.check_counts_sum();
            let _ = rle.to_bbox();
            let _ = rle.area();
        }
    }

    #[test]
    fn rle_string_decoder_on_its_alphabet_is_ok_or_a_string_error(text in "[0-o]{0,48}", h in side(), w in side()) {
        match Rle::from_compressed(&text, h, w) {
            Ok(rle) => {
                // A string that parses is a value: written back it parses to the same counts.
                prop_assert_eq!(Rle::from_compressed(&rle.to_compressed(), h, w).unwrap(), rle);
            }
            Err(coco::Error::RleString { offset, .. }) => prop_assert!(offset <= text.len()),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn any_counts_round_trip_through_the_string(counts in prop::collection::vec(any::<u32>(), 0..24)) {
        let rle = Rle { h: 7, w: 3, counts };
        prop_assert_eq!(Rle::from_compressed(&rle.to_compressed(), 7, 3).unwrap(), rle);
    }

    #[test]
    fn bitmaps_round_trip_through_rle_and_string((h, w, bits) in bitmap()) {
        let rle = Rle::encode(&bits, h, w).unwrap();
        prop_assert_eq!(rle.decode().unwrap(), bits.clone());
        prop_assert_eq!(rle.area(), bits.iter().filter(|b| **b == 1).count() as u64);
        let again = Rle::from_compressed(&rle.to_compressed(), h, w).unwrap();
        prop_assert_eq!(&again, &rle);
        let seg = Segmentation::Compressed(rle.to_compressed_rle());
        prop_assert_eq!(segmentation_to_rle(&seg, 0, 0).unwrap(), rle.clone());
        let seg = Segmentation::Uncompressed(rle.to_uncompressed_rle());
        prop_assert_eq!(segmentation_to_rle(&seg, 0, 0).unwrap(), rle.clone());
        // The row-major encoder is the column-major one on the transposed buffer.
        let (hu, wu) = (h as usize, w as usize);
        let row_major: Vec<u8> = (0..hu * wu).map(|i| bits[(i / wu) + hu * (i % wu)]).collect();
        prop_assert_eq!(Rle::encode_row_major(&row_major, h, w).unwrap(), rle);
    }

    #[test]
    fn merge_and_iou_agree_with_bitmaps((h, w, a) in bitmap(), seed in any::<u64>(), crowd in any::<bool>()) {
        let b: Vec<u8> = a.iter().enumerate().map(|(i, _)| ((seed >> (i % 64)) & 1) as u8).collect();
        let (ra, rb) = (Rle::encode(&a, h, w).unwrap(), Rle::encode(&b, h, w).unwrap());
        let union: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x | y).collect();
        let inter: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x & y).collect();
        prop_assert_eq!(Rle::merge(&[ra.clone(), rb.clone()], MergeOp::Union).unwrap().decode().unwrap(), union);
        prop_assert_eq!(Rle::merge(&[ra.clone(), rb.clone()], MergeOp::Intersection).unwrap().decode().unwrap(), inter);
        let mut out = [0.0];
        iou(std::slice::from_ref(&ra), std::slice::from_ref(&rb), &[crowd], &mut out).unwrap();
        prop_assert!((out[0] - bitmap_iou(&a, &b, crowd)).abs() < 1e-12, "{} vs {}", out[0], bitmap_iou(&a, &b, crowd));
    }

    #[test]
    fn polygons_of_any_coordinates_rasterise_to_a_whole_mask(poly in prop::collection::vec(coord(), 0..16), h in side(), w in 1u32..64) {
        let rle = Rle::from_polygon(&poly, h, w);
        // (w >= 1: a zero width wraps `w - 1` as pycocotools does, and far-out
        // vertices then cost work in proportion to their distance: issue 17 follow-up.
        // A zero width wraps `w - 1` as pycocotools' unsigned arithmetic does;
        // such counts do not cover the mask and callers reject them.)
        if h > 0 && w > 0 && u64::from(h) * u64::from(w) <= u64::from(u32::MAX) {
            // The runs cover the mask exactly, so it decodes.
            rle.check_counts_sum().unwrap();
            if u64::from(h) * u64::from(w) <= 1 << 12 {
                prop_assert_eq!(rle.decode().unwrap().len(), (h * w) as usize);
            }
        }
        let _ = segmentation_to_rle(&Segmentation::Polygons(vec![poly.clone(), poly]), h, w);
    }

    #[test]
    fn polygons_on_huge_canvases_return(poly in prop::collection::vec(-5.0f64..25.0, 0..16), h in side(), w in side()) {
        let rle = Rle::from_polygon(&poly, h, w);
        if h > 0 && w > 0 && u64::from(h) * u64::from(w) <= u64::from(u32::MAX) {
            rle.check_counts_sum().unwrap();
        }
    }

    #[test]
    fn rasterised_polygons_round_trip_through_the_bitmap(poly in prop::collection::vec(-2.0f64..14.0, 6..14), h in 1u32..12, w in 1u32..12) {
        let rle = Rle::from_polygon(&poly, h, w);
        let bits = rle.decode().unwrap();
        prop_assert_eq!(Rle::encode(&bits, h, w).unwrap().decode().unwrap(), bits);
        let [x, y, bw, bh] = rle.to_bbox();
        prop_assert!(x >= 0.0 && y >= 0.0 && x + bw <= f64::from(w) && y + bh <= f64::from(h));
    }
}

/// An id: mostly one of a few, so references hit, sometimes anything.
fn id() -> impl Strategy<Value = i64> {
    prop_oneof![6 => 0i64..4, 1 => any::<i64>()]
}

/// A JSON number as COCO files carry them (finite; JSON has no NaN).
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![8 => -5.0f64..30.0, 1 => any::<f64>().prop_filter("finite", |v| v.is_finite())]
}

/// A segmentation: polygons, a compressed or an uncompressed RLE, valid or not.
fn segmentation() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(prop::collection::vec(number(), 0..10), 0..3).prop_map(|p| json!(p)),
        (side(), side(), "[0-o]{0,12}").prop_map(|(h, w, c)| json!({"size": [h, w], "counts": c})),
        (side(), side(), prop::collection::vec(0u32..50, 0..8)).prop_map(|(h, w, c)| json!({"size": [h, w], "counts": c})),
        (1u32..12, 1u32..12).prop_map(|(h, w)| json!({"size": [h, w], "counts": [h * w / 2, h * w - h * w / 2]})),
    ]
}

/// One annotation object, sometimes with a field of the wrong type or missing.
fn annotation() -> impl Strategy<Value = Value> {
    (id(), id(), id(), prop::option::of(segmentation()), number(), prop::array::uniform4(number()), 0u8..3, 0u8..4).prop_map(
        |(id, image_id, category_id, seg, area, bbox, crowd, oddity)| {
            let mut a = json!({"id": id, "image_id": image_id, "category_id": category_id, "area": area, "bbox": bbox, "iscrowd": crowd.min(1)});
            if let Some(seg) = seg {
                a["segmentation"] = seg;
            }
            match oddity {
                0 => a["iscrowd"] = json!(crowd == 2),
                1 => a["ignore"] = json!(crowd),
                2 if crowd == 2 => a["bbox"] = json!("box"),
                _ => {}
            }
            a
        },
    )
}

/// A whole, mostly well-formed instances file.
fn instances() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((id(), side(), side()), 0..4),
        prop::collection::vec(annotation(), 0..6),
        prop::collection::vec(id(), 0..3),
    )
        .prop_map(|(images, annotations, categories)| {
            let images: Vec<Value> = images.iter().map(|(id, h, w)| json!({"id": id, "file_name": format!("{id}.jpg"), "height": h, "width": w})).collect();
            let categories: Vec<Value> = categories.iter().map(|id| json!({"id": id, "name": format!("c{id}")})).collect();
            json!({"images": images, "annotations": annotations, "categories": categories})
        })
}

/// One detection of a results file, box or mask.
fn detection() -> impl Strategy<Value = Value> {
    (id(), id(), prop::array::uniform4(number()), number(), prop::option::of(segmentation()), any::<bool>()).prop_map(
        |(image_id, category_id, bbox, score, seg, with_box)| {
            let mut d = json!({"image_id": image_id, "category_id": category_id, "score": score});
            if with_box || seg.is_none() {
                d["bbox"] = json!(bbox);
            }
            if let Some(seg) = seg {
                d["segmentation"] = seg;
            }
            d
        },
    )
}

/// `bytes` followed by whitespace up to the fast path's size.
fn padded(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(bytes.len().max(FAST_PATH_BYTES + 1), b' ');
    out
}

/// Loads a ground-truth file from bytes.
fn load_gt(bytes: &[u8]) -> Result<Dataset, coco::Error> {
    Dataset::from_slice(bytes, Path::new("gt.json"), None).map(|(d, _)| d)
}

/// Evaluates in both modes; errors are fine, panics are not.
fn evaluate_both(gt: &Dataset, results: &Results) {
    for iou_type in [IouType::Bbox, IouType::Segm] {
        if let Ok(grid) = evaluate(gt, results, iou_type, &Params::default()) {
            let _ = summarize(&accumulate(&grid));
        }
    }
}

proptest! {
    #![proptest_config(config(FILE_CASES))]

    #[test]
    fn gt_parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let small = load_gt(&bytes);
        let large = load_gt(&padded(&bytes));
        prop_assert_eq!(small.is_ok(), large.is_ok());
    }

    #[test]
    fn results_parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let small = Results::from_slice(&bytes, Path::new("dt.json"));
        let large = Results::from_slice(&padded(&bytes), Path::new("dt.json"));
        prop_assert_eq!(small.map(|r| r.detections).ok(), large.map(|r| r.detections).ok());
    }

    #[test]
    fn gt_files_parse_alike_on_both_paths_and_evaluate(gt in instances(), dets in prop::collection::vec(detection(), 0..6)) {
        let text = serde_json::to_vec(&gt).unwrap();
        let small = load_gt(&text);
        let large = load_gt(&padded(&text));
        prop_assert_eq!(small.as_ref().map(|d| d.instances().clone()).ok(), large.map(|d| d.instances().clone()).ok());
        let Ok(dataset) = small else { return Ok(()) };
        let dt_text = serde_json::to_vec(&dets).unwrap();
        let results = Results::from_slice(&dt_text, Path::new("dt.json"));
        let fast = Results::from_slice(&padded(&dt_text), Path::new("dt.json"));
        prop_assert_eq!(results.as_ref().map(|r| r.detections.clone()).ok(), fast.map(|r| r.detections).ok());
        if let Ok(results) = results {
            evaluate_both(&dataset, &results);
        }
    }

    #[test]
    fn parsed_gt_files_round_trip(gt in instances()) {
        let Ok(dataset) = load_gt(&serde_json::to_vec(&gt).unwrap()) else { return Ok(()) };
        let file: &InstancesFile = dataset.instances();
        let written = serde_json::to_vec(file).unwrap();
        let again = load_gt(&written).unwrap();
        prop_assert_eq!(again.instances(), file);
    }

    #[test]
    fn written_results_round_trip(dets in prop::collection::vec(detection(), 1..6)) {
        let Ok(results) = Results::from_slice(&serde_json::to_vec(&dets).unwrap(), Path::new("dt.json")) else { return Ok(()) };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dt.json");
        coco::results::write_results(&path, &results.detections).unwrap();
        prop_assert_eq!(Results::load(&path).unwrap().detections, results.detections);
    }
}

#[test]
fn rle_forms_with_foreign_sizes_are_typed_errors() {
    let c = Segmentation::Compressed(CompressedRle { size: [u32::MAX, u32::MAX], counts: "1".into() });
    assert!(matches!(segmentation_to_rle(&c, 1, 1), Err(coco::Error::RleCountsSum { .. })));
    let u = Segmentation::Uncompressed(UncompressedRle { size: [3, 3], counts: vec![u32::MAX, 10] });
    assert!(matches!(segmentation_to_rle(&u, 1, 1), Err(coco::Error::RleCountsSum { .. })));
}
