//! `vitdet eval coco`: COCO bbox / segm evaluation of a results file, with
//! pycocotools' numbers and printout.
//!
//! Stdout carries the results (the 12-line summary per IoU type, and the
//! per-category table with `--per-category`); stderr carries warnings about the
//! inputs. Bad input exits with code 2 and one `error:` line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate, per_category_ap, summarize, Accumulated, CategoryAp, IouType, Params, Summary};
use coco::results::{write_json_atomic, Results};
use coco::Split;
use detector::data::{DataLayout, SplitFiles};
use detector::evaluate::{predict_split, results_for, EvalSplit};

/// Which IoU types to evaluate.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IouTypeArg {
    /// Boxes.
    Bbox,
    /// Masks (the results need `segmentation`).
    Segm,
    /// Boxes, then masks.
    Both,
}

impl IouTypeArg {
    fn types(self) -> Vec<IouType> {
        match self {
            IouTypeArg::Bbox => vec![IouType::Bbox],
            IouTypeArg::Segm => vec![IouType::Segm],
            IouTypeArg::Both => vec![IouType::Bbox, IouType::Segm],
        }
    }
}

/// Arguments of `vitdet eval coco`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet eval coco --gt instances_val2017.json --dt results.json\n  \
    vitdet eval coco --gt instances_val2017.json --dt results.json --iou-type both --json metrics.json --plots plots/\n  \
    vitdet eval coco --weights runs/shapes/model.safetensors --data runs/shapes/shapes --out results.json\n\n\
    With --weights the model runs on the validation split first (bbox and segm are both scored);\n\
    --out then holds its detections, each with bbox and segmentation as detectron2 writes them\n\
    (score segm from it with the boxes removed, as detectron2's evaluator does).")]
pub struct EvalCocoArgs {
    /// Ground truth: a COCO instances file.
    #[arg(long, value_name = "GT.json", required_unless_present = "weights", requires = "dt", conflicts_with = "weights")]
    gt: Option<PathBuf>,
    /// Detections: a COCO results file (list of {image_id, category_id, bbox, score[, segmentation]}).
    #[arg(long, value_name = "RESULTS.json", requires = "gt")]
    dt: Option<PathBuf>,
    /// A trained detector (vitdet train's OUT/model.safetensors): run it, then evaluate.
    #[arg(long, value_name = "MODEL.safetensors")]
    weights: Option<PathBuf>,
    /// With --weights: dataset folder whose validation split is evaluated (COCO 2017 or shapes layout).
    #[arg(long, value_name = "DIR", requires = "weights")]
    data: Option<PathBuf>,
    /// With --weights: validation annotations (instead of --data).
    #[arg(long, value_name = "JSON", requires_all = ["weights", "val_images"])]
    val_json: Option<PathBuf>,
    /// With --weights: validation images folder.
    #[arg(long, value_name = "DIR", requires_all = ["weights", "val_json"])]
    val_images: Option<PathBuf>,
    /// With --weights: write the detections here as a COCO results file.
    #[arg(long, value_name = "RESULTS.json", requires = "weights")]
    out: Option<PathBuf>,
    /// With --weights: device (cpu, cuda, cuda:N).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// With --weights: images per forward pass.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// What the IoU is computed on (with --weights: both).
    #[arg(long, value_enum, default_value = "bbox")]
    iou_type: IouTypeArg,
    /// Also write {"bbox": {"stats": [12 numbers], "per_category": {...}}, "segm": ...} here.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Write PR-curve and per-category AP plots (PNG) into this directory.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Print the per-category AP table after the summary.
    #[arg(long)]
    per_category: bool,
    /// Do not print warnings about the inputs on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// One IoU type's outcome.
struct Evaluated {
    iou_type: IouType,
    summary: Summary,
    per_category: Vec<CategoryAp>,
    accumulated: Accumulated,
}

/// Runs the command.
pub fn run(args: EvalCocoArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        super::check_output_file("--json", path)?;
    }
    if let Some(path) = &args.out {
        super::check_output_file("--out", path)?;
    }
    if let Some(dir) = &args.plots {
        super::check_output_dir("--plots", dir)?;
    }
    if args.weights.is_some() {
        return run_model(&args);
    }
    let (Some(gt_path), Some(dt_path)) = (&args.gt, &args.dt) else {
        return Err(crate::exit::user("pass --gt and --dt, or --weights with --data"));
    };
    let (gt, results) = rayon::join(|| Dataset::load(gt_path, None), || Results::load(dt_path));
    let (gt, report) = gt?;
    let results = results?;
    if !args.quiet {
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
    }
    let inputs: Vec<(IouType, &Results)> = args.iou_type.types().into_iter().map(|t| (t, &results)).collect();
    report_all(&args, &gt, &inputs)
}

/// `--weights` mode: runs the detector over the validation split, then
/// scores bbox and segm.
fn run_model(args: &EvalCocoArgs) -> anyhow::Result<()> {
    let weights = args.weights.as_deref().context("--weights")?;
    let device = engine::device::parse_device(&args.device)?;
    if args.batch == 0 {
        return Err(crate::exit::user("--batch must be at least 1"));
    }
    let files = match (&args.val_json, &args.val_images, &args.data) {
        (Some(json), Some(images), _) => SplitFiles::explicit(json, images)?,
        (_, _, Some(dir)) => DataLayout::discover(dir)?.split(Split::Val)?.clone(),
        _ => return Err(crate::exit::user("--weights needs the data to run on: --data DIR or --val-json/--val-images")),
    };
    let trained = detector::weights::load(weights, &device)?;
    let split = EvalSplit::load(&files)?;
    if !args.quiet {
        for line in split.data.report().lines() {
            eprintln!("warning: {}: {line}", files.annotations.display());
        }
    }
    let predictions = predict_split(&trained.model, &split, trained.config.input_size(), args.batch, &device)?;
    if let Some(skipped) = &predictions.skipped_images {
        eprintln!("warning: {}: {skipped}", files.images.display());
    }
    let detections = predictions.results;
    eprintln!("{} detections on {} images ({:.2} images/s)", detections.len(), split.data.len(), predictions.img_s);
    if let Some(out) = &args.out {
        coco::results::write_results(out, &detections)?;
        eprintln!("results: {}", out.display());
    }
    let bbox = results_for(IouType::Bbox, &detections);
    let segm = results_for(IouType::Segm, &detections);
    report_all(args, &split.gt, &[(IouType::Bbox, &bbox), (IouType::Segm, &segm)])
}

/// Evaluates each (IoU type, results) pair and prints / writes the outcome.
fn report_all(args: &EvalCocoArgs, gt: &Dataset, inputs: &[(IouType, &Results)]) -> anyhow::Result<()> {
    let params = Params::default();
    let mut done = Vec::new();
    for &(iou_type, results) in inputs {
        let grid = evaluate(gt, results, iou_type, &params)?;
        if let (count, Some(first)) = grid.dropped_detections {
            if !args.quiet && iou_type == inputs[0].0 {
                eprintln!(
                    "warning: {}: {count} detection(s) of categories not in the ground truth were ignored \
                     (as pycocotools does), first: entry {first}",
                    results.path.display()
                );
            }
        }
        let accumulated = accumulate(&grid);
        let summary = summarize(&accumulated)?;
        let per_category = per_category_ap(&accumulated);
        done.push(Evaluated { iou_type, summary, per_category, accumulated });
    }
    let names = category_names(gt, &done);
    let mut out = String::new();
    for e in &done {
        if done.len() > 1 {
            writeln!(out, "IoU metric: {}", e.iou_type.name())?;
        }
        write!(out, "{}", e.summary)?;
        if args.per_category {
            write_per_category(&mut out, &e.per_category, &names)?;
        }
    }
    print_stdout(&out)?;
    if let Some(dir) = &args.plots {
        write_plots(dir, &done, &names)?;
    }
    if let Some(path) = &args.json {
        let value = json_report(&done, &names);
        write_json_atomic(path, &value)?;
    }
    Ok(())
}

/// The two 12-line summaries of a detector evaluation, labelled.
pub fn format_report(report: &detector::evaluate::EvalReport) -> String {
    format!("IoU metric: bbox\n{}IoU metric: segm\n{}", report.bbox.summary, report.segm.summary)
}

/// Writes to stdout, surfacing a closed pipe as an io error (exit 0 upstream).
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Category names in the K order of the tables (ids are sorted).
fn category_names(gt: &Dataset, done: &[Evaluated]) -> Vec<String> {
    let Some(first) = done.first() else { return Vec::new() };
    first
        .accumulated
        .category_ids
        .iter()
        .map(|id| gt.category(*id).map_or_else(|| id.to_string(), |c| c.name.clone()))
        .collect()
}

/// The per-category table: name, AP, AP50, AP75 ("nan" where undefined).
fn write_per_category(out: &mut String, aps: &[CategoryAp], names: &[String]) -> std::fmt::Result {
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(8).max(8);
    let cell = |v: Option<f64>| v.map_or_else(|| "   nan".to_owned(), |v| format!("{:6.3}", v));
    writeln!(out, "{:<width$}  {:>6}  {:>6}  {:>6}", "category", "AP", "AP50", "AP75")?;
    for (name, ap) in names.iter().zip(aps) {
        writeln!(out, "{name:<width$}  {}  {}  {}", cell(ap.ap), cell(ap.ap50), cell(ap.ap75))?;
    }
    Ok(())
}

/// `{"bbox": {"stats": [...], "per_category": {name: {"id", "ap", "ap50", "ap75"}}}, ...}`.
/// Duplicate category names get their id appended to stay distinct keys.
fn json_report(done: &[Evaluated], names: &[String]) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    for e in done {
        let mut per_category = serde_json::Map::new();
        for (name, ap) in names.iter().zip(&e.per_category) {
            let key = if per_category.contains_key(name) { format!("{name} ({})", ap.category_id) } else { name.clone() };
            per_category.insert(
                key,
                serde_json::json!({"id": ap.category_id.0, "ap": ap.ap, "ap50": ap.ap50, "ap75": ap.ap75}),
            );
        }
        root.insert(
            e.iou_type.name().to_owned(),
            serde_json::json!({"stats": e.summary.stats.to_vec(), "per_category": per_category}),
        );
    }
    serde_json::Value::Object(root)
}

/// `DIR/{bbox,segm}_pr.png` and `DIR/{bbox,segm}_per_category_ap.png`.
fn write_plots(dir: &Path, done: &[Evaluated], names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for e in done {
        let kind = e.iou_type.name();
        coco::plots::plot_pr_curves(&e.accumulated, &format!("{kind}: precision-recall"), &dir.join(format!("{kind}_pr.png")))?;
        coco::plots::plot_per_category_ap(
            &e.per_category,
            names,
            &format!("{kind}: AP per category"),
            &dir.join(format!("{kind}_per_category_ap.png")),
        )?;
    }
    Ok(())
}
