//! Subcommands: one module each, each with a clap `Args` struct and a `run`.

mod analyze;
mod bench_cka;
mod bench_coco;
mod bench_convs;
mod bench_data;
mod bench_distill;
mod bench_finetune;
mod bench_mae;
mod bench_mocov3;
mod bench_step;
mod bench_vit;
mod bench_vitdet;
mod classify;
mod data_shapes;
mod demo;
mod detection;
mod eval_cls;
mod eval_coco;
mod features;
mod finetune;
mod import;
mod predict;
mod pretrain;
mod pretrain_visualize;
mod selftest;
mod train;
mod weights;

use clap::{Parser, Subcommand};

/// Checks, before any work, that `path` (given as `flag`) can be written as
/// a file: its folder exists and it is not itself a folder.
pub(crate) fn check_output_file(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if path.is_dir() {
        return Err(crate::exit::user(format!("{flag} {}: is a folder, expected a file name", path.display())));
    }
    if !dir.is_dir() {
        return Err(crate::exit::user(format!("{flag} {}: the folder {} does not exist", path.display(), dir.display())));
    }
    Ok(())
}

/// Checks, before any work, that `path` (given as `flag`) is a folder or can
/// be created as one (it is created when the results are written).
pub(crate) fn check_output_dir(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    match path.ancestors().find(|a| a.exists()) {
        Some(existing) if !existing.is_dir() => Err(crate::exit::user(format!(
            "{flag} {}: {} is a file, expected a folder (created if missing)",
            path.display(),
            existing.display()
        ))),
        _ => Ok(()),
    }
}

/// The recipe a training command starts from: `--config` when given; on
/// `--resume` without it, the run's own `OUT/config.toml` (a resumed run
/// follows the run, not the command's defaults); else `default`.
pub(crate) fn recipe_source(config: Option<&str>, out: &std::path::Path, resume: bool, default: &str) -> String {
    let recorded = out.join(engine::run_dir::CONFIG_FILE);
    match config {
        Some(c) => c.to_string(),
        None if resume && recorded.is_file() => recorded.to_string_lossy().into_owned(),
        None => default.to_string(),
    }
}

/// `--set KEY=VALUE`, shared by the training commands (`train`, `finetune`,
/// `pretrain`): recipe keys overridden after the recipe and its bases
/// ([`engine::recipe_file`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RecipeOverrides {
    /// Set one recipe key (repeatable; applied in order, after the recipe and its bases): a dotted
    /// key and a TOML value, a bare word read as a string. E.g. --set train.max_iter=200
    /// --set train.lsj_scale=[0.5,1.5] --set train.backbone=mae_tiny. Recorded in OUT/config.toml.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Applies `--epochs` / `--max-iter` (at most one is given) to a recipe
/// that counts epochs and may hold a step count: `--epochs` runs by epochs
/// (dropping a recorded step count), `--max-iter` sets the steps. Both end
/// up in `OUT/config.toml`, so a resumed run keeps its length.
pub(crate) fn set_run_length(epochs: &mut usize, max_iter: &mut Option<usize>, epochs_flag: Option<usize>, max_iter_flag: Option<usize>) {
    if let Some(n) = epochs_flag {
        *epochs = n;
        *max_iter = None;
    }
    if max_iter_flag.is_some() {
        *max_iter = max_iter_flag;
    }
}

/// Sets the process-wide precision from a training recipe's
/// `train.precision`, before the model is built (evaluation and prediction
/// leave the default, f32), and says so on stderr when it is bf16.
pub(crate) fn set_training_precision(precision: engine::ops::Precision) {
    engine::ops::set_precision(precision);
    if precision == engine::ops::Precision::Bf16 {
        eprintln!("precision: bf16 products (linear, attention, convolutions) with f32 weights, norms, softmax and losses");
    }
}

/// Parses a `--max-iter` value: a number of optimizer steps from 1 to
/// [`engine::limits::MAX_STEPS`].
pub(crate) fn parse_steps(text: &str) -> Result<usize, String> {
    let max = engine::limits::MAX_STEPS;
    match text.parse::<u128>() {
        Ok(n) if n >= 1 && n <= max as u128 => Ok(n as usize),
        _ => Err(format!("expected a number of steps from 1 to {max}")),
    }
}

