//! End-to-end tests of the classification commands: `vitdet finetune` from
//! scratch fits a tiny synthetic set (the whole pipeline learns: loader,
//! transforms, model, loss, optimizer, loop), then `eval cls` scores it and
//! `classify` names its classes; and the user errors (one line, exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::{assert_ok, assert_user_error, path, text, vitdet};

/// The CPU shapes recipe with `overrides` (`key = value` lines of the
/// recipe, matched by key, replacing the base file's line).
fn shapes_recipe(overrides: &[(&str, &str)]) -> String {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/finetune_shapes_tiny.toml")).unwrap();
    let mut out = String::new();
    let mut used = vec![false; overrides.len()];
    for line in base.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match overrides.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                used[i] = true;
                out.push_str(&format!("{key} = {}", overrides[i].1));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(used.iter().all(|u| *u), "every override names a key of the base recipe: {overrides:?}");
    out
}

/// The CPU shapes recipe shrunk to a from-scratch run of about 15 s: 960
/// plain training images of 3 classes at 32 px (2 x 2 tokens), 150 steps of
/// 32, no layer decay, held-out validation images scored at the end.
fn fit_recipe() -> String {
    shapes_recipe(&[
        ("input_size", "32"),
        ("train", "960"),
        ("val", "120"),
        ("size", "36"),
        ("categories", "[\"circle\", \"star\", \"rectangle\"]"),
        ("epochs", "5"),
        ("layer_decay", "1.0"),
        ("head_init_std", "0.02"),
        ("eval_period_epochs", "5"),
        ("checkpoint_period_epochs", "5"),
        ("scale", "[0.6, 1.0]"),
    ])
}

/// A few-second run: 12 training and 6 validation images of 3 classes at
/// 32 px (2 x 2 tokens), batch 4 (3 steps an epoch), 2 epochs, an
/// evaluation and a checkpoint every epoch, with augmentation. The learning
/// rate is constant (no warmup, `min_lr` above the peak, so the cosine stays
/// at the peak): `--max-iter` then leaves the schedule unchanged, which
/// makes an interrupted run comparable with an uninterrupted one.
fn tiny_recipe(extra: &[(&str, &str)]) -> String {
    let mut overrides = vec![
        ("train", "12"),
        ("val", "6"),
        ("size", "36"),
        ("categories", "[\"circle\", \"star\", \"rectangle\"]"),
        ("input_size", "32"),
        ("epochs", "2"),
        ("batch_size", "4"),
        ("warmup_epochs", "0.0"),
        ("min_lr", "1.0"),
        ("eval_period_epochs", "1"),
        ("checkpoint_period_epochs", "1"),
    ];
    for (k, v) in extra {
        overrides.retain(|(key, _)| key != k);
        overrides.push((k, v));
    }
    shapes_recipe(&overrides)
}

/// Writes `text` as `name` in `dir`, returning the path.
fn write_recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The tensors of a safetensors file by name, as f32 values (bitwise copies).
fn tensors(file: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, values)
        })
        .collect()
}

/// The lines of `OUT/metrics.jsonl`.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The summary table's "steps (this process)".
fn steps_run(o: &std::process::Output) -> usize {
    let out = text(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("steps (this process)")).expect("a summary line of steps");
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// Names whose values differ between `a` and `b` (both must hold them).
fn changed(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>, names: impl Iterator<Item = String>) -> Vec<String> {
    names.filter(|n| a[n].iter().zip(&b[n]).any(|(x, y)| x.to_bits() != y.to_bits())).collect()
}

#[test]
fn finetune_from_scratch_learns_then_eval_and_classify_read_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("fit.toml");
    std::fs::write(&recipe, fit_recipe()).unwrap();
    let run = dir.path().join("run");
    assert_ok(&vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(&run)]));
    for file in ["config.toml", "metrics.jsonl", "model.safetensors", "model_best.safetensors", "checkpoint/last.safetensors"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let losses: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 150);
    // ln 3 = 1.10 at the start; the mean of the last 15 steps well below it.
    let last: f64 = losses[135..].iter().sum::<f64>() / 15.0;
    assert!(losses[0] > 0.9 && last < 0.85, "losses {:?} .. {:?}", &losses[..3], &losses[135..]);

    // Score the held-out validation images (never trained on).
    let report = dir.path().join("report.json");
    let plot = dir.path().join("cm.png");
    let model = run.join("model.safetensors");
    let o = vitdet(&["eval", "cls", "--weights", path(&model), "--data", path(&run.join("data")), "--json", path(&report), "--plot", path(&plot)]);
    assert_ok(&o);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let top1 = json["report"]["top1"].as_f64().unwrap();
    assert!(top1 >= 60.0, "top-1 on 120 held-out images {top1} (chance 33.3)");
    assert_eq!(json["classes"], serde_json::json!(["circle", "rectangle", "star"]));
    assert!(image::open(&plot).is_ok());

    let star = std::fs::read_dir(run.join("data/train/star")).unwrap().next().unwrap().unwrap().path();
    let o = vitdet(&["classify", "--weights", path(&model), "--image", path(&star), "--topk", "3", "--json"]);
    assert_ok(&o);
    let out = text(&o.stdout);
    for name in ["circle", "rectangle", "star"] {
        assert!(out.contains(name), "{out}");
    }
}

