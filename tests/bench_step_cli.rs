//! End-to-end tests of the pre-training step benchmarks (`vitdet bench mae`,
//! `mocov3`, `distill`) on tiny inputs: one JSON line with the shared keys
//! echoing the settings, and one-line user errors (exit 2) for bad flags.
//! No timing is checked (BENCHMARKS.md holds the measurements).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn vitdet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitdet")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The step benchmarks, each with the flags that make it small.
const BENCHES: [&[&str]; 3] = [&["bench", "mae"], &["bench", "mocov3"], &["bench", "distill", "--teacher-arch", "tiny"]];

#[test]
fn each_step_bench_prints_one_json_line_with_the_shared_keys() {
    for bench in BENCHES {
        let mut args = bench.to_vec();
        args.extend(["--batch", "2", "--iters", "1", "--input-size", "32"]);
        let o = vitdet(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        assert_eq!(out.lines().count(), 1, "{args:?}: one line: {out}");
        let line: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(line["batch"], 2, "{line}");
        assert_eq!(line["iters"], 1, "{line}");
        assert_eq!(line["input_size"], 32, "{line}");
        assert!(line["train_img_s"].as_f64().unwrap() > 0.0, "{line}");
        if cfg!(target_os = "linux") {
            assert!(line["peak_rss_mb"].as_f64().unwrap() > 1.0, "{line}");
        }
        assert!(line["model"].is_string() && line["device"].is_string() && line["threads"].is_u64(), "{line}");
    }
}

#[test]
fn step_bench_flags_are_checked_and_help_has_examples() {
    for bench in BENCHES {
        let mut help = bench[..2].to_vec();
        help.push("--help");
        let o = vitdet(&help);
        assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Examples:"), "{help:?}");
        for (flags, needle) in [(["--input-size", "30"], "--input-size 30"), (["--iters", "0"], "--iters"), (["--device", "tpu"], "tpu")] {
            let mut args = bench.to_vec();
            args.extend(flags);
            let o = vitdet(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.starts_with("error: ") && err.contains(needle) && err.trim_end().lines().count() == 1, "{args:?}: {err}");
        }
    }
    let o = vitdet(&["bench", "mocov3", "--batch", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--batch must be at least 2"), "{}", stderr(&o));
}
