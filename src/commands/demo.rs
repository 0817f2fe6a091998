//! `vitdet demo`: the whole pipeline on the CPU in a few minutes: generate
//! the shapes dataset, train the shapes recipe, print the COCO table, draw
//! predictions on validation images.

use std::path::PathBuf;

use anyhow::Context as _;
use detector::predict::{draw_prediction, predict_files};

use super::train::{train_recipe, TrainRequest};

/// Arguments of `vitdet demo`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet demo\n  \
    vitdet demo --out runs/demo --max-iter 200     # a shorter run\n\n\
    Writes the dataset to OUT/shapes, the run to OUT (model.safetensors, metrics.jsonl, ...)\n\
    and prediction pictures to OUT/predictions.")]
pub struct DemoArgs {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "runs/demo")]
    out: PathBuf,
    /// Optimizer steps (default: the recipe's).
    #[arg(long, value_name = "N", value_parser = super::parse_steps)]
    max_iter: Option<usize>,
    /// Continue an interrupted demo in --out.
    #[arg(long)]
    resume: bool,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Validation images to draw predictions on.
    #[arg(long, default_value_t = 8)]
    pictures: usize,
}

/// Runs the command.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let request = TrainRequest { config: super::recipe_source(None, &args.out, args.resume, "vitdet_tiny_shapes"), overrides: Vec::new(), backbone: None, data: Default::default(), out: args.out.clone(), device: args.device.clone(), max_iter: args.max_iter, resume: args.resume, weights_dir: None };
    let summary = train_recipe(&request)?;
    let device = engine::device::parse_device(&args.device)?;
    let detector = detector::weights::load(&summary.model_path, &device)?;
    let files: Vec<PathBuf> = vision::list::list_images(&coco::shapes::layout::images_dir(&args.out.join("shapes"), coco::Split::Val), false)?.into_iter().take(args.pictures).collect();
    let dir = args.out.join("predictions");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A few minutes of CPU training gives modest scores: draw from 0.3.
    let skipped = vision::loader::LoaderStats::default();
    for p in predict_files(&detector, &files, 0.3, &device, &skipped)? {
        let stem = p.path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        draw_prediction(&detector, &p, &dir.join(format!("{stem}.png")))?;
    }
    println!("predictions: {} pictures in {}", files.len(), dir.display());
    Ok(())
}
