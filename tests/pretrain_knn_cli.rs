//! End-to-end tests of `vitdet pretrain --knn-data`: a few MAE steps on tiny
//! synthetic images with a two-class folder dataset as the k-NN set (one of
//! its images corrupt) log `knn_top1` after every epoch and only then, as a
//! percentage of the readable evaluation images, with the corrupt image
//! counted; a bad `--knn-data`, `--knn-dataset` or `[knn]` key is one error
//! line with exit code 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::Path;

use common::{assert_ok, assert_user_error, path, text, vitdet};

/// The MAE shapes recipe at 32 px: 32 images, batches of 16, 2 epochs (4
/// steps), the k-NN monitor after each epoch with k = 3.
fn recipe() -> String {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_mae_shapes_tiny.toml")).unwrap();
    let values = [("train", "32"), ("val", "4"), ("size", "40"), ("input_size", "32"), ("epochs", "2"), ("batch_size", "16"), ("warmup_epochs", "1.0"), ("checkpoint_period_epochs", "1"), ("k", "3"), ("period_epochs", "1")];
    let mut out = String::new();
    for line in base.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match values.iter().find(|(k, _)| *k == key) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(out.contains("\n[knn]") && out.contains("\nk = 3\n") && out.contains("\nperiod_epochs = 1\n"), "{out}");
    out
}

/// A class-per-folder dataset: red and blue squares, 4 train and 3 val
/// images per class, plus one corrupt val image.
fn knn_folder(root: &Path) {
    for (class, rgb) in [("red", [200u8, 30, 30]), ("blue", [30u8, 30, 200])] {
        for (split, n) in [("train", 4), ("val", 3)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let shade = (i * 20) as u8;
                image::RgbImage::from_fn(36, 36, |x, y| image::Rgb([rgb[0].saturating_add(shade), rgb[1].saturating_add(((x + y) % 7) as u8), rgb[2]])).save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    std::fs::write(root.join("val/red/broken.png"), b"not a png").unwrap();
}

#[test]
fn knn_top1_is_logged_after_every_epoch_as_a_percentage_of_the_readable_images() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, recipe()).unwrap();
    let knn = dir.path().join("colours");
    knn_folder(&knn);
    let run = dir.path().join("run");
    let o = vitdet(&["pretrain", "--method", "mae", "--config", path(&config), "--out", path(&run), "--knn-data", path(&knn), "--knn-dataset", "folder"]);
    assert_ok(&o);
    let err = text(&o.stderr);
    assert!(err.contains("k-NN monitor") && err.contains("2 classes, 8 train / 7 val images"), "{err}");
    assert!(err.contains("warning: k-NN data: val split: skipped: 1") && err.contains("broken.png"), "{err}");
    assert!(text(&o.stdout).contains("k-NN top-1 (%, last)"), "{}", text(&o.stdout));

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "2 epochs of 2 steps");
    for (i, line) in lines.iter().enumerate() {
        // An epoch is 2 steps: the monitor runs after steps 2 and 4 (iter 1 and 3).
        let evaluated = i % 2 == 1;
        assert_eq!(line.get("knn_top1").is_some(), evaluated, "line {i}: {line}");
        assert!(line.get("knn_top5").is_none(), "two classes: no top-5: {line}");
        if evaluated {
            let top1 = line["knn_top1"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&top1), "{line}");
            // 6 readable val images: the accuracy (percent) counts whole images.
            let images = top1 * 6.0 / 100.0;
            assert!((images - images.round()).abs() < 1e-9, "{top1}% is not a count of 6 images");
            assert_eq!(line["knn_skipped"].as_f64(), Some(1.0), "{line}");
        }
    }
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(written.contains("[knn]") && written.contains("dataset = \"folder\""), "{written}");
}

#[test]
fn bad_knn_settings_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, recipe()).unwrap();
    let missing = dir.path().join("no-such-knn");
    let run = |extra: &[&str]| {
        let mut args = vec!["pretrain", "--method", "mae", "--config", path(&config), "--out", path(&out)];
        args.extend_from_slice(extra);
        vitdet(&args)
    };
    let one_line = |o: &std::process::Output, needle: &str| {
        assert_user_error(o, needle);
        assert_eq!(text(&o.stderr).lines().count(), 1, "{}", text(&o.stderr));
    };
    one_line(&run(&["--knn-data", path(&missing)]), "--knn-data");
    one_line(&run(&["--knn-data", path(&missing)]), "no-such-knn");
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    image::RgbImage::new(8, 8).save(flat.join("a.png")).unwrap();
    one_line(&run(&["--knn-data", path(&flat)]), "train");
    one_line(&run(&["--knn-data", path(&flat), "--knn-dataset", "flowers"]), "imagelabels.mat");
    one_line(&run(&["--knn-data", path(&flat), "--knn-dataset", "nope"]), "unknown dataset `nope`");
    std::fs::write(&config, recipe().replace("k = 3", "k = 0")).unwrap();
    one_line(&run(&["--knn-data", path(&flat)]), "knn.k");
    let o = run(&["--knn-dataset", "folder"]);
    assert_eq!(o.status.code(), Some(2), "--knn-dataset needs --knn-data: {}", text(&o.stderr));
}
