//! `vitdet bench distill`: a distilled-MAE training step's images/s and peak memory.

use backbone::VitConfig;
use bench::pretrain::distill::{bench_distill, BenchDistillOptions};

use super::bench_step::StepBenchArgs;

/// Images per second of a full distilled-MAE training step (MAE-Tiny
/// student, MAE ViT-Base teacher on the same visible patches, last-layer
/// attention loss, backward, AdamW) on random weights, and the process's
/// peak resident memory. Prints one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet bench distill --batch 64 --iters 3\n  ROUNDS=3 bench/distill_vs_torch.sh 64 1   # side by side with PyTorch (BENCHMARKS.md)")]
pub struct BenchDistillArgs {
    #[command(flatten)]
    step: StepBenchArgs,
    /// Teacher architecture: base (the released MAE-Base), small, tiny.
    #[arg(long, default_value = "base")]
    teacher_arch: String,
}

/// Runs the benchmark.
pub fn run(args: BenchDistillArgs) -> anyhow::Result<()> {
    let (step, device) = args.step.options(1)?;
    let opts = BenchDistillOptions { step, teacher: VitConfig::by_name(&args.teacher_arch)?, ..Default::default() };
    println!("{}", serde_json::to_string(&bench_distill(&opts, &device)?)?);
    Ok(())
}
