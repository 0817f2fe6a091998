//! `vitdet pretrain`: self-supervised pre-training of a ViT (MAE and
//! MoCo-v3; MAE with attention distillation answers "not built yet"), on
//! a folder of images or the built-in synthetic shapes; and `vitdet
//! pretrain visualize`, pictures of an MAE's reconstructions.

use std::path::PathBuf;

use pretrain::data::{open_images, DataSource};
use pretrain::mocov3::task::pretrain_mocov3;
use pretrain::recipe::Method as RecipeMethod;
use pretrain::task::{pretrain_mae, PretrainRun, PretrainSummary};
use pretrain::Recipe;

/// The pre-training objectives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Masked autoencoder (MAE-Lite's MAE-Tiny recipe).
    Mae,
    /// MoCo-v3 (momentum contrast).
    Mocov3,
    /// MAE with attention distillation from an MAE-Base teacher (the paper's method).
    Distill,
}

/// Arguments of `vitdet pretrain`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = "Examples:\n  \
    vitdet pretrain --method mae --out runs/mae_shapes   # built-in shapes, CPU recipe\n  \
    vitdet pretrain --method mae --config pretrain_mae_tiny --data /data/imagenet --out runs/mae_tiny --device cuda\n  \
    vitdet pretrain --method mae --data photos/ --input-size 96 --max-iter 500 --out runs/mae_photos\n  \
    vitdet pretrain --method mae --out runs/mae_shapes --resume\n  \
    vitdet pretrain --method mocov3 --out runs/mocov3_shapes   # built-in shapes, CPU recipe\n  \
    vitdet pretrain --method mocov3 --config pretrain_mocov3_tiny --data /data/imagenet --out runs/mocov3_tiny --device cuda\n  \
    vitdet finetune --backbone runs/mae_shapes/model.safetensors --out runs/cls  # use the result downstream\n  \
    vitdet pretrain visualize --weights runs/mae_shapes/model.safetensors --images runs/mae_shapes/data/val/star --out grid.png\n\n\
    Recipes (--config): pretrain_mae_tiny, pretrain_mocov3_tiny (the released recipes),\n\
    pretrain_mae_shapes_tiny, pretrain_mocov3_shapes_tiny, or a TOML file.\n\
    --data: an ImageFolder tree (its train/ subfolder when there is one) or a flat folder of images;\n\
    labels are ignored and unreadable images are skipped and counted.\n\
    Writes OUT/config.toml, OUT/metrics.jsonl, OUT/checkpoint/last.safetensors and OUT/model.safetensors\n\
    (the encoder under timm names, plus the decoder for mae: vitdet features, finetune --backbone and\n\
    train --backbone read it as it is; mocov3's projector, predictor and momentum encoder are in the checkpoint).")]
pub struct PretrainArgs {
    #[command(subcommand)]
    action: Option<PretrainAction>,
    /// The objective: mae or mocov3 (distill is not built yet).
    #[arg(long, value_enum, required = true)]
    method: Option<Method>,
    /// Recipe: a TOML file or a built-in name. Default: pretrain_METHOD_shapes_tiny without --data,
    /// pretrain_METHOD_tiny with it.
    #[arg(long, value_name = "TOML_OR_NAME")]
    config: Option<String>,
    /// A folder of images. Without it the synthetic shapes set is generated into OUT/data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Input side in pixels (a multiple of the patch size 16).
    #[arg(long, value_name = "N")]
    input_size: Option<usize>,
    /// Train for N epochs instead of the recipe's.
    #[arg(long, value_name = "N", conflicts_with = "max_iter")]
    epochs: Option<usize>,
    /// Stop after N optimizer steps (the schedule is rescaled to N).
    #[arg(long, value_name = "N", value_parser = super::parse_steps)]
    max_iter: Option<usize>,
    /// Output directory of the run.
    #[arg(long, value_name = "DIR", default_value = "runs/pretrain")]
    out: PathBuf,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
}

/// Subcommands of `vitdet pretrain`.
#[derive(clap::Subcommand, Debug)]
enum PretrainAction {
    /// Draw an MAE's reconstructions: rows original / masked / reconstruction.
    Visualize(super::pretrain_visualize::VisualizeArgs),
}

/// Runs the command.
pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    if let Some(PretrainAction::Visualize(v)) = args.action {
        return super::pretrain_visualize::run(v);
    }
    match args.method {
        Some(Method::Mae) => run_method(args, RecipeMethod::Mae),
        Some(Method::Mocov3) => run_method(args, RecipeMethod::Mocov3),
        Some(Method::Distill) => Err(crate::exit::user("--method distill is not built yet (MAE with attention distillation is in progress); use --method mae")),
        None => Err(crate::exit::user("pass --method mae or --method mocov3")),
    }
}

fn run_method(args: PretrainArgs, method: RecipeMethod) -> anyhow::Result<()> {
    let default = if args.data.is_some() { format!("pretrain_{}_tiny", method.name()) } else { format!("pretrain_{}_shapes_tiny", method.name()) };
    let config = args.config.clone().unwrap_or(default);
    let mut recipe = Recipe::load_or_builtin(&config)?;
    if recipe.method != method {
        return Err(crate::exit::user(format!("--config {config} is a {} recipe; pass --method {} or a {} recipe", recipe.method.name(), recipe.method.name(), method.name())));
    }
    if let Some(n) = args.input_size {
        recipe.data.input_size = n;
    }
    if let Some(n) = args.epochs {
        recipe.train.epochs = n;
    }
    recipe.validate()?;
    let source = match &args.data {
        Some(dir) => DataSource::Folder(dir.clone()),
        None => DataSource::Synthetic(args.out.join("data")),
    };
    let images = open_images(&source, &recipe)?;
    let device = engine::device::parse_device(&args.device)?;
    let what = match method {
        RecipeMethod::Mae => format!("MAE pre-training ViT-{}, mask ratio {}", recipe.model.arch, recipe.model.mask_ratio),
        RecipeMethod::Mocov3 => format!("MoCo-v3 pre-training ViT-{}, projector/predictor {}/{}", recipe.model.arch, recipe.mocov3.mlp_dim, recipe.mocov3.dim),
    };
    eprintln!("{what}, on {} ({} images) at {} px on {}; out: {}", images.root().display(), images.files().len(), recipe.data.input_size, args.device, args.out.display());
    let run = PretrainRun { recipe, images, out: args.out.clone(), resume: args.resume, max_iter: args.max_iter, device, progress: engine::progress::ProgressConfig::default() };
    let summary: PretrainSummary = match method {
        RecipeMethod::Mae => pretrain_mae(&run)?,
        RecipeMethod::Mocov3 => pretrain_mocov3(&run)?,
    };
    if let Some(skipped) = &summary.skipped_images {
        eprintln!("warning: training data: {skipped}");
    }
    let epochs = summary.max_iter as f64 / summary.iters_per_epoch as f64;
    println!("{:<22} {:>10}", "", "value");
    println!("{:<22} {:>10}", "steps (this process)", summary.run.iterations);
    println!("{:<22} {:>10}", "steps (whole run)", summary.max_iter);
    println!("{:<22} {:>10.2}", "epochs (whole run)", epochs);
    println!("{:<22} {:>10.2}", "train images/s", summary.run.train_img_s);
    println!("weights: {}", summary.run.model_path.display());
    Ok(())
}