/// Lightweight self-supervised ViTs for on-device vision.
#[derive(Parser, Debug)]
#[command(name = "vitdet", version, about, propagate_version = true)]
#[command(after_help = "Examples:\n  vitdet bench vit --batch 8 --iters 3\n  vitdet import --from mae_tiny_400e.pth.tar --out mae_tiny.safetensors\n  vitdet eval coco --gt instances_val.json --dt results.json\n  vitdet demo\n  vitdet train --out runs/shapes\n  vitdet selftest --device cuda")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train ViTDet (Mask R-CNN on a plain ViT) on COCO-format data or the built-in shapes.
    Train(train::TrainArgs),
    /// Self-supervised pre-training (MAE) on a folder of images or the built-in shapes; `visualize` draws reconstructions.
    Pretrain(pretrain::PretrainArgs),
    /// Fine-tune, transfer or linearly probe a ViT classifier (published datasets or the built-in shapes).
    Finetune(finetune::FinetuneArgs),
    /// Run a trained detector on image files: pictures and COCO JSON.
    Predict(predict::PredictArgs),
    /// Generate the shapes dataset, train on it for a few CPU minutes, evaluate, draw predictions.
    Demo(demo::DemoArgs),
    /// Convert a PyTorch or safetensors checkpoint into a vitdet safetensors file.
    Import(import::ImportArgs),
    /// Run the backbone and save every block's tokens (the analysis interface).
    Features(features::FeaturesArgs),
    /// Classify one image with a checkpoint that has a classifier head.
    Classify(classify::ClassifyArgs),
    /// The paper's analyses: `cka` (layer similarity), `attention` (distance, entropy), `fourier` (Δ log amplitude), with plots.
    #[command(subcommand)]
    Analyze(analyze::AnalyzeCommand),
    /// Check a device: every model's tiny forward and backward compared with the CPU (`--device cuda`).
    Selftest(selftest::SelftestArgs),
    /// Measure speed: `vit` (backbone), `vitdet`, `convs` (detector convolutions), `coco` (evaluator), `data`, `finetune` (classification), `mae`, `mocov3`, `distill` (pre-training).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Evaluate: `coco` (bbox / segm AP, identical to pycocotools), `cls` (classification accuracy).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Generate datasets: `shapes` (the built-in synthetic COCO dataset).
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// ViT-Tiny inference and training-step images/s at 224 px.
    Vit(bench_vit::BenchVitArgs),
    /// ViTDet (Mask R-CNN) training-step and inference images/s for a recipe's model.
    Vitdet(bench_vitdet::BenchVitDetArgs),
    /// ViTDet convolutions (by default the pyramid's: 256 channels, 64x64..8x8), max pool and RoIAlign, forward and backward, in ms.
    Convs(bench_convs::BenchConvsArgs),
    /// The CKA estimator alone on features from a file (beside bench/cka_numpy.py).
    Cka(bench_cka::BenchCkaArgs),
    /// COCO evaluation time on a COCO-val-sized synthetic case.
    Coco(bench_coco::BenchCocoArgs),
    /// Classification training data: decoded-and-augmented images/s at 224 px from ImageNet-sized JPEGs.
    Data(bench_data::BenchDataArgs),
    /// One fine-tuning step (forward, backward, AdamW) of the ViT-Tiny classifier: images/s and peak memory.
    Finetune(bench_finetune::BenchFinetuneArgs),
    /// Distilled-MAE training-step images/s (MAE-Tiny student, MAE ViT-Base teacher) at 224 px.
    Distill(bench_distill::BenchDistillArgs),
    /// MAE pre-training step images/s and peak memory (MAE-Tiny, mask 0.75, 224 px).
    Mae(bench_mae::BenchMaeArgs),
    /// MoCo-v3 pre-training step images/s and peak memory (ViT-Tiny, 224 px).
    Mocov3(bench_mocov3::BenchMocoV3Args),
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    /// COCO bbox / segm evaluation of a results file against ground truth.
    Coco(eval_coco::EvalCocoArgs),
    /// Classification accuracy (top-1, top-5, per class) and the confusion matrix of a trained classifier.
    Cls(eval_cls::EvalClsArgs),
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Write the synthetic shapes dataset in COCO layout.
    Shapes(data_shapes::DataShapesArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // A typo in VITDET_KERNELS is a one-line error before any op runs.
    engine::ops::set_kernels(engine::ops::kernels_from_env()?);
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Import(args) => import::run(args),
        Command::Features(args) => features::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Selftest(args) => selftest::run(args),
        Command::Bench(BenchCommand::Vit(args)) => bench_vit::run(args),
        Command::Bench(BenchCommand::Vitdet(args)) => bench_vitdet::run(args),
        Command::Bench(BenchCommand::Convs(args)) => bench_convs::run(args),
        Command::Analyze(command) => analyze::run(command),
        Command::Bench(BenchCommand::Cka(args)) => bench_cka::run(args),
        Command::Bench(BenchCommand::Coco(args)) => bench_coco::run(args),
        Command::Bench(BenchCommand::Data(args)) => bench_data::run(args),
        Command::Bench(BenchCommand::Finetune(args)) => bench_finetune::run(args),
        Command::Bench(BenchCommand::Distill(args)) => bench_distill::run(args),
        Command::Bench(BenchCommand::Mae(args)) => bench_mae::run(args),
        Command::Bench(BenchCommand::Mocov3(args)) => bench_mocov3::run(args),
        Command::Eval(EvalCommand::Coco(args)) => eval_coco::run(args),
        Command::Eval(EvalCommand::Cls(args)) => eval_cls::run(args),
        Command::Data(DataCommand::Shapes(args)) => data_shapes::run(args),
    }
}
