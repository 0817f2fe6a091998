//! End-to-end equality with pycocotools' COCOeval on randomized cases written by
//! `fixtures/make_eval_cases.py` (see its header for what they cover): all 12
//! stats and sampled precision / recall entries, for bbox and segm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate, summarize, Accumulated, IouType, Params};
use coco::results::Results;
use coco::types::{DetectionResult, InstancesFile};
use serde::Deserialize;

/// pycocotools computes in f64 with the same operation order; the only slack
/// allowed is for summation order, far below this.
const TOLERANCE: f64 = 1e-12;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    /// GT files that break COCO's rules (repeated ids, undeclared references).
    malformed_cases: Vec<Case>,
    empty_results_cases: Vec<EmptyCase>,
}

/// A model that detected nothing, scored on a case's GT.
#[derive(Deserialize)]
struct EmptyCase {
    case: String,
    /// The GT cut to annotations of area in (32², 96²].
    medium_only: bool,
    expected: EmptyExpected,
}

#[derive(Deserialize)]
struct EmptyExpected {
    bbox: EmptyAnswers,
    segm: EmptyAnswers,
}

/// Floats are IEEE-754 bit patterns.
#[derive(Deserialize)]
struct EmptyAnswers {
    stats: Vec<u64>,
    summary: String,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    gt: InstancesFile,
    bbox_results: Vec<DetectionResult>,
    segm_results: Vec<DetectionResult>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    bbox: Answers,
    segm: Outcome,
}

/// pycocotools' answers, or the exception it raised.
#[derive(Deserialize)]
#[serde(untagged)]
enum Outcome {
    Answers(Answers),
    Failed { error: String },
}

