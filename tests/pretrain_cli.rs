//! End-to-end tests of `vitdet pretrain`: a short MAE run on a tiny
//! synthetic set lowers its loss, and its model file is read as it is by
//! `vitdet finetune --backbone` and `vitdet features`; resuming a finished
//! run only rewrites the model; `visualize` draws the grid; a short
//! distillation run from an MAE teacher lowers its loss, logs each term and
//! its student loads downstream; a short MoCo-v3 run lowers its loss, logs
//! both terms and the momentum, and its encoder loads downstream; a MoCo-v3
//! run killed after a checkpoint and resumed ends as an uninterrupted one;
//! the user errors are one line with exit code 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::collections::BTreeMap;
use std::path::Path;

use common::{assert_ok, assert_user_error, path, text, vitdet};

/// The CPU shapes recipe shrunk to 64 images, batches of 16 and 40 steps.
fn tiny_recipe() -> String {
    shrink(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_mae_shapes_tiny.toml")).unwrap())
}

/// A shapes recipe shrunk to 64 images, batches of 16 and 40 steps.
fn shrink(base: &str) -> String {
    let values = [("train", "64"), ("val", "12"), ("size", "64"), ("epochs", "10"), ("batch_size", "16"), ("blr", "1e-2"), ("warmup_epochs", "1.0"), ("checkpoint_period_epochs", "5")];
    set_keys(base, &values)
}

/// `text` with each line whose key is in `values` replaced by `key = value`.
fn set_keys(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match values.iter().find(|(k, _)| *k == key) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}")),
            None => out.push_str(line),
        }
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

