//! Batches for training and evaluation: images decoded and transformed in
//! parallel (rayon, a pool of its own), handed over through a bounded
//! prefetch queue filled by a background thread, so the model only waits when
//! the loader is truly slower.
//!
//! Shapes: B images per batch, S the square input side; each sample's pixels
//! are (3, S, S) and [`pixels_to_tensor`] stacks a batch into (B, 3, S, S).
//!
//! Training stream (infinite, like detectron2's `TrainingSampler`): sample
//! position `p = i·B + j` of iteration `i` is image `perm_e[p mod N]` of epoch
//! `e = p div N`, where `perm_e` is a shuffle drawn from ChaCha8(seed, stream
//! e); its LSJ draws come from ChaCha8(seed, stream 2^63 + p). A batch is
//! therefore a pure function of (seed, i), independent of thread count, and
//! `--resume` at iteration i reproduces the stream ([`train_batch`]).
//! Batches may straddle epochs, as in detectron2.
//!
//! Evaluation stream (finite): the images in dataset order, B at a time (the
//! last batch may be shorter), test transform.
//!
//! Failures per image (unreadable, undecodable, size differing from the
//! JSON) skip that image and are counted in [`LoaderStats`]; its batch is then
//! one shorter. Nothing is retried, so determinism holds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::dataset::{DetectionDataset, ImageRecord};
use vision::decode::decode_upright;
use vision::RgbImage;
use super::transforms::{apply_lsj, apply_test, draw_lsj, DetectionSample, LsjConfig};
use crate::{Error, Result};

/// RNG stream tag of the per-sample augmentation draws (epoch shuffles use
/// streams below it).
const SAMPLE_STREAM: u64 = 1 << 63;

/// Loader settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch B.
    pub batch_size: usize,
    /// Worker threads decoding and transforming images.
    pub threads: usize,
    /// Batches prepared ahead of the consumer (queue bound, at least 1).
    pub prefetch: usize,
    /// Seed of the shuffles and augmentations.
    pub seed: u64,
    /// LSJ settings (training) and input side S (both streams).
    pub lsj: LsjConfig,
}

/// A batch and the iteration it belongs to (training) or its index (evaluation).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Training iteration, or evaluation batch index.
    pub index: u64,
    /// The samples (fewer than B if images were skipped or at the end of evaluation).
    pub samples: Vec<DetectionSample>,
}

/// Images skipped because they could not be read, shared by a stream's workers.
#[derive(Debug, Default)]
pub struct LoaderStats {
    skipped: AtomicU64,
    first: Mutex<Option<(PathBuf, String)>>,
}

impl LoaderStats {
    /// Records one skipped image.
    fn skip(&self, err: &Error) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            if first.is_none() {
                let path = match err {
                    Error::Vision(e) => e.path().map(Path::to_path_buf).unwrap_or_default(),
                    _ => PathBuf::new(),
                };
                *first = Some((path, err.to_string()));
            }
        }
    }

    /// Number of images skipped so far (each time one was drawn).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// `skipped: N (first: path, reason)`, or `None` if nothing was skipped.
    pub fn summary(&self) -> Option<String> {
        let n = self.skipped();
        let first = self.first.lock().ok()?.clone()?;
        (n > 0).then(|| format!("skipped: {n} image load(s) (first: {})", first.1))
    }
}

/// The upright image of `record` ([`vision::decode::decode_upright`]),
/// checked against the annotation entry's size.
///
/// # Errors
/// [`Error::Vision`] naming the file if it cannot be opened or decoded
/// ([`vision::Error::Decode`]), or if its upright size differs from
/// `record`'s ([`vision::Error::BadSample`]).
pub fn load_image(record: &ImageRecord) -> Result<RgbImage> {
    let image = decode_upright(&record.path)?;
    if (image.height, image.width) != (record.height, record.width) {
        return Err(Error::Vision(vision::Error::BadSample {
            path: record.path.clone(),
            reason: format!(
                "decoded size {}x{} (EXIF orientation applied) differs from the annotation file's {}x{}",
                image.height, image.width, record.height, record.width
            ),
        }));
    }
    Ok(image)
}

