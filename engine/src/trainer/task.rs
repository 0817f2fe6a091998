//! What a task gives the training loop: its model's variables, its losses
//! on a batch, its evaluation and its model file ([`TrainTask`]), and the
//! values passed across that boundary ([`LossTerms`], [`Evaluation`],
//! [`TaskState`]).
//!
//! The split follows detectron2's `SimpleTrainer` / `DefaultTrainer`: the
//! model returns a dict of named losses whose sum is differentiated, and
//! hooks do the rest. Here the "hooks" (schedule, accumulation, clipping,
//! logging, evaluation cadence, checkpoints) are the loop itself, and the
//! task only answers the questions only it can answer.

use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::rng::TrainRng;
use crate::{Error, Result};

/// A model being trained, as the loop sees it.
///
/// `iter` arguments are 0-based indices of the iteration just completed
/// (the `iter` of its `metrics.jsonl` line).
pub trait TrainTask {
    /// One micro-batch, as the task's loader yields it.
    type Batch;
    /// The task's error; engine errors (checkpoints, optimizer, divergence)
    /// convert into it.
    type Error: From<Error>;

    /// The model's variables with their names: saved under these names in
    /// every checkpoint and restored (all of them, strictly) on resume.
    /// Variables the optimizer does not update (frozen layers) belong here
    /// too; state that is not a variable goes in [`TrainTask::extra_state`].
    fn variables(&self) -> Vec<(String, Var)>;

    /// The losses of one micro-batch, with the graph to differentiate. Draw
    /// every random number from `rng` (checkpointed), never from elsewhere,
    /// so that resuming is exact.
    ///
    /// # Errors
    /// The task's own failures (a tensor error, inconsistent inputs).
    fn losses(&mut self, batch: &Self::Batch, rng: &mut TrainRng)
        -> Result<LossTerms, Self::Error>;

    /// Whether a batch holds nothing to train on (e.g. every image of it
    /// failed to decode). The loop skips such batches, and stops after
    /// [`super::LoopConfig::max_empty_batches`] of them in a row.
    fn is_empty(&self, _batch: &Self::Batch) -> bool {
        false
    }

    /// Runs after each optimizer step (EMA teachers, momentum encoders).
    ///
    /// # Errors
    /// The task's own failures.
    fn after_step(&mut self, _iter: usize) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Values of the task's own schedules at iteration `iter` (an EMA or
    /// momentum-encoder coefficient, a temperature), added to its
    /// `metrics.jsonl` line under these names. Asked after
    /// [`TrainTask::after_step`]; the default reports nothing.
    fn step_metrics(&self, _iter: usize) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// Scores the current model. `Ok(None)` means there was nothing to
    /// score (no prediction to match, an empty split): the loop logs it and
    /// trains on, it never fails the run.
    ///
    /// # Errors
    /// A real failure (unreadable data, a tensor error): the loop stops,
    /// after having saved any checkpoint due at this iteration.
    fn evaluate(&mut self, _iter: usize) -> Result<Option<Evaluation>, Self::Error> {
        Ok(None)
    }

    /// Writes the model file users consume (`OUT/model.safetensors`,
    /// `OUT/model_best.safetensors`), atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    fn save_model(&self, path: &Path) -> Result<(), Self::Error>;

    /// State beyond the variables that a resume needs (an EMA teacher, a
    /// momentum encoder's step, batch-norm statistics), saved in every
    /// checkpoint.
    ///
    /// # Errors
    /// Copying a tensor fails.
    fn extra_state(&self) -> Result<TaskState, Self::Error> {
        Ok(TaskState::default())
    }

    /// Restores what [`TrainTask::extra_state`] saved. The default accepts
    /// only an empty state, so a checkpoint holding state the task does not
    /// know how to restore is an error rather than silently ignored.
    ///
    /// # Errors
    /// The state does not fit the task.
    fn restore_extra_state(&mut self, state: TaskState) -> Result<(), Self::Error> {
        if state.tensors.is_empty() && state.json.is_null() {
            Ok(())
        } else {
            let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
            Err(Error::Config(format!(
                "the checkpoint holds task state this task does not restore (tensors {names:?}, json {})",
                state.json
            ))
            .into())
        }
    }
}

/// The named losses of one micro-batch (detectron2's loss dict). The loop
/// differentiates their sum, and logs and checks each one.
#[derive(Debug, Clone)]
pub struct LossTerms {
    terms: Vec<(String, Tensor)>,
}

impl LossTerms {
    /// Named scalar losses, already weighted: the total is their plain sum.
    ///
    /// # Errors
    /// [`Error::Config`] for no term, two terms with one name, or a term
    /// that is not a scalar.
    pub fn new(terms: Vec<(String, Tensor)>) -> Result<Self> {
        if terms.is_empty() {
            return Err(Error::Config("a task returned no loss term".into()));
        }
        for (k, (name, t)) in terms.iter().enumerate() {
            if t.rank() != 0 {
                return Err(Error::Config(format!(
                    "loss term {name} must be a scalar, found shape {:?}",
                    t.dims()
                )));
            }
            if terms[..k].iter().any(|(other, _)| other == name) {
                return Err(Error::Config(format!("loss term {name} appears twice")));
            }
        }
        Ok(Self { terms })
    }

    /// The terms, in the task's order.
    pub fn terms(&self) -> &[(String, Tensor)] {
        &self.terms
    }

