//! The shared training loop (`engine::trainer`) on a tiny synthetic task: a
//! linear regression on fixed random data, with an EMA of its weights as
//! extra task state, random input jitter drawn from the loop's RNG, and
//! scripted evaluation scores.
//!
//! - resuming after a "crash" is bitwise equal to an uninterrupted run
//!   (weights, optimizer state, RNG, EMA state, best model, logged losses),
//!   and forgetting the task state on resume is caught;
//! - `k` micro-batches of `B / k` give the step of one batch of `B`, within
//!   float rounding (SGD and AdamW);
//! - the NaN/inf guard names the iteration and the term (and a non-finite
//!   gradient norm under clipping);
//! - a task's step metrics join each `metrics.jsonl` line;
//! - the best model is the one of the highest primary metric, across a resume;
//! - the model and checkpoint are written before the final evaluation, so an
//!   evaluation with nothing to score, or one that fails, leaves them;
//! - empty batches are skipped, and too many in a row stop the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use engine::checkpoint::{load_checkpoint, read_safetensors, var_tensors, write_safetensors_atomic};
use engine::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use engine::progress::ProgressConfig;
use engine::rng::TrainRng;
use engine::run_dir::RunDir;
use engine::schedule::Schedule;
use engine::trainer::{
    EvalOutcome, EvalPeriod, Evaluation, LoopConfig, LossTerms, RunSummary, TaskState, TrainTask, Trainer,
    DEFAULT_MAX_EMPTY_BATCHES,
};
use engine::Error;

/// Samples in the data set.
const SAMPLES: usize = 64;
/// Samples per optimizer step.
const BATCH: usize = 8;
/// EMA decay of the task's extra state.
const EMA_DECAY: f64 = 0.9;
/// Tolerance of the accumulation test: k micro-batch means summed vs one
/// mean differ only by f32 rounding of a few additions per element.
const ACCUM_TOL: f32 = 1e-5;

/// One micro-batch: sample indices.
type Batch = Vec<u32>;

/// How the task evaluates.
#[derive(Clone)]
enum Eval {
    /// The given primary score after the given (0-based) iterations; the
    /// other evaluations have nothing to score.
    Scripted(HashMap<usize, f64>),
    /// Always nothing to score.
    Nothing,
    /// Always an error.
    Fails,
}

#[derive(Clone)]
struct Options {
    /// Jitter the inputs with noise from the loop's RNG.
    jitter: bool,
    /// Make this term NaN (or infinite) at this iteration.
    poison: Option<(usize, &'static str, f32)>,
    /// Add a term whose gradient is infinite while its value is 0.
    nan_gradient: bool,
    eval: Eval,
    /// Ignore the EMA tensor found in the checkpoint (negative control).
    forget_state: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { jitter: true, poison: None, nan_gradient: false, eval: Eval::Nothing, forget_state: false }
    }
}

struct Linear {
    w: Var,
    b: Var,
    x: Tensor,
    y: Tensor,
    ema: Tensor,
    ema_updates: u64,
    opts: Options,
    step: usize,
}

impl Linear {
    fn new(opts: Options) -> Self {
        let mut r = TrainRng::seed_from_u64(1234);
        let x = r.normal((SAMPLES, 4), 0.0, 1.0, &Device::Cpu).unwrap();
        let truth = Tensor::new(&[[1.0f32, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]], &Device::Cpu).unwrap();
        let noise = r.normal((SAMPLES, 2), 0.0, 0.1, &Device::Cpu).unwrap();
        let y = ((x.matmul(&truth.t().unwrap()).unwrap() + 0.5).unwrap() + noise).unwrap();
        let w = Var::from_tensor(&r.normal((2, 4), 0.0, 0.1, &Device::Cpu).unwrap()).unwrap();
        let b = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let ema = w.as_tensor().copy().unwrap();
        Self { w, b, x, y, ema, ema_updates: 0, opts, step: 0 }
    }

    fn optimizer_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup { params: vec![("b".into(), self.b.clone())], lr_scale: 1.0, weight_decay: 0.0 },
            ParamGroup { params: vec![("w".into(), self.w.clone())], lr_scale: 0.5, weight_decay: 0.05 },
        ]
    }
}

