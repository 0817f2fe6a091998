//! The whole detector, proven end to end: trained from scratch on a handful
//! of synthetic images, it must detect and segment those same images almost
//! perfectly. This exercises every loss, the targets (anchor and proposal
//! matching, box deltas, mask rasterisation), inference (decoding, NMS, mask
//! pasting) and the evaluator together; a bug in any of them keeps AP50 low.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::Device;
use coco::shapes::{self, ShapesConfig, ShapesTask};
use detector::data::{DataLayout, DetectionDataset, Purpose, SplitKind};
use detector::evaluate::{evaluate, EvalSplit};
use detector::recipe::Recipe;
use detector::train::{train, TrainRun};
use engine::progress::ProgressConfig;

/// The CPU demo recipe, shortened: the calibration run (PyTorch, same model
/// sizes) reaches bbox AP50 1.0 on 8 images from about 114 iterations.
fn overfit_recipe(max_iter: usize) -> Recipe {
    let text = include_str!("../../configs/vitdet_tiny_shapes.toml");
    let mut recipe = Recipe::parse(text, std::path::Path::new("vitdet_tiny_shapes.toml")).unwrap();
    recipe.train = recipe.train.with_max_iter(max_iter);
    recipe.train.checkpoint_period = max_iter;
    recipe
}

#[test]
fn overfits_eight_shapes_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    let cfg = ShapesConfig { train: 8, val: 0, size: 128, seed: 3, task: ShapesTask::Detection };
    shapes::generate(&cfg, &data).unwrap();
    let layout = DataLayout::discover(&data).unwrap();
    let train_files = layout.split(SplitKind::Train).unwrap().clone();
    let train_set = Arc::new(DetectionDataset::load(&train_files, Purpose::Train).unwrap());
    let same_images = EvalSplit::load(&train_files).unwrap();

    let recipe = overfit_recipe(160);
    let run = TrainRun {
        recipe: recipe.clone(),
        backbone: "scratch".into(),
        weight_search: Default::default(),
        train: train_set,
        val: None,
        out: dir.path().join("run"),
        resume: false,
        device: Device::Cpu,
        progress: ProgressConfig { quiet: true, ..ProgressConfig::default() },
    };
    let summary = train(&run).unwrap();
    let trained = detector::weights::load(&summary.model_path, &Device::Cpu).unwrap();
    let report = evaluate(&trained.model, &same_images, recipe.model.input_size(), 4, &Device::Cpu, None).unwrap();
    let (bbox50, segm50) = (report.bbox.stats[1], report.segm.stats[1]);
    eprintln!("overfit: bbox AP50 {bbox50:.3} AP {:.3}, segm AP50 {segm50:.3} AP {:.3}", report.bbox.stats[0], report.segm.stats[0]);
    assert!(bbox50 >= 0.9, "bbox AP50 {bbox50:.3} < 0.9 on the training images");
    assert!(segm50 >= 0.8, "segm AP50 {segm50:.3} < 0.8 on the training images");
}
