//! `vitdet bench distill`: a distilled-MAE training step's images/s and peak memory.

use backbone::VitConfig;
use pretrain::distill::bench::{bench_distill, BenchDistillOptions};

/// Images per second of a full distilled-MAE training step (MAE-Tiny
/// student, MAE ViT-Base teacher on the same visible patches, last-layer
/// attention loss, backward, AdamW) on random weights. Prints one JSON line
/// with `train_img_s` and `train_peak_rss_mb`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet bench distill --batch 64 --iters 3\n  ROUNDS=3 bench/distill_vs_torch.sh 16 2   # side by side with PyTorch (BENCHMARKS.md)")]
pub struct BenchDistillArgs {
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps, after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Input side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    /// Teacher architecture: base (the released MAE-Base), small, tiny.
    #[arg(long, default_value = "base")]
    teacher_arch: String,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the benchmark.
pub fn run(args: BenchDistillArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.iters == 0 || args.input_size == 0 || !args.input_size.is_multiple_of(16) {
        return Err(crate::exit::user("--batch and --iters must be at least 1, --input-size a positive multiple of 16"));
    }
    let device = engine::device::parse_device(&args.device)?;
    let opts = BenchDistillOptions { batch: args.batch, iters: args.iters, input_size: args.input_size, teacher: VitConfig::by_name(&args.teacher_arch)?, ..Default::default() };
    println!("{}", serde_json::to_string(&bench_distill(&opts, &device)?)?);
    Ok(())
}
