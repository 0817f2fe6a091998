//! The one training loop every task uses (detection, classification
//! fine-tuning, pre-training): iterations `start..max_iter`, the learning
//! rate from a [`Schedule`], gradient accumulation, optional gradient-norm
//! clipping, the optimizer step, a NaN/inf guard, `metrics.jsonl`, the
//! progress bar, periodic evaluation with a best model, atomic checkpoints
//! and exact resume.
//!
//! A task implements [`TrainTask`] (its variables, losses, evaluation and
//! model file) and hands the loop its batches as an iterator:
//!
//! ```text
//! let run = RunDir::open(out, resume)?;            // the task writes config.toml on a fresh run
//! let trainer = Trainer::new(&mut task, optimizer, cfg, run, resume)?;   // loads the checkpoint
//! let batches = loader_starting_at(trainer.start_micro_batch());
//! let summary = trainer.run(batches)?;
//! ```
//!
//! One iteration `i` (0-based; `done = i + 1`):
//!
//! 1. `lr = schedule.lr_at(i)`; `grad_accum` micro-batches, each one's loss
//!    terms checked (a NaN or infinite term stops the run with
//!    [`Error::TrainingStopped`] naming `i` and the term), divided by
//!    `grad_accum` and differentiated, the gradients summed ([`step`]);
//! 2. with clipping, the global gradient norm is clipped (a non-finite norm
//!    stops the run too); the optimizer steps; [`TrainTask::after_step`];
//! 3. when a checkpoint is due (`done % checkpoint_period == 0` or
//!    `done == max_iter`): `OUT/checkpoint/last.safetensors` and
//!    `OUT/model.safetensors` are written, **before** any evaluation, so a
//!    failing evaluation never leaves a run without its model;
//! 4. when an evaluation is due ([`EvalPeriod`]; always at `max_iter`):
//!    [`TrainTask::evaluate`]; its metrics join the iteration's record;
//!    `Ok(None)` (nothing to score) is logged as `eval_nothing_to_score:
//!    true` and never fails the run; a primary metric higher than the best
//!    so far writes `OUT/model_best.safetensors` (and rewrites the
//!    checkpoint written in step 3, so that it knows the new best);
//! 5. the `metrics.jsonl` line (`iter`, `loss`, each term, `lr`, `img_s`,
//!    `grad_norm` with clipping, the task's [`TrainTask::step_metrics`],
//!    the evaluation's metrics) and the progress bar. An evaluation error is returned after this line is logged.
//!
//! Resume restores the variables, the optimizer state and step count, the
//! RNG, the best evaluation and the task's extra state from the checkpoint,
//! and drops metrics lines at or past its iteration; the task restarts its
//! batches at [`Trainer::start_micro_batch`]. `tests/trainer.rs` proves a
//! resumed run bitwise equal to an uninterrupted one.
//!
//! Training images per second count the steps only (data waits included,
//! evaluation and checkpoints not), as the detector's loop did before.

mod state;
mod step;
mod task;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, TensorId, Var};

use crate::checkpoint::{restore_vars, var_tensors, TrainState};
use crate::optim::{all_vars, clip_grad_norm, Optimizer};
use crate::progress::{Progress, ProgressConfig, StepStats};
use crate::rng::TrainRng;
use crate::run_dir::{MetricsWriter, Record, RunDir};
use crate::schedule::Schedule;
use crate::{Error, Result};

pub use state::{BestEval, LoopState, PendingRecord, TASK_TENSOR_PREFIX};
pub use task::{Evaluation, LossTerms, TaskState, TrainTask};

use state::{checkpoint_model_tensors, split_checkpoint_model_tensors};
use step::{accumulate, stopped, MicroBatches};

/// The best model, beside `OUT/model.safetensors`.
pub const BEST_MODEL_FILE: &str = "model_best.safetensors";

/// Field of a `metrics.jsonl` line whose evaluation had nothing to score.
pub const NOTHING_TO_SCORE_FIELD: &str = "eval_nothing_to_score";

