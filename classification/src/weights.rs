//! The trained classifier file: safetensors with timm names, the ViT config
//! under backbone's `vitdet.vit_config` key (so a fine-tuned model also loads
//! wherever a ViT does: `vitdet features`, `vitdet finetune --backbone`), and
//! the classifier's own facts under [`CLASSIFIER_KEY`]: the class names, the
//! linear-probe head and the evaluation transform. One file rebuilds the model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use backbone::import::CONFIG_KEY;
use backbone::VitConfig;

use crate::model::{Classifier, ClassifierSpec};
use crate::{Error, Result};

/// Metadata key of [`ClassifierMeta`].
pub const CLASSIFIER_KEY: &str = "vitdet.classifier";

/// What a classifier file says about itself beyond its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Frozen backbone with MAE's BatchNorm + linear head.
    pub linear_probe: bool,
    /// Evaluation resize fraction (timm's `crop_pct`).
    pub crop_pct: f64,
    /// Evaluation resize filter.
    pub eval_interpolation: vision::resize::Filter,
}

/// A classifier read back from its file.
#[derive(Debug)]
pub struct TrainedClassifier {
    /// The model, weights loaded.
    pub model: Classifier,
    /// Its ViT and head.
    pub spec: ClassifierSpec,
    /// Class names and evaluation transform.
    pub meta: ClassifierMeta,
}

/// Writes `tensors` (the model's variables) with `spec` and `meta` to `path`, atomically.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, tensors: &[(String, Tensor)], spec: &ClassifierSpec, meta: &ClassifierMeta) -> Result<()> {
    let bad = |e: serde_json::Error| Error::BadWeights { path: path.to_path_buf(), msg: e.to_string() };
    let mut sorted = tensors.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([
        (CONFIG_KEY.to_string(), serde_json::to_string(&spec.vit).map_err(bad)?),
        (CLASSIFIER_KEY.to_string(), serde_json::to_string(meta).map_err(bad)?),
    ]);
    engine::checkpoint::write_safetensors_with_metadata(path, &sorted, metadata)?;
    Ok(())
}

/// Reads a classifier file written by [`save`].
///
/// # Errors
/// [`Error::BadWeights`] naming the file when it lacks the classifier
/// metadata (a backbone, not a fine-tuned model) or does not match it.
pub fn load(path: &Path, device: &Device) -> Result<TrainedClassifier> {
    let bad = |msg: String| Error::BadWeights { path: path.to_path_buf(), msg };
    if !path.exists() {
        return Err(bad("no such file".into()));
    }
    let (tensors, meta) = engine::checkpoint::read_safetensors_with_metadata(path, device)?;
    let meta_json = meta.get(CLASSIFIER_KEY).ok_or_else(|| bad(format!("no `{CLASSIFIER_KEY}` metadata: not a classifier written by `vitdet finetune`")))?;
    let classifier: ClassifierMeta = serde_json::from_str(meta_json).map_err(|e| bad(format!("metadata `{CLASSIFIER_KEY}`: {e}")))?;
    let vit_json = meta.get(CONFIG_KEY).ok_or_else(|| bad(format!("no `{CONFIG_KEY}` metadata")))?;
    let vit: VitConfig = serde_json::from_str(vit_json).map_err(|e| bad(format!("metadata `{CONFIG_KEY}`: {e}")))?;
    let spec = ClassifierSpec { vit, linear_probe: classifier.linear_probe };
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let vb = VarBuilder::from_tensors(map, DType::F32, device);
    let model = Classifier::new(&spec, classifier.classes.len(), vb).map_err(|e| bad(format!("does not match its own configuration: {e}")))?;
    Ok(TrainedClassifier { model, spec, meta: classifier })
}

/// Whether `path` is a classifier file (has [`CLASSIFIER_KEY`] metadata).
pub fn is_classifier(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
        && engine::checkpoint::read_safetensors_metadata(path).is_ok_and(|m| m.contains_key(CLASSIFIER_KEY))
}
