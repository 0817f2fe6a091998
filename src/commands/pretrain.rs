//! `vitdet pretrain`: self-supervised pre-training of a ViT (MAE, MAE with
//! attention distillation, MoCo-v3), on a folder of images or the built-in
//! synthetic shapes; and `vitdet pretrain visualize`, pictures of an MAE's
//! reconstructions.

use std::path::PathBuf;

use backbone::named::{resolve_backbone, BackboneSource, NAMED_BACKBONES};
use engine::trainer::EvalOutcome;
use pretrain::data::{open_images, DataSource};
use pretrain::distill::task::{load_run_teacher, pretrain_distill};
use pretrain::distill::DistillConfig;
use pretrain::knn::monitor::TOP1_FIELD;
use pretrain::knn::open_knn_data;
use pretrain::mocov3::task::pretrain_mocov3;
use pretrain::task::{pretrain_mae, PretrainRun, PretrainSummary};
use pretrain::Recipe;
use engine::recipe_file::RecipeFile as _;
use vision::datasets::DatasetKind;

use super::weights::weight_search;

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
    vitdet pretrain --method distill --teacher runs/mae_shapes/model.safetensors --out runs/distill_shapes\n  \
    vitdet pretrain --method distill --teacher mae_base --data /data/imagenet --out runs/dmae_tiny --device cuda\n  \
    vitdet pretrain --method mocov3 --out runs/mocov3_shapes   # built-in shapes, CPU recipe\n  \
    vitdet pretrain --method mocov3 --config pretrain_mocov3_tiny --data /data/imagenet --out runs/mocov3_tiny --device cuda\n  \
    vitdet pretrain --method mae --out runs/mae_knn --knn-data runs/mae_knn/data   # k-NN top-1 on the shapes classes\n  \
    vitdet pretrain --method mae --config pretrain_mae_tiny --data /data/imagenet --knn-data /data/flowers --knn-dataset flowers --out runs/mae_tiny\n  \
    vitdet finetune --backbone runs/mae_shapes/model.safetensors --out runs/cls  # use the result downstream\n  \
    vitdet pretrain visualize --weights runs/mae_shapes/model.safetensors --images runs/mae_shapes/data/val/star --out grid.png\n\n\
    Recipes (--config): pretrain_mae_tiny (the released recipe), pretrain_mae_shapes_tiny, \
    pretrain_distill_mae_tiny, pretrain_distill_shapes_tiny, pretrain_mocov3_tiny, pretrain_mocov3_shapes_tiny, \
    or a TOML file; a recipe may start from another (base = \"other.toml\") and --set KEY=VALUE\n\
    overrides one key (--set train.blr=3e-4 --set model.mask_ratio=0.6).\n\
    --teacher (distill): mae_base, the released mae_base_1600e.pth.tar in --weights-dir, $VITDET_WEIGHTS \
    or ~/.cache/vitdet/weights, or any ViT checkpoint path (e.g. an MAE pre-trained first with --method mae).\n\
    --data: an ImageFolder tree (its train/ subfolder when there is one) or a flat folder of images;\n\
    labels are ignored and unreadable images are skipped and counted.\n\
    --knn-data: a labelled dataset in any layout `vitdet finetune --dataset` reads (--knn-dataset, default the recipe's\n\
    [knn] dataset, folder); every [knn] period_epochs epochs and at the end, the encoder's features of its train split\n\
    vote for each evaluation image (weighted k-NN, k and temperature in [knn]): knn_top1 (knn_top5) in metrics.jsonl.\n\
    Writes OUT/config.toml, OUT/metrics.jsonl, OUT/checkpoint/last.safetensors and OUT/model.safetensors\n\
    (the encoder under timm names, plus the decoder for mae: vitdet features, finetune --backbone and\n\
    train --backbone read it as it is; mocov3's projector, predictor and momentum encoder are in the checkpoint).")]