impl TrainTask for Linear {
    type Batch = Batch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        vec![("b".into(), self.b.clone()), ("w".into(), self.w.clone())]
    }

    fn losses(&mut self, batch: &Batch, rng: &mut TrainRng) -> Result<LossTerms, Error> {
        let idx = Tensor::new(batch.as_slice(), &Device::Cpu)?;
        let mut x = self.x.index_select(&idx, 0)?;
        if self.opts.jitter {
            let noise = rng.normal(x.dims(), 0.0, 0.05, &Device::Cpu)?;
            x = (x + noise)?;
        }
        let y = self.y.index_select(&idx, 0)?;
        let pred = x.matmul(&self.w.as_tensor().t()?)?.broadcast_add(self.b.as_tensor())?;
        let mut mse = (pred - y)?.sqr()?.mean_all()?;
        let mut l2 = (self.w.as_tensor().sqr()?.sum_all()? * 1e-3)?;
        if let Some((iter, term, value)) = self.opts.poison {
            if iter == self.step {
                let bad = Tensor::new(value, &Device::Cpu)?;
                match term {
                    "loss_mse" => mse = (mse * bad)?,
                    _ => l2 = (l2 * bad)?,
                }
            }
        }
        let mut terms = vec![("loss_mse".to_string(), mse), ("loss_l2".to_string(), l2)];
        if self.opts.nan_gradient {
            // sqrt at 0 has an infinite derivative, which reaches w through w - detach(w).
            let w = self.w.as_tensor();
            terms.push(("loss_sqrt".into(), w.sub(&w.detach())?.sum_all()?.sqrt()?));
        }
        LossTerms::new(terms)
    }

    fn is_empty(&self, batch: &Batch) -> bool {
        batch.is_empty()
    }

    fn after_step(&mut self, iter: usize) -> Result<(), Error> {
        assert_eq!(iter, self.step, "after_step gets the iteration just run");
        self.ema = ((&self.ema * EMA_DECAY)? + (self.w.as_tensor() * (1.0 - EMA_DECAY))?)?;
        self.ema_updates += 1;
        self.step += 1;
        Ok(())
    }

    fn step_metrics(&self, iter: usize) -> Vec<(String, f64)> {
        assert_eq!(iter + 1, self.step, "asked after after_step");
        vec![("ema_updates".into(), self.ema_updates as f64)]
    }

    fn evaluate(&mut self, iter: usize) -> Result<Option<Evaluation>, Error> {
        match &self.opts.eval {
            Eval::Nothing => Ok(None),
            Eval::Fails => Err(Error::Msg(format!("evaluation failed after iteration {iter}"))),
            Eval::Scripted(scores) => Ok(scores.get(&iter).map(|&score| {
                Evaluation::new(vec![("score".into(), score), ("iter_seen".into(), iter as f64)]).with_primary("score")
            })),
        }
    }

    fn save_model(&self, path: &Path) -> Result<(), Error> {
        write_safetensors_atomic(path, &var_tensors(&self.variables()))
    }

    fn extra_state(&self) -> Result<TaskState, Error> {
        Ok(TaskState { tensors: vec![("ema.w".into(), self.ema.copy()?)], json: serde_json::json!({ "ema_updates": self.ema_updates, "step": self.step }) })
    }

    fn restore_extra_state(&mut self, state: TaskState) -> Result<(), Error> {
        let [(name, ema)]: [(String, Tensor); 1] = state.tensors.try_into().map_err(|_| Error::Msg("one tensor expected".into()))?;
        assert_eq!(name, "ema.w");
        if !self.opts.forget_state {
            self.ema = ema;
        }
        self.ema_updates = state.json["ema_updates"].as_u64().unwrap();
        self.step = state.json["step"].as_u64().unwrap() as usize;
        Ok(())
    }
}

/// Micro-batch `i` of size `size`: samples `i * size ..` of a fixed
/// permutation (cycled), so micro-batches `2t, 2t + 1` of size B/2 hold
/// exactly the samples of batch `t` of size B.
fn batches(start: u64, size: usize) -> impl Iterator<Item = Result<Batch, Error>> {
    let order = TrainRng::seed_from_u64(7).permutation(SAMPLES);
    (start..).map(move |i| Ok((0..size).map(|j| order[(i as usize * size + j) % SAMPLES] as u32).collect()))
}

