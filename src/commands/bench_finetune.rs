//! `vitdet bench finetune`: one fine-tuning step of the ViT-Tiny classifier.

use bench::classification::finetune::{bench_finetune, BenchFinetuneOptions};

/// Images per second of a fine-tuning step (forward, cross-entropy over
/// 1000 classes, backward, AdamW with layer decay) of the ImageNet
/// fine-tuning recipe's ViT-Tiny classifier at 224 px, and the process's
/// peak resident memory. Prints one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet bench finetune --batch 32 --iters 5\n  \
    bench/finetune_vs_torch.sh   # side by side with timm (BENCHMARKS.md)")]
pub struct BenchFinetuneArgs {
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed steps, after one warm-up step.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the benchmark.
pub fn run(args: BenchFinetuneArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.iters == 0 {
        return Err(crate::exit::user("--batch and --iters must be at least 1"));
    }
    let device = engine::device::parse_device(&args.device)?;
    let result = bench_finetune(&BenchFinetuneOptions { batch: args.batch, iters: args.iters }, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