/// Field of a `metrics.jsonl` line logged on resume from its checkpoint,
/// because a kill came between the checkpoint and the line (`img_s` is 0).
pub const RECOVERED_FIELD: &str = "recovered_on_resume";

/// Field of a `metrics.jsonl` line holding the pre-clip gradient norm.
pub const GRAD_NORM_FIELD: &str = "grad_norm";

/// The detector's rule, kept for every task: this many empty batches in a
/// row (every sample unreadable) mean the data is broken, not unlucky.
pub const DEFAULT_MAX_EMPTY_BATCHES: usize = 100;

/// When the loop evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPeriod {
    /// Never (no validation data).
    Never,
    /// After the last iteration only.
    AtEnd,
    /// Every this many iterations, and after the last one.
    Every(usize),
}

impl EvalPeriod {
    /// A recipe's `eval_period`: 0 means at the end only.
    pub fn from_period(period: usize) -> Self {
        if period == 0 {
            EvalPeriod::AtEnd
        } else {
            EvalPeriod::Every(period)
        }
    }

    /// Whether to evaluate after `done` of `max_iter` iterations.
    fn due(self, done: usize, max_iter: usize) -> bool {
        match self {
            EvalPeriod::Never => false,
            EvalPeriod::AtEnd => done == max_iter,
            EvalPeriod::Every(n) => done == max_iter || done.is_multiple_of(n),
        }
    }
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Optimizer steps of the whole run.
    pub max_iter: usize,
    /// Samples per optimizer step (all micro-batches), for images/s.
    pub images_per_step: usize,
    /// Micro-batches per optimizer step (gradients are summed).
    pub grad_accum: usize,
    /// Learning rate per iteration (the base rate; groups scale it).
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub clip_grad_norm: Option<f64>,
    /// When to evaluate.
    pub eval_period: EvalPeriod,
    /// Write the checkpoint every this many iterations (and at the end).
    pub checkpoint_period: usize,
    /// Seed of the run's [`TrainRng`] on a fresh run.
    pub seed: u64,
    /// Empty batches in a row after which training stops.
    pub max_empty_batches: usize,
    /// How progress is shown.
    pub progress: ProgressConfig,
}

impl LoopConfig {
    /// Checks the values once, before training.
    ///
    /// # Errors
    /// [`Error::Config`] naming the value: `grad_accum`,
    /// `checkpoint_period`, `max_empty_batches` or an `Every` eval period of
    /// 0, a clipping norm that is not a positive number, or a bad schedule.
    pub fn validate(&self) -> Result<()> {
        let eval_every = match self.eval_period {
            EvalPeriod::Every(n) => n,
            EvalPeriod::Never | EvalPeriod::AtEnd => 1,
        };
        let positive = [
            ("grad_accum", self.grad_accum),
            ("checkpoint_period", self.checkpoint_period),
            ("max_empty_batches", self.max_empty_batches),
            ("eval_period", eval_every),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("train.{key} must be >= 1")));
            }
        }
        if let Some(max) = self.clip_grad_norm {
            if !(max.is_finite() && max > 0.0) {
                return Err(Error::Config(format!(
                    "train.clip_grad_norm must be a positive number, got {max}"
                )));
            }
        }
        self.schedule.validate()
    }
}

/// The scores of the last evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalOutcome {
    /// Scored.
    Scored(Evaluation),
    /// The task had nothing to score.
    NothingToScore,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Iterations run by this process (fewer than `max_iter` after a resume).
    pub iterations: usize,
    /// Training images per second over those iterations (data waits
    /// included; evaluation and checkpoints not).
    pub train_img_s: f64,
    /// This process's last evaluation: 0-based iteration and outcome.
    pub last_eval: Option<(usize, EvalOutcome)>,
    /// The best evaluation of the whole run (resumes included).
    pub best: Option<BestEval>,
    /// `OUT/model.safetensors`.
    pub model_path: PathBuf,
    /// `OUT/model_best.safetensors`, when a best evaluation exists.
    pub best_model_path: Option<PathBuf>,
}

