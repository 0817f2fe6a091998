//! Issue 17: warnings about unreadable images are printed once each, on one
//! line, and the validation split's are shown as the training split's are.
//! A folder dataset with one corrupt image in each split goes through
//! `finetune` (both splits) and `features --images` (a folder).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{assert_ok, path, text, vitdet};

/// The `warning:` lines of a run's stderr.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("warning:")).collect()
}

/// Overwrites an image with bytes no decoder reads.
fn corrupt(file: &Path) {
    std::fs::write(file, b"not an image").unwrap();
}

/// The first image of a split's first class folder.
fn first_image(split: &Path) -> std::path::PathBuf {
    let mut classes: Vec<_> = std::fs::read_dir(split).unwrap().map(|e| e.unwrap().path()).collect();
    classes.sort();
    let mut files: Vec<_> = std::fs::read_dir(&classes[0]).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.remove(0)
}

#[test]
fn each_unreadable_image_is_one_warning_line_per_split() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = vitdet(&["data", "shapes", "--classification", "--out", path(&data), "--train", "12", "--val", "6", "--size", "64"]);
    assert_ok(&o);
    let (bad_train, bad_val) = (first_image(&data.join("train")), first_image(&data.join("val")));
    corrupt(&bad_train);
    corrupt(&bad_val);

    let out = tmp.path().join("run");
    let o = vitdet(&["finetune", "--config", "finetune_shapes_tiny", "--dataset", "folder", "--data", path(&data), "--out", path(&out), "--max-iter", "2"]);
    assert_ok(&o);
    let err = text(&o.stderr);
    let lines = warnings(&err);
    assert_eq!(lines.len(), 2, "one line for each split:\n{err}");
    assert!(lines[0].starts_with("warning: training data: skipped: "), "{err}");
    assert!(lines[1].starts_with("warning: validation data: skipped: 1 image load(s)"), "one pass over the validation split: {err}");
    for (line, file) in lines.iter().zip([&bad_train, &bad_val]) {
        assert_eq!(line.matches(path(file)).count(), 1, "the path once: {line}");
    }

    let o = vitdet(&["features", "--weights", path(&out.join("model.safetensors")), "--images", path(bad_val.parent().unwrap()), "--out", path(&tmp.path().join("f.safetensors"))]);
    let err = text(&o.stderr);
    let lines = warnings(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(lines[0].matches(path(&bad_val)).count(), 1, "{err}");
}