    /// The sum of the terms, left to right: the scalar to differentiate.
    ///
    /// # Errors
    /// A tensor error (terms on different devices or of different dtypes).
    pub fn total(&self) -> Result<Tensor> {
        let mut terms = self.terms.iter().map(|(_, t)| t);
        let Some(first) = terms.next() else {
            return Err(Error::Config("a task returned no loss term".into()));
        };
        let mut sum = first.clone();
        for t in terms {
            sum = (sum + t)?;
        }
        Ok(sum)
    }

    /// Each term's value, read back to the host as f64 (for logging and the
    /// finiteness check).
    ///
    /// # Errors
    /// A tensor error.
    pub fn values(&self) -> Result<Vec<f64>> {
        self.terms
            .iter()
            .map(|(_, t)| Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?))
            .collect()
    }
}

/// A task's scores at one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Named metrics, logged as they are into `metrics.jsonl` (a
    /// non-finite value is written as `null`, as JSON has no NaN).
    #[serde(with = "nullable_metrics")]
    pub metrics: Vec<(String, f64)>,
    /// The metric that selects the best model (higher is better); `None`
    /// keeps no best model.
    pub primary: Option<String>,
}

impl Evaluation {
    /// Scores without a primary metric.
    pub fn new(metrics: Vec<(String, f64)>) -> Self {
        Self {
            metrics,
            primary: None,
        }
    }

    /// Makes `name` the metric that selects the best model (higher is better).
    pub fn with_primary(mut self, name: impl Into<String>) -> Self {
        self.primary = Some(name.into());
        self
    }

    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The primary metric's name and value.
    ///
    /// # Errors
    /// [`Error::Config`] when `primary` names no metric of `metrics`.
    pub fn primary_value(&self) -> Result<Option<(&str, f64)>> {
        let Some(name) = &self.primary else {
            return Ok(None);
        };
        let value = self.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.metrics.iter().map(|(n, _)| n.as_str()).collect();
            Error::Config(format!(
                "the evaluation's primary metric {name} is not among its metrics {names:?}"
            ))
        })?;
        Ok(Some((name, value)))
    }
}

/// (De)serialises metrics with non-finite values as `null` (serde_json
/// writes NaN as `null` but cannot read it back as an f64).
mod nullable_metrics {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(metrics: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
        let nullable: Vec<(&str, Option<f64>)> = metrics
            .iter()
            .map(|(n, v)| (n.as_str(), v.is_finite().then_some(*v)))
            .collect();
        nullable.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
        let nullable = Vec::<(String, Option<f64>)>::deserialize(d)?;
        Ok(nullable
            .into_iter()
            .map(|(n, v)| (n, v.unwrap_or(f64::NAN)))
            .collect())
    }
}

/// A task's state beyond its variables (see [`TrainTask::extra_state`]).
#[derive(Debug, Clone, Default)]
pub struct TaskState {
    /// Named tensors, stored in the checkpoint beside the model's.
    pub tensors: Vec<(String, Tensor)>,
    /// Anything else, as JSON (stored in the checkpoint's header).
    pub json: serde_json::Value,
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::Device;

    fn scalar(v: f32) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn total_is_the_left_to_right_sum_and_values_are_read_per_term() {
        let terms = LossTerms::new(vec![
            ("a".into(), scalar(1.5)),
            ("b".into(), scalar(0.25)),
            ("c".into(), scalar(-1.0)),
        ])
        .unwrap();
        assert_eq!(terms.total().unwrap().to_scalar::<f32>().unwrap(), 0.75);
        assert_eq!(terms.values().unwrap(), vec![1.5, 0.25, -1.0]);
    }

    #[test]
    fn bad_terms_are_errors_naming_them() {
        assert!(LossTerms::new(vec![])
            .unwrap_err()
            .to_string()
            .contains("no loss term"));
        let e =
            LossTerms::new(vec![("a".into(), scalar(1.0)), ("a".into(), scalar(2.0))]).unwrap_err();
        assert!(e.to_string().contains("loss term a appears twice"), "{e}");
        let v = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let e = LossTerms::new(vec![("vec".into(), v)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("vec must be a scalar, found shape [2]"),
            "{e}"
        );
    }

    #[test]
    fn primary_metric_must_be_one_of_the_metrics() {
        let e = Evaluation::new(vec![("acc1".into(), 0.5), ("acc5".into(), 0.9)]);
        assert_eq!(e.primary_value().unwrap(), None);
        assert_eq!(
            e.clone().with_primary("acc5").primary_value().unwrap(),
            Some(("acc5", 0.9))
        );
        let err = e
            .with_primary("top1")
            .primary_value()
            .unwrap_err()
            .to_string();
        assert!(err.contains("top1") && err.contains("acc1"), "{err}");
    }

    #[test]
    fn non_finite_metrics_survive_a_json_round_trip_as_nan() {
        let e = Evaluation::new(vec![("ap".into(), f64::NAN), ("ap50".into(), -1.0)])
            .with_primary("ap50");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"metrics":[["ap",null],["ap50",-1.0]],"primary":"ap50"}"#
        );
        let back: Evaluation = serde_json::from_str(&json).unwrap();
        assert!(back.metrics[0].1.is_nan());
        assert_eq!(back.metrics[1], ("ap50".to_string(), -1.0));
    }
}
