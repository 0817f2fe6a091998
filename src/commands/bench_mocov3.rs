//! `vitdet bench mocov3`: one MoCo-v3 pre-training step of the released model.

use bench::pretrain::mocov3::bench_mocov3;

use super::bench_step::StepBenchArgs;

/// Images per second of a MoCo-v3 training step (momentum EMA, queries of
/// two views with their graph, keys from the momentum encoder, symmetric
/// InfoNCE, backward, AdamW) of the released ViT-Tiny model (12 heads,
/// projector/predictor 4096/256), and the process's peak resident memory.
/// Prints one JSON line. `--batch` is at least 2 (the other images are the
/// negatives).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet bench mocov3 --batch 64 --iters 3\n  \
    bench/mocov3_vs_torch.sh 64 3 224   # side by side with moco-v3 on timm (BENCHMARKS.md)")]
pub struct BenchMocoV3Args {
    #[command(flatten)]
    step: StepBenchArgs,
}

/// Runs the benchmark.
pub fn run(args: BenchMocoV3Args) -> anyhow::Result<()> {
    let (opts, device) = args.step.options(2)?;
    println!("{}", serde_json::to_string(&bench_mocov3(&opts, &device)?)?);
    Ok(())
}
