//! `vitdet finetune`: fine-tunes, transfers or linearly probes a ViT
//! classifier on a dataset in its published layout, or on the built-in
//! synthetic shapes when no data is given.

use std::path::PathBuf;

use classification::data::{open_splits, DataSource};
use vision::datasets::DatasetKind;
use classification::finetune::{finetune, FinetuneRun};
use classification::Recipe;
use engine::recipe_file::RecipeFile as _;

use super::weights::weight_search;

/// Arguments of `vitdet finetune`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet finetune --out runs/shapes_cls                             # built-in shapes, CPU recipe, from scratch\n  \
    vitdet finetune --config transfer_flowers_tiny --backbone distilled_mae_tiny --dataset flowers --data /data/flowers --out runs/flowers\n  \
    vitdet finetune --config finetune_imagenet_tiny --backbone mae_tiny --dataset imagenet --data /data/imagenet --out runs/in1k --device cuda\n  \
    vitdet finetune --linear-probe --backbone mae_tiny --out runs/probe\n  \
    vitdet finetune --keep-blocks 6 --backbone mae_tiny --out runs/keep6  # the paper's layer reservation\n  \
    vitdet finetune --out runs/shapes_cls --resume\n\n\
    Recipes (--config): finetune_imagenet_tiny, finetune_shapes_tiny, scratch_deit_tiny, linprobe_tiny,\n\
    transfer_{cifar100,flowers,pets,aircraft,cars,inat18}_tiny, or a TOML file; a recipe may start from\n\
    another (base = \"other.toml\") and --set KEY=VALUE overrides one key (--set train.blr=1e-3).\n\
    Writes OUT/config.toml, OUT/metrics.jsonl, OUT/checkpoint/last.safetensors, OUT/model.safetensors\n\
    and OUT/model_best.safetensors (the highest top-1), with train.ema_decay > 0 also OUT/model_ema.safetensors;\n\
    the model files carry their class names.")]
pub struct FinetuneArgs {
    /// Recipe: a TOML file or a built-in name. Default: finetune_shapes_tiny without --data,
    /// finetune_imagenet_tiny with it.
    #[arg(long, value_name = "TOML_OR_NAME")]
    config: Option<String>,
    #[command(flatten)]
    overrides: super::RecipeOverrides,
    /// Initial weights: scratch, a released checkpoint name (mae_tiny, distilled_mae_tiny, mocov3_tiny,
    /// deit_tiny) or a weights file. Default: the recipe's `train.backbone`.
    #[arg(long, value_name = "NAME_OR_FILE")]
    backbone: Option<String>,
    /// Dataset layout of --data: imagenet, folder, cifar10, cifar100, flowers, pets, aircraft, cars, inat18.
    #[arg(long, value_name = "NAME", default_value = "folder")]
    dataset: String,
    /// The dataset's folder, as published. Without it the synthetic shapes set is generated into OUT/data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Train only a linear head on frozen features (BatchNorm without affine first, as MAE).
    #[arg(long)]
    linear_probe: bool,
    /// Keep the first K pre-trained blocks and re-initialise the others.
    #[arg(long, value_name = "K")]
    keep_blocks: Option<usize>,
    /// Input side in pixels (a multiple of 16); the position table is resized to it.
    #[arg(long, value_name = "N")]
    input_size: Option<usize>,
    /// Train for N epochs instead of the recipe's.
    #[arg(long, value_name = "N", conflicts_with = "max_iter")]
    epochs: Option<usize>,
    /// Stop after N optimizer steps (the schedule is rescaled to N); recorded as
    /// train.max_iter, so --resume alone keeps it.
    #[arg(long, value_name = "N", value_parser = super::parse_steps)]
    max_iter: Option<usize>,
    /// Output directory of the run.
    #[arg(long, value_name = "DIR", default_value = "runs/finetune")]
    out: PathBuf,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
    /// Folder searched first for named backbones (then $VITDET_WEIGHTS, then ~/.cache/vitdet/weights).
    #[arg(long, value_name = "DIR")]
    weights_dir: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    let default = if args.data.is_some() { "finetune_imagenet_tiny" } else { "finetune_shapes_tiny" };
    let mut recipe = Recipe::resolve(&super::recipe_source(args.config.as_deref(), &args.out, args.resume, default), &args.overrides.set)?;
    if let Some(b) = &args.backbone {
        recipe.train.backbone = b.clone();
    }
    recipe.train.linear_probe |= args.linear_probe;
    if args.keep_blocks.is_some() {
        recipe.train.keep_blocks = args.keep_blocks;
    }
    if let Some(n) = args.input_size {
        recipe.data.input_size = n;
    }
    super::set_run_length(&mut recipe.train.epochs, &mut recipe.train.max_iter, args.epochs, args.max_iter);
    recipe.validate()?;
    let source = match &args.data {
        Some(root) => DataSource::Published { kind: args.dataset.parse::<DatasetKind>()?, root: root.clone() },
        None => DataSource::Synthetic(args.out.join("data")),
    };
    let (train, val) = open_splits(&source, &recipe)?;
    let device = engine::device::parse_device(&args.device)?;
    eprintln!(
        "fine-tuning {} on {} ({} classes, {} train / {} val images) at {} px on {}; out: {}",
        recipe.train.backbone,
        train.images().root.display(),
        train.images().num_classes(),
        train.images().items.len(),
        val.images().items.len(),
        recipe.data.input_size,
        args.device,
        args.out.display()
    );
    super::set_training_precision(recipe.train.precision);
    let run = FinetuneRun {
        recipe,
        weight_search: weight_search(args.weights_dir.as_ref()),
        train,
        val: Some(val),
        out: args.out.clone(),
        resume: args.resume,
        device,
        progress: engine::progress::ProgressConfig::default(),
    };
    let summary = finetune(&run)?;
    eprintln!("backbone: {}", summary.init);
    if let Some(skipped) = &summary.skipped_images {
        eprintln!("warning: training data: {skipped}");
    }
    if let Some(skipped) = &summary.skipped_val_images {
        eprintln!("warning: validation data: {skipped}");
    }
    let epochs = summary.run.iterations as f64 / summary.iters_per_epoch as f64;
    println!("{:<22} {:>10}", "", "value");
    println!("{:<22} {:>10}", "steps (this process)", summary.run.iterations);
    println!("{:<22} {:>10.2}", "epochs", epochs);
    println!("{:<22} {:>10.2}", "train images/s", summary.run.train_img_s);
    if let Some((raw, ema)) = &summary.last {
        println!("{:<22} {:>10.2}", "top-1 (%)", raw.top1);
        println!("{:<22} {:>10.2}", "top-5 (%)", raw.top5);
        println!("{:<22} {:>10.2}", "mean per-class (%)", raw.mean_per_class);
        if let Some(ema) = ema {
            println!("{:<22} {:>10.2}", "top-1 EMA (%)", ema.top1);
        }
    }
    println!("weights: {}", summary.run.model_path.display());
    if let Some(path) = &summary.ema_model_path {
        println!("EMA weights: {}", path.display());
    }
    if let (Some(best), Some(path)) = (&summary.run.best, &summary.run.best_model_path) {
        println!("best: {} {:.2} after {} steps: {}", best.metric, best.value, best.iter + 1, path.display());
    }
    Ok(())
}