#[test]
fn finetune_user_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let missing = dir.path().join("no-flowers");
    assert_user_error(&vitdet(&["finetune", "--dataset", "flowers", "--data", path(&missing), "--out", path(&out)]), "no-flowers");
    assert_user_error(&vitdet(&["finetune", "--dataset", "mnist", "--data", path(&missing), "--out", path(&out)]), "mnist");
    assert_user_error(&vitdet(&["finetune", "--config", "no_such_recipe", "--out", path(&out)]), "no_such_recipe");
    assert_user_error(&vitdet(&["finetune", "--input-size", "70", "--out", path(&out)]), "data.input_size");
    let not_a_classifier = dir.path().join("x.safetensors");
    std::fs::write(&not_a_classifier, b"nonsense").unwrap();
    assert_user_error(&vitdet(&["eval", "cls", "--weights", path(&not_a_classifier), "--data", path(&missing)]), "x.safetensors");
}

/// `--resume` continues exactly: a run stopped after 2 of its 6 steps
/// (`--max-iter 2`, the same constant learning rate) and resumed to the end
/// ends with the weights, EMA weights and losses of an uninterrupted run,
/// bit for bit (the loader restarts at the right sample, the optimizer
/// state, RNG and EMA come back from the checkpoint). Resuming a finished
/// run changes nothing; starting over it without `--resume` is refused.
#[test]
fn resumed_run_equals_an_uninterrupted_one_and_a_finished_run_stays() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "tiny.toml", &tiny_recipe(&[("ema_decay", "0.9")]));
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(out)];
        args.extend_from_slice(extra);
        let o = vitdet(&args);
        assert_ok(&o);
        o
    };
    run(&whole, &[]);
    run(&parts, &["--max-iter", "2"]);
    assert_eq!(metrics(&parts).len(), 2, "stopped after 2 steps");
    let o = run(&parts, &["--resume"]);
    assert_eq!(steps_run(&o), 4);

    for file in ["model.safetensors", "model_ema.safetensors"] {
        let (a, b) = (tensors(&whole.join(file)), tensors(&parts.join(file)));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert_eq!(changed(&a, &b, a.keys().cloned()), Vec::<String>::new(), "{file}: resumed vs uninterrupted");
    }
    let (a, b) = (metrics(&whole), metrics(&parts));
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 6, "one line per step, none repeated or lost");
    for (x, y) in a.iter().zip(&b) {
        for key in ["iter", "loss", "lr"] {
            assert_eq!(x[key], y[key], "{key}: {x} vs {y}");
        }
    }
    for key in ["top1", "top5", "top1_ema", "top5_ema"] {
        assert_eq!(a[5][key], b[5][key], "{key} at the end");
    }

    // A finished run resumed: nothing to do, nothing changed.
    let log = std::fs::read_to_string(parts.join("metrics.jsonl")).unwrap();
    let before = tensors(&parts.join("model.safetensors"));
    let o = run(&parts, &["--resume"]);
    assert_eq!(steps_run(&o), 0);
    assert_eq!(std::fs::read_to_string(parts.join("metrics.jsonl")).unwrap(), log);
    let after = tensors(&parts.join("model.safetensors"));
    assert_eq!(changed(&before, &after, before.keys().cloned()), Vec::<String>::new());
    assert_user_error(&vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(&parts)]), "--resume");
}

/// `--max-iter` is part of the recorded recipe: `--resume` alone keeps the
/// run's length, and a new `--max-iter` is applied, recorded in
/// `config.toml` and reported once.
#[test]
fn resume_keeps_the_recorded_length_and_records_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "tiny.toml", &tiny_recipe(&[]));
    let run = dir.path().join("run");
    let config = || std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert_ok(&vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(&run), "--max-iter", "2"]));
    assert!(config().contains("max_iter = 2"), "{}", config());

    let o = vitdet(&["finetune", "--out", path(&run), "--resume"]);
    assert_ok(&o);
    assert_eq!(steps_run(&o), 0, "the recorded run was 2 steps long and is finished");
    assert_eq!(metrics(&run).len(), 2);

    let o = vitdet(&["finetune", "--out", path(&run), "--resume", "--max-iter", "3"]);
    assert_ok(&o);
    assert_eq!(steps_run(&o), 1);
    assert_eq!(metrics(&run).len(), 3);
    assert!(config().contains("max_iter = 3"), "{}", config());
    let err = text(&o.stderr);
    assert_eq!(err.matches("instead of the 2").count(), 1, "{err}");
}

