//! The gradients of one iteration: `k` micro-batches, each one's loss
//! divided by `k` and differentiated, the gradients summed (gradient
//! accumulation, as detectron2/timm do it with `loss / accum_steps`), with
//! every loss term checked for finiteness before its backward pass.

use candle_core::backprop::GradStore;
use candle_core::Var;

use super::task::TrainTask;
use crate::rng::TrainRng;
use crate::Error;

/// What the micro-batches of one iteration produced.
#[derive(Debug)]
pub(crate) struct Accumulated {
    /// The summed gradients of the loss (each micro-batch's divided by `k`).
    pub grads: GradStore,
    /// Each loss term's name and its mean over the micro-batches (each
    /// value divided by `k`, summed in micro-batch order, in f64).
    pub terms: Vec<(String, f64)>,
}

impl Accumulated {
    /// The logged loss: the sum of the mean terms, in term order.
    pub fn loss(&self) -> f64 {
        self.terms.iter().map(|(_, v)| v).sum()
    }
}

/// Where an iteration's micro-batches come from and how they are checked.
pub(crate) struct MicroBatches<'a, I> {
    /// The task's batches.
    pub source: &'a mut I,
    /// Micro-batches per iteration (`k >= 1`).
    pub grad_accum: usize,
    /// Consecutive empty batches after which training stops.
    pub max_empty: usize,
    /// Batches drawn from `source` so far, empty ones included; counted up
    /// here so a checkpoint knows where the source stands.
    pub drawn: &'a mut u64,
}

/// Runs the forward and backward passes of iteration `iter` over
/// `batches.grad_accum` micro-batches and sums the gradients of `vars`.
///
/// # Errors
/// [`Error::TrainingStopped`] naming `iter` and the term when a loss term
/// is NaN or infinite, when the batches run out, or when
/// `batches.max_empty` batches in a row are empty; the task's own errors.
pub(crate) fn accumulate<T, I>(
    task: &mut T,
    batches: MicroBatches<'_, I>,
    rng: &mut TrainRng,
    iter: usize,
    vars: &[Var],
) -> Result<Accumulated, T::Error>
where
    T: TrainTask,
    I: Iterator<Item = Result<T::Batch, T::Error>>,
{
    let k = batches.grad_accum;
    let mut grads: Option<GradStore> = None;
    let mut terms: Vec<(String, f64)> = Vec::new();
    for micro in 0..k {
        let batch = next_nonempty(task, batches.source, batches.max_empty, iter, batches.drawn)?;
        let losses = task.losses(&batch, rng)?;
        let values = losses.values()?;
        if micro == 0 {
            terms = losses
                .terms()
                .iter()
                .map(|(n, _)| (n.clone(), 0.0))
                .collect();
        } else if !same_names(&terms, losses.terms()) {
            return Err(stopped(
                iter,
                format!(
                    "micro-batch {} returned loss terms {:?}, the first one {:?}",
                    micro + 1,
                    names(losses.terms()),
                    terms.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
                ),
            )
            .into());
        }
        for ((name, _), v) in losses.terms().iter().zip(&values) {
            if !v.is_finite() {
                return Err(stopped(
                    iter,
                    format!(
                        "loss term {name} is {v} (micro-batch {} of {k}); lower the learning rate or clip the gradient norm",
                        micro + 1
                    ),
                )
                .into());
            }
        }
        let total = (losses.total()? / k as f64).map_err(Error::from)?;
        let g = total.backward().map_err(Error::from)?;
        for ((_, sum), v) in terms.iter_mut().zip(&values) {
            *sum += v / k as f64;
        }
        grads = Some(match grads {
            None => g,
            Some(acc) => add_grads(acc, &g, vars)?,
        });
    }
    let grads = grads.ok_or_else(|| Error::Config("train.grad_accum must be >= 1".into()))?;
    Ok(Accumulated { grads, terms })
}

/// The next batch the task does not call empty; `drawn` counts every batch
/// taken from `source`.
fn next_nonempty<T, I>(
    task: &T,
    source: &mut I,
    max_empty: usize,
    iter: usize,
    drawn: &mut u64,
) -> Result<T::Batch, T::Error>
where
    T: TrainTask,
    I: Iterator<Item = Result<T::Batch, T::Error>>,
{
    let mut empty = 0;
    loop {
        let next = source.next();
        if next.is_some() {
            *drawn += 1;
        }
        match next {
            None => return Err(stopped(iter, "the training batches ran out".into()).into()),
            Some(Err(e)) => return Err(e),
            Some(Ok(batch)) if task.is_empty(&batch) => {
                empty += 1;
                if empty >= max_empty {
                    return Err(stopped(
                        iter,
                        format!("{empty} training batches in a row were empty (no readable sample); check the data"),
                    )
                    .into());
                }
            }
            Some(Ok(batch)) => return Ok(batch),
        }
    }
}

/// `acc + g` for every variable's gradient.
fn add_grads(mut acc: GradStore, g: &GradStore, vars: &[Var]) -> crate::Result<GradStore> {
    for v in vars {
        let t = v.as_tensor();
        match (acc.get(t).cloned(), g.get(t)) {
            (Some(a), Some(b)) => {
                acc.insert(t, (a + b)?);
            }
            (None, Some(b)) => {
                acc.insert(t, b.clone());
            }
            _ => {}
        }
    }
    Ok(acc)
}

fn same_names(terms: &[(String, f64)], other: &[(String, candle_core::Tensor)]) -> bool {
    terms.len() == other.len() && terms.iter().zip(other).all(|((a, _), (b, _))| a == b)
}

fn names(terms: &[(String, candle_core::Tensor)]) -> Vec<&str> {
    terms.iter().map(|(n, _)| n.as_str()).collect()
}

/// The loop's stop error.
pub(crate) fn stopped(iter: usize, reason: String) -> Error {
    Error::TrainingStopped { iter, reason }
}