/// Image of training sample position `p` (see the module doc): the epoch's
/// shuffle is cached in `order` across calls.
struct EpochOrder {
    seed: u64,
    n: usize,
    epoch: Option<u64>,
    perm: Vec<usize>,
}

impl EpochOrder {
    fn new(seed: u64, n: usize) -> Self {
        EpochOrder { seed, n, epoch: None, perm: Vec::new() }
    }

    fn image_at(&mut self, position: u64) -> usize {
        let n = self.n as u64;
        let epoch = position / n;
        if self.epoch != Some(epoch) {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch);
            self.perm = (0..self.n).collect();
            self.perm.shuffle(&mut rng);
            self.epoch = Some(epoch);
        }
        self.perm[(position % n) as usize]
    }
}

/// Decodes and LSJ-transforms the samples at `positions` in parallel.
fn lsj_samples(
    dataset: &DetectionDataset,
    cfg: &LoaderConfig,
    jobs: &[(u64, usize)],
    stats: &LoaderStats,
) -> Vec<DetectionSample> {
    let results: Vec<Result<DetectionSample>> = jobs
        .par_iter()
        .map(|&(position, index)| {
            let record = &dataset.images()[index];
            let image = load_image(record)?;
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(SAMPLE_STREAM | position);
            let params = draw_lsj(image.height, image.width, &cfg.lsj, &mut rng);
            Ok(apply_lsj(record, &image, &params, cfg.lsj.image_size))
        })
        .collect();
    keep_ok(results, stats)
}

/// Samples that loaded; failures are counted.
fn keep_ok(results: Vec<Result<DetectionSample>>, stats: &LoaderStats) -> Vec<DetectionSample> {
    results
        .into_iter()
        .filter_map(|r| match r {
            Ok(sample) => Some(sample),
            Err(e) => {
                stats.skip(&e);
                None
            }
        })
        .collect()
}

/// The training batch of iteration `iteration`: a pure function of
/// (`cfg.seed`, `iteration`, B, the dataset). Runs on the current rayon pool.
/// An empty dataset gives an empty batch.
pub fn train_batch(dataset: &DetectionDataset, cfg: &LoaderConfig, iteration: u64, stats: &LoaderStats) -> Batch {
    let mut order = EpochOrder::new(cfg.seed, dataset.len());
    train_batch_with(dataset, cfg, iteration, stats, &mut order)
}

fn train_batch_with(
    dataset: &DetectionDataset,
    cfg: &LoaderConfig,
    iteration: u64,
    stats: &LoaderStats,
    order: &mut EpochOrder,
) -> Batch {
    if dataset.is_empty() {
        return Batch { index: iteration, samples: Vec::new() };
    }
    let b = cfg.batch_size as u64;
    let jobs: Vec<(u64, usize)> =
        (iteration * b..(iteration + 1) * b).map(|p| (p, order.image_at(p))).collect();
    Batch { index: iteration, samples: lsj_samples(dataset, cfg, &jobs, stats) }
}

/// Evaluation batch `index`: images `index·B .. (index+1)·B` in dataset order,
/// test transform. Runs on the current rayon pool.
pub fn eval_batch(dataset: &DetectionDataset, cfg: &LoaderConfig, index: u64, stats: &LoaderStats) -> Batch {
    let b = cfg.batch_size;
    let start = (index as usize).saturating_mul(b).min(dataset.len());
    let end = start.saturating_add(b).min(dataset.len());
    let results: Vec<Result<DetectionSample>> = dataset.images()[start..end]
        .par_iter()
        .map(|record| Ok(apply_test(record, &load_image(record)?, cfg.lsj.image_size)))
        .collect();
    Batch { index, samples: keep_ok(results, stats) }
}

/// A stream of batches prepared by a background thread; iterate it.
/// Dropping it stops the thread after the batch in progress.
pub struct BatchStream {
    rx: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<LoaderStats>,
}