/// A training run, between loading its checkpoint and running its
/// iterations (see the module docs).
pub struct Trainer<'t, T: TrainTask> {
    task: &'t mut T,
    optimizer: Box<dyn Optimizer>,
    cfg: LoopConfig,
    run: RunDir,
    named: Vec<(String, Var)>,
    /// The variables the optimizer updates, in the task's order.
    trained: Vec<Var>,
    start: usize,
    /// Batches drawn from the task's source so far (empty ones included).
    micro_batches: u64,
    rng: TrainRng,
    best: Option<BestEval>,
    metrics: MetricsWriter,
    /// On resume: the checkpoint's own metrics line, if the log lacks it.
    pending: Option<PendingRecord>,
}

impl<T: TrainTask> std::fmt::Debug for Trainer<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run", &self.run)
            .field("start", &self.start)
            .field("max_iter", &self.cfg.max_iter)
            .finish()
    }
}

impl<'t, T: TrainTask> Trainer<'t, T> {
    /// Prepares a run of `task` in `run` (opened with the same `resume`):
    /// on resume, restores everything from `run`'s checkpoint (variables on
    /// their own devices); otherwise starts at iteration 0 with a generator
    /// seeded from `cfg.seed` and an empty metrics log.
    ///
    /// # Errors
    /// An invalid `cfg`; a variable named with [`TASK_TENSOR_PREFIX`]; an
    /// optimizer parameter that is not a task variable; an unreadable
    /// checkpoint or one that does not fit the task or optimizer.
    pub fn new(
        task: &'t mut T,
        mut optimizer: Box<dyn Optimizer>,
        cfg: LoopConfig,
        run: RunDir,
        resume: bool,
    ) -> Result<Self, T::Error> {
        cfg.validate()?;
        let named = task.variables();
        if let Some((name, _)) = named
            .iter()
            .find(|(n, _)| n.starts_with(TASK_TENSOR_PREFIX))
        {
            return Err(Error::Config(format!(
                "variable {name}: the prefix {TASK_TENSOR_PREFIX} is reserved for task state"
            ))
            .into());
        }
        let trained = trained_vars(&named, optimizer.as_ref())?;
        let (start, micro_batches, rng, best, pending) = if resume {
            let device = named
                .first()
                .map_or(Device::Cpu, |(_, v)| v.device().clone());
            let ckpt = run.load_checkpoint(&device)?;
            let (vars, extra) = split_checkpoint_model_tensors(ckpt.model);
            restore_vars(&named, &vars)?;
            optimizer.load_state(&ckpt.optim, ckpt.state.optimizer_steps)?;
            let state = LoopState::from_json(&ckpt.state.user)?;
            if let Some(planned) = state.max_iter.filter(|&m| m != cfg.max_iter) {
                // Only the run's length may differ (the task checked the
                // rest of its recipe against config.toml): say so.
                eprintln!(
                    "resuming {} at step {} of {} steps instead of the {planned} it was planned for: the schedule follows the new length",
                    run.root().display(),
                    ckpt.state.iter,
                    cfg.max_iter
                );
            }
            task.restore_extra_state(TaskState {
                tensors: extra,
                json: state.task,
            })?;
            let drawn = state.micro_batches.unwrap_or((ckpt.state.iter * cfg.grad_accum) as u64);
            (ckpt.state.iter, drawn, ckpt.state.rng, state.best, state.pending)
        } else {
            (0, 0, TrainRng::seed_from_u64(cfg.seed), None, None)
        };
        let metrics = run.metrics_writer(resume.then_some(start))?;
        // A kill between the checkpoint and its metrics line loses the line:
        // keep the checkpoint's copy to log first.
        let pending = pending.filter(|p| p.record.iter + 1 == start && metrics.last_iter() != Some(p.record.iter as u64));
        Ok(Self {
            task,
            optimizer,
            cfg,
            run,
            named,
            trained,
            start,
            micro_batches,
            rng,
            best,
            metrics,
            pending,
        })
    }

    /// The first iteration this process runs (0 on a fresh run).
    pub fn start_iter(&self) -> usize {
        self.start
    }

