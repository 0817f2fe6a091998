//! End-to-end tests of the detection commands: a two-step `vitdet train` on a
//! tiny shapes dataset, then `eval coco --weights`, `predict` and `--resume`
//! on its output; and their user errors (one line, exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]


mod common;
use common::{assert_ok, assert_user_error, path, text, vitdet};

#[test]
fn train_eval_predict_and_resume_on_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    let run = dir.path().join("run");
    assert_ok(&vitdet(&["data", "shapes", "--out", path(&data), "--train", "4", "--val", "2", "--size", "128", "--seed", "1"]));

    let o = vitdet(&["train", "--config", "vitdet_tiny_shapes", "--data", path(&data), "--out", path(&run), "--max-iter", "2", "--set", "train.eval_batch_size=2"]);
    assert_ok(&o);
    // The override is part of the recorded recipe.
    let recorded: toml::Table = toml::from_str(&std::fs::read_to_string(run.join("config.toml")).unwrap()).unwrap();
    assert_eq!(recorded["train"]["eval_batch_size"].as_integer(), Some(2));
    let out = text(&o.stdout);
    assert!(out.contains("IoU metric: bbox") && out.contains("IoU metric: segm"), "{out}");
    assert!(out.contains("weights: ") && out.contains("model.safetensors"), "{out}");
    for f in ["model.safetensors", "config.toml", "metrics.jsonl", "checkpoint/last.safetensors"] {
        assert!(run.join(f).is_file(), "{f} written");
    }
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 2);

    // Resuming a finished run runs no more steps and keeps the log.
    assert_ok(&vitdet(&["train", "--config", "vitdet_tiny_shapes", "--data", path(&data), "--out", path(&run), "--max-iter", "2", "--set", "train.eval_batch_size=2", "--resume"]));
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 2);
    // Resume follows the run: without --config it reads OUT/config.toml, and
    // a flag that changes the recorded recipe is refused, naming the setting.
    assert_ok(&vitdet(&["train", "--data", path(&data), "--out", path(&run), "--resume"]));
    assert_user_error(&vitdet(&["train", "--data", path(&data), "--out", path(&run), "--backbone", "mae_tiny", "--resume"]), "train.backbone = \"mae_tiny\" (recorded: \"scratch\")");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 2);
    // A second run into the same folder without --resume is refused, even
    // when the checkpoint is gone: a finished run is never overwritten.
    assert_user_error(&vitdet(&["train", "--config", "vitdet_tiny_shapes", "--data", path(&data), "--out", path(&run), "--max-iter", "2"]), "--resume");
    let model_bytes = std::fs::read(run.join("model.safetensors")).unwrap();
    let moved = dir.path().join("checkpoint-moved");
    std::fs::rename(run.join("checkpoint"), &moved).unwrap();
    assert_user_error(&vitdet(&["train", "--config", "vitdet_tiny_shapes", "--data", path(&data), "--out", path(&run), "--max-iter", "2"]), "already holds a run");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model_bytes);
    std::fs::rename(&moved, run.join("checkpoint")).unwrap();

    let model = run.join("model.safetensors");
    let results = dir.path().join("results.json");
    let o = vitdet(&["eval", "coco", "--weights", path(&model), "--data", path(&data), "--out", path(&results), "--json", path(&dir.path().join("metrics.json"))]);
    assert_ok(&o);
    let out = text(&o.stdout);
    assert!(out.contains("IoU metric: segm") && out.contains("Average Precision"), "{out}");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    for r in written.as_array().unwrap() {
        assert!(r["bbox"].is_array() && r["segmentation"]["counts"].is_string() && r["score"].as_f64().unwrap() > 0.05, "{r}");
    }

    let pictures = dir.path().join("pictures");
    assert_ok(&vitdet(&["predict", "--weights", path(&model), "--image", path(&data.join("val")), "--out", path(&pictures), "--score", "0.0"]));
    for f in ["000000.png", "000001.png", "results.json", "images.json"] {
        assert!(pictures.join(f).is_file(), "{f} written");
    }
    let picture = image::open(pictures.join("000000.png")).unwrap();
    assert_eq!((picture.width(), picture.height()), (512, 512), "128 px pictures are drawn 4x");

    // A corrupt file and a too-thin image are skipped and counted; the rest is predicted.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(data.join("val/000000.png"), mixed.join("a.png")).unwrap();
    std::fs::write(mixed.join("b.png"), b"not a png").unwrap();
    image::RgbImage::new(2000, 10).save(mixed.join("c.png")).unwrap();
    let o = vitdet(&["predict", "--weights", path(&model), "--image", path(&mixed), "--out", path(&dir.path().join("mixed_out"))]);
    assert_ok(&o);
    let err = text(&o.stderr);
    assert_eq!(err.matches("skipped: 2 image load(s)").count(), 1, "{err}");
    assert!(err.contains("b.png") && text(&o.stdout).contains("a.png"), "{err}");
}

#[test]
fn detection_user_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_user_error(&vitdet(&["train", "--config", "no_such_recipe"]), "no_such_recipe");
    assert_user_error(&vitdet(&["train", "--data", path(&missing), "--out", path(&dir.path().join("r"))]), "missing");
    assert_user_error(&vitdet(&["eval", "coco", "--weights", path(&missing.join("m.safetensors")), "--data", path(&missing)]), "missing");
    // A file that is not a trained detector.
    let not_a_detector = dir.path().join("x.safetensors");
    std::fs::write(&not_a_detector, b"not safetensors at all").unwrap();
    assert_user_error(&vitdet(&["predict", "--weights", path(&not_a_detector), "--image", path(&not_a_detector), "--out", path(&dir.path().join("p"))]), "x.safetensors");
    // A recipe with an unknown key names it.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[train]\nbatch = 4\n").unwrap();
    assert_user_error(&vitdet(&["train", "--config", path(&bad)]), "batch");
    // A released backbone that is not on this machine says where to get it.
    let data = dir.path().join("shapes");
    assert!(vitdet(&["data", "shapes", "--out", path(&data), "--train", "2", "--val", "0", "--size", "128"]).status.success());
    assert_user_error(&vitdet(&["train", "--config", "vitdet_tiny_shapes", "--backbone", "mae_tiny", "--data", path(&data), "--out", path(&dir.path().join("r2"))]), "mae_tiny_400e");
}
