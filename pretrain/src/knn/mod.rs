//! The optional k-NN monitor of a pre-training run (`--knn-data DIR`): every
//! `knn.period_epochs` epochs and at the end, the current encoder embeds a
//! labelled dataset's train and evaluation splits and a weighted k-NN vote
//! over those features gives `knn_top1` (and `knn_top5`) in
//! `metrics.jsonl`, as solo-learn's and lightly's monitors do (MAE-Lite has
//! none).
//!
//! [`classifier`] is the vote itself (DINO's `knn_classifier`), a pure
//! function of features and labels; [`monitor`] embeds the splits through
//! the shared loader and reports through the training loop's evaluation
//! hook.

pub mod classifier;
pub mod monitor;

use serde::{Deserialize, Serialize};
use vision::datasets::DatasetKind;

pub use classifier::{knn_accuracy, knn_rank, KnnAccuracy, KnnParams};
pub use monitor::{open_knn_data, KnnData, KnnMonitor};

/// The recipe's `[knn]` table: how the monitor votes and how often it runs.
/// Read only when the run is given `--knn-data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnnConfig {
    /// Layout of `--knn-data`, named as `vitdet finetune --dataset` names it
    /// (`imagenet`, `folder`, `cifar10`, ...); `--knn-dataset` overrides it.
    pub dataset: DatasetKind,
    /// Neighbours that vote (DINO: 20).
    pub k: usize,
    /// Temperature T of the votes `exp(cos / T)` (DINO: 0.07).
    pub temperature: f64,
    /// Run the monitor every this many epochs, and after the last step;
    /// 0: after the last step only.
    pub period_epochs: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { dataset: DatasetKind::Folder, k: 20, temperature: 0.07, period_epochs: 10 }
    }
}

impl KnnConfig {
    /// Checks k and T (the class count is checked when the data is open).
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming `knn.k` or `knn.temperature`.
    pub fn validate(&self) -> crate::Result<()> {
        KnnParams { k: self.k, temperature: self.temperature, num_classes: 1 }.validate()
    }
}
