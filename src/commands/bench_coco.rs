//! `vitdet bench coco`: end-to-end COCO evaluation time on a deterministic,
//! COCO-val-sized synthetic case (`coco::eval::synthetic_case`). Each timed run
//! parses the GT and results files from disk, evaluates, accumulates and
//! summarizes — the span pycocotools' and the other peers' numbers cover
//! (`coco/bench/peers.py` times them on the same files).
//!
//! Prints one JSON line on stdout; progress goes to stderr.

use std::path::PathBuf;

use bench::coco_eval::{time_eval, write_stats, PhaseTimes};
use coco::eval::synthetic_case::{generate, write_case, CaseSpec};
use coco::eval::IouType;

/// Arguments of `vitdet bench coco`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet bench coco\n  vitdet bench coco --images 500 --runs 1\n  \
    vitdet bench coco --write /tmp/coco-bench && python coco/bench/peers.py /tmp/coco-bench")]
pub struct BenchCocoArgs {
    /// Number of images (COCO val2017 has 5000).
    #[arg(long, default_value_t = CaseSpec::COCO_VAL.images)]
    images: usize,
    /// Timed runs per IoU type; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keep the case (instances.json, results_bbox.json, results_segm.json) and
    /// our stats (stats.json) in this directory, for coco/bench/peers.py.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
}

/// Most images a benchmark case may have: its detections are all held in memory.
const MAX_IMAGES: usize = 1_000_000;

/// Runs the command.
pub fn run(args: BenchCocoArgs) -> anyhow::Result<()> {
    if args.images == 0 || args.runs == 0 {
        return Err(crate::exit::user("--images and --runs must be at least 1"));
    }
    if args.images > MAX_IMAGES {
        return Err(crate::exit::user(format!("--images {} is more than {MAX_IMAGES} (200x COCO val2017)", args.images)));
    }
    let spec = CaseSpec { images: args.images, ..CaseSpec::COCO_VAL };
    let (dir, temporary) = match &args.write {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("vitdet-bench-coco-{}", std::process::id())), true),
    };
    eprintln!("generating {} images ...", spec.images);
    let files = generate(&spec)?;
    let paths = write_case(&files, &dir)?;
    let timed = (|| -> anyhow::Result<(PhaseTimes, PhaseTimes)> {
        let best = |iou_type: IouType, dt: &std::path::Path| -> anyhow::Result<PhaseTimes> {
            let mut best: Option<PhaseTimes> = None;
            for run in 0..args.runs {
                let t = time_eval(&paths.gt, dt, iou_type)?;
                eprintln!("{} run {}: {:.3} s", iou_type.name(), run + 1, t.total_s);
                if best.as_ref().is_none_or(|b| t.total_s < b.total_s) {
                    best = Some(t);
                }
            }
            best.ok_or_else(|| anyhow::anyhow!("no run"))
        };
        Ok((best(IouType::Bbox, &paths.bbox_results)?, best(IouType::Segm, &paths.segm_results)?))
    })();
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (bbox, segm) = timed?;
    if args.write.is_some() {
        write_stats(&dir, &bbox, &segm)?;
    }
    let phases = |t: &PhaseTimes| {
        serde_json::json!({"total_s": t.total_s, "load_s": t.load_s, "evaluate_s": t.evaluate_s,
                           "accumulate_s": t.accumulate_s, "summarize_s": t.summarize_s, "ap": t.stats[0]})
    };
    let line = serde_json::json!({
        "bench": "coco_eval",
        "images": spec.images,
        "gt_annotations": files.n_gt,
        "bbox_detections": spec.images * spec.box_dets_per_image,
        "segm_detections": spec.images * spec.mask_dets_per_image,
        "threads": rayon::current_num_threads(),
        "runs": args.runs,
        "bbox": phases(&bbox),
        "segm": phases(&segm),
    });
    println!("{line}");
    Ok(())
}