impl BatchStream {
    /// Skipped-image counts of this stream.
    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// Starts the worker thread running `next(i)` for i = first.. until
    /// `next` returns `None` or the stream is dropped.
    fn spawn(
        cfg: &LoaderConfig,
        stats: Arc<LoaderStats>,
        mut next: impl FnMut(&LoaderStats) -> Option<Batch> + Send + 'static,
    ) -> Result<Self> {
        validate(cfg)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("vitdet-data-{i}"))
            .build()
            .map_err(|e| Error::Config { key: "data.threads", msg: e.to_string() })?;
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let worker_stats = Arc::clone(&stats);
        let worker = std::thread::Builder::new()
            .name("vitdet-data".into())
            .spawn(move || {
                while let Some(batch) = pool.install(|| next(&worker_stats)) {
                    if tx.send(batch).is_err() {
                        break; // the consumer is gone
                    }
                }
            })
            .map_err(|e| Error::Config { key: "data.threads", msg: format!("cannot start the loader thread: {e}") })?;
        Ok(BatchStream { rx: Some(rx), worker: Some(worker), stats })
    }
}

impl Iterator for BatchStream {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the queue makes the worker's next send fail, so it exits.
        self.rx.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Checks the loader settings.
fn validate(cfg: &LoaderConfig) -> Result<()> {
    let bad = |key, msg: &str| Err(Error::Config { key, msg: msg.to_owned() });
    if cfg.batch_size == 0 {
        return bad("data.batch_size", "must be >= 1");
    }
    if cfg.threads == 0 {
        return bad("data.threads", "must be >= 1");
    }
    if cfg.lsj.image_size == 0 {
        return bad("data.image_size", "must be >= 1");
    }
    if !(cfg.lsj.min_scale > 0.0 && cfg.lsj.min_scale <= cfg.lsj.max_scale && cfg.lsj.max_scale.is_finite()) {
        return bad("data.lsj_scale", "needs 0 < min_scale <= max_scale < inf");
    }
    if !(0.0..=1.0).contains(&cfg.lsj.flip_prob) {
        return bad("data.flip_prob", "must be in [0, 1]");
    }
    Ok(())
}

/// The infinite training stream from iteration `start` on (`--resume`).
///
/// # Errors
/// [`Error::Config`] for invalid settings, for a dataset without images (the
/// stream would never yield a sample), or if the threads cannot start.
pub fn train_stream(dataset: Arc<DetectionDataset>, cfg: LoaderConfig, start: u64) -> Result<BatchStream> {
    if dataset.is_empty() {
        return Err(Error::Config { key: "data", msg: "the training split has no image with a usable annotation".into() });
    }
    let mut iteration = start;
    let mut order = EpochOrder::new(cfg.seed, dataset.len());
    BatchStream::spawn(&cfg, Arc::new(LoaderStats::default()), move |stats| {
        let batch = train_batch_with(&dataset, &cfg, iteration, stats, &mut order);
        iteration += 1;
        Some(batch)
    })
}

/// The finite evaluation stream over all images in order.
///
/// # Errors
/// [`Error::Config`] for invalid settings or if the threads cannot start.
pub fn eval_stream(dataset: Arc<DetectionDataset>, cfg: LoaderConfig) -> Result<BatchStream> {
    let batches = dataset.len().div_ceil(cfg.batch_size.max(1)) as u64;
    let mut index = 0;
    BatchStream::spawn(&cfg, Arc::new(LoaderStats::default()), move |stats| {
        (index < batches).then(|| {
            let batch = eval_batch(&dataset, &cfg, index, stats);
            index += 1;
            batch
        })
    })
}

/// Stacks the samples' pixels into a (B, 3, S, S) f32 tensor on `device`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the samples' `input_hw` differ or a pixel
/// buffer is not 3·S·S long; a candle error if the tensor cannot be created.
pub fn pixels_to_tensor(samples: &[DetectionSample], device: &Device) -> Result<Tensor> {
    let (h, w) = samples.first().map_or((0, 0), |s| s.input_hw);
    let mut flat = Vec::with_capacity(samples.len() * 3 * h * w);
    for s in samples {
        if s.input_hw != (h, w) || s.pixels.len() != 3 * h * w {
            return Err(Error::ShapeMismatch {
                what: "sample pixels",
                expected: "(3, S, S) with one S for the batch",
                found: vec![s.pixels.len(), s.input_hw.0, s.input_hw.1],
            });
        }
        flat.extend_from_slice(&s.pixels);
    }
    Ok(Tensor::from_vec(flat, (samples.len(), 3, h, w), device)?)
}
