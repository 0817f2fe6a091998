//! `vitdet bench vit`: ViT-Tiny images/s for inference and training.

use bench::vit::{bench_vit, BenchVitOptions};
use backbone::VitConfig;

/// Images per second of ViT-Tiny (12 heads) at 224 px: inference, and a full
/// training step (forward, backward, AdamW). Prints one JSON line with
/// `infer_img_s`, `train_img_s` and each phase's peak resident memory.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet bench vit --batch 32 --iters 5\n  bench/vit_vs_torch.sh 32 5   # side by side with PyTorch (BENCHMARKS.md)")]
pub struct BenchVitArgs {
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed iterations per phase, after one warm-up.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Architecture: tiny, tiny3, small, base.
    #[arg(long, default_value = "tiny")]
    arch: String,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the benchmark.
pub fn run(args: BenchVitArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.iters == 0 {
        return Err(crate::exit::user("--batch and --iters must be at least 1"));
    }
    let device = engine::device::parse_device(&args.device)?;
    let opts = BenchVitOptions { batch: args.batch, iters: args.iters, config: VitConfig::by_name(&args.arch)? };
    let result = bench_vit(&opts, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
