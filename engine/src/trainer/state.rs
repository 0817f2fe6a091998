//! What the loop keeps in a checkpoint beside the weights and the optimizer
//! state: the best evaluation so far and the task's extra state.
//!
//! Layout inside `OUT/checkpoint/last.safetensors` (see [`crate::checkpoint`]):
//!
//! * the task's extra tensors are stored among the model's, under
//!   [`TASK_TENSOR_PREFIX`] (`model.@task.<name>` in the file); `@` cannot
//!   occur in a PyTorch module path, so no model variable collides with them;
//! * [`TrainState::user`] holds [`LoopState`] as JSON:
//!   `{"best": {...} | null, "task": <the task's JSON>}`. A checkpoint whose
//!   `user` is `null` (written before this loop existed) reads as no best
//!   and no task state.
//!
//! [`TrainState::user`]: crate::checkpoint::TrainState::user

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::task::{Evaluation, TaskState};
use crate::{Error, Result};

/// Named tensors, as checkpoints store them.
type Named = Vec<(String, Tensor)>;

/// Prefix of the task's extra tensors among a checkpoint's model tensors.
pub const TASK_TENSOR_PREFIX: &str = "@task.";

/// The best evaluation of a run: the one whose primary metric was highest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestEval {
    /// 0-based iteration after which it was measured.
    pub iter: usize,
    /// The primary metric's name.
    pub metric: String,
    /// Its value.
    pub value: f64,
    /// The whole evaluation.
    pub evaluation: Evaluation,
}

impl BestEval {
    /// The best of `current` and `candidate` (measured after `iter`):
    /// `Some` when the candidate's primary metric is finite and strictly
    /// higher than the current best (or there is none yet), `None` otherwise.
    ///
    /// # Errors
    /// [`Error::Config`] when the candidate's primary metric is missing, or
    /// is not the metric the current best was chosen by.
    pub fn improved(
        current: Option<&BestEval>,
        iter: usize,
        candidate: &Evaluation,
    ) -> Result<Option<BestEval>> {
        let Some((metric, value)) = candidate.primary_value()? else {
            return Ok(None);
        };
        if let Some(best) = current {
            if best.metric != metric {
                return Err(Error::Config(format!(
                    "the primary metric changed from {} to {metric} during the run",
                    best.metric
                )));
            }
        }
        let better = value.is_finite() && current.is_none_or(|best| value > best.value);
        Ok(better.then(|| BestEval {
            iter,
            metric: metric.to_string(),
            value,
            evaluation: candidate.clone(),
        }))
    }
}

/// The loop's state in a checkpoint's `user` JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopState {
    /// The best evaluation so far.
    pub best: Option<BestEval>,
    /// The task's JSON state ([`TaskState::json`]).
    pub task: serde_json::Value,
    /// The run's planned length ([`crate::trainer::LoopConfig::max_iter`]):
    /// a resume must plan the same (`None` in checkpoints written before).
    pub max_iter: Option<usize>,
    /// The metrics line of the checkpoint's own iteration, which is logged
    /// after the checkpoint: a resume logs it if a kill came in between.
    pub pending: Option<PendingRecord>,
    /// Batches drawn from the task's source so far, empty ones (every
    /// image failed to decode) included: where a resume restarts the
    /// source. `None` in checkpoints written before; those resume at
    /// `iter * grad_accum`, exact only when no batch was empty.
    pub micro_batches: Option<u64>,
}

/// A checkpointed iteration's metrics line and whether its evaluation was due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRecord {
    /// The line (with the evaluation's metrics when it had finished).
    pub record: crate::run_dir::Record,
    /// The evaluation of this iteration was due and had not finished.
    pub eval_due: bool,
}

impl LoopState {
    /// Reads the state from a checkpoint's `user` JSON.
    ///
    /// # Errors
    /// [`Error::Config`] when the JSON is not a loop state.
    pub fn from_json(user: &serde_json::Value) -> Result<Self> {
        if user.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(user.clone()).map_err(|e| {
            Error::Config(format!(
                "checkpoint: the training state's user metadata is not this loop's: {e}"
            ))
        })
    }

