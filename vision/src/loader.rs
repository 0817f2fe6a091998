//! Batches for training and evaluation, for any [`Dataset`]: samples made in
//! parallel (rayon, a pool of its own), handed over through a bounded
//! prefetch queue filled by a background thread, so the model only waits when
//! the loader is truly slower; and [`stack_chw`] to turn a batch's pixels
//! into one tensor. The training stream queues the samples of the next batch
//! behind the current one's, so no thread idles at a batch boundary.
//!
//! Shapes: B samples per batch, N samples in the dataset.
//!
//! Training stream (infinite, like detectron2's `TrainingSampler`): sample
//! position `p = i·B + j` of iteration `i` is sample `perm_e[p mod N]` of
//! epoch `e = p div N`, where `perm_e` is a shuffle drawn from ChaCha8(seed,
//! stream e); its random draws come from ChaCha8(seed, stream 2^63 + p)
//! ([`sample_rng`]). A batch is therefore a pure function of (seed, i, B, the
//! dataset), independent of thread count, and resuming at iteration i
//! reproduces the stream ([`train_batch`]). Batches may straddle epochs, as
//! in detectron2.
//!
//! Evaluation stream (finite): the samples in dataset order, B at a time (the
//! last batch may be shorter).
//!
//! A sample that fails (unreadable, undecodable, unusable) is skipped and
//! counted in [`LoaderStats`] with its path and reason; its batch is then one
//! shorter. Nothing is retried, so determinism holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{Error, Result};

/// RNG stream tag of the per-sample random draws (epoch shuffles use the
/// streams below it).
const SAMPLE_STREAM: u64 = 1 << 63;

/// A collection of samples the loader can draw from: a dataset paired with
/// its transforms. Implementations are shared by the worker threads.
pub trait Dataset: Send + Sync {
    /// What one sample is (for example pixels and targets).
    type Sample: Send;

    /// Number of samples N; the loader calls the methods below with
    /// `index < len()` only.
    fn len(&self) -> usize;

    /// True when there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` with the training transform, drawing every random
    /// choice from `rng` (which is a function of the seed and the sample's
    /// position in the stream only).
    ///
    /// # Errors
    /// Any [`Error`] naming the file: the sample is then skipped and counted.
    fn train_sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Self::Sample>;

    /// Sample `index` with the (deterministic) evaluation transform.
    ///
    /// # Errors
    /// As [`Dataset::train_sample`].
    fn eval_sample(&self, index: usize) -> Result<Self::Sample>;
}

/// Loader settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch B.
    pub batch_size: usize,
    /// Worker threads making samples.
    pub threads: usize,
    /// Batches prepared ahead of the consumer (queue bound; 0 counts as 1).
    pub prefetch: usize,
    /// Seed of the shuffles and of the per-sample random draws.
    pub seed: u64,
}

impl LoaderConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming `data.batch_size` or `data.threads` when 0.
    pub fn validate(&self) -> Result<()> {
        let bad = |key, msg: &str| Err(Error::Config { key, msg: msg.to_owned() });
        if self.batch_size == 0 {
            return bad("data.batch_size", "must be >= 1");
        }
        if self.threads == 0 {
            return bad("data.threads", "must be >= 1");
        }
        Ok(())
    }
}

/// A batch and the iteration it belongs to (training) or its index (evaluation).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<S> {
    /// Training iteration, or evaluation batch index.
    pub index: u64,
    /// The samples (fewer than B if samples were skipped or at the end of evaluation).
    pub samples: Vec<S>,
}

/// Samples skipped because they failed, shared by a stream's workers.
#[derive(Debug, Default)]
pub struct LoaderStats {
    skipped: AtomicU64,
    first: Mutex<Option<(PathBuf, String)>>,
}

impl LoaderStats {
    /// Records one skipped sample (the loader's, or a batch command's
    /// unreadable file).
    pub fn skip(&self, err: &Error) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            if first.is_none() {
                *first = Some((err.path().map(PathBuf::from).unwrap_or_default(), err.to_string()));
            }
        }
    }

    /// Number of samples skipped so far (each time one was drawn).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The file and reason of the first skipped sample, if any.
    pub fn first(&self) -> Option<(PathBuf, String)> {
        self.first.lock().ok()?.clone()
    }

    /// `skipped: N image load(s) (first: reason naming the file)`, or `None`
    /// if nothing was skipped.
    pub fn summary(&self) -> Option<String> {
        let n = self.skipped();
        let (_, reason) = self.first()?;
        (n > 0).then(|| format!("skipped: {n} image load(s) (first: {reason})"))
    }
}

