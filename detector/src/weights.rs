//! Trained detector files: `model.safetensors` holds every weight plus, in
//! its header, the model configuration (TOML) and the class list (JSON), so
//! `vitdet eval coco --weights` and `vitdet predict` rebuild the exact
//! network from the one file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::model::{ModelConfig, ViTDet};
use crate::{Error, Result};

/// Header key of the model configuration.
const MODEL_KEY: &str = "vitdet.detector.model";
/// Header key of the class list.
const CLASSES_KEY: &str = "vitdet.detector.classes";

/// One class of a trained detector: its contiguous index is its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// The COCO category id it maps back to.
    pub id: i64,
    /// The category name (drawn on predictions).
    pub name: String,
}

/// A detector with the facts needed to use it, for inference: its weights
/// are plain tensors, so running it records no autograd graph.
#[derive(Debug)]
pub struct TrainedDetector {
    /// The network.
    pub model: ViTDet,
    /// Its configuration.
    pub config: ModelConfig,
    /// Its classes, by contiguous index.
    pub classes: Vec<ClassInfo>,
}

impl TrainedDetector {
    /// The COCO category id of each class index.
    pub fn class_ids(&self) -> Vec<i64> {
        self.classes.iter().map(|c| c.id).collect()
    }
}

/// Writes the detector's weights with its configuration and classes, atomically.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, varmap: &VarMap, config: &ModelConfig, classes: &[ClassInfo]) -> Result<()> {
    let named = engine::vars::named_vars(varmap)?;
    let tensors = engine::checkpoint::var_tensors(&named);
    let model = toml::to_string(config).map_err(|e| Error::Config { key: "model", msg: format!("cannot write the configuration as TOML: {e}") })?;
    let classes = serde_json::to_string(classes).map_err(|e| Error::Config { key: "classes", msg: e.to_string() })?;
    let meta = HashMap::from([(MODEL_KEY.to_string(), model), (CLASSES_KEY.to_string(), classes)]);
    engine::checkpoint::write_safetensors_with_metadata(path, &tensors, meta)?;
    Ok(())
}

/// Reads a file written by [`save`] and rebuilds the detector on `device`.
///
/// # Errors
/// [`Error::BadWeights`] naming the file when it is not a vitdet detector
/// (e.g. a backbone checkpoint) or does not match its own configuration.
pub fn load(path: &Path, device: &Device) -> Result<TrainedDetector> {
    let bad = |msg: String| Error::BadWeights { path: path.to_path_buf(), msg };
    let (tensors, meta) = engine::checkpoint::read_safetensors_with_metadata(path, device)?;
    let model_text = meta.get(MODEL_KEY).ok_or_else(|| bad("not a vitdet detector (no model configuration in its header); train one with `vitdet train`".into()))?;
    let config: ModelConfig = toml::from_str(model_text).map_err(|e| bad(format!("model configuration: {e}")))?;
    let classes: Vec<ClassInfo> = meta
        .get(CLASSES_KEY)
        .ok_or_else(|| bad("no class list in its header".into()))
        .and_then(|t| serde_json::from_str(t).map_err(|e| bad(format!("class list: {e}"))))?;
    // Check names and shapes against a model built the same way, then build
    // the inference model from the plain tensors.
    let varmap = VarMap::new();
    ViTDet::new(&config, classes.len(), VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let named = engine::vars::named_vars(&varmap)?;
    engine::checkpoint::restore_vars(&named, &tensors).map_err(|e| bad(e.to_string()))?;
    let model = inference_copy(&varmap, &config, classes.len(), device)?;
    Ok(TrainedDetector { model, config, classes })
}

/// The detector whose variables live in `varmap`, rebuilt on detached
/// copies of them: inference through it records no graph (candle records
/// one whenever an input is a variable), so evaluation during training
/// neither slows down nor holds activations.
///
/// # Errors
/// A parameter missing from `varmap` (a bug) or a tensor error.
pub fn inference_copy(varmap: &VarMap, config: &ModelConfig, num_classes: usize, device: &Device) -> Result<ViTDet> {
    let tensors: HashMap<String, candle_core::Tensor> = engine::vars::named_vars(varmap)?.into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
    ViTDet::new(config, num_classes, VarBuilder::from_tensors(tensors, DType::F32, device))
}