    /// The state as JSON.
    ///
    /// # Errors
    /// [`Error::Msg`] when it cannot be serialised (a non-finite metric).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self)
            .map_err(|e| Error::Msg(format!("cannot serialise the loop state: {e}")))
    }
}

/// The model tensors of a checkpoint: the variables, then the task's
/// extra tensors under [`TASK_TENSOR_PREFIX`].
pub(crate) fn checkpoint_model_tensors(vars: Named, task: &TaskState) -> Named {
    let extra = task
        .tensors
        .iter()
        .map(|(n, t)| (format!("{TASK_TENSOR_PREFIX}{n}"), t.clone()));
    vars.into_iter().chain(extra).collect()
}

/// Splits a checkpoint's model tensors into the variables and the task's
/// extra tensors (prefix stripped).
pub(crate) fn split_checkpoint_model_tensors(tensors: Named) -> (Named, Named) {
    let mut vars = Vec::new();
    let mut extra = Vec::new();
    for (name, t) in tensors {
        match name.strip_prefix(TASK_TENSOR_PREFIX) {
            Some(n) => extra.push((n.to_string(), t)),
            None => vars.push((name, t)),
        }
    }
    (vars, extra)
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::Device;

    fn eval(acc: f64) -> Evaluation {
        Evaluation::new(vec![("loss".into(), 1.0), ("acc".into(), acc)]).with_primary("acc")
    }

    #[test]
    fn best_improves_only_on_a_strictly_higher_finite_value() {
        let first = BestEval::improved(None, 4, &eval(0.5)).unwrap().unwrap();
        assert_eq!(
            (first.iter, first.metric.as_str(), first.value),
            (4, "acc", 0.5)
        );
        assert!(
            BestEval::improved(Some(&first), 9, &eval(0.5))
                .unwrap()
                .is_none(),
            "a tie keeps the earlier model"
        );
        assert!(BestEval::improved(Some(&first), 9, &eval(0.4))
            .unwrap()
            .is_none());
        assert!(BestEval::improved(Some(&first), 9, &eval(f64::NAN))
            .unwrap()
            .is_none());
        assert!(BestEval::improved(None, 9, &eval(f64::NAN))
            .unwrap()
            .is_none());
        assert_eq!(
            BestEval::improved(Some(&first), 9, &eval(0.6))
                .unwrap()
                .unwrap()
                .iter,
            9
        );
        assert!(
            BestEval::improved(None, 0, &Evaluation::new(vec![("acc".into(), 1.0)]))
                .unwrap()
                .is_none(),
            "no primary, no best"
        );
        let other = Evaluation::new(vec![("top5".into(), 0.9)]).with_primary("top5");
        assert!(BestEval::improved(Some(&first), 9, &other)
            .unwrap_err()
            .to_string()
            .contains("from acc to top5"));
    }

    #[test]
    fn loop_state_round_trips_and_null_reads_as_empty() {
        assert_eq!(
            LoopState::from_json(&serde_json::Value::Null).unwrap(),
            LoopState::default()
        );
        let state = LoopState {
            best: BestEval::improved(None, 3, &eval(0.25)).unwrap(),
            task: serde_json::json!({"ema_steps": 4}),
            max_iter: Some(12),
            pending: Some(PendingRecord { record: crate::run_dir::Record::new(3, 0.5, 1e-3, 10.0).term("loss_a", 0.25), eval_due: true }),
            micro_batches: Some(5),
        };
        let json = state.to_json().unwrap();
        assert_eq!(LoopState::from_json(&json).unwrap(), state);
        let e = LoopState::from_json(&serde_json::json!({"bets": null})).unwrap_err();
        assert!(e.to_string().contains("bets"), "{e}");
    }

    #[test]
    fn task_tensors_travel_under_their_prefix() {
        let t = |v: f32| Tensor::new(v, &Device::Cpu).unwrap();
        let task = TaskState {
            tensors: vec![("ema.w".into(), t(2.0))],
            json: serde_json::Value::Null,
        };
        let all = checkpoint_model_tensors(vec![("w".into(), t(1.0))], &task);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "@task.ema.w"]);
        let (vars, extra) = split_checkpoint_model_tensors(all);
        assert_eq!(
            vars.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["w"]
        );
        assert_eq!(
            extra.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["ema.w"]
        );
    }
}
