//! `vitdet bench mocov3`: one MoCo-v3 pre-training step of the released model.

use pretrain::mocov3::bench::{bench_mocov3, BenchMocoV3Options};

/// Images per second of a MoCo-v3 training step (momentum EMA, queries of
/// two views with their graph, keys from the momentum encoder, symmetric
/// InfoNCE, backward, AdamW) of the released ViT-Tiny model (12 heads,
/// projector/predictor 4096/256), and the process's peak resident memory.
/// Prints one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet bench mocov3 --batch 64 --iters 3\n  \
    bench/mocov3_vs_torch.sh 64 3 224   # side by side with moco-v3 on timm (BENCHMARKS.md)")]
pub struct BenchMocoV3Args {
    /// Images per step (each in two views); at least 2.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps, after one warm-up step.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Input side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the benchmark.
pub fn run(args: BenchMocoV3Args) -> anyhow::Result<()> {
    if args.batch < 2 || args.iters == 0 {
        return Err(crate::exit::user("--batch must be at least 2 (the other images are the negatives) and --iters at least 1"));
    }
    if args.input_size == 0 || !args.input_size.is_multiple_of(16) {
        return Err(crate::exit::user(format!("--input-size {} must be a positive multiple of the patch size 16", args.input_size)));
    }
    let device = engine::device::parse_device(&args.device)?;
    let result = bench_mocov3(&BenchMocoV3Options { batch: args.batch, iters: args.iters, input_size: args.input_size }, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