pub struct PretrainArgs {
    #[command(subcommand)]
    action: Option<PretrainAction>,
    /// The objective: mae, distill or mocov3.
    #[arg(long, value_enum, required = true)]
    method: Option<Method>,
    /// Recipe: a TOML file or a built-in name. Default: pretrain_mae_shapes_tiny without --data,
    /// pretrain_mae_tiny with it (distill and mocov3: their own).
    #[arg(long, value_name = "TOML_OR_NAME")]
    config: Option<String>,
    #[command(flatten)]
    overrides: super::RecipeOverrides,
    /// A folder of images. Without it the synthetic shapes set is generated into OUT/data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Input side in pixels (a multiple of the patch size 16).
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
    #[arg(long, value_name = "DIR", default_value = "runs/pretrain")]
    out: PathBuf,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
    /// Distillation teacher (--method distill): mae_base or a ViT checkpoint path. Default: the recipe's distill.teacher.
    #[arg(long, value_name = "NAME_OR_FILE")]
    teacher: Option<String>,
    /// Folder searched first for a named teacher (then $VITDET_WEIGHTS, then ~/.cache/vitdet/weights).
    #[arg(long, value_name = "DIR")]
    weights_dir: Option<PathBuf>,
    /// k-NN monitor: a labelled dataset whose k-NN top-1 under the current encoder is logged as knn_top1.
    #[arg(long, value_name = "DIR")]
    knn_data: Option<PathBuf>,
    /// Layout of --knn-data: imagenet, folder, cifar10, cifar100, flowers, pets, aircraft, cars, inat18.
    /// Default: the recipe's knn.dataset (folder).
    #[arg(long, value_name = "NAME", requires = "knn_data")]
    knn_dataset: Option<String>,
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
        Some(Method::Mae) => run_mae(args),
        Some(Method::Distill) => run_distill(args),
        Some(Method::Mocov3) => run_mocov3(args),
        None => Err(crate::exit::user("pass --method mae, distill or mocov3")),
    }
}

fn run_mae(args: PretrainArgs) -> anyhow::Result<()> {
    if args.teacher.is_some() {
        return Err(crate::exit::user("--teacher is for --method distill"));
    }
    let recipe = load_recipe(&args, "pretrain_mae_tiny", "pretrain_mae_shapes_tiny")?;
    if recipe.distill.is_some() {
        return Err(crate::exit::user("the recipe has a [distill] table: use --method distill"));
    }
    if recipe.mocov3.is_some() {
        return Err(crate::exit::user("the recipe has a [mocov3] table: use --method mocov3"));
    }
    let run = open_run(&args, recipe)?;
    eprintln!("MAE {}", describe(&run, &args));
    report(&pretrain_mae(&run)?);
    Ok(())
}

/// MAE with attention distillation: the teacher resolved (named or a
/// path) and loaded before any training, its report on stderr.
fn run_distill(args: PretrainArgs) -> anyhow::Result<()> {
    let mut recipe = load_recipe(&args, "pretrain_distill_mae_tiny", "pretrain_distill_shapes_tiny")?;
    let table = recipe.distill.get_or_insert_with(DistillConfig::default);
    if let Some(t) = &args.teacher {
        table.teacher = t.clone();
    }
    let teacher_path = resolve_teacher(table, args.weights_dir.as_ref())?;
    recipe.validate()?;
    let device = engine::device::parse_device(&args.device)?;
    let (teacher, teacher_report) = load_run_teacher(&recipe, &teacher_path, &device)?;
    eprintln!("{teacher_report}");
    let run = open_run(&args, recipe)?;
    eprintln!("Distilled MAE {}", describe(&run, &args));
    report(&pretrain_distill(&run, teacher)?);
    Ok(())
}

/// MoCo-v3: a recipe with a `[mocov3]` table, two views of every image.
fn run_mocov3(args: PretrainArgs) -> anyhow::Result<()> {
    if args.teacher.is_some() {
        return Err(crate::exit::user("--teacher is for --method distill"));
    }
    let recipe = load_recipe(&args, "pretrain_mocov3_tiny", "pretrain_mocov3_shapes_tiny")?;
    if recipe.mocov3.is_none() {
        return Err(crate::exit::user("the recipe has no [mocov3] table: use --method mae or distill, or a MoCo-v3 recipe"));
    }
    let run = open_run(&args, recipe)?;
    eprintln!("MoCo-v3 {}", describe(&run, &args));
    report(&pretrain_mocov3(&run)?);
    Ok(())
}

/// The teacher file `table.teacher` names: a named backbone in the weight
/// folders (its arch recorded in `table.teacher_arch`) or a file.
fn resolve_teacher(table: &mut DistillConfig, weights_dir: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let spec = table.teacher.clone();
    let is_named = NAMED_BACKBONES.iter().any(|b| b.name == spec);
    if spec == "scratch" || (!is_named && !std::path::Path::new(&spec).is_file()) {
        return Err(crate::exit::user(format!(
            "teacher `{spec}`: no such file, and not a named teacher (mae_base); pass --teacher with a ViT checkpoint path \
             (e.g. OUT/model.safetensors of a `vitdet pretrain --method mae --out OUT` run) or mae_base"
        )));
    }
    match resolve_backbone(&spec, &table.teacher_arch, &weight_search(weights_dir))? {
        BackboneSource::File { path, arch } => {
            table.teacher_arch = arch;
            Ok(path)
        }
        BackboneSource::Scratch => Err(crate::exit::user("--teacher scratch: a teacher needs weights")),
    }
}

