//! End-to-end: `vitdet data shapes` writes the dataset, prints one summary line,
//! and exits 2 (naming the flag) on user mistakes.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::path::Path;

mod common;
use common::{scratch, vitdet};

#[test]
fn writes_coco_layout_and_one_summary_line() {
    let dir = scratch("cli_shapes");
    let out = vitdet(&["data", "shapes", "--out", dir.to_str().unwrap(), "--train", "3", "--val", "2", "--size", "64"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("3 train + 2 val images (64 px)"), "{stdout}");
    for f in ["train/000000.png", "train/000002.png", "val/000001.png", "annotations/instances_val.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("annotations/instances_train.json")).unwrap()).unwrap();
    assert_eq!(json["images"].as_array().unwrap().len(), 3);
    assert_eq!(json["categories"].as_array().unwrap().len(), 6);
    assert!(!json["annotations"].as_array().unwrap().is_empty());
}

#[test]
fn classification_flag_writes_class_folders() {
    let dir = scratch("cli_shapes_cls");
    let out = vitdet(&["data", "shapes", "--classification", "--out", dir.to_str().unwrap(), "--train", "6", "--val", "0", "--size", "32"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("train/star/000003.png").is_file());
    assert!(!dir.join("annotations").exists());
    let colours = |dir: &Path| -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..6 {
            let kind = ["circle", "triangle", "rectangle", "star", "ellipse", "hexagon"][i];
            let image = image::open(dir.join(format!("train/{kind}/{i:06}.png"))).unwrap().to_rgb8();
            seen.extend(image.pixels().map(|p| p.0));
        }
        seen.len()
    };
    // Plain (the default): black and white only; textured: many colours.
    assert_eq!(colours(&dir), 2);
    let textured = scratch("cli_shapes_cls_textured");
    let out = vitdet(&["data", "shapes", "--classification", "--style", "textured", "--out", textured.to_str().unwrap(), "--train", "6", "--val", "0", "--size", "32"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(colours(&textured) > 50);
    // --style describes classification images only.
    let out = vitdet(&["data", "shapes", "--style", "plain", "--out", textured.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--classification"));
}

#[test]
fn user_mistakes_exit_two_and_name_the_flag() {
    let dir = scratch("cli_shapes_bad");
    let out = vitdet(&["data", "shapes", "--out", dir.to_str().unwrap(), "--size", "8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size"));
    assert!(out.stdout.is_empty());

    let out = vitdet(&["data", "shapes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));

    let out = vitdet(&["data", "shapes", "--out", dir.to_str().unwrap(), "--train", "0", "--val", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--train"));

    for (flags, needle) in [
        (&["--crowd", "2"][..], "--crowd 2 is outside"),
        (&["--min-visible", "0"][..], "--min-visible 0 is outside"),
        (&["--sides", "8,300"][..], "--sides [8, 300]"),
        (&["--objects", "3"][..], "--objects takes two"),
        (&["--categories", "circle,blob"][..], "unknown kind \"blob\""),
    ] {
        let out = vitdet(&[&["data", "shapes", "--out", dir.to_str().unwrap()][..], flags].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }
}

#[test]
fn scene_flags_choose_kinds_and_drop_crowds() {
    let dir = scratch("cli_shapes_scene");
    let out = vitdet(&[
        "data", "shapes", "--out", dir.to_str().unwrap(), "--train", "8", "--val", "0", "--size", "128",
        "--categories", "circle,star", "--objects", "1,6", "--sides", "8,64", "--crowd", "0", "--min-visible", "0.45",
    ]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(0 crowd)"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("annotations/instances_train.json")).unwrap()).unwrap();
    let names: Vec<&str> = json["categories"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["circle", "star"]);
    assert_eq!(json["info"]["scene"]["sides"], serde_json::json!([8.0, 64.0]));
}