#[derive(Clone, Copy)]
enum Opt {
    AdamW,
    Sgd,
}

fn config(max_iter: usize, grad_accum: usize) -> LoopConfig {
    LoopConfig {
        max_iter,
        images_per_step: BATCH,
        grad_accum,
        // A fixed 20-iteration schedule, whatever max_iter is.
        schedule: Schedule::WarmupCosine { base_lr: 0.3, total_iters: 20, warmup_iters: 4, warmup_lr_start: 1e-3, min_lr: 1e-3 },
        clip_grad_norm: Some(1.0),
        eval_period: EvalPeriod::Every(4),
        checkpoint_period: 3,
        seed: 17,
        max_empty_batches: DEFAULT_MAX_EMPTY_BATCHES,
        progress: ProgressConfig { quiet: true, ..ProgressConfig::default() },
    }
}

fn optimizer(task: &Linear, opt: Opt) -> Box<dyn Optimizer> {
    match opt {
        Opt::AdamW => Box::new(AdamW::new(task.optimizer_groups(), AdamWConfig::default()).unwrap()),
        Opt::Sgd => Box::new(Sgd::new(task.optimizer_groups(), SgdConfig { momentum: 0.0, nesterov: false }).unwrap()),
    }
}

/// Trains `task` in `out` to `cfg.max_iter`, on batches that end after
/// `stop_after` iterations' worth (a "crash" there) if given.
fn train(task: &mut Linear, out: &Path, cfg: LoopConfig, resume: bool, opt: Opt, stop_after: Option<usize>) -> Result<RunSummary, Error> {
    let run = RunDir::open(out, resume).unwrap();
    let k = cfg.grad_accum;
    let optimizer = optimizer(task, opt);
    let trainer = Trainer::new(task, optimizer, cfg, run, resume)?;
    let start = trainer.start_micro_batch();
    let source = batches(start, BATCH / k);
    match stop_after {
        Some(n) => trainer.run(source.take(n * k - start as usize)),
        None => trainer.run(source),
    }
}

/// What a safetensors file stores, by tensor name (dtype, shape, bytes),
/// plus its metadata; independent of header order.
type Stored = (BTreeMap<String, (String, Vec<usize>, Vec<u8>)>, BTreeMap<String, String>);

fn stored(path: &Path) -> Stored {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file.tensors().into_iter().map(|(n, t)| (n, (format!("{:?}", t.dtype()), t.shape().to_vec(), t.data().to_vec()))).collect();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    (tensors, header.metadata().clone().unwrap_or_default().into_iter().collect())
}

/// Each metrics line without its wall-clock throughput.
fn metrics(out: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).unwrap();
            assert!(m.remove("img_s").unwrap().as_f64().unwrap() > 0.0);
            m
        })
        .collect()
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    read_safetensors(path, &Device::Cpu).unwrap().into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap())).collect()
}

fn scripted(scores: &[(usize, f64)]) -> Options {
    Options { eval: Eval::Scripted(scores.iter().copied().collect()), ..Options::default() }
}