/// With `ema_decay > 0` every evaluation reports the raw and the EMA
/// weights' accuracy, the summary prints both, and the run keeps the EMA
/// weights as a classifier file whose accuracy is the one reported.
#[test]
fn ema_is_evaluated_beside_the_weights_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "ema.toml", &tiny_recipe(&[("ema_decay", "0.5"), ("blr", "2e-2")]));
    let run = dir.path().join("run");
    let o = vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(&run)]);
    assert_ok(&o);
    let out = text(&o.stdout);
    assert!(out.contains("top-1 (%)") && out.contains("top-1 EMA (%)"), "{out}");
    let lines = metrics(&run);
    let evals: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("top1").is_some()).collect();
    assert_eq!(evals.len(), 2, "an evaluation every epoch");
    for e in &evals {
        for key in ["top1", "top5", "top1_ema", "top5_ema"] {
            assert!(e[key].is_f64(), "{key} in {e}");
        }
    }
    let ema_file = run.join("model_ema.safetensors");
    assert!(out.contains(&format!("EMA weights: {}", ema_file.display())), "{out}");
    let (raw, ema) = (tensors(&run.join("model.safetensors")), tensors(&ema_file));
    assert_eq!(raw.keys().collect::<Vec<_>>(), ema.keys().collect::<Vec<_>>());
    assert!(changed(&raw, &ema, raw.keys().cloned()).contains(&"head.weight".to_string()), "the EMA lags the weights");

    // The kept file is what was evaluated: `eval cls` on the same validation split agrees.
    let report = dir.path().join("ema.json");
    let plot = dir.path().join("cm.png");
    assert_ok(&vitdet(&["eval", "cls", "--weights", path(&ema_file), "--data", path(&run.join("data")), "--json", path(&report), "--plot", path(&plot)]));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let reported = evals[1]["top1_ema"].as_f64().unwrap();
    assert!((json["report"]["top1"].as_f64().unwrap() - reported).abs() < 1e-9, "{json} vs {reported}");
}

/// A ViT of the tiny recipe with a cls-token head (so it has the final
/// `norm` the probe reads), trained one step: a "pre-trained" backbone file.
fn source_backbone(dir: &Path) -> (PathBuf, PathBuf) {
    let recipe = write_recipe(dir, "source.toml", &tiny_recipe(&[("pool", "\"cls\""), ("blr", "1e-2")]));
    let run = dir.join("source");
    assert_ok(&vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(&run), "--max-iter", "1"]));
    (run.join("model.safetensors"), run.join("data"))
}

fn is_backbone(name: &str) -> bool {
    !name.starts_with("head.")
}

/// `--linear-probe` trains only the head: every backbone tensor of the
/// result equals the source checkpoint's bit for bit, while the head's
/// weights and its BatchNorm's running statistics moved.
#[test]
fn linear_probe_leaves_the_backbone_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (source, data) = source_backbone(dir.path());
    let recipe = write_recipe(dir.path(), "probe.toml", &tiny_recipe(&[("blr", "0.5")]));
    let run = dir.path().join("probe");
    assert_ok(&vitdet(&["finetune", "--config", path(&recipe), "--linear-probe", "--backbone", path(&source), "--data", path(&data), "--out", path(&run)]));
    let (src, probed) = (tensors(&source), tensors(&run.join("model.safetensors")));
    let backbone: Vec<String> = probed.keys().filter(|n| is_backbone(n)).cloned().collect();
    assert!(backbone.contains(&"blocks.11.mlp.fc2.weight".to_string()) && backbone.contains(&"norm.weight".to_string()), "{backbone:?}");
    assert!(backbone.iter().all(|n| src.contains_key(n)), "every backbone tensor comes from the source");
    assert_eq!(changed(&src, &probed, backbone.into_iter()), Vec::<String>::new(), "frozen backbone");
    let head: Vec<&str> = probed.keys().filter(|n| !is_backbone(n)).map(String::as_str).collect();
    assert_eq!(head, ["head.0.running_mean", "head.0.running_var", "head.1.bias", "head.1.weight"]);
    let nonzero = |n: &str| probed[n].iter().any(|v| *v != 0.0);
    assert!(nonzero("head.1.bias") && nonzero("head.0.running_mean"), "the head and its statistics trained");
}

