//! End-to-end COCO evaluation time on the COCO-val-sized case of
//! `coco::eval::synthetic_case` (5000 images, ~37k GT, 500k box / 100k mask
//! detections): isolates the evaluator (parse both files, evaluate, accumulate,
//! summarize) from the CLI. Prints one JSON line per IoU type and run.
//!
//! `cargo bench -p bench --bench eval_coco [-- IMAGES [RUNS [bbox|segm]]]`; the case is
//! written under the system temp directory.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bench::coco_eval::{time_eval, write_stats, PhaseTimes};
use coco::eval::synthetic_case::{generate, write_case, CasePaths, CaseSpec};
use coco::eval::IouType;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let images = args.first().map_or(CaseSpec::COCO_VAL.images, |a| a.parse().expect("IMAGES"));
    let runs: usize = args.get(1).map_or(3, |a| a.parse().expect("RUNS"));
    let spec = CaseSpec { images, ..CaseSpec::COCO_VAL };
    let dir = std::env::temp_dir().join(format!("coco-bench-{images}"));
    // The case is deterministic: reuse it if an earlier run wrote it.
    let paths = match CasePaths::in_dir(&dir) {
        Some(paths) => paths,
        None => write_case(&generate(&spec).expect("generate"), &dir).expect("write"),
    };
    let types = match args.get(2).map(String::as_str) {
        Some("bbox") => vec![IouType::Bbox],
        Some("segm") => vec![IouType::Segm],
        _ => vec![IouType::Bbox, IouType::Segm],
    };
    let mut best = Vec::new();
    for iou_type in types {
        let dt = if iou_type == IouType::Bbox { &paths.bbox_results } else { &paths.segm_results };
        let mut fastest: Option<PhaseTimes> = None;
        for _ in 0..runs {
            let t = time_eval(&paths.gt, dt, iou_type).expect("eval");
            println!(
                "{{\"iou_type\":\"{}\",\"load_s\":{:.4},\"evaluate_s\":{:.4},\"accumulate_s\":{:.4},\"summarize_s\":{:.5},\"total_s\":{:.4},\"ap\":{}}}",
                iou_type.name(), t.load_s, t.evaluate_s, t.accumulate_s, t.summarize_s, t.total_s, t.stats[0]
            );
            if fastest.as_ref().is_none_or(|f| t.total_s < f.total_s) {
                fastest = Some(t);
            }
        }
        best.extend(fastest);
    }
    if let [bbox, segm] = &best[..] {
        write_stats(&dir, bbox, segm).expect("stats.json");
    }
}
