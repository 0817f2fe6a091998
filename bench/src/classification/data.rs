//! Decoded-and-augmented training images per second: the vision loader
//! (`threads` workers, a bounded prefetch queue) running timm's fine-tuning
//! transform at 224 px over a folder of JPEGs, each batch stacked into one
//! (B, 3, 224, 224) tensor as training does. Mirrors `bench/bench_data.py`
//! (torchvision `ImageFolder` + `timm.data.create_transform` in a
//! `DataLoader` with as many worker processes).
//!
//! The transform: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, bicubic),
//! horizontal flip 0.5, RandAugment `rand-m9-mstd0.5-inc1`, normalise
//! (ImageNet mean and std); no colour jitter (timm drops it under
//! RandAugment) and no random erasing.
//!
//! Timing starts when the first batch arrives (thread start-up and the
//! queue's first fill excluded, on both sides) and stops at the last.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;
use vision::datasets::{self, ClassificationSet, ClsBatch, ClsSample, DatasetKind, Split};
use vision::loader::{train_stream, LoaderConfig};
use vision::transforms::{Interpolation, TrainTransformConfig};

use classification::data::eval_transform_of;
use classification::{Error, Result};

/// The RandAugment policy the benchmark runs (timm's ImageNet fine-tuning default).
pub const POLICY: &str = "rand-m9-mstd0.5-inc1";

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchDataOptions {
    /// ImageFolder root (its `train/` split is read).
    pub images: PathBuf,
    /// Loader worker threads.
    pub threads: usize,
    /// Images per batch.
    pub batch: usize,
    /// Timed batches, after the first.
    pub batches: usize,
    /// Output side in pixels.
    pub size: usize,
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchDataResult {
    /// What ran.
    pub pipeline: String,
    /// Loader worker threads.
    pub threads: usize,
    /// Images per batch.
    pub batch: usize,
    /// Images timed.
    pub images: usize,
    /// Files in the folder.
    pub files: usize,
    /// Decoded-and-augmented images per second.
    pub img_s: f64,
}

/// The benchmark's training transform at `size` px.
pub fn transform(size: usize) -> TrainTransformConfig {
    TrainTransformConfig {
        size,
        scale: [0.08, 1.0],
        ratio: [3.0 / 4.0, 4.0 / 3.0],
        interpolation: Interpolation::Bicubic,
        hflip: 0.5,
        color_jitter: None,
        auto_augment: Some(POLICY.into()),
        re_prob: 0.0,
        ..TrainTransformConfig::default()
    }
}

/// Runs the benchmark over `opts.images`.
///
/// # Errors
/// A folder that is not an ImageFolder training split, an image that cannot
/// be read (the run stops: a benchmark must time what it says), or a tensor
/// error.
pub fn bench_data(opts: &BenchDataOptions) -> Result<BenchDataResult> {
    let images = datasets::open(DatasetKind::Folder, &opts.images, Split::Train)?;
    let files = images.items.len();
    let augment = transform(opts.size).build().map_err(|e| Error::Config { key: "augment".into(), msg: e.to_string() })?;
    let eval = eval_transform_of(opts.size, 0.875, vision::resize::Filter::Bicubic)?;
    let set = Arc::new(ClassificationSet::new(images, Some(augment), eval));
    let cfg = LoaderConfig { batch_size: opts.batch, threads: opts.threads, prefetch: 2, seed: 0 };
    let mut stream = train_stream(Arc::clone(&set), cfg, 0)?;
    let stack = |samples: &[ClsSample]| ClsBatch::from_samples(samples, opts.size, &Device::Cpu);
    let first = stream.next().ok_or_else(|| no_batch(&opts.images))?;
    stack(&first.samples)?;
    let start = Instant::now();
    let mut count = 0;
    for _ in 0..opts.batches {
        let batch = stream.next().ok_or_else(|| no_batch(&opts.images))?;
        count += stack(&batch.samples)?.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(skipped) = stream.stats().summary() {
        return Err(Error::Config { key: "--images".into(), msg: format!("{}: {skipped}", opts.images.display()) });
    }
    Ok(BenchDataResult {
        pipeline: format!("vitdet loader: RandomResizedCrop {0} bicubic + flip + RandAugment {POLICY} + normalise, stacked", opts.size),
        threads: opts.threads,
        batch: opts.batch,
        images: count,
        files,
        img_s: count as f64 / seconds,
    })
}

fn no_batch(dir: &Path) -> Error {
    Error::Config { key: "--images".into(), msg: format!("{}: the loader stopped", dir.display()) }
}