#[test]
fn a_resumed_run_is_bitwise_equal_to_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    // Evaluations after iterations 3, 7 and 11: the best is the middle one,
    // so a resume that forgot the best would overwrite model_best at 11.
    let opts = scripted(&[(3, 0.5), (7, 0.9), (11, 0.7)]);
    let straight = tmp.path().join("straight");
    let summary = train(&mut Linear::new(opts.clone()), &straight, config(12, 1), false, Opt::AdamW, None).unwrap();
    assert_eq!((summary.iterations, summary.best.as_ref().unwrap().iter), (12, 7));

    let resumed = tmp.path().join("resumed");
    // The batches run out in iteration 10: the last checkpoint is at 9, the log holds 0..=9.
    let e = train(&mut Linear::new(opts.clone()), &resumed, config(12, 1), false, Opt::AdamW, Some(10)).unwrap_err();
    assert!(matches!(e, Error::TrainingStopped { iter: 10, .. }), "{e}");
    assert!(e.to_string().contains("ran out"), "{e}");
    assert_eq!(metrics(&resumed).len(), 10);
    let summary = train(&mut Linear::new(opts.clone()), &resumed, config(12, 1), true, Opt::AdamW, None).unwrap();
    assert_eq!(summary.iterations, 3);
    assert_eq!(summary.best.as_ref().map(|b| (b.iter, b.value)), Some((7, 0.9)), "the best survives the resume");

    for file in ["model.safetensors", "model_best.safetensors", "checkpoint/last.safetensors"] {
        assert!(stored(&resumed.join(file)) == stored(&straight.join(file)), "{file} differs after resuming");
    }
    let ckpt = load_checkpoint(&straight.join("checkpoint/last.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ckpt.state.iter, 12);
    assert_eq!(ckpt.state.optimizer_steps, 12);
    assert_eq!(ckpt.state.user["task"]["ema_updates"], 12);
    let names: Vec<&str> = ckpt.model.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["@task.ema.w", "b", "w"]);
    assert_eq!(ckpt.optim.len(), 6, "AdamW: step, exp_avg, exp_avg_sq for b and w");
    let (a, b) = (metrics(&straight), metrics(&resumed));
    assert_eq!(a.len(), 12);
    assert!(a == b, "metrics differ:\n{a:?}\n{b:?}");
    assert_eq!(a[7]["score"], 0.9);
    let updates: Vec<f64> = a.iter().map(|m| m["ema_updates"].as_f64().unwrap()).collect();
    assert_eq!(updates, (1..=12).map(f64::from).collect::<Vec<_>>(), "the task's step metrics, logged after its after_step");
    let loss = |m: &serde_json::Map<String, serde_json::Value>| m["loss"].as_f64().unwrap();
    assert!(loss(&a[11]) < 0.25 * loss(&a[0]), "the model learned: {} -> {}", loss(&a[0]), loss(&a[11]));
    assert!(a.iter().any(|m| m["grad_norm"].as_f64().unwrap() > 1.0), "clipping was active");

    // Negative control: the same resume without restoring the EMA state ends elsewhere.
    let forgetful = tmp.path().join("forgetful");
    train(&mut Linear::new(opts.clone()), &forgetful, config(12, 1), false, Opt::AdamW, Some(10)).unwrap_err();
    train(&mut Linear::new(Options { forget_state: true, ..opts }), &forgetful, config(12, 1), true, Opt::AdamW, None).unwrap();
    let file = "checkpoint/last.safetensors";
    assert!(stored(&forgetful.join(file)) != stored(&straight.join(file)), "the comparison can fail");
}

#[test]
fn k_micro_batches_step_like_one_batch() {
    for opt in [Opt::Sgd, Opt::AdamW] {
        let tmp = tempfile::tempdir().unwrap();
        let run = |k: usize| {
            let out = tmp.path().join(format!("k{k}"));
            let opts = Options { jitter: false, ..Options::default() };
            train(&mut Linear::new(opts), &out, config(6, k), false, opt, None).unwrap();
            (weights(&out.join("model.safetensors")), metrics(&out))
        };
        let (one, one_log) = run(1);
        for k in [2, 4] {
            let (split, split_log) = run(k);
            for ((name, a), (_, b)) in one.iter().zip(&split) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= ACCUM_TOL * x.abs().max(1.0), "{name} with k = {k}: {x} vs {y}");
                }
            }
            for (a, b) in one_log.iter().zip(&split_log) {
                for key in ["loss", "loss_mse", "loss_l2", "grad_norm"] {
                    let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
                    assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{key} with k = {k}: {x} vs {y}");
                }
            }
        }
        // The weights moved far more than the tolerance: the comparison is not between frozen models.
        let initial = var_tensors(&Linear::new(Options::default()).variables());
        let moved = initial.iter().zip(&one).map(|((_, t), (_, w))| {
            let t: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            t.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
        });
        assert!(moved.fold(0.0f32, f32::max) > 1e3 * ACCUM_TOL);
    }
}