/// `--keep-blocks K`: blocks < K (and the patch and position embeddings)
/// are the source's, blocks >= K are freshly initialised, exactly as a run
/// from scratch with the same seed initialises them. Probing keeps the
/// backbone frozen, so the result shows the initial values.
#[test]
fn keep_blocks_keeps_the_first_k_and_reinitialises_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (source, data) = source_backbone(dir.path());
    let recipe = write_recipe(dir.path(), "probe.toml", &tiny_recipe(&[]));
    let probe = |backbone: &str, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec!["finetune", "--config", path(&recipe), "--linear-probe", "--backbone", backbone, "--data", path(&data), "--out", path(&out), "--max-iter", "1"];
        args.extend_from_slice(extra);
        assert_ok(&vitdet(&args));
        tensors(&out.join("model.safetensors"))
    };
    let kept = probe(path(&source), "keep4", &["--keep-blocks", "4"]);
    let scratch = probe("scratch", "scratch", &[]);
    let src = tensors(&source);
    let block = |n: &str| n.strip_prefix("blocks.").and_then(|r| r.split('.').next()).and_then(|i| i.parse::<usize>().ok());
    let names: Vec<String> = kept.keys().filter(|n| is_backbone(n)).cloned().collect();
    let (early, late): (Vec<String>, Vec<String>) = names.iter().cloned().partition(|n| block(n).is_none_or(|i| i < 4));
    assert!(late.iter().any(|n| n.starts_with("blocks.4.")) && late.iter().any(|n| n.starts_with("blocks.11.")));
    assert_eq!(changed(&src, &kept, early.iter().cloned()), Vec::<String>::new(), "blocks 0-3, embeddings and norm from the source");
    assert_eq!(changed(&scratch, &kept, late.iter().cloned()), Vec::<String>::new(), "blocks 4-11 as initialised from scratch");
    let weights_of_late: Vec<String> = late.iter().filter(|n| n.ends_with(".weight") && !n.contains("norm")).cloned().collect();
    assert_eq!(changed(&src, &kept, weights_of_late.iter().cloned()), weights_of_late, "every re-initialised weight differs from the source");
}

/// Relative difference allowed between a step's loss under `precision =
/// "bf16"` and under f32, same seed and data: the bf16 forward's error on
/// the logits, √73 bf16 products · u (u = 2^-8) ≈ 3.3% RMS at most for a
/// ViT-Tiny (backbone/tests/bf16_precision.rs derives it), which moves a
/// cross-entropy of O(1) logits by as much; the bf16 gradients (cosine
/// within 1 - 2e-3 of f32's) change the few AdamW steps far less. Measured
/// with the recipe below (lr 1.6e-3, losses moving between 0.97 and 1.83):
/// at most 0.11%.
const BF16_LOSS_REL_TOL: f64 = 8.5 / 256.0;

#[test]
fn bf16_recipe_trains_with_losses_close_to_f32_and_keeps_f32_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = |precision: &str| {
        // A head of timm's scale and a learning rate that moves the loss, so
        // that the logits and the updates matter.
        let overrides = [("precision", format!("\"{precision}\"")), ("head_init_std", "0.02".into()), ("blr", "1e-1".into())];
        let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let recipe = write_recipe(dir.path(), &format!("{precision}.toml"), &tiny_recipe(&overrides));
        let out = dir.path().join(precision);
        let o = vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--max-iter", "4", "--out", path(&out)]);
        assert_ok(&o);
        (out, text(&o.stderr))
    };
    let (full, full_log) = run("f32");
    let (mixed, mixed_log) = run("bf16");
    assert!(mixed_log.contains("precision: bf16") && !full_log.contains("precision: bf16"), "{mixed_log}");
    assert!(std::fs::read_to_string(mixed.join("config.toml")).unwrap().contains("precision = \"bf16\""));

    let loss = |run: &Path| metrics(run).iter().map(|m| m["loss"].as_f64().unwrap()).collect::<Vec<f64>>();
    let (a, b) = (loss(&full), loss(&mixed));
    assert_eq!((a.len(), b.len()), (4, 4));
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= BF16_LOSS_REL_TOL * x, "step {step}: loss {y} in bf16 vs {x} in f32");
    }
    assert_ne!(a, b, "bf16 changed no loss: the products did not run in bf16");
    // Master weights: the saved model is f32 (`tensors` checks every dtype).
    assert_eq!(tensors(&mixed.join("model.safetensors")).len(), tensors(&full.join("model.safetensors")).len());
}

#[test]
fn an_unknown_precision_is_a_one_line_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "fp16.toml", &tiny_recipe(&[("precision", "\"fp16\"")]));
    let o = vitdet(&["finetune", "--config", path(&recipe), "--backbone", "scratch", "--out", path(&dir.path().join("run"))]);
    assert_user_error(&o, "precision");
    assert!(text(&o.stderr).contains("expected \"f32\" or \"bf16\""), "{}", text(&o.stderr));
}