/// Every line of the run's metrics.jsonl.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The mean of `v`.
fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Every tensor of a safetensors file, as f32 values by name.
fn tensors(file: &Path) -> BTreeMap<String, Vec<f32>> {
    engine::checkpoint::read_safetensors(file, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

/// The summary table's "steps (this process)".
fn steps_run(o: &std::process::Output) -> usize {
    let out = text(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("steps (this process)")).expect("a summary line of steps");
    line.split_whitespace().last().unwrap().parse().unwrap()
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

/// The MoCo-v3 CPU shapes recipe shrunk to 16 images of 32 px in one
/// batch (one step per epoch; a set this small is learnt fast enough for a
/// test), projector/predictor 256/64, `epochs` epochs, a checkpoint every
/// `checkpoint_period` epochs.
fn moco_recipe(epochs: usize, checkpoint_period: usize) -> String {
    let (epochs, period) = (epochs.to_string(), checkpoint_period.to_string());
    let warmup = format!("{:.1}", epochs.parse::<f64>().unwrap() / 10.0);
    let values = [
        ("train", "16"),
        ("val", "12"),
        ("size", "40"),
        ("input_size", "32"),
        ("mlp_dim", "256"),
        ("dim", "64"),
        ("epochs", epochs.as_str()),
        ("batch_size", "16"),
        ("blr", "1e-2"),
        ("warmup_epochs", warmup.as_str()),
        ("checkpoint_period_epochs", period.as_str()),
    ];
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_mocov3_shapes_tiny.toml")).unwrap();
    set_keys(&base, &values)
}

/// MoCo-v3's momentum at step `i` of `total`: cosine from 0.99 to 1.
fn momentum(i: usize, total: usize) -> f64 {
    1.0 - 0.5 * (1.0 + (std::f64::consts::PI * i as f64 / total as f64).cos()) * (1.0 - 0.99)
}

#[test]
fn mocov3_pretraining_lowers_its_loss_and_its_encoder_loads_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("moco.toml");
    std::fs::write(&recipe, moco_recipe(40, 20)).unwrap();
    let run = dir.path().join("run");
    assert_ok(&vitdet(&["pretrain", "--method", "mocov3", "--config", path(&recipe), "--out", path(&run)]));
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(written.contains("[mocov3]") && written.contains("mlp_dim = 256"), "{written}");

    // Both terms, their sum and the momentum on every line; the loss falls.
    let (q1k2, q2k1, total, m) = (metric(&run, "loss_q1k2"), metric(&run, "loss_q2k1"), metric(&run, "loss"), metric(&run, "momentum"));
    assert_eq!(total.len(), 40);
    for i in 0..40 {
        assert!((q1k2[i] + q2k1[i] - total[i]).abs() < 1e-9, "step {i}");
        assert!((m[i] - momentum(i, 40)).abs() < 1e-15, "momentum at step {i}: {} vs {}", m[i], momentum(i, 40));
    }
    assert_eq!(m[0], 0.99);
    // Chance level: 2 terms x 2T x ln(16) = 2.22; this run goes from about 2.3 to 2.05.
    let (first, last) = (mean(&total[..5]), mean(&total[30..]));
    assert!(last < 0.93 * first, "loss {first:.3} (first 5 steps) -> {last:.3} (last 10)");

    // The model file is the online ViT alone; projector, predictor and momentum encoder are in the checkpoint.
    let model = tensors(&run.join("model.safetensors"));
    assert_eq!(model.len(), 150, "{:?}", model.keys().collect::<Vec<_>>());
    assert!(model.contains_key("blocks.11.attn.qkv.weight") && model.contains_key("norm.weight") && model.contains_key("pos_embed"));
    let ckpt = tensors(&run.join("checkpoint/last.safetensors"));
    for name in ["head.0.weight", "head.7.running_var", "predictor.3.weight", "@task.momentum_encoder.blocks.0.attn.qkv.weight", "@task.momentum_encoder.head.6.weight"] {
        assert!(ckpt.contains_key(&format!("model.{name}")), "checkpoint holds {name}");
    }
    assert_eq!(ckpt["model.blocks.0.attn.qkv.weight"], model["blocks.0.attn.qkv.weight"]);
    assert_ne!(ckpt["model.@task.momentum_encoder.blocks.0.attn.qkv.weight"], model["blocks.0.attn.qkv.weight"], "the momentum encoder lags the online one");

    let ft = dir.path().join("ft");
    let data = run.join("data");
    let o = vitdet(&["finetune", "--config", "finetune_shapes_tiny", "--data", path(&data), "--backbone", path(&run.join("model.safetensors")), "--max-iter", "2", "--out", path(&ft)]);
    assert_ok(&o);
    let err = text(&o.stderr);
    // The fine-tuning ViT (average pooling) has no final `norm`; nothing else is left over.
    assert!(err.contains("loaded 148 tensors") && err.contains("unexpected 2: norm.bias, norm.weight"), "{err}");

    let feats = dir.path().join("feats.safetensors");
    assert_ok(&vitdet(&["features", "--weights", path(&run.join("model.safetensors")), "--images", path(&data.join("val/circle")), "--out", path(&feats)]));
    let features = engine::checkpoint::read_safetensors(&feats, &candle_core::Device::Cpu).unwrap();
    let block = features.iter().find(|(n, _)| n == "block.11").map(|(_, t)| t.dims().to_vec()).unwrap();
    assert_eq!(&block[1..], &[5, 192], "32 px: 4 patches + cls, width 192");
}

/// A run killed right after its first checkpoint and resumed ends as an
/// uninterrupted run does, bit for bit: every logged loss term and
/// momentum, the model and the checkpoint (momentum encoder and its
/// BatchNorm statistics included).
#[test]
fn mocov3_run_killed_after_a_checkpoint_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("moco.toml");
    std::fs::write(&recipe, moco_recipe(8, 1)).unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    let args = |out: &Path| vec!["pretrain", "--method", "mocov3", "--config", path(&recipe), "--out", path(out)].into_iter().map(String::from).collect::<Vec<_>>();
    let o = vitdet(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&o);
    assert_eq!(steps_run(&o), 8);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vitdet")).args(args(&parts)).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let checkpoint = parts.join("checkpoint/last.safetensors");
    let began = std::time::Instant::now();
    while !checkpoint.is_file() {
        assert!(began.elapsed().as_secs() < 120, "no checkpoint after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut resume = args(&parts);
    resume.push("--resume".into());
    let o = vitdet(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&o);
    let resumed = steps_run(&o);
    assert!((1..8).contains(&resumed), "the kill came mid-run: {resumed} steps left");

    let (a, b) = (metrics(&whole), metrics(&parts));
    assert_eq!((a.len(), b.len()), (8, 8), "one line per step, none repeated or lost");
    for (x, y) in a.iter().zip(&b) {
        for key in ["iter", "loss", "loss_q1k2", "loss_q2k1", "lr", "momentum"] {
            assert_eq!(x[key], y[key], "{key}: {x} vs {y}");
        }
    }
    for file in ["model.safetensors", "checkpoint/last.safetensors"] {
        let (x, y) = (tensors(&whole.join(file)), tensors(&parts.join(file)));
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        let differ: Vec<&String> = x.keys().filter(|k| x[*k].iter().zip(&y[*k]).any(|(p, q)| p.to_bits() != q.to_bits())).collect();
        assert!(differ.is_empty(), "{file}: resumed vs uninterrupted differ in {differ:?}");
    }
}

#[test]
fn pretrain_user_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert_user_error(&vitdet(&["pretrain", "--method", "mocov3", "--config", "pretrain_mae_shapes_tiny", "--out", path(&out)]), "no [mocov3] table");
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--config", "pretrain_mocov3_shapes_tiny", "--out", path(&out)]), "--method mocov3");
    let recipe = dir.path().join("moco.toml");
    std::fs::write(&recipe, moco_recipe(1, 1).replace("batch_size = 16", "batch_size = 1")).unwrap();
    assert_user_error(&vitdet(&["pretrain", "--method", "mocov3", "--config", path(&recipe), "--out", path(&out)]), "train.batch_size");
    std::fs::write(&recipe, format!("{}\n[train.augment]\nhflip = 0.0\n", moco_recipe(1, 1))).unwrap();
    assert_user_error(&vitdet(&["pretrain", "--method", "mocov3", "--config", path(&recipe), "--out", path(&out)]), "train.augment");
    std::fs::write(&recipe, moco_recipe(1, 1).replace("temperature = 0.2", "temperature = 0.0")).unwrap();
    assert_user_error(&vitdet(&["pretrain", "--method", "mocov3", "--config", path(&recipe), "--out", path(&out)]), "temperature");
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
    // The shipped distill recipe on the shrunk MAE recipe: its own base is
    // the full-size pretrain_mae_shapes_tiny.toml, this one the file above.
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/pretrain_distill_shapes_tiny.toml")).unwrap();
    let own: Vec<&str> = shipped.lines().filter(|l| !l.starts_with("base =")).collect();
    std::fs::write(&recipe, format!("base = \"mae.toml\"\n{}\n", own.join("\n"))).unwrap();
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
