//! End-to-end: `vitdet eval coco` prints pycocotools' 12-line summary, writes
//! the JSON report and plots, and exits 2 with one line on bad input.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};

mod common;
use common::{assert_user_error, path, scratch, vitdet};

/// Case 0 of coco/tests/fixtures/eval_cases.json written as gt.json / dt_bbox.json /
/// dt_segm.json, with pycocotools' printed summaries.
fn case0(dir: &Path) -> (PathBuf, PathBuf, PathBuf, String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("coco/tests/fixtures/eval_cases.json");
    let fixture: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let case = &fixture["cases"][0];
    let write = |name: &str, value: &serde_json::Value| {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec(value).unwrap()).unwrap();
        p
    };
    let text = |kind: &str| case["expected"][kind]["summary"].as_str().unwrap().to_owned();
    (
        write("gt.json", &case["gt"]),
        write("dt_bbox.json", &case["bbox_results"]),
        write("dt_segm.json", &case["segm_results"]),
        text("bbox"),
        text("segm"),
    )
}

#[test]
fn prints_pycocotools_summary_and_writes_json_and_plots() {
    let dir = scratch("eval_coco_ok");
    let (gt, dt_bbox, dt_segm, bbox_text, segm_text) = case0(&dir);
    let out = vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&dt_bbox)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout == bbox_text, "--- ours\n{stdout}--- pycocotools\n{bbox_text}");
    // Case 0 has a GT with id 0: the loader warns on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("id 0"), "{}", String::from_utf8_lossy(&out.stderr));

    let json = dir.join("metrics.json");
    let plots = dir.join("plots");
    let out = vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&dt_segm), "--iou-type", "segm", "--json", path(&json), "--plots", path(&plots), "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), segm_text);
    assert!(out.stderr.is_empty(), "--quiet: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let stats = report["segm"]["stats"].as_array().unwrap();
    assert_eq!(stats.len(), 12);
    assert!(report.get("bbox").is_none());
    let per_category = report["segm"]["per_category"].as_object().unwrap();
    assert_eq!(per_category.len(), 4, "{per_category:?}");
    assert!(per_category["cat3"]["ap"].is_null(), "category without GT has no AP");
    for f in ["segm_pr.png", "segm_per_category_ap.png"] {
        assert!(plots.join(f).is_file(), "{f}");
    }
}

#[test]
fn both_iou_types_print_two_labelled_summaries() {
    let dir = scratch("eval_coco_both");
    let (gt, _, dt_segm, _, segm_text) = case0(&dir);
    let out = vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&dt_segm), "--iou-type", "both", "--per-category"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("IoU metric: bbox\n") && stdout.contains("IoU metric: segm\n"), "{stdout}");
    assert!(stdout.contains(&segm_text), "{stdout}");
    assert!(stdout.contains("category      AP    AP50    AP75"), "{stdout}");
}

#[test]
fn bad_inputs_exit_two_with_one_line() {
    let dir = scratch("eval_coco_bad");
    let (gt, dt_bbox, _, _, _) = case0(&dir);
    let missing = dir.join("missing.json");
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&missing)]), "missing.json");

    let empty = dir.join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&empty)]), "no detections");

    let unknown = dir.join("unknown.json");
    std::fs::write(&unknown, r#"[{"image_id": 999999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]"#).unwrap();
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&unknown)]), "image 999999");

    let wrong_type = dir.join("wrong_type.json");
    std::fs::write(&wrong_type, "[{\"image_id\": 107, \"category_id\": 1,\n \"bbox\": \"0 0 1 1\", \"score\": 0.5}]").unwrap();
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&wrong_type)]), "wrong_type.json:2:");

    assert_user_error(
        &vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&dt_bbox), "--iou-type", "segm"]),
        "segm evaluation needs masks",
    );

    let malformed_gt = dir.join("malformed_gt.json");
    std::fs::write(&malformed_gt, "{\"images\": [}").unwrap();
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&malformed_gt), "--dt", path(&dt_bbox)]), "malformed_gt.json:1:");

    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt)]), "--dt");

    // A results file given as the ground truth.
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&dt_bbox), "--dt", path(&dt_bbox)]), "a JSON list, not a COCO instances file");
    // Outputs that cannot be written are refused before the evaluation.
    let nowhere = dir.join("no/such/folder/metrics.json");
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&dt_bbox), "--json", path(&nowhere)]), "does not exist");
    assert_user_error(&vitdet(&["eval", "coco", "--gt", path(&gt), "--dt", path(&dt_bbox), "--plots", path(&gt)]), "expected a folder");
}

#[test]
fn help_has_an_example() {
    let out = vitdet(&["eval", "coco", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vitdet eval coco --gt instances_val2017.json --dt results.json"), "{text}");
    let out = vitdet(&["bench", "coco", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("vitdet bench coco --write"));
}

#[test]
fn bench_prints_one_json_line_and_writes_the_case() {
    let dir = scratch("bench_coco");
    let out = vitdet(&["bench", "coco", "--images", "30", "--runs", "1", "--write", path(&dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["images"], 30);
    assert_eq!(line["bbox_detections"], 3000);
    assert!(line["bbox"]["total_s"].as_f64().unwrap() > 0.0);
    for f in ["instances.json", "results_bbox.json", "results_segm.json", "stats.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
}