    /// The micro-batch the task's batches must start at for an exact
    /// resume: every batch the iterations already done drew, empty ones
    /// included (0 on a fresh run; `start_iter * grad_accum` when no batch
    /// was empty). Kept in the checkpoint, so a run whose images of a whole
    /// batch all failed resumes where it stood (`tests/trainer.rs`
    /// `a_resume_after_an_empty_batch_is_exact`).
    pub fn start_micro_batch(&self) -> u64 {
        self.micro_batches
    }

    /// Runs iterations `start_iter..max_iter` on `batches` (see the module
    /// docs). A run with nothing left to do rewrites `OUT/model.safetensors`.
    ///
    /// # Errors
    /// [`Error::TrainingStopped`] for a non-finite loss term or gradient
    /// norm, or batches that run out or stay empty; file errors; the task's
    /// own errors, evaluation errors included (after the iteration's
    /// checkpoint, model and metrics line are written).
    pub fn run<I>(mut self, mut batches: I) -> Result<RunSummary, T::Error>
    where
        I: Iterator<Item = Result<T::Batch, T::Error>>,
    {
        let max_iter = self.cfg.max_iter;
        let mut progress = Progress::new(max_iter, self.start, self.cfg.progress.clone());
        let mut train_seconds = 0.0;
        let mut last_eval = None;
        if let Some(PendingRecord { mut record, eval_due }) = self.pending.take() {
            // The line (and evaluation) a kill cut off after the checkpoint;
            // its images/s was not kept.
            record.extras.push((RECOVERED_FIELD.into(), true.into()));
            if eval_due {
                let (outcome, improved) = self.evaluate(record.iter, &mut record)?;
                last_eval = Some((record.iter, outcome));
                if improved {
                    self.save_checkpoint(self.start, Some((&record, false)))?;
                }
            }
            self.metrics.log(&record)?;
        }
        for iter in self.start..max_iter {
            let (mut record, seconds) = self.train_step(iter, &mut batches)?;
            train_seconds += seconds;
            let done = iter + 1;
            let checkpointed = done == max_iter || done.is_multiple_of(self.cfg.checkpoint_period);
            let eval_due = self.cfg.eval_period.due(done, max_iter);
            if checkpointed {
                self.save_checkpoint(done, Some((&record, eval_due)))?;
                self.task.save_model(&self.run.model_path())?;
            }
            if eval_due {
                match self.evaluate(iter, &mut record) {
                    Ok((outcome, improved)) => {
                        last_eval = Some((iter, outcome));
                        if improved && checkpointed {
                            // The checkpoint just written must know the new best.
                            self.save_checkpoint(done, Some((&record, false)))?;
                        }
                    }
                    Err(e) => {
                        self.metrics.log(&record)?;
                        return Err(e);
                    }
                }
            }
            self.metrics.log(&record)?;
            let stats = StepStats {
                loss: record.loss,
                lr: record.lr,
                img_s: record.img_s,
            };
            progress.update(iter, stats);
        }
        progress.finish();
        let iterations = max_iter.saturating_sub(self.start);
        if iterations == 0 {
            self.task.save_model(&self.run.model_path())?;
        }
        let images = (iterations * self.cfg.images_per_step) as f64;
        Ok(RunSummary {
            iterations,
            train_img_s: images / train_seconds.max(1e-9),
            last_eval,
            best_model_path: self.best.as_ref().map(|_| self.best_model_path()),
            best: self.best,
            model_path: self.run.model_path(),
        })
    }

