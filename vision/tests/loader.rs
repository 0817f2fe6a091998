//! The generic loader on a toy dataset: the exact (seed, position) → sample
//! formula of the module doc, independence from the thread count, epochs,
//! resuming, skipped samples, the evaluation order and setting errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vision::loader::{eval_stream, sample_rng, train_batch, train_stream, Dataset, LoaderConfig, LoaderStats};
use vision::{Error, Result};

/// N samples; sample i is (i, first u64 of its RNG); the indices in `broken` fail.
struct Toy {
    n: usize,
    broken: Vec<usize>,
}

impl Dataset for Toy {
    type Sample = (usize, u64);

    fn len(&self) -> usize {
        self.n
    }

    fn train_sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<(usize, u64)> {
        if self.broken.contains(&index) {
            return Err(Error::Decode { path: PathBuf::from(format!("img/{index}.png")), reason: "truncated".into() });
        }
        Ok((index, rng.next_u64()))
    }

    fn eval_sample(&self, index: usize) -> Result<(usize, u64)> {
        self.train_sample(index, &mut ChaCha8Rng::seed_from_u64(0)).map(|(i, _)| (i, 0))
    }
}

fn cfg(threads: usize) -> LoaderConfig {
    LoaderConfig { batch_size: 4, threads, prefetch: 2, seed: 17 }
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
}

#[test]
fn a_sample_is_the_epoch_shuffle_and_the_position_stream() {
    let toy = Toy { n: 10, broken: Vec::new() };
    let stats = LoaderStats::default();
    // Iteration 3, B = 4: positions 12..16, all in epoch 1.
    let batch = train_batch(&toy, &cfg(1), 3, &stats);
    let mut epoch_rng = ChaCha8Rng::seed_from_u64(17);
    epoch_rng.set_stream(1);
    let mut perm: Vec<usize> = (0..10).collect();
    perm.shuffle(&mut epoch_rng);
    let want: Vec<(usize, u64)> = (12..16u64).map(|p| (perm[(p % 10) as usize], sample_rng(17, p).next_u64())).collect();
    assert_eq!(batch.samples, want);
    assert_eq!(batch.index, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    rng.set_stream((1 << 63) | 12);
    assert_eq!(sample_rng(17, 12).next_u64(), rng.next_u64());
}

#[test]
fn batches_do_not_depend_on_threads_and_cover_each_epoch() {
    let toy = Toy { n: 10, broken: Vec::new() };
    let stats = LoaderStats::default();
    for i in 0..6 {
        let one = pool(1).install(|| train_batch(&toy, &cfg(1), i, &stats));
        let three = pool(3).install(|| train_batch(&toy, &cfg(3), i, &stats));
        assert_eq!(one, three, "iteration {i}");
    }
    // Positions 0..10 are epoch 0 (iterations 0, 1 and half of 2): each sample once.
    let mut first_epoch: Vec<usize> =
        (0..3).flat_map(|i| train_batch(&toy, &cfg(2), i, &stats).samples).take(10).map(|(i, _)| i).collect();
    first_epoch.sort_unstable();
    assert_eq!(first_epoch, (0..10).collect::<Vec<_>>());
    let other_seed = train_batch(&toy, &LoaderConfig { seed: 18, ..cfg(1) }, 0, &stats);
    assert_ne!(other_seed.samples, train_batch(&toy, &cfg(1), 0, &stats).samples);
}

#[test]
fn a_resumed_stream_continues_the_same_batches() {
    let toy = Arc::new(Toy { n: 7, broken: Vec::new() });
    let stats = LoaderStats::default();
    let mut stream = train_stream(Arc::clone(&toy), cfg(2), 5).unwrap();
    for i in 5..9 {
        assert_eq!(stream.next().unwrap(), train_batch(&*toy, &cfg(1), i, &stats));
    }
}

#[test]
fn failing_samples_are_skipped_and_counted_with_their_path() {
    let toy = Arc::new(Toy { n: 10, broken: vec![3, 8] });
    let mut stream = eval_stream(Arc::clone(&toy), cfg(2)).unwrap();
    let batches: Vec<_> = stream.by_ref().collect();
    let sizes: Vec<usize> = batches.iter().map(|b| b.samples.len()).collect();
    assert_eq!(sizes, vec![3, 4, 1], "B = 4: samples 3 and 8 are skipped");
    let order: Vec<usize> = batches.iter().flat_map(|b| b.samples.iter().map(|s| s.0)).collect();
    assert_eq!(order, vec![0, 1, 2, 4, 5, 6, 7, 9]);
    assert_eq!(batches.iter().map(|b| b.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(stream.stats().skipped(), 2);
    let (path, reason) = stream.stats().first().unwrap();
    assert!(path == std::path::Path::new("img/3.png") || path == std::path::Path::new("img/8.png"), "{path:?}");
    assert!(reason.contains("truncated"), "{reason}");
    assert!(stream.stats().summary().unwrap().starts_with("skipped: 2 "));
    assert_eq!(LoaderStats::default().summary(), None);
}

#[test]
fn bad_settings_and_empty_datasets_are_errors() {
    let toy = Arc::new(Toy { n: 3, broken: Vec::new() });
    for (bad, key) in [(LoaderConfig { batch_size: 0, ..cfg(1) }, "data.batch_size"), (LoaderConfig { threads: 0, ..cfg(1) }, "data.threads")] {
        let err = eval_stream(Arc::clone(&toy), bad).err().unwrap();
        assert!(matches!(err, Error::Config { key: k, .. } if k == key), "{err}");
    }
    let empty = Arc::new(Toy { n: 0, broken: Vec::new() });
    assert!(matches!(train_stream(Arc::clone(&empty), cfg(1), 0), Err(Error::Config { .. })));
    assert_eq!(train_batch(&*empty, &cfg(1), 0, &LoaderStats::default()).samples, vec![]);
    assert_eq!(eval_stream(empty, cfg(1)).unwrap().count(), 0);
}
