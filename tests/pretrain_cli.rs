//! End-to-end tests of `vitdet pretrain`: a short MAE run on a tiny
//! synthetic set lowers its loss, and its model file is read as it is by
//! `vitdet finetune --backbone` and `vitdet features`; resuming a finished
//! run only rewrites the model; `visualize` draws the grid; the user errors
//! are one line with exit code 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{assert_ok, assert_user_error, path, text, vitdet};

/// The CPU shapes recipe shrunk to 64 images, batches of 16 and 40 steps.
fn tiny_recipe() -> String {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_mae_shapes_tiny.toml")).unwrap();
    let mut out = String::new();
    for line in base.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match key {
            "train" => "train = 64",
            "val" => "val = 12",
            "size" => "size = 64",
            "epochs" => "epochs = 10",
            "batch_size" => "batch_size = 16",
            "blr" => "blr = 1e-2",
            "warmup_epochs" => "warmup_epochs = 1.0",
            "checkpoint_period_epochs" => "checkpoint_period_epochs = 5",
            _ => line,
        };
        out.push_str(replaced);
        out.push('\n');
    }
    out
}

fn losses(run: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss_mae"].as_f64().unwrap())
        .collect()
}

#[test]
fn mae_pretraining_lowers_its_loss_and_its_model_loads_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::write(&recipe, tiny_recipe()).unwrap();
    let run = dir.path().join("run");
    let o = vitdet(&["pretrain", "--method", "mae", "--config", path(&recipe), "--out", path(&run)]);
    assert_ok(&o);
    for file in ["config.toml", "metrics.jsonl", "model.safetensors", "checkpoint/last.safetensors"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let l = losses(&run);
    assert_eq!(l.len(), 40);
    let first: f64 = l[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = l[35..].iter().sum::<f64>() / 5.0;
    // Per-patch normalised targets: an untrained decoder scores about 1 + the variance of its output.
    assert!(last < 0.9 * first, "loss {first:.3} (first 5 steps) -> {last:.3} (last 5)");

    // The model file is a backbone as it is: decoder and mask token are dropped on load.
    let ft = dir.path().join("ft");
    let data = run.join("data");
    let o = vitdet(&["finetune", "--config", "finetune_shapes_tiny", "--data", path(&data), "--backbone", path(&run.join("model.safetensors")), "--max-iter", "2", "--out", path(&ft)]);
    assert_ok(&o);
    let err = text(&o.stderr);
    // 150 encoder tensors and 20 of the decoder; the fine-tuning ViT (average pooling) has no final `norm`.
    assert!(err.contains("loaded 148 tensors, ignored 20 non-backbone tensors") && err.contains("unexpected 2: norm.bias, norm.weight"), "{err}");

    let feats = dir.path().join("feats.safetensors");
    assert_ok(&vitdet(&["features", "--weights", path(&run.join("model.safetensors")), "--images", path(&data.join("val/circle")), "--out", path(&feats)]));
    let tensors = engine::checkpoint::read_safetensors(&feats, &candle_core::Device::Cpu).unwrap();
    let block = tensors.iter().find(|(n, _)| n == "block.11").map(|(_, t)| t.dims().to_vec()).unwrap();
    assert_eq!(&block[1..], &[17, 192], "64 px: 16 patches + cls, width 192");

    // Resuming a finished run trains nothing and rewrites the model.
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    let o = vitdet(&["pretrain", "--method", "mae", "--config", path(&recipe), "--out", path(&run), "--resume"]);
    assert_ok(&o);
    assert!(text(&o.stdout).lines().any(|l| l.starts_with("steps (this process)") && l.trim_end().ends_with(" 0")), "{}", text(&o.stdout));
    assert!(run.join("model.safetensors").is_file());
    assert_eq!(losses(&run).len(), 40);

    let grid = dir.path().join("grid.png");
    assert_ok(&vitdet(&["pretrain", "visualize", "--weights", path(&run.join("model.safetensors")), "--images", path(&data.join("val/star")), "--count", "2", "--out", path(&grid)]));
    let picture = image::open(&grid).unwrap();
    assert_eq!((picture.width(), picture.height()), (2 * 66 + 2, 3 * 66 + 2));
}

#[test]
fn pretrain_user_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = vitdet(&["pretrain", "--method", "mocov3", "--out", path(&out)]);
    assert_user_error(&o, "not built yet");
    assert_user_error(&vitdet(&["pretrain", "--method", "distill", "--out", path(&out)]), "not built yet");
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--input-size", "70", "--out", path(&out)]), "data.input_size");
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--config", "no_such_recipe", "--out", path(&out)]), "no_such_recipe");
    let missing = dir.path().join("no-images");
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--data", path(&missing), "--out", path(&out)]), "no-images");
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--out", path(&out), "--resume"]), "checkpoint");
    let o = vitdet(&["pretrain", "--out", path(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--method"), "{}", text(&o.stderr));
    let not_mae = dir.path().join("x.safetensors");
    std::fs::write(&not_mae, b"nonsense").unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::new(8, 8).save(images.join("a.png")).unwrap();
    assert_user_error(&vitdet(&["pretrain", "visualize", "--weights", path(&not_mae), "--images", path(&images), "--out", path(&dir.path().join("g.png"))]), "x.safetensors");
}
