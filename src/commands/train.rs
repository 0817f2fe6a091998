//! `vitdet train`: trains ViTDet (Mask R-CNN on a plain ViT) on COCO-format
//! data, or on the built-in shapes dataset when no data is given.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use coco::shapes;
use coco::Split;
use engine::recipe_file::RecipeFile as _;
use detector::data::{DetectionDataset, Purpose};
use detector::evaluate::EvalSplit;
use detector::train::{train, TrainRun};

use super::detection::DataArgs;
use super::weights::weight_search;

/// Arguments of `vitdet train`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet train --out runs/shapes                          # built-in shapes data, CPU recipe\n  \
    vitdet train --config configs/vitdet_tiny_coco.toml --backbone distilled_mae_tiny --data /data/coco --out runs/coco\n  \
    vitdet train --out runs/shapes --resume                 # continue from runs/shapes/checkpoint\n  \
    vitdet train --out runs/short --set train.max_iter=200 --set data.shapes_train=100\n\n\
    A recipe may start from another with base = \"other.toml\" and override only what differs.\n\
    Writes OUT/config.toml, OUT/metrics.jsonl, OUT/checkpoint/last.safetensors and OUT/model.safetensors\n\
    (with a validation split also OUT/model_best.safetensors, the highest bbox AP);\n\
    ends with the COCO table on the validation split.")]
pub struct TrainArgs {
    /// Recipe: a TOML file or a built-in name (vitdet_tiny_shapes, vitdet_tiny_coco).
    /// Default: vitdet_tiny_shapes without data flags, vitdet_tiny_coco with them.
    #[arg(long, value_name = "TOML_OR_NAME")]
    config: Option<String>,
    /// Backbone initialisation: scratch, a released checkpoint name (distilled_mae_tiny, mae_tiny,
    /// mocov3_tiny, deit_tiny) or a weights file. Default: the recipe's `train.backbone`
    /// (vitdet_tiny_coco: distilled_mae_tiny; vitdet_tiny_shapes: scratch).
    #[arg(long, value_name = "NAME_OR_FILE")]
    backbone: Option<String>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    overrides: super::RecipeOverrides,
    /// Output directory of the run.
    #[arg(long, value_name = "DIR", default_value = "runs/vitdet")]
    out: PathBuf,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Stop after N optimizer steps (the schedule is rescaled to N).
    #[arg(long, value_name = "N", value_parser = super::parse_steps)]
    max_iter: Option<usize>,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
    /// Folder searched first for named backbones (then $VITDET_WEIGHTS, then ~/.cache/vitdet/weights).
    #[arg(long, value_name = "DIR")]
    weights_dir: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let shapes_data = args.data.is_empty();
    let default = if shapes_data { "vitdet_tiny_shapes" } else { "vitdet_tiny_coco" };
    let config = super::recipe_source(args.config.as_deref(), &args.out, args.resume, default);
    let request = TrainRequest { config, overrides: args.overrides.set, backbone: args.backbone, data: args.data, out: args.out, device: args.device, max_iter: args.max_iter, resume: args.resume, weights_dir: args.weights_dir };
    train_recipe(&request)?;
    Ok(())
}

/// What `train` and `demo` ask for.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Recipe file or built-in name.
    pub config: String,
    /// `--set KEY=VALUE` recipe overrides.
    pub overrides: Vec<String>,
    /// Backbone spec; `None` takes the recipe's.
    pub backbone: Option<String>,
    /// Data flags; empty for the built-in shapes data.
    pub data: DataArgs,
    /// Run directory.
    pub out: PathBuf,
    /// Device spec.
    pub device: String,
    /// Optional shorter/longer run.
    pub max_iter: Option<usize>,
    /// Continue the run in `out`.
    pub resume: bool,
    /// Extra folder for named backbones.
    pub weights_dir: Option<PathBuf>,
}

/// Trains as `args` says and prints the validation table, the speeds and
/// the weights' path.
pub fn train_recipe(args: &TrainRequest) -> anyhow::Result<detector::train::TrainSummary> {
    let shapes_data = args.data.is_empty();
    let config = &args.config;
    let mut recipe = detector::recipe::Recipe::resolve(config, &args.overrides)?;
    if let Some(n) = args.max_iter {
        recipe.train = recipe.train.with_max_iter(n);
    }
    let data = if shapes_data { generate_shapes(&recipe, &args.out.join("shapes"))? } else { args.data.clone() };
    let train_files = data.split(Split::Train)?.ok_or_else(|| crate::exit::user("no training split: pass --data DIR or --train-json/--train-images"))?;
    let train_set = DetectionDataset::load(&train_files, Purpose::Train)?;
    for line in train_set.report().lines() {
        eprintln!("warning: {}: {line}", train_files.annotations.display());
    }
    if train_set.is_empty() {
        return Err(crate::exit::user(format!("{}: no training image with a usable annotation", train_files.annotations.display())));
    }
    let val = match data.split(Split::Val)? {
        Some(files) => Some(EvalSplit::load(&files)?),
        None => None,
    };
    if let Some(backbone) = &args.backbone {
        recipe.train.backbone = backbone.clone();
    }
    let backbone = recipe.train.backbone.clone();
    let device = engine::device::parse_device(&args.device)?;
    eprintln!(
        "training {} ({} classes, {} images) for {} steps of {} images on {}; backbone: {backbone}; out: {}",
        config,
        train_set.num_classes(),
        train_set.len(),
        recipe.train.max_iter,
        recipe.train.batch_size,
        args.device,
        args.out.display()
    );
    super::set_training_precision(recipe.train.precision);
    let run = TrainRun {
        recipe,
        weight_search: weight_search(args.weights_dir.as_ref()),
        train: Arc::new(train_set),
        val,
        out: args.out.clone(),
        resume: args.resume,
        device,
        progress: engine::progress::ProgressConfig::default(),
    };
    let summary = train(&run)?;
    // What runs after training (demo's predictions) runs in f32.
    engine::ops::set_precision(engine::ops::Precision::F32);
    eprintln!("backbone: {}", summary.backbone_init);
    if let Some(skipped) = &summary.skipped_images {
        eprintln!("warning: training data: {skipped}");
    }
    if let Some(report) = &summary.eval {
        if let Some(skipped) = &report.skipped_images {
            eprintln!("warning: validation data: {skipped}");
        }
        println!("{}", super::eval_coco::format_report(report));
        println!("inference: {:.2} images/s on {} validation images", report.img_s, report.images);
    }
    println!("training: {:.2} images/s over {} steps", summary.train_img_s, summary.iterations);
    println!("weights: {}", summary.model_path.display());
    if let (Some(best), Some(path)) = (&summary.best, &summary.best_model_path) {
        println!("best: {} {:.4} after {} steps: {}", best.metric, best.value, best.iter + 1, path.display());
    }
    Ok(summary)
}

/// Writes the recipe's shapes dataset into `dir` (once: an existing one is reused).
pub fn generate_shapes(recipe: &detector::recipe::Recipe, dir: &std::path::Path) -> anyhow::Result<DataArgs> {
    if !shapes::layout::has_detection_dataset(dir) {
        let d = &recipe.data;
        let cfg = d.shapes_config(recipe.train.seed);
        let summary = shapes::generate(&cfg, dir).with_context(|| format!("generating the shapes dataset in {}", dir.display()))?;
        eprintln!("shapes: {} train + {} val images ({} px) -> {}", summary.images[0], summary.images[1], d.shapes_size, dir.display());
    }
    Ok(DataArgs { data: Some(dir.to_path_buf()), ..DataArgs::default() })
}
