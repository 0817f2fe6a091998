//! The whole detector, proven end to end: trained from scratch on a handful
//! of synthetic images, it must detect and segment those same images almost
//! perfectly. This exercises every loss, the targets (anchor and proposal
//! matching, box deltas, mask rasterisation), inference (decoding, NMS, mask
//! pasting) and the evaluator together; a bug in any of them keeps AP50 low.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::Device;
use coco::shapes::{self, ShapesConfig, ShapesTask};
use detector::data::{DataLayout, DetectionDataset, Purpose};
use coco::Split;
use detector::evaluate::{evaluate, EvalSplit};
use detector::recipe::Recipe;
use engine::recipe_file::RecipeFile as _;
use detector::train::{train, TrainRun};
use engine::progress::ProgressConfig;
use engine::schedule::Schedule;

/// The CPU demo recipe (model, sampling, flip-only augmentation, AdamW with
/// clipping), with a short schedule at a higher learning rate: 100 steps of
/// 4 images, warmup 20, cosine from 1e-3.
fn overfit_recipe() -> Recipe {
    let mut recipe = Recipe::resolve("vitdet_tiny_shapes", &[]).unwrap();
    let max_iter = 100;
    recipe.train.max_iter = max_iter;
    recipe.train.checkpoint_period = max_iter;
    recipe.train.schedule = Schedule::WarmupCosine { base_lr: 1e-3, total_iters: max_iter, warmup_iters: 20, warmup_lr_start: 0.0, min_lr: 0.0 };
    recipe.validate().unwrap();
    recipe
}

#[test]
fn overfits_four_shapes_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    let cfg = ShapesConfig { train: 4, val: 0, size: 128, seed: 3, task: ShapesTask::Detection, ..ShapesConfig::default() };
    shapes::generate(&cfg, &data).unwrap();
    let layout = DataLayout::discover(&data).unwrap();
    let train_files = layout.split(Split::Train).unwrap().clone();
    let train_set = Arc::new(DetectionDataset::load(&train_files, Purpose::Train).unwrap());
    let same_images = EvalSplit::load(&train_files).unwrap();

    let recipe = overfit_recipe();
    let run = TrainRun {
        recipe: recipe.clone(),
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