/// The random source of the sample at training-stream position `position`:
/// ChaCha8 seeded with `seed`, on stream `2^63 | position`.
pub fn sample_rng(seed: u64, position: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SAMPLE_STREAM | position);
    rng
}

/// Sample index of training position `p` (see the module doc); the current
/// epoch's shuffle is cached across calls.
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

    /// Requires `n > 0`.
    fn index_at(&mut self, position: u64) -> usize {
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

/// Samples that were made; failures are counted.
fn keep_ok<S>(results: Vec<Result<S>>, stats: &LoaderStats) -> Vec<S> {
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
pub fn train_batch<D: Dataset + ?Sized>(dataset: &D, cfg: &LoaderConfig, iteration: u64, stats: &LoaderStats) -> Batch<D::Sample> {
    let mut order = EpochOrder::new(cfg.seed, dataset.len());
    train_batch_with(dataset, cfg, iteration, stats, &mut order)
}

fn train_batch_with<D: Dataset + ?Sized>(
    dataset: &D,
    cfg: &LoaderConfig,
    iteration: u64,
    stats: &LoaderStats,
    order: &mut EpochOrder,
) -> Batch<D::Sample> {
    if dataset.is_empty() {
        return Batch { index: iteration, samples: Vec::new() };
    }
    let b = cfg.batch_size as u64;
    let jobs: Vec<(u64, usize)> = (iteration * b..(iteration + 1) * b).map(|p| (p, order.index_at(p))).collect();
    let results: Vec<Result<D::Sample>> =
        jobs.par_iter().map(|&(position, index)| dataset.train_sample(index, &mut sample_rng(cfg.seed, position))).collect();
    Batch { index: iteration, samples: keep_ok(results, stats) }
}

/// Evaluation batch `index`: samples `index·B .. (index+1)·B` in dataset
/// order, evaluation transform. Runs on the current rayon pool.
pub fn eval_batch<D: Dataset + ?Sized>(dataset: &D, cfg: &LoaderConfig, index: u64, stats: &LoaderStats) -> Batch<D::Sample> {
    let b = cfg.batch_size;
    let start = usize::try_from(index).unwrap_or(usize::MAX).saturating_mul(b).min(dataset.len());
    let end = start.saturating_add(b).min(dataset.len());
    let results: Vec<Result<D::Sample>> = (start..end).into_par_iter().map(|i| dataset.eval_sample(i)).collect();
    Batch { index, samples: keep_ok(results, stats) }
}

/// A stream of batches prepared by a background thread; iterate it.
/// Dropping it stops the thread after the batch in progress.
pub struct BatchStream<S> {
    rx: Option<Receiver<Batch<S>>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<LoaderStats>,
}

impl<S: Send + 'static> BatchStream<S> {
    /// Skipped-sample counts of this stream.
    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// Starts the worker thread, which runs `next` on a pool of
    /// `cfg.threads` threads until it returns `None` or the stream is dropped.
    fn spawn(cfg: &LoaderConfig, mut next: impl FnMut(&LoaderStats) -> Option<Batch<S>> + Send + 'static) -> Result<Self> {
        let pool = data_pool(cfg)?;
        Self::spawn_coordinator(cfg, move |stats, send| {
            while let Some(batch) = pool.install(|| next(stats)) {
                if !send(batch) {
                    break; // the consumer is gone
                }
            }
        })
    }

    /// Starts the thread that runs `coordinate`, which hands batches to
    /// `send` (false once the consumer is gone) until it returns.
    fn spawn_coordinator(
        cfg: &LoaderConfig,
        coordinate: impl FnOnce(&LoaderStats, &mut dyn FnMut(Batch<S>) -> bool) + Send + 'static,
    ) -> Result<Self> {
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let stats = Arc::new(LoaderStats::default());
        let worker_stats = Arc::clone(&stats);
        let worker = std::thread::Builder::new()
            .name("vitdet-data".into())
            .spawn(move || coordinate(&worker_stats, &mut |batch| tx.send(batch).is_ok()))
            .map_err(|e| Error::Internal(format!("cannot start the loader thread: {e}")))?;
        Ok(BatchStream { rx: Some(rx), worker: Some(worker), stats })
    }
}

/// The pool of `cfg.threads` threads that makes a stream's samples.
fn data_pool(cfg: &LoaderConfig) -> Result<rayon::ThreadPool> {
    cfg.validate()?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .thread_name(|i| format!("vitdet-data-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start {} data threads: {e}", cfg.threads)))
}

/// Batches whose samples are queued on the pool at once in the training
/// stream: the one being assembled and the next, so a thread that finishes
/// its last sample of a batch starts on the next batch instead of idling.
const BATCHES_IN_FLIGHT: u64 = 2;

