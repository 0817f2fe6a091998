//! Scoring a classifier on a split: the evaluation stream of the shared
//! loader, the model in eval mode, [`crate::metrics`] over the logits.

use std::sync::Arc;

use candle_core::Device;
use vision::datasets::{ClassificationSet, ClsBatch};
use engine::progress::ItemProgress;
use vision::loader::{eval_stream, LoaderConfig};

use crate::metrics::{Accumulator, Report};
use crate::model::Classifier;
use crate::Result;

/// What an evaluation saw besides its scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// Top-1, top-5, per-class accuracy and the confusion matrix.
    pub report: Report,
    /// `skipped: N image load(s) (first: ...)` when images could not be read.
    pub skipped: Option<String>,
}

/// Runs `model` over every image of `set` in order, `batch_size` at a
/// time, on `device`.
///
/// # Errors
/// A loader that cannot start or a tensor error; unreadable images are
/// skipped and counted in [`Evaluated::skipped`].
pub fn evaluate(model: &Classifier, set: &Arc<ClassificationSet>, batch_size: usize, device: &Device) -> Result<Evaluated> {
    let classes = set.images().num_classes();
    let size = set.input_size();
    let cfg = LoaderConfig { batch_size, threads: rayon::current_num_threads(), prefetch: 2, seed: 0 };
    let mut stream = eval_stream(Arc::clone(set), cfg)?;
    let mut acc = Accumulator::new(classes);
    let mut progress = ItemProgress::new("evaluating", vision::loader::Dataset::len(&**set));
    for batch in stream.by_ref() {
        if batch.samples.is_empty() {
            continue;
        }
        let batch = ClsBatch::from_samples(&batch.samples, size, device)?;
        let logits = model.predict(&batch.images)?;
        let labels: Vec<usize> = batch.labels.iter().map(|&l| l as usize).collect();
        acc.add(&logits.flatten_all()?.to_vec1::<f32>()?, &labels);
        progress.advance(labels.len());
    }
    progress.finish();
    Ok(Evaluated { report: acc.report(), skipped: stream.stats().summary() })
}