#[test]
fn the_nan_guard_names_the_iteration_and_the_term() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, (term, value)) in [("loss_l2", f32::NAN), ("loss_mse", f32::INFINITY)].into_iter().enumerate() {
        let out = tmp.path().join(term);
        let opts = Options { poison: Some((4, term, value)), ..Options::default() };
        let e = train(&mut Linear::new(opts), &out, config(8, 1 + k), false, Opt::AdamW, None).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::TrainingStopped { iter: 4, .. }), "{msg}");
        assert!(msg.contains("iteration 4") && msg.contains(&format!("loss term {term} is {}", value as f64)), "{msg}");
        assert_eq!(metrics(&out).len(), 4, "iterations 0..=3 were logged, the bad one was not");
    }
    let opts = Options { nan_gradient: true, ..Options::default() };
    let e = train(&mut Linear::new(opts), &tmp.path().join("grad"), config(8, 1), false, Opt::Sgd, None).unwrap_err();
    assert!(matches!(e, Error::TrainingStopped { iter: 0, .. }) && e.to_string().contains("gradient norm is inf"), "{e}");
}

#[test]
fn the_best_model_is_the_one_with_the_highest_primary_metric() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let opts = scripted(&[(3, 0.3), (7, 0.8), (11, 0.6)]);
    let summary = train(&mut Linear::new(opts.clone()), &out, config(12, 1), false, Opt::AdamW, None).unwrap();
    let best = summary.best.unwrap();
    assert_eq!((best.iter, best.metric.as_str(), best.value), (7, "score", 0.8));
    assert_eq!(best.evaluation.get("iter_seen"), Some(7.0));
    assert_eq!(summary.best_model_path, Some(out.join("model_best.safetensors")));
    match summary.last_eval {
        Some((11, EvalOutcome::Scored(e))) => assert_eq!(e.get("score"), Some(0.6)),
        other => panic!("last evaluation {other:?}"),
    }
    // The best model is the model after 8 iterations: what a run of 8 ends with.
    let eight = tmp.path().join("eight");
    train(&mut Linear::new(opts), &eight, config(8, 1), false, Opt::AdamW, None).unwrap();
    let best_weights = weights(&out.join("model_best.safetensors"));
    assert_eq!(best_weights, weights(&eight.join("model.safetensors")));
    assert_ne!(best_weights, weights(&out.join("model.safetensors")));
}

#[test]
fn the_final_save_comes_before_the_final_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let quiet = tmp.path().join("nothing");
    let summary = train(&mut Linear::new(Options::default()), &quiet, config(5, 1), false, Opt::AdamW, None).unwrap();
    assert!(matches!(summary.last_eval, Some((4, EvalOutcome::NothingToScore))));
    assert!(summary.best.is_none() && summary.best_model_path.is_none());
    assert!(!quiet.join("model_best.safetensors").exists());
    let log = metrics(&quiet);
    assert_eq!(log[3]["eval_nothing_to_score"], true);
    assert_eq!(log[4]["eval_nothing_to_score"], true);
    assert!(!log[2].contains_key("eval_nothing_to_score"));

    let failing = tmp.path().join("fails");
    let e = train(&mut Linear::new(Options { eval: Eval::Fails, ..Options::default() }), &failing, config(3, 1), false, Opt::AdamW, None).unwrap_err();
    assert!(e.to_string().contains("evaluation failed after iteration 2"), "{e}");
    let ckpt = load_checkpoint(&failing.join("checkpoint/last.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ckpt.state.iter, 3, "the final checkpoint was written before the evaluation");
    assert_eq!(weights(&failing.join("model.safetensors")), weights(&quiet_model_after(tmp.path(), 3)));
    assert_eq!(metrics(&failing).len(), 3, "the last iteration's line was logged");
    // A finished run resumed does nothing but rewrite its model.
    std::fs::remove_file(failing.join("model.safetensors")).unwrap();
    let again = train(&mut Linear::new(Options::default()), &failing, config(3, 1), true, Opt::AdamW, None).unwrap();
    assert_eq!((again.iterations, again.last_eval.is_none()), (0, true));
    assert!(failing.join("model.safetensors").is_file());
}

/// The model after `n` iterations of a run that does not evaluate.
fn quiet_model_after(dir: &Path, n: usize) -> PathBuf {
    let out = dir.join(format!("quiet{n}"));
    let cfg = LoopConfig { eval_period: EvalPeriod::Never, ..config(n, 1) };
    train(&mut Linear::new(Options::default()), &out, cfg, false, Opt::AdamW, None).unwrap();
    out.join("model.safetensors")
}

#[test]
fn empty_batches_are_skipped_until_too_many_come_in_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LoopConfig { max_empty_batches: 3, eval_period: EvalPeriod::Never, ..config(2, 1) };
    let run = |name: &str, source: Vec<Batch>| {
        let mut task = Linear::new(Options::default());
        let optimizer = optimizer(&task, Opt::Sgd);
        let trainer = Trainer::new(&mut task, optimizer, cfg.clone(), RunDir::open(&tmp.path().join(name), false).unwrap(), false).unwrap();
        trainer.run(source.into_iter().map(Ok::<Batch, Error>))
    };
    let full: Vec<Batch> = batches(0, BATCH).take(2).map(Result::unwrap).collect();
    let gappy = vec![vec![], vec![], full[0].clone(), vec![], full[1].clone()];
    assert_eq!(run("gappy", gappy).unwrap().iterations, 2);
    let dead = vec![full[0].clone(), vec![], vec![], vec![], full[1].clone()];
    let e = run("dead", dead).unwrap_err();
    assert!(matches!(e, Error::TrainingStopped { iter: 1, .. }) && e.to_string().contains("3 training batches in a row were empty"), "{e}");
}

