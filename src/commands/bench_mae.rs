//! `vitdet bench mae`: one MAE-Tiny pre-training step of the released recipe.

use bench::pretrain::mae::bench_mae;

use super::bench_step::StepBenchArgs;

/// Images per second of an MAE training step (random masking 0.75, the
/// ViT-Tiny encoder on the visible patches, the decoder of
/// configs/pretrain_mae_tiny.toml, norm-pix loss, backward, AdamW over the
/// released parameter groups) and the process's peak resident memory.
/// Prints one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet bench mae --batch 64 --iters 3\n  \
    vitdet bench mae --batch 8 --iters 1 --input-size 112   # a quick look\n  \
    ROUNDS=3 bench/mae_vs_torch.sh 64 3 224   # side by side with MAE-Lite's models_mae (BENCHMARKS.md)")]
pub struct BenchMaeArgs {
    #[command(flatten)]
    step: StepBenchArgs,
}

/// Runs the benchmark.
pub fn run(args: BenchMaeArgs) -> anyhow::Result<()> {
    let (opts, device) = args.step.options(1)?;
    println!("{}", serde_json::to_string(&bench_mae(&opts, &device)?)?);
    Ok(())
}
