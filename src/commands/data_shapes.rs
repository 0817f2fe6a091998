//! `vitdet data shapes`: writes the built-in synthetic shapes dataset
//! (`coco::shapes`) in COCO layout, or in ImageFolder layout with
//! `--classification`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use coco::shapes::{self, ShapesConfig, ShapesTask, MAX_SIZE, MIN_SIZE};

/// Arguments of `vitdet data shapes`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet data shapes --out data/shapes\n  \
    vitdet data shapes --out data/shapes_big --train 2000 --val 500 --size 384 --seed 1\n  \
    vitdet data shapes --classification --out data/shapes_cls\n\n\
    Detection layout: DIR/{train,val}/NNNNNN.png and DIR/annotations/instances_{train,val}.json.\n\
    Classification layout: DIR/{train,val}/<class>/NNNNNN.png.")]
pub struct DataShapesArgs {
    /// Output directory (created if missing; files of the same names are overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of training images.
    #[arg(long, default_value_t = 400)]
    train: usize,
    /// Number of validation images.
    #[arg(long, default_value_t = 100)]
    val: usize,
    /// Image side in pixels (square images).
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Seed: the same seed gives byte-identical annotations and images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the classification variant (one dominant shape per image, ImageFolder layout).
    #[arg(long)]
    classification: bool,
}

/// Runs the command: generates, then prints one summary line on stdout.
pub fn run(args: DataShapesArgs) -> anyhow::Result<()> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&args.size) {
        return Err(crate::exit::user(format!(
            "--size {} is out of range: use {MIN_SIZE}..={MAX_SIZE}",
            args.size
        )));
    }
    if args.train + args.val == 0 {
        return Err(crate::exit::user("--train and --val are both 0: nothing to generate"));
    }
    if args.out.is_file() {
        return Err(crate::exit::user(format!("--out {} is a file, not a directory", args.out.display())));
    }
    let task = if args.classification { ShapesTask::Classification } else { ShapesTask::Detection };
    let cfg = ShapesConfig { train: args.train, val: args.val, size: args.size, seed: args.seed, task };
    let start = Instant::now();
    let summary = shapes::generate(&cfg, &args.out)
        .with_context(|| format!("generating the shapes dataset in {}", args.out.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    let [train, val] = summary.images;
    match task {
        ShapesTask::Detection => {
            let annotations = summary.annotations[0] + summary.annotations[1];
            let crowd = summary.crowd[0] + summary.crowd[1];
            println!(
                "shapes: {train} train + {val} val images ({} px), {annotations} annotations ({crowd} crowd) in {seconds:.2}s -> {}",
                args.size,
                args.out.display()
            );
        }
        ShapesTask::Classification => {
            println!(
                "shapes (classification, 6 classes): {train} train + {val} val images ({} px) in {seconds:.2}s -> {}",
                args.size,
                args.out.display()
            );
        }
    }
    Ok(())
}