    /// Iteration `iter` up to the optimizer step and
    /// [`TrainTask::after_step`]: its metrics record (loss, terms, lr,
    /// images/s, grad norm) and its duration in seconds.
    fn train_step<I>(&mut self, iter: usize, batches: &mut I) -> Result<(Record, f64), T::Error>
    where
        I: Iterator<Item = Result<T::Batch, T::Error>>,
    {
        let began = Instant::now();
        let lr = self.cfg.schedule.lr_at(iter);
        let micro = MicroBatches {
            source: batches,
            grad_accum: self.cfg.grad_accum,
            max_empty: self.cfg.max_empty_batches,
            drawn: &mut self.micro_batches,
        };
        let mut acc = accumulate(self.task, micro, &mut self.rng, iter, &self.trained)?;
        let grad_norm = match self.cfg.clip_grad_norm {
            Some(max) => {
                let norm = clip_grad_norm(&mut acc.grads, &self.trained, max)?;
                if !norm.is_finite() {
                    return Err(stopped(
                        iter,
                        format!("the gradient norm is {norm}; lower the learning rate"),
                    )
                    .into());
                }
                Some(norm)
            }
            None => None,
        };
        self.optimizer.step(&acc.grads, lr)?;
        self.task.after_step(iter)?;
        let seconds = began.elapsed().as_secs_f64();

        let img_s = self.cfg.images_per_step as f64 / seconds.max(1e-9);
        let mut record = Record::new(iter, acc.loss(), lr, img_s);
        for (name, v) in acc.terms {
            record = record.term(name, v);
        }
        if let Some(norm) = grad_norm {
            record = record.extra(GRAD_NORM_FIELD, norm);
        }
        for (name, value) in self.task.step_metrics(iter) {
            record = record.extra(name, value);
        }
        Ok((record, seconds))
    }

    /// `OUT/model_best.safetensors`.
    fn best_model_path(&self) -> PathBuf {
        self.run.root().join(BEST_MODEL_FILE)
    }

    /// Evaluates after iteration `iter`, adds the metrics to `record` and
    /// keeps the best model; returns the outcome and whether the best changed.
    fn evaluate(
        &mut self,
        iter: usize,
        record: &mut Record,
    ) -> Result<(EvalOutcome, bool), T::Error> {
        let Some(evaluation) = self.task.evaluate(iter)? else {
            record
                .extras
                .push((NOTHING_TO_SCORE_FIELD.into(), true.into()));
            return Ok((EvalOutcome::NothingToScore, false));
        };
        for (name, v) in &evaluation.metrics {
            record.extras.push((name.clone(), (*v).into()));
        }
        let improved = BestEval::improved(self.best.as_ref(), iter, &evaluation)?;
        let changed = improved.is_some();
        if let Some(best) = improved {
            self.task.save_model(&self.best_model_path())?;
            self.best = Some(best);
        }
        Ok((EvalOutcome::Scored(evaluation), changed))
    }

    /// Writes the checkpoint after `done` iterations, with the metrics line
    /// of that iteration (not yet logged) and whether its evaluation is due.
    fn save_checkpoint(&self, done: usize, pending: Option<(&Record, bool)>) -> Result<(), T::Error> {
        let extra = self.task.extra_state()?;
        let loop_state = LoopState {
            best: self.best.clone(),
            task: extra.json.clone(),
            max_iter: Some(self.cfg.max_iter),
            // Timing is not state: without it a checkpoint stays a pure
            // function of the run (the resume tests compare them bitwise).
            pending: pending.map(|(record, eval_due)| PendingRecord { record: Record { img_s: 0.0, ..record.clone() }, eval_due }),
            micro_batches: Some(self.micro_batches),
        };
        let state = TrainState {
            iter: done,
            optimizer_steps: self.optimizer.step_count(),
            rng: self.rng.clone(),
            user: loop_state.to_json()?,
        };
        let model = checkpoint_model_tensors(var_tensors(&self.named), &extra);
        self.run
            .save_checkpoint(&model, &self.optimizer.state()?, &state)?;
        Ok(())
    }
}

