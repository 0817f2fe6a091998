//! `vitdet bench data`: decoded-and-augmented training images/s at 224 px.

use std::path::PathBuf;

use bench::classification::data::{bench_data, BenchDataOptions};
use bench::classification::jpegs::write_jpegs;

/// Images per second of the classification training pipeline (decode,
/// RandomResizedCrop + flip + RandAugment rand-m9-mstd0.5-inc1 + normalise,
/// batches stacked) over ImageNet-sized JPEGs, with N loader threads. Prints
/// one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet bench data --threads 2                        # 200 generated 500x375 JPEGs in a temporary folder\n  \
    vitdet bench data --images /tmp/jpegs --threads 2    # generates them there first if DIR/train is absent, keeps them\n  \
    bench/data_vs_torch.sh                               # side by side with torchvision + timm (BENCHMARKS.md)")]
pub struct BenchDataArgs {
    /// ImageFolder root whose train/ split is read. Without train/ in it, --count JPEGs of 500x375 are
    /// written to DIR/train/ first. Default: a temporary folder, removed afterwards.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// JPEGs to generate when there are none.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Loader worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed batches (after one untimed batch).
    #[arg(long, default_value_t = 20)]
    batches: usize,
    /// Output side in pixels.
    #[arg(long, default_value_t = 224)]
    size: usize,
}

/// Runs the benchmark.
pub fn run(args: BenchDataArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.batches == 0 || args.count == 0 || args.size == 0 || args.threads == Some(0) {
        return Err(crate::exit::user("--batch, --batches, --count, --size and --threads must be at least 1"));
    }
    let temporary = args.images.is_none();
    let dir = args.images.unwrap_or_else(|| std::env::temp_dir().join(format!("vitdet-bench-data-{}", std::process::id())));
    if !dir.join("train").is_dir() {
        eprintln!("writing {} JPEGs of 500x375 to {}", args.count, dir.join("train").display());
        write_jpegs(&dir, args.count, 0)?;
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = BenchDataOptions { images: dir.clone(), threads, batch: args.batch, batches: args.batches, size: args.size };
    let result = bench_data(&opts);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{}", serde_json::to_string(&result?)?);
    Ok(())
}