/// The recipe `--config` names (default: `with_data` when `--data` is
/// given, else `synthetic`) with its bases, the `--set` overrides, and the
/// size and epoch flags applied.
fn load_recipe(args: &PretrainArgs, with_data: &str, synthetic: &str) -> anyhow::Result<Recipe> {
    let default = if args.data.is_some() { with_data } else { synthetic };
    let mut recipe = Recipe::resolve(&super::recipe_source(args.config.as_deref(), &args.out, args.resume, default), &args.overrides.set)?;
    if let Some(n) = args.input_size {
        recipe.data.input_size = n;
    }
    super::set_run_length(&mut recipe.train.epochs, &mut recipe.train.max_iter, args.epochs, args.max_iter);
    if let Some(name) = &args.knn_dataset {
        recipe.knn.dataset = name.parse::<DatasetKind>()?;
    }
    recipe.validate()?;
    super::set_training_precision(recipe.train.precision);
    Ok(recipe)
}

/// The run the flags describe: images opened (the synthetic set generated
/// into OUT/data without --data), the k-NN data opened, device parsed.
fn open_run(args: &PretrainArgs, recipe: Recipe) -> anyhow::Result<PretrainRun> {
    let source = match &args.data {
        Some(dir) => DataSource::Folder(dir.clone()),
        None => DataSource::Synthetic(args.out.join("data")),
    };
    let images = open_images(&source, &recipe)?;
    let knn = args.knn_data.as_deref().map(|dir| open_knn_data(dir, &recipe)).transpose()?;
    if let (Some(dir), Some(data)) = (&args.knn_data, &knn) {
        let (train, val) = (data.train.images(), data.val.images());
        let period = match recipe.knn.period_epochs {
            0 => "at the end".to_string(),
            n => format!("every {n} epoch(s) and at the end"),
        };
        eprintln!(
            "k-NN monitor: {} ({}, {} classes, {} train / {} val images), k = {}, T = {}, {period}",
            dir.display(),
            recipe.knn.dataset,
            train.num_classes(),
            train.items.len(),
            val.items.len(),
            recipe.knn.k,
            recipe.knn.temperature
        );
    }
    let device = engine::device::parse_device(&args.device)?;
    Ok(PretrainRun { recipe, images, out: args.out.clone(), resume: args.resume, device, progress: engine::progress::ProgressConfig::default(), knn })
}

/// "pre-training ViT-... on DIR (N images) at S px, ..." for stderr.
fn describe(run: &PretrainRun, args: &PretrainArgs) -> String {
    let r = &run.recipe;
    let objective = match &r.mocov3 {
        Some(m) => format!("projector/predictor {}/{}", m.mlp_dim, m.dim),
        None => format!("mask ratio {}", r.model.mask_ratio),
    };
    format!(
        "pre-training ViT-{} on {} ({} images) at {} px, {objective} on {}; out: {}",
        r.model.arch,
        run.images.root().display(),
        run.images.files().len(),
        r.data.input_size,
        args.device,
        args.out.display()
    )
}

/// The results table on stdout.
fn report(summary: &PretrainSummary) {
    if let Some(skipped) = &summary.skipped_images {
        eprintln!("warning: training data: {skipped}");
    }
    if let Some(skipped) = &summary.knn_skipped_images {
        eprintln!("warning: k-NN data: {skipped}");
    }
    let epochs = summary.max_iter as f64 / summary.iters_per_epoch as f64;
    println!("{:<22} {:>10}", "", "value");
    println!("{:<22} {:>10}", "steps (this process)", summary.run.iterations);
    println!("{:<22} {:>10}", "steps (whole run)", summary.max_iter);
    println!("{:<22} {:>10.2}", "epochs (whole run)", epochs);
    println!("{:<22} {:>10.2}", "train images/s", summary.run.train_img_s);
    if let Some(top1) = summary.run.last_eval.as_ref().and_then(|(_, e)| match e {
        EvalOutcome::Scored(e) => e.get(TOP1_FIELD),
        EvalOutcome::NothingToScore => None,
    }) {
        println!("{:<22} {:>10.2}", "k-NN top-1 (%, last)", top1);
    }
    println!("weights: {}", summary.run.model_path.display());
}
