//! Training-loader throughput: LSJ batches from a synthetic shapes dataset of
//! 256 px images (what `vitdet data shapes` writes), decoded and transformed
//! on 2 worker threads, at S = 128 (the CPU demo) and S = 640. Isolates the
//! data path (PNG decode, Pillow-exact resize of the crop window, polygon
//! clipping, normalise + pad): nothing consumes the batches. Prints one JSON
//! line per size.
//!
//! Run: `cargo bench -p detector --bench data_loader`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use coco::shapes::{ShapesConfig, ShapesTask};
use coco::Split;
use detector::data::{train_stream, DataLayout, DetectionDataset, LoaderConfig, LsjConfig, Purpose};

/// Images generated for the benchmark (train split).
const IMAGES: usize = 200;
/// Batches timed after the warm-up batches.
const TIMED_BATCHES: usize = 100;
/// Batches discarded first (thread start, page cache).
const WARMUP_BATCHES: usize = 5;
/// Images per batch.
const BATCH: usize = 4;
/// Loader worker threads.
const THREADS: usize = 2;

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ShapesConfig { train: IMAGES, val: 0, size: 256, seed: 0, task: ShapesTask::Detection, ..ShapesConfig::default() };
    coco::shapes::generate(&cfg, tmp.path()).unwrap();
    let layout = DataLayout::discover(tmp.path()).unwrap();
    let dataset = Arc::new(DetectionDataset::load(layout.split(Split::Train).unwrap(), Purpose::Train).unwrap());
    for side in [128usize, 640] {
        let loader = LoaderConfig { batch_size: BATCH, threads: THREADS, prefetch: 2, seed: 0, lsj: LsjConfig::vitdet(side) };
        let mut stream = train_stream(Arc::clone(&dataset), loader, 0).unwrap();
        for _ in 0..WARMUP_BATCHES {
            stream.next().unwrap();
        }
        let start = Instant::now();
        let mut images = 0;
        for _ in 0..TIMED_BATCHES {
            images += stream.next().unwrap().samples.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"bench\":\"train_loader_lsj\",\"side\":{side},\"source_px\":256,\"threads\":{THREADS},\"batch\":{BATCH},\"images\":{images},\"seconds\":{secs:.3},\"images_per_s\":{:.1}}}",
            images as f64 / secs
        );
    }
}
