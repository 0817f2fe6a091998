//! cocoapi's published demo: the fake bbox and segm results on the first 100
//! images of COCO val2014 (bbox AP 0.505, segm AP 0.320 in cocoapi's
//! pycocoEvalDemo). Real COCO annotations (multi-part polygons, crowd RLE) and
//! real compressed-RLE results, loaded from disk through the same readers as
//! `vitdet eval coco`; all 12 stats must equal pycocotools' bit for bit
//! (`fixtures/cocoapi/make_expected.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate, summarize, IouType, Params};
use coco::results::Results;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cocoapi").join(name)
}

fn expected_stats(iou_type: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    v[iou_type]["stats"].as_array().unwrap().iter().map(|b| f64::from_bits(b.as_u64().unwrap())).collect()
}

fn check(iou_type: IouType, results_file: &str, name: &str, published_ap: f64) {
    let (gt, _) = Dataset::load(&fixture("instances_val2014_100.json"), None).unwrap();
    let results = Results::load(&fixture(results_file)).unwrap();
    let grid = evaluate(&gt, &results, iou_type, &Params::default()).unwrap();
    let stats = summarize(&accumulate(&grid)).unwrap().stats;
    let want = expected_stats(name);
    assert_eq!(stats.len(), want.len());
    for (i, (got, want)) in stats.iter().zip(&want).enumerate() {
        assert_eq!(got.to_bits(), want.to_bits(), "{name} stats[{i}]: got {got:.17}, pycocotools {want:.17}");
    }
    assert!((stats[0] - published_ap).abs() < 5e-4, "{name} AP {} vs published {published_ap}", stats[0]);
}

#[test]
fn fake_bbox_results_give_the_published_ap() {
    check(IouType::Bbox, "instances_val2014_fakebbox100_results.json", "bbox", 0.505);
}

#[test]
fn fake_segm_results_give_the_published_ap() {
    check(IouType::Segm, "instances_val2014_fakesegm100_results.json", "segm", 0.320);
}