impl<S> Iterator for BatchStream<S> {
    type Item = Batch<S>;

    fn next(&mut self) -> Option<Batch<S>> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl<S> Drop for BatchStream<S> {
    fn drop(&mut self) {
        // Closing the queue makes the worker's next send fail, so it exits.
        self.rx.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The infinite training stream from iteration `start` on (resuming).
///
/// # Errors
/// [`Error::Config`] for invalid settings, for a dataset without samples
/// (the stream would never yield one), or if the threads cannot start.
pub fn train_stream<D>(dataset: Arc<D>, cfg: LoaderConfig, start: u64) -> Result<BatchStream<D::Sample>>
where
    D: Dataset + 'static,
    D::Sample: 'static,
{
    if dataset.is_empty() {
        return Err(Error::Config { key: "data", msg: "the training set has no samples".into() });
    }
    let pool = data_pool(&cfg)?;
    BatchStream::spawn_coordinator(&cfg, move |stats, send| {
        let b = cfg.batch_size as u64;
        let mut order = EpochOrder::new(cfg.seed, dataset.len());
        let (done_tx, done_rx) = channel::<(u64, Result<D::Sample>)>();
        let mut finished: BTreeMap<u64, Result<D::Sample>> = BTreeMap::new();
        let mut queued = start * b;
        for iteration in start.. {
            // Queue every sample up to the end of the batches in flight.
            while queued < (iteration + BATCHES_IN_FLIGHT) * b {
                let (position, index) = (queued, order.index_at(queued));
                let (dataset, done) = (Arc::clone(&dataset), done_tx.clone());
                pool.spawn_fifo(move || {
                    let sample = dataset.train_sample(index, &mut sample_rng(cfg.seed, position));
                    // A send fails only once the stream is dropped.
                    let _ = done.send((position, sample));
                });
                queued += 1;
            }
            let positions = iteration * b..(iteration + 1) * b;
            while finished.range(positions.clone()).count() < cfg.batch_size {
                match done_rx.recv() {
                    Ok((position, sample)) => finished.insert(position, sample),
                    Err(_) => return,
                };
            }
            let rest = finished.split_off(&positions.end);
            let results = std::mem::replace(&mut finished, rest).into_values().collect();
            if !send(Batch { index: iteration, samples: keep_ok(results, stats) }) {
                return; // the consumer is gone
            }
        }
    })
}
/// The finite evaluation stream over all samples in order.
///
/// # Errors
/// [`Error::Config`] for invalid settings or if the threads cannot start.
pub fn eval_stream<D>(dataset: Arc<D>, cfg: LoaderConfig) -> Result<BatchStream<D::Sample>>
where
    D: Dataset + 'static,
    D::Sample: 'static,
{
    let batches = dataset.len().div_ceil(cfg.batch_size.max(1)) as u64;
    let mut index = 0;
    BatchStream::spawn(&cfg, move |stats| {
        (index < batches).then(|| {
            let batch = eval_batch(&*dataset, &cfg, index, stats);
            index += 1;
            batch
        })
    })
}

/// Stacks per-sample (C, H, W) f32 buffers into a (B, C, H, W) tensor on
/// `device` (B = `samples.len()`; an empty slice gives a (0, C, H, W) tensor).
///
/// # Errors
/// [`Error::ShapeMismatch`] naming the sample whose buffer is not C·H·W long;
/// [`Error::Candle`] if the tensor cannot be created on `device`.
pub fn stack_chw<S: AsRef<[f32]>>(samples: &[S], chw: (usize, usize, usize), device: &Device) -> Result<Tensor> {
    let (c, h, w) = chw;
    let mut flat = Vec::with_capacity(samples.len() * c * h * w);
    for (index, sample) in samples.iter().enumerate() {
        let sample = sample.as_ref();
        if sample.len() != c * h * w {
            return Err(Error::ShapeMismatch { what: "sample pixels", expected: "C * H * W values per sample", found: vec![index, sample.len(), c, h, w] });
        }
        flat.extend_from_slice(sample);
    }
    Ok(Tensor::from_vec(flat, (samples.len(), c, h, w), device)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn samples_stack_along_a_new_first_axis() {
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let b: Vec<f32> = (12..24).map(|v| v as f32).collect();
        let t = stack_chw(&[a.as_slice(), b.as_slice()], (3, 2, 2), &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3, 2, 2]);
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), (0..24).map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(stack_chw::<Vec<f32>>(&[], (3, 2, 2), &Device::Cpu).unwrap().dims(), &[0, 3, 2, 2]);
        let err = stack_chw(&[a, vec![0.0; 11]], (3, 2, 2), &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { ref found, .. } if found[..2] == [1, 11]), "{err}");
    }
}
