//! `vitdet bench vitdet`: ViTDet training-step and inference images/s.

use bench::vitdet::{bench_vitdet, BenchVitDetOptions};

use super::detection::load_recipe;

/// Images per second of a whole ViTDet (the recipe's model, random weights)
/// for a training step and for inference, on random images with random
/// objects (three each by default). Prints one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet bench vitdet                                   # the CPU demo model at 128 px\n  \
    vitdet bench vitdet --objects 32 --classes 5           # the mask head's load late in the demo's training\n  \
    vitdet bench vitdet --config vitdet_tiny_coco --batch 2 --iters 2   # the paper's model at 640 px")]
pub struct BenchVitDetArgs {
    /// Recipe whose [model] is measured: a TOML file or a built-in name.
    #[arg(long, value_name = "TOML_OR_NAME", default_value = "vitdet_tiny_shapes")]
    config: String,
    /// Images per step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Timed iterations per phase, after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Object classes (COCO: 80).
    #[arg(long, default_value_t = 80)]
    classes: usize,
    /// Random objects an image; each is a foreground ROI for the mask head.
    #[arg(long, default_value_t = 3)]
    objects: usize,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the benchmark.
pub fn run(args: BenchVitDetArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.iters == 0 || args.classes == 0 {
        return Err(crate::exit::user("--batch, --iters and --classes must be at least 1"));
    }
    let device = engine::device::parse_device(&args.device)?;
    let recipe = load_recipe(&args.config)?;
    let opts = BenchVitDetOptions { model: recipe.model, num_classes: args.classes, batch: args.batch, iters: args.iters, objects: args.objects };
    let result = bench_vitdet(&opts, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
