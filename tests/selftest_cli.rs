//! `vitdet selftest`: the table, the exit codes (0 all within tolerance, 1 a
//! mismatch, 2 a user mistake) and the help.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_ok, assert_user_error, text, vitdet};

/// Every model the self-test covers, as its rows name it.
const MODELS: [&str; 7] = ["vit", "vitdet-backbone", "detector", "classifier", "mae", "mocov3", "distill"];

/// The table rows (between the header line and the verdict) of a run.
fn rows(stdout: &str) -> Vec<Vec<&str>> {
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() > 3, "{stdout}");
    lines[2..lines.len() - 1].iter().map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()).collect()
}

#[test]
fn cpu_selftest_passes_with_a_row_per_comparison_of_every_model() {
    let o = vitdet(&["selftest", "--device", "cpu"]);
    assert_ok(&o);
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "selftest: cpu (composed kernels) against the reference cpu (auto kernels)", "{out}");
    assert!(lines[1].starts_with("model") && lines[1].ends_with("max abs err  max rel err  tolerance  ok"), "{out}");
    let rows = rows(&out);
    for model in MODELS {
        let own: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == model).collect();
        assert!(own.iter().any(|r| r[1] == "loss"), "{model} has no loss row:\n{out}");
        assert!(own.iter().any(|r| r[1].starts_with("gradients (")), "{model} has no gradient row:\n{out}");
    }
    for r in &rows {
        assert_eq!(r.len(), 6, "{r:?}");
        assert_eq!(r[4], "1.00e-4", "default tolerance: {r:?}");
        assert_eq!(r[5], "ok", "{out}");
        let rel: f64 = r[3].parse().unwrap();
        assert!(rel <= 1e-4, "{r:?}");
    }
    assert_eq!(lines[lines.len() - 1], format!("all {} comparisons within tolerance", rows.len()));
    assert!(text(&o.stderr).is_empty(), "{}", text(&o.stderr));
}

#[test]
fn a_mismatch_exits_one_and_marks_its_rows() {
    // The composed and fused paths sum in different orders, so some tensor
    // differs in its last bits: no float path meets a tolerance of 0.
    let o = vitdet(&["selftest", "--tolerance", "0"]);
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    let rows = rows(&out);
    let failed = rows.iter().filter(|r| r[5] == "MISMATCH").count();
    assert!(failed > 0, "{out}");
    assert!(out.trim_end().ends_with(&format!("{failed} of {} comparisons out of tolerance", rows.len())), "{out}");
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: selftest on cpu:") && err.contains("out of tolerance"), "{err}");
}

#[test]
fn unknown_device_and_bad_tolerance_are_user_errors() {
    assert_user_error(&vitdet(&["selftest", "--device", "gpu"]), "unknown device `gpu`");
    let o = vitdet(&["selftest", "--tolerance=-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--tolerance"), "{}", text(&o.stderr));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_on_a_cpu_only_build_says_how_to_rebuild() {
    assert_user_error(&vitdet(&["selftest", "--device", "cuda"]), "rebuild with `--features cuda`");
}

#[test]
fn help_shows_examples() {
    let o = vitdet(&["selftest", "--help"]);
    assert_ok(&o);
    let help = text(&o.stdout);
    assert!(help.contains("Examples:") && help.contains("vitdet selftest --device cuda"), "{help}");
    assert!(help.contains("--tolerance"), "{help}");
}
