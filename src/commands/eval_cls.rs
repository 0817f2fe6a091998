//! `vitdet eval cls`: top-1, top-5 and per-class accuracy of a trained
//! classifier on a dataset's evaluation split, and its confusion matrix as a PNG.

use std::path::PathBuf;
use std::sync::Arc;

use classification::data::eval_transform_of;
use classification::evaluate::evaluate;
use vision::datasets::{self, ClassificationSet, DatasetKind, Split};

/// Arguments of `vitdet eval cls`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet eval cls --weights runs/shapes_cls/model_best.safetensors --data runs/shapes_cls/data\n  \
    vitdet eval cls --weights runs/flowers/model.safetensors --dataset flowers --data /data/flowers --json flowers.json\n\n\
    The evaluation split is each dataset's test split (val/ for folders). The transform is the one\n\
    stored with the model (timm's: resize to size / crop_pct, centre crop).")]
pub struct EvalClsArgs {
    /// A classifier written by `vitdet finetune` (OUT/model.safetensors or OUT/model_best.safetensors).
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Dataset layout of --data: imagenet, folder, cifar10, cifar100, flowers, pets, aircraft, cars, inat18.
    #[arg(long, value_name = "NAME", default_value = "folder")]
    dataset: String,
    /// The dataset's folder, as published.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Also write the report (top-1, top-5, per-class accuracy, confusion matrix) as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where to draw the confusion matrix.
    #[arg(long, value_name = "PNG", default_value = "confusion_matrix.png")]
    plot: PathBuf,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the command.
pub fn run(args: EvalClsArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        super::check_output_file("--json", path)?;
    }
    super::check_output_file("--plot", &args.plot)?;
    if args.batch == 0 {
        return Err(crate::exit::user("--batch must be at least 1"));
    }
    let device = engine::device::parse_device(&args.device)?;
    let trained = classification::weights::load(&args.weights, &device)?;
    let images = datasets::open(args.dataset.parse::<DatasetKind>()?, &args.data, Split::Val)?;
    if images.classes != trained.meta.classes {
        return Err(crate::exit::user(format!(
            "{}: the model's {} classes are not the dataset's {} classes (in order); evaluate on the data it was trained on",
            args.data.display(),
            trained.meta.classes.len(),
            images.classes.len()
        )));
    }
    let eval = eval_transform_of(trained.spec.vit.img_size, trained.meta.crop_pct, trained.meta.eval_interpolation)?;
    let set = Arc::new(ClassificationSet::new(images, None, eval));
    let result = evaluate(&trained.model, &set, args.batch, &device)?;
    if let Some(skipped) = &result.skipped {
        eprintln!("warning: {skipped}");
    }
    let r = &result.report;
    println!("images {}  top-1 {:.2}%  top-5 {:.2}%  mean per-class {:.2}%", r.images, r.top1, r.top5, r.mean_per_class);
    let names = &trained.meta.classes;
    if names.len() <= 50 {
        for (name, acc) in names.iter().zip(&r.per_class) {
            match acc {
                Some(a) => println!("  {name:<30} {a:>6.2}%"),
                None => println!("  {name:<30}      -"),
            }
        }
    }
    let name = args.weights.file_name().map_or_else(|| args.weights.display().to_string(), |n| n.to_string_lossy().into_owned());
    let title = format!("{name}: top-1 {:.2}% on {} images", r.top1, r.images);
    classification::plots::plot_confusion(r, names, &title, &args.plot)?;
    println!("confusion matrix: {}", args.plot.display());
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "weights": args.weights.display().to_string(), "classes": names, "report": r });
        engine::checkpoint::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        println!("report: {}", path.display());
    }
    Ok(())
}