/// Floats are IEEE-754 bit patterns.
#[derive(Deserialize)]
struct Answers {
    stats: Vec<u64>,
    summary: String,
    precision: Vec<[u64; 6]>,
    recall: Vec<[u64; 5]>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval_cases.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn run(case: &Case, iou_type: IouType) -> (Accumulated, [f64; 12]) {
    try_run(case, iou_type).unwrap()
}

fn try_run(case: &Case, iou_type: IouType) -> Result<(Accumulated, [f64; 12]), coco::Error> {
    let (gt, _) = Dataset::from_instances(case.gt.clone(), Path::new("gt.json"), None).unwrap();
    let detections = match iou_type {
        IouType::Bbox => case.bbox_results.clone(),
        IouType::Segm => case.segm_results.clone(),
    };
    let results = Results { path: "dt.json".into(), detections };
    let grid = evaluate(&gt, &results, iou_type, &Params::default())?;
    let acc = accumulate(&grid);
    let summary = summarize(&acc).unwrap();
    Ok((acc, summary.stats))
}

/// pycocotools' answers for `case` and `iou_type`, if it gave any.
fn answers(case: &Case, iou_type: IouType) -> Option<&Answers> {
    match iou_type {
        IouType::Bbox => Some(&case.expected.bbox),
        IouType::Segm => match &case.expected.segm {
            Outcome::Answers(a) => Some(a),
            Outcome::Failed { .. } => None,
        },
    }
}

/// Every case, the well-formed and the malformed ones.
fn all_cases() -> Vec<Case> {
    let fixture = fixture();
    fixture.cases.into_iter().chain(fixture.malformed_cases).collect()
}

fn check(iou_type: IouType) {
    let mut failures = Vec::new();
    for case in all_cases() {
        let Some(answers) = answers(&case, iou_type) else {
            // pycocotools raised: so must we, with a message naming the cause.
            let err = try_run(&case, iou_type).err();
            if !err.as_ref().is_some_and(|e| e.to_string().contains("does not declare")) {
                let why = match &case.expected.segm {
                    Outcome::Failed { error } => error.as_str(),
                    Outcome::Answers(_) => "",
                };
                failures.push(format!("{} {}: pycocotools fails ({why}), we gave {:?}", case.name, iou_type.name(), err.map(|e| e.to_string())));
            }
            continue;
        };
        let (acc, stats) = run(&case, iou_type);
        for (i, (&got, &want)) in stats.iter().zip(&answers.stats).enumerate() {
            let want = f64::from_bits(want);
            if (got - want).abs() > TOLERANCE {
                failures.push(format!("{} {} stats[{i}]: got {got:.17}, pycocotools {want:.17}", case.name, iou_type.name()));
            }
        }
        for &[t, r, k, a, m, want] in &answers.precision {
            let got = acc.precision[acc.precision_index(t as usize, r as usize, k as usize, a as usize, m as usize)];
            let want = f64::from_bits(want);
            if (got - want).abs() > TOLERANCE {
                failures.push(format!("{} {} precision[{t},{r},{k},{a},{m}]: got {got}, pycocotools {want}", case.name, iou_type.name()));
            }
        }
        for &[t, k, a, m, want] in &answers.recall {
            let got = acc.recall[acc.recall_index(t as usize, k as usize, a as usize, m as usize)];
            let want = f64::from_bits(want);
            if (got - want).abs() > TOLERANCE {
                failures.push(format!("{} {} recall[{t},{k},{a},{m}]: got {got}, pycocotools {want}", case.name, iou_type.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn bbox_stats_and_tables_equal_pycocotools() {
    check(IouType::Bbox);
}

#[test]
fn segm_stats_and_tables_equal_pycocotools() {
    check(IouType::Segm);
}

#[test]
fn stats_are_bit_identical_to_pycocotools() {
    // Same operation order (numpy's pairwise mean included), so not just close.
    for case in all_cases() {
        for iou_type in [IouType::Bbox, IouType::Segm] {
            let Some(answers) = answers(&case, iou_type) else { continue };
            let (_, stats) = run(&case, iou_type);
            let got: Vec<u64> = stats.iter().map(|s| s.to_bits()).collect();
            assert_eq!(got, answers.stats, "{} {}", case.name, iou_type.name());
        }
    }
}

#[test]
fn summary_printout_equals_pycocotools_text() {
    for case in all_cases() {
        for iou_type in [IouType::Bbox, IouType::Segm] {
            let Some(answers) = answers(&case, iou_type) else { continue };
            let (acc, _) = run(&case, iou_type);
            let printed = summarize(&acc).unwrap().to_string();
            assert!(printed == answers.summary, "{} {}:\n--- ours\n{printed}--- pycocotools\n{}", case.name, iou_type.name(), answers.summary);
        }
    }
}

#[test]
fn no_detections_score_like_cocoeval_on_an_empty_detection_set() {
    let fixture = fixture();
    for empty in &fixture.empty_results_cases {
        let case = fixture.cases.iter().find(|c| c.name == empty.case).unwrap();
        let mut gt = case.gt.clone();
        if empty.medium_only {
            gt.annotations.retain(|a| a.area > 32.0 * 32.0 && a.area <= 96.0 * 96.0);
        }
        let (gt, _) = Dataset::from_instances(gt, Path::new("gt.json"), None).unwrap();
        for (iou_type, answers) in [(IouType::Bbox, &empty.expected.bbox), (IouType::Segm, &empty.expected.segm)] {
            let nothing = Results { path: "<no detections>".into(), detections: Vec::new() };
            let summary = summarize(&accumulate(&evaluate(&gt, &nothing, iou_type, &Params::default()).unwrap())).unwrap();
            let got: Vec<u64> = summary.stats.iter().map(|s| s.to_bits()).collect();
            let name = format!("{}{} {}", empty.case, if empty.medium_only { " medium only" } else { "" }, iou_type.name());
            assert_eq!(got, answers.stats, "{name}: {:?}", summary.stats);
            assert!(summary.to_string() == answers.summary, "{name}:\n--- ours\n{summary}--- pycocotools\n{}", answers.summary);
        }
    }
}

#[test]
fn plots_are_written_as_png() {
    let case = &fixture().cases[1];
    let (acc, _) = run(case, IouType::Bbox);
    let dir = std::env::temp_dir().join(format!("coco-plots-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = acc
        .category_ids
        .iter()
        .map(|id| case.gt.categories.iter().find(|c| c.id == *id).unwrap().name.clone())
        .collect();
    let aps = coco::eval::per_category_ap(&acc);
    coco::plots::plot_pr_curves(&acc, "bbox PR", &dir.join("pr.png")).unwrap();
    coco::plots::plot_per_category_ap(&aps, &names, "bbox AP per category", &dir.join("ap.png")).unwrap();
    for name in ["pr.png", "ap.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
    }
    if std::env::var_os("COCO_KEEP_PLOTS").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
