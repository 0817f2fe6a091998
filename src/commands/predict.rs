//! `vitdet predict`: runs a trained detector on image files and writes
//! pictures with the detections drawn, plus the detections as COCO JSON.

use std::path::PathBuf;

use anyhow::Context as _;
use detector::predict::{draw_prediction, predict_files};

/// Arguments of `vitdet predict`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet predict --weights runs/shapes/model.safetensors --image runs/shapes/shapes/val --out predictions\n  \
    vitdet predict --weights model.safetensors --image street.jpg --out out --score 0.3\n\n\
    Writes OUT/<image stem>.png for each image, OUT/results.json (COCO results, bbox + RLE mask)\n\
    and OUT/images.json (the image ids, file names and sizes the results refer to).\n\
    Photos are turned upright by their EXIF orientation first; results and sizes refer to the upright image.")]
pub struct PredictArgs {
    /// A trained detector (vitdet train's OUT/model.safetensors).
    #[arg(long, value_name = "MODEL.safetensors")]
    weights: PathBuf,
    /// An image file, or a folder of images (.jpg, .jpeg, .png, .bmp, .ppm, .pgm; any case).
    #[arg(long, value_name = "FILE_OR_DIR")]
    image: PathBuf,
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Keep detections scoring at least this (the model itself keeps > 0.05).
    #[arg(long, default_value_t = 0.5)]
    score: f64,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the command.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    super::check_output_dir("--out", &args.out)?;
    if !(0.0..=1.0).contains(&args.score) {
        return Err(crate::exit::user(format!("--score {} must be in [0, 1]", args.score)));
    }
    let device = engine::device::parse_device(&args.device)?;
    let files = vision::list::list_images(&args.image, false)?;
    let detector = detector::weights::load(&args.weights, &device)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let skipped = vision::loader::LoaderStats::default();
    let predictions = predict_files(&detector, &files, args.score, &device, &skipped)?;
    if let Some(summary) = skipped.summary() {
        eprintln!("warning: {summary}");
    }
    if predictions.is_empty() {
        return Err(crate::exit::user(format!("--image {}: no image could be predicted", args.image.display())));
    }
    let mut images = Vec::new();
    let mut results = Vec::new();
    for (i, p) in predictions.iter().enumerate() {
        let stem = p.path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let png = args.out.join(format!("{stem}.png"));
        draw_prediction(&detector, p, &png)?;
        images.push(serde_json::json!({"id": i, "file_name": p.path.display().to_string(), "width": p.width, "height": p.height}));
        println!("{}: {} detection(s) -> {}", p.path.display(), p.results.len(), png.display());
        results.extend(p.results.iter().cloned());
    }
    coco::results::write_results(&args.out.join("results.json"), &results)?;
    coco::results::write_json_atomic(&args.out.join("images.json"), &images)?;
    println!("results: {}", args.out.join("results.json").display());
    Ok(())
}