/// The variables `optimizer` updates, in the order of `named` (which fixes
/// the summation order of the gradient norm). Every one of them must be a
/// task variable, or its trained values would be missing from checkpoints.
fn trained_vars(named: &[(String, Var)], optimizer: &dyn Optimizer) -> Result<Vec<Var>> {
    let in_optimizer: HashSet<TensorId> = all_vars(optimizer.groups())
        .iter()
        .map(|v| v.as_tensor().id())
        .collect();
    let trained: Vec<Var> = named
        .iter()
        .filter(|(_, v)| in_optimizer.contains(&v.as_tensor().id()))
        .map(|(_, v)| v.clone())
        .collect();
    if trained.len() < in_optimizer.len() {
        let known: HashSet<TensorId> = trained.iter().map(|v| v.as_tensor().id()).collect();
        let missing: Vec<&str> = optimizer
            .groups()
            .iter()
            .flat_map(|g| &g.params)
            .filter(|(_, v)| !known.contains(&v.as_tensor().id()))
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(Error::Config(format!(
            "the optimizer updates {missing:?}, which are not among the task's variables (they would be missing from checkpoints)"
        )));
    }
    Ok(trained)
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;

    #[test]
    fn eval_period_is_due_at_its_multiples_and_at_the_end() {
        let due = |p: EvalPeriod| (1..=10).filter(|&d| p.due(d, 10)).collect::<Vec<_>>();
        assert_eq!(due(EvalPeriod::Never), Vec::<usize>::new());
        assert_eq!(due(EvalPeriod::AtEnd), vec![10]);
        assert_eq!(due(EvalPeriod::Every(4)), vec![4, 8, 10]);
        assert_eq!(EvalPeriod::from_period(0), EvalPeriod::AtEnd);
        assert_eq!(EvalPeriod::from_period(3), EvalPeriod::Every(3));
    }

    #[test]
    fn trained_vars_follow_the_task_order_and_must_all_be_task_variables() {
        use crate::optim::{Sgd, SgdConfig};
        use candle_core::DType;
        let var = || Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let (a, b, c) = (var(), var(), var());
        let group = |params: Vec<(&str, &Var)>| crate::optim::ParamGroup {
            params: params
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            lr_scale: 1.0,
            weight_decay: 0.0,
        };
        let sgd = Sgd::new(
            vec![group(vec![("c", &c)]), group(vec![("a", &a)])],
            SgdConfig::default(),
        )
        .unwrap();
        let named = vec![
            ("a".to_string(), a.clone()),
            ("b".to_string(), b),
            ("c".to_string(), c.clone()),
        ];
        let ids: Vec<_> = trained_vars(&named, &sgd)
            .unwrap()
            .iter()
            .map(|v| v.as_tensor().id())
            .collect();
        assert_eq!(
            ids,
            vec![a.as_tensor().id(), c.as_tensor().id()],
            "frozen b is left out, task order kept"
        );
        let e = trained_vars(&named[..2], &sgd).unwrap_err();
        assert!(e.to_string().contains("updates [\"c\"]"), "{e}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let good = LoopConfig {
            max_iter: 4,
            images_per_step: 2,
            grad_accum: 1,
            schedule: Schedule::Constant { lr: 0.1 },
            clip_grad_norm: None,
            eval_period: EvalPeriod::AtEnd,
            checkpoint_period: 2,
            seed: 0,
            max_empty_batches: DEFAULT_MAX_EMPTY_BATCHES,
            progress: ProgressConfig::default(),
        };
        assert!(good.validate().is_ok());
        let cases = [
            (
                LoopConfig {
                    grad_accum: 0,
                    ..good.clone()
                },
                "grad_accum",
            ),
            (
                LoopConfig {
                    checkpoint_period: 0,
                    ..good.clone()
                },
                "checkpoint_period",
            ),
            (
                LoopConfig {
                    eval_period: EvalPeriod::Every(0),
                    ..good.clone()
                },
                "eval_period",
            ),
            (
                LoopConfig {
                    clip_grad_norm: Some(0.0),
                    ..good.clone()
                },
                "clip_grad_norm",
            ),
            (
                LoopConfig {
                    schedule: Schedule::Constant { lr: f64::NAN },
                    ..good.clone()
                },
                "schedule.lr",
            ),
        ];
        for (cfg, key) in cases {
            let e = cfg.validate().unwrap_err();
            assert!(
                e.is_user_error() && e.to_string().contains(key),
                "{key}: {e}"
            );
        }
    }
}
