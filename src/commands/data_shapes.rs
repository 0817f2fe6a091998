//! `vitdet data shapes`: writes the built-in synthetic shapes dataset
//! (`coco::shapes`) in COCO layout, or in ImageFolder layout with
//! `--classification`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use coco::shapes::{self, ClassificationStyle, SceneParams, ShapeKind, ShapesConfig, ShapesTask, MAX_SIZE, MIN_SIZE};

/// Arguments of `vitdet data shapes`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet data shapes --out data/shapes\n  \
    vitdet data shapes --out data/shapes_big --train 2000 --val 500 --size 384 --seed 1\n  \
    vitdet data shapes --classification --out data/shapes_cls\n  \
    vitdet data shapes --classification --style textured --size 96 --out data/shapes_cls_hard\n  \
    vitdet data shapes --out data/calib --size 128 --train 300 --val 60 \\\n      \
    --categories circle,triangle,rectangle,star,ellipse \\\n      \
    --objects 1,6 --sides 8,64 --crowd 0 --min-visible 0.45\n\n\
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
    /// Look of classification images: plain (a white silhouette on black,
    /// learnable from scratch) or textured (random colours, textured
    /// backgrounds, small distractor shapes).
    #[arg(long, value_enum, default_value_t = StyleArg::Plain, requires = "classification")]
    style: StyleArg,
    /// Kinds to draw, comma-separated [default: all: circle,triangle,rectangle,star,ellipse,hexagon].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind, value_name = "KIND,...")]
    categories: Vec<ShapeKind>,
    /// Instances an image, MIN,MAX inclusive, before occlusion rejections [default: 2,7].
    #[arg(long, value_delimiter = ',', num_args = 1, value_name = "MIN,MAX")]
    objects: Vec<usize>,
    /// Instance sizes as the outline's longest side in pixels, MIN,MAX, drawn
    /// uniformly [default: areas spread over COCO's small/medium/large ranges scaled to --size].
    #[arg(long, value_delimiter = ',', num_args = 1, value_name = "MIN,MAX")]
    sides: Vec<f64>,
    /// Probability that an image has a crowd region (iscrowd = 1) [default: 0.3].
    #[arg(long, value_name = "P")]
    crowd: Option<f64>,
    /// Fraction of an object's pixels that must stay visible under later ones [default: 0.4].
    #[arg(long, value_name = "F")]
    min_visible: Option<f64>,
}

/// `--style` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum StyleArg {
    Plain,
    Textured,
}

impl From<StyleArg> for ClassificationStyle {
    fn from(style: StyleArg) -> Self {
        match style {
            StyleArg::Plain => ClassificationStyle::Plain,
            StyleArg::Textured => ClassificationStyle::Textured,
        }
    }
}

/// The flag that sets a [`ShapesConfig`] / [`SceneParams`] field.
fn flag_of(field: &str) -> &str {
    match field {
        "crowd_probability" => "crowd",
        "min_visible_fraction" => "min-visible",
        other => other,
    }
}

/// A `--categories` entry: a kind's name.
fn parse_kind(name: &str) -> Result<ShapeKind, String> {
    ShapeKind::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = ShapeKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown kind {name:?}: expected one of {}", names.join(", "))
    })
}

/// A `MIN,MAX` flag's pair, or an error naming the flag.
fn pair<T: Copy>(flag: &str, values: &[T]) -> anyhow::Result<Option<[T; 2]>> {
    match values {
        [] => Ok(None),
        &[lo, hi] => Ok(Some([lo, hi])),
        _ => Err(crate::exit::user(format!("{flag} takes two comma-separated numbers MIN,MAX, got {}", values.len()))),
    }
}

/// The scene mix the flags ask for: the defaults with the given flags applied.
fn scene_params(args: &DataShapesArgs) -> anyhow::Result<SceneParams> {
    let defaults = SceneParams::default();
    Ok(SceneParams {
        categories: if args.categories.is_empty() { defaults.categories } else { args.categories.clone() },
        objects: pair("--objects", &args.objects)?.unwrap_or(defaults.objects),
        sides: pair("--sides", &args.sides)?.or(defaults.sides),
        crowd_probability: args.crowd.unwrap_or(defaults.crowd_probability),
        min_visible_fraction: args.min_visible.unwrap_or(defaults.min_visible_fraction),
    })
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
    let cfg = ShapesConfig {
        train: args.train,
        val: args.val,
        size: args.size,
        seed: args.seed,
        task,
        scene: scene_params(&args)?,
        style: args.style.into(),
    };
    cfg.validate().map_err(|e| match e {
        coco::Error::ShapesConfig { field, reason } => crate::exit::user(format!("--{} {reason}", flag_of(field))),
        other => crate::exit::user(other.to_string()),
    })?;
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
                "shapes (classification, {} classes): {train} train + {val} val images ({} px) in {seconds:.2}s -> {}",
                cfg.scene.categories.len(),
                args.size,
                args.out.display()
            );
        }
    }
    Ok(())
}
