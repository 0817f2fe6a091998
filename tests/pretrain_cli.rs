//! End-to-end tests of `vitdet pretrain`: a short MAE run on a tiny
//! synthetic set lowers its loss, and its model file is read as it is by
//! `vitdet finetune --backbone` and `vitdet features`; resuming a finished
//! run only rewrites the model; `visualize` draws the grid; a short
//! distillation run from an MAE teacher lowers its loss, logs each term and
//! its student loads downstream; the user errors are one line with exit
//! code 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{assert_ok, assert_user_error, path, text, vitdet};

/// The CPU shapes recipe shrunk to 64 images, batches of 16 and 40 steps.
fn tiny_recipe() -> String {
    shrink(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_mae_shapes_tiny.toml")).unwrap())
}

/// A shapes recipe shrunk to 64 images, batches of 16 and 40 steps.
fn shrink(base: &str) -> String {
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
    metric(run, "loss_mae")
}

/// `key` of every line of the run's metrics.jsonl.
fn metric(run: &std::path::Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].as_f64().unwrap_or_else(|| panic!("{key} in {l}")))
        .collect()
}

/// Mean of the first and of the last five values.
fn first_last(v: &[f64]) -> (f64, f64) {
    (v[..5].iter().sum::<f64>() / 5.0, v[v.len() - 5..].iter().sum::<f64>() / 5.0)
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

#[test]
fn distillation_from_an_mae_teacher_lowers_its_loss_and_its_student_loads_downstream() {
    let dir = tempfile::tempdir().unwrap();
    // The teacher: the tiny MAE recipe for a few steps (a ViT-Tiny MAE, 12 heads).
    let mae_recipe = dir.path().join("mae.toml");
    std::fs::write(&mae_recipe, tiny_recipe()).unwrap();
    let teacher_run = dir.path().join("teacher");
    assert_ok(&vitdet(&["pretrain", "--method", "mae", "--config", path(&mae_recipe), "--max-iter", "4", "--out", path(&teacher_run)]));
    let teacher = teacher_run.join("model.safetensors");

    let recipe = dir.path().join("distill.toml");
    std::fs::write(&recipe, shrink(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_distill_shapes_tiny.toml")).unwrap())).unwrap();
    let run = dir.path().join("run");
    let data = teacher_run.join("data");
    let args = ["pretrain", "--method", "distill", "--config", path(&recipe), "--teacher", path(&teacher), "--data", path(&data), "--out", path(&run)];
    let o = vitdet(&args);
    assert_ok(&o);
    let err = text(&o.stderr);
    // The teacher file is the MAE's: its 20 decoder tensors are dropped.
    assert!(err.contains("ViT width 192, depth 12, 12 heads; loaded 150 tensors, ignored 20 decoder"), "{err}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("[distill]") && config.contains(path(&teacher)), "{config}");

    let (mae, attn) = (losses(&run), metric(&run, "loss_attn"));
    assert_eq!((mae.len(), attn.len()), (40, 40));
    let total: Vec<f64> = mae.iter().zip(&attn).map(|(m, a)| m + a).collect();
    let ((t0, t1), (a0, a1)) = (first_last(&total), first_last(&attn));
    assert!(t1 < 0.9 * t0, "loss {t0:.3} (first 5 steps) -> {t1:.3} (last 5)");
    assert!(a1 < a0, "loss_attn {a0:.4} -> {a1:.4}");
    let line = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(!line.contains("loss_hidden"), "the hidden variant is off by default");
    // The checkpoint keeps the adapter for --resume; the model file is the student MAE alone.
    let ckpt = engine::checkpoint::read_safetensors(&run.join("checkpoint/last.safetensors"), &candle_core::Device::Cpu).unwrap();
    let adapter = ckpt.iter().find(|(n, _)| n.ends_with("attn_adapter.adapter11.weight")).map(|(_, t)| t.dims().to_vec());
    assert_eq!(adapter, Some(vec![12, 12, 1, 1]), "{:?}", ckpt.iter().map(|(n, _)| n).filter(|n| n.contains("adapter")).collect::<Vec<_>>());
    let model = engine::checkpoint::read_safetensors(&run.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(model.len(), 170, "150 encoder + 20 decoder tensors, no adapter");

    let ft = dir.path().join("ft");
    let o = vitdet(&["finetune", "--config", "finetune_shapes_tiny", "--data", path(&data), "--backbone", path(&run.join("model.safetensors")), "--max-iter", "2", "--out", path(&ft)]);
    assert_ok(&o);
    assert!(text(&o.stderr).contains("loaded 148 tensors, ignored 20 non-backbone tensors"), "{}", text(&o.stderr));

    // Resuming the finished run restores student and adapter, trains nothing, rewrites the model.
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let o = vitdet(&resume);
    assert_ok(&o);
    assert!(text(&o.stdout).lines().any(|l| l.starts_with("steps (this process)") && l.trim_end().ends_with(" 0")), "{}", text(&o.stdout));
    assert!(run.join("model.safetensors").is_file());
}

#[test]
fn distillation_user_errors_name_the_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // The shapes recipe's default teacher is a path that does not exist here.
    let o = vitdet(&["pretrain", "--method", "distill", "--out", path(&out)]);
    assert_user_error(&o, "runs/mae_shapes/model.safetensors");
    assert!(text(&o.stderr).contains("--method mae"), "{}", text(&o.stderr));
    // The released teacher, looked up where named backbones are.
    let weights = dir.path().join("weights");
    std::fs::create_dir_all(&weights).unwrap();
    let o = vitdet(&["pretrain", "--method", "distill", "--teacher", "mae_base", "--weights-dir", path(&weights), "--out", path(&out)]);
    assert_user_error(&o, "mae_base_1600e.pth.tar");
    assert!(text(&o.stderr).contains(path(&weights)), "{}", text(&o.stderr));
    // A teacher that does not cut the student's 16-px patches.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/pretrain/tests/fixtures/distill_teacher.pth.tar");
    let o = vitdet(&["pretrain", "--method", "distill", "--teacher", fixture, "--out", path(&out)]);
    assert_user_error(&o, "distill_teacher.pth.tar");
    // --teacher belongs to distillation.
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--teacher", "mae_base", "--out", path(&out)]), "--teacher");
}
