//! `vitdet bench coco`: the phases of one end-to-end COCO evaluation (load,
//! evaluate, accumulate, summarize) on the synthetic case of
//! `coco::eval::synthetic_case`, the span the peers' numbers cover
//! (`COCO(gt)`, `loadRes`, `evaluate`, `accumulate`, `summarize`).

use std::path::Path;
use std::time::Instant;

use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate, summarize, IouType, Params};
use coco::results::Results;
use coco::Error;

/// Wall-clock seconds of each phase of one end-to-end evaluation, and its stats.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseTimes {
    /// Reading and parsing both files (in parallel), validating the GT.
    pub load_s: f64,
    /// `evaluate` (loadRes, IoU, matching).
    pub evaluate_s: f64,
    /// `accumulate`.
    pub accumulate_s: f64,
    /// `summarize`.
    pub summarize_s: f64,
    /// All of the above.
    pub total_s: f64,
    /// The 12 stats.
    pub stats: [f64; 12],
}

/// Times load + evaluate + accumulate + summarize of `results` against `gt`,
/// the span the peers' numbers cover (`COCO(gt)`, `loadRes`, `evaluate`,
/// `accumulate`, `summarize`).
///
/// # Errors
/// Any error of [`Dataset::load`], [`Results::load`] or [`evaluate()`].
pub fn time_eval(gt: &Path, results: &Path, iou_type: IouType) -> Result<PhaseTimes, Error> {
    let start = Instant::now();
    let (dataset, results) = rayon::join(|| Dataset::load(gt, None), || Results::load(results));
    let (dataset, _report) = dataset?;
    let results = results?;
    let loaded = Instant::now();
    let grid = evaluate(&dataset, &results, iou_type, &Params::default())?;
    let evaluated = Instant::now();
    let acc = accumulate(&grid);
    let accumulated = Instant::now();
    let summary = summarize(&acc)?;
    let done = Instant::now();
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    Ok(PhaseTimes {
        load_s: secs(start, loaded),
        evaluate_s: secs(loaded, evaluated),
        accumulate_s: secs(evaluated, accumulated),
        summarize_s: secs(accumulated, done),
        total_s: secs(start, done),
        stats: summary.stats,
    })
}

/// Writes `stats.json` (`{"bbox": {"total_s", "stats"}, "segm": {...}}`) next
/// to a case, for `coco/bench/peers.py` to compare against.
///
/// # Errors
/// [`Error::Write`].
pub fn write_stats(dir: &Path, bbox: &PhaseTimes, segm: &PhaseTimes) -> Result<(), Error> {
    let entry = |t: &PhaseTimes| serde_json::json!({"total_s": t.total_s, "stats": t.stats.to_vec()});
    let value = serde_json::json!({"bbox": entry(bbox), "segm": entry(segm)});
    coco::results::write_json_atomic(&dir.join("stats.json"), &value)
}

