//! A short run whose evaluation finds nothing to detect (here: a score
//! threshold no class probability can pass) still ends with its model, its
//! checkpoint and a valid evaluation: AP 0 where the split has ground truth,
//! -1 where it has none, as pycocotools' COCOeval scores an empty detection
//! set. Before, the evaluator refused the empty detection list and the run
//! ended with an error and no model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::Device;
use coco::shapes::{self, ShapesConfig, ShapesTask};
use detector::data::{DataLayout, DetectionDataset, Purpose};
use coco::Split;
use detector::evaluate::EvalSplit;
use detector::recipe::Recipe;
use engine::recipe_file::RecipeFile as _;
use detector::train::{train, TrainRun};
use engine::progress::ProgressConfig;

/// COCO's area ranges (small, medium, large), inclusive at both ends as in
/// pycocotools' `areaRng`.
const AREA_RANGES: [(f64, f64); 3] = [(0.0, 32.0 * 32.0), (32.0 * 32.0, 96.0 * 96.0), (96.0 * 96.0, 1e10)];

#[test]
fn a_run_whose_evaluation_finds_nothing_keeps_its_model_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    shapes::generate(&ShapesConfig { train: 2, val: 2, size: 128, seed: 9, task: ShapesTask::Detection, ..ShapesConfig::default() }, &data).unwrap();
    let layout = DataLayout::discover(&data).unwrap();
    let train_set = Arc::new(DetectionDataset::load(layout.split(Split::Train).unwrap(), Purpose::Train).unwrap());
    let val_files = layout.split(Split::Val).unwrap().clone();
    let val = EvalSplit::load(&val_files).unwrap();

    let mut recipe = Recipe::resolve("vitdet_tiny_shapes", &[]).unwrap();
    recipe.train.max_iter = 1;
    // Class probabilities are at most 1: no detection passes.
    recipe.model.roi_heads.score_thresh = 1.0;
    let out = dir.path().join("run");
    let run = TrainRun {
        recipe,
        weight_search: Default::default(),
        train: train_set,
        val: Some(val.clone()),
        out: out.clone(),
        resume: false,
        device: Device::Cpu,
        progress: ProgressConfig { quiet: true, ..ProgressConfig::default() },
    };
    let summary = train(&run).unwrap();

    for file in ["model.safetensors", "checkpoint/last.safetensors", "model_best.safetensors"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    detector::weights::load(&summary.model_path, &Device::Cpu).unwrap();
    let report = summary.eval.unwrap();
    assert_eq!((report.detections, report.images), (0, 2));
    // What COCOeval reports for no detection: precision and recall 0 for an
    // area range with (non-crowd) ground truth, -1 for one without.
    let areas: Vec<f64> = val.gt.annotations().iter().filter(|a| !a.iscrowd).map(|a| a.area).collect();
    let has_gt = |(lo, hi): (f64, f64)| areas.iter().any(|&a| a >= lo && a <= hi);
    let expect = |row: Option<usize>| match row {
        None => 0.0,
        Some(r) => if has_gt(AREA_RANGES[r]) { 0.0 } else { -1.0 },
    };
    // The 12 stats: AP, AP50, AP75, AP small/medium/large, AR@1, AR@10, AR@100, AR small/medium/large.
    let rows = [None, None, None, Some(0), Some(1), Some(2), None, None, None, Some(0), Some(1), Some(2)];
    let want: Vec<f64> = rows.iter().map(|&r| expect(r)).collect();
    assert!(!areas.is_empty());
    assert_eq!(report.bbox.stats.to_vec(), want, "bbox");
    assert_eq!(report.segm.stats.to_vec(), want, "segm");

    let best = summary.best.unwrap();
    assert_eq!((best.iter, best.metric.as_str(), best.value), (0, "bbox_AP", 0.0));
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    for key in ["bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"] {
        assert_eq!(line[key], 0.0, "{key} logged");
    }
}