/// Issue 17: a batch whose samples all failed (the loader's batch of an
/// all-corrupt stretch of images) right before a checkpoint. The resumed
/// source must start after every batch drawn, the empty ones too, or the
/// resumed run trains on other batches than the uninterrupted one.
#[test]
fn a_resume_after_an_empty_batch_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    // Micro-batches 4 and 8 are empty (k = 1): iterations 3, 4, 5 use
    // batches 3, 5, 6, so the checkpoint at done 6 (period 3) has drawn 7
    // batches, one more than `6 * k`; iteration 6 uses 7, iteration 7 skips
    // the empty 8.
    const HOLES: [u64; 2] = [4, 8];
    let source = |start: u64| batches(start, BATCH).enumerate().map(move |(i, b)| if HOLES.contains(&(start + i as u64)) { Ok(vec![]) } else { b });
    let cfg = || LoopConfig { eval_period: EvalPeriod::Never, ..config(9, 1) };
    let straight = tmp.path().join("straight");
    let mut task = Linear::new(Options::default());
    let adamw = optimizer(&task, Opt::AdamW);
    Trainer::new(&mut task, adamw, cfg(), RunDir::open(&straight, false).unwrap(), false).unwrap().run(source(0)).unwrap();

    let resumed = tmp.path().join("resumed");
    // The source ends after batch 7: the run stops in iteration 7, after
    // the checkpoint at done 6.
    let mut task = Linear::new(Options::default());
    let adamw = optimizer(&task, Opt::AdamW);
    let e = Trainer::new(&mut task, adamw, cfg(), RunDir::open(&resumed, false).unwrap(), false).unwrap().run(source(0).take(8)).unwrap_err();
    assert!(matches!(e, Error::TrainingStopped { iter: 7, .. }), "{e}");
    let mut task = Linear::new(Options::default());
    let adamw = optimizer(&task, Opt::AdamW);
    let trainer = Trainer::new(&mut task, adamw, cfg(), RunDir::open(&resumed, true).unwrap(), true).unwrap();
    assert_eq!((trainer.start_iter(), trainer.start_micro_batch()), (6, 7), "one batch past 6 * k: the empty batch 4");
    let start = trainer.start_micro_batch();
    trainer.run(source(start)).unwrap();
    for file in ["model.safetensors", "checkpoint/last.safetensors"] {
        assert!(stored(&resumed.join(file)) == stored(&straight.join(file)), "{file} differs after resuming");
    }
    let (a, b) = (metrics(&straight), metrics(&resumed));
    assert!(a == b, "metrics differ:\n{a:?}\n{b:?}");
}

