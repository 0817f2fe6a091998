//! Kill tests: a real `vitdet train` killed with SIGKILL after a checkpoint,
//! and one that dies in the middle of a checkpoint write, each resumed and
//! compared bitwise with an uninterrupted run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_ok, path, text, vitdet};

/// The CPU shapes recipe with a checkpoint every 2 steps.
fn recipe(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/vitdet_tiny_shapes.toml")).unwrap();
    let text: String = base
        .lines()
        .map(|l| if l.trim_start().starts_with("checkpoint_period") { "checkpoint_period = 2".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let file = dir.join("recipe.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn train_args<'a>(recipe: &'a Path, data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec!["train", "--config", path(recipe), "--data", path(data), "--out", path(out), "--max-iter", "4"]
}

fn train_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitdet"));
    cmd.args(args).env("HOME", "/nonexistent-home").env_remove("VITDET_WEIGHTS");
    cmd
}

/// The losses of a run's `metrics.jsonl`, by iteration.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["iter"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

fn assert_same_run(resumed: &Path, reference: &Path) {
    assert_eq!(losses(resumed), losses(reference), "losses of the resumed run");
    let tensors = |run: &Path| engine::checkpoint::read_safetensors(&run.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let (a, b) = (tensors(resumed), tensors(reference));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let bits = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(x) == bits(y), "{name} differs from the uninterrupted run's");
    }
    let meta = |run: &Path| engine::checkpoint::read_safetensors_metadata(&run.join("model.safetensors")).unwrap();
    assert_eq!(meta(resumed), meta(reference), "model metadata");
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    assert_ok(&vitdet(&["data", "shapes", "--out", path(&data), "--train", "4", "--val", "2", "--size", "128", "--seed", "2"]));
    let recipe = recipe(dir.path());

    let reference = dir.path().join("reference");
    assert_ok(&vitdet(&train_args(&recipe, &data, &reference)));

    // SIGKILL once the first checkpoint exists (wherever the run is by then).
    let killed = dir.path().join("killed");
    let mut child = train_command(&train_args(&recipe, &data, &killed)).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let checkpoint = killed.join("checkpoint/last.safetensors");
    let start = Instant::now();
    while !checkpoint.is_file() && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    let mut resume = train_args(&recipe, &data, &killed);
    resume.push("--resume");
    assert_ok(&vitdet(&resume));
    assert_same_run(&killed, &reference);

    // Death in the middle of the second checkpoint write: its temporary is
    // written, the rename never happens.
    let torn = dir.path().join("torn");
    let o = train_command(&train_args(&recipe, &data, &torn)).env("VITDET_FAULT_ABORT_WRITE", "last.safetensors:2").output().unwrap();
    assert!(!o.status.success(), "the injected fault must stop the run: {}", text(&o.stderr));
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(torn.join("checkpoint"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.contains(".tmp"))
            .collect()
    };
    assert_eq!(leftovers().len(), 1, "the torn write's temporary");
    let mut resume = train_args(&recipe, &data, &torn);
    resume.push("--resume");
    assert_ok(&vitdet(&resume));
    assert!(leftovers().is_empty(), "resume removes the temporary");
    assert_same_run(&torn, &reference);
}

/// Issue 17: training data where most images are corrupt, so some batches
/// have no readable image at all; a run torn in its second checkpoint write
/// resumes from the first checkpoint, which comes after such batches, and
/// must end where the uninterrupted run ends (the loader position, empty
/// batches included, is part of the checkpoint).
#[test]
fn a_resume_after_batches_of_corrupt_images_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    assert_ok(&vitdet(&["data", "shapes", "--out", path(&data), "--train", "8", "--val", "2", "--size", "128", "--seed", "2"]));
    let mut images: Vec<PathBuf> = std::fs::read_dir(data.join("train")).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    // One readable image of eight: with 4 images a batch, most batches are empty.
    for image in &images[1..] {
        std::fs::write(image, b"not an image").unwrap();
    }
    let recipe = recipe(dir.path());
    let reference = dir.path().join("reference");
    let o = vitdet(&train_args(&recipe, &data, &reference));
    assert_ok(&o);
    assert!(text(&o.stderr).contains("warning: training data: skipped: "), "{}", text(&o.stderr));

    let torn = dir.path().join("torn");
    let o = train_command(&train_args(&recipe, &data, &torn)).env("VITDET_FAULT_ABORT_WRITE", "last.safetensors:2").output().unwrap();
    assert!(!o.status.success(), "the injected fault must stop the run: {}", text(&o.stderr));
    let mut resume = train_args(&recipe, &data, &torn);
    resume.push("--resume");
    assert_ok(&vitdet(&resume));
    assert_same_run(&torn, &reference);
}

