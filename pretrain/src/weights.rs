//! The pre-trained model file (`OUT/model.safetensors`): every MAE variable
//! under MAE's names, i.e. the encoder under timm's (`cls_token`,
//! `pos_embed`, `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`) plus the
//! decoder (`decoder_*`, `mask_token`) — the released
//! `mae_tiny_400e.pth.tar` layout without its `module.model.` prefix.
//!
//! Metadata: the encoder's [`backbone::VitConfig`] under backbone's
//! `vitdet.vit_config` key, so every ViT loader (`vitdet features`,
//! `vitdet finetune --backbone FILE`, `vitdet train --backbone FILE`) reads
//! the file as it is: `backbone::import::backbone_tensors` drops the decoder
//! and mask token as non-backbone keys. The whole [`MaeSpec`] under
//! [`MAE_KEY`] rebuilds the autoencoder (`vitdet pretrain visualize`).

use std::collections::HashMap;
use std::path::Path;

use backbone::import::CONFIG_KEY;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::mae::{Mae, MaeSpec};
use crate::{Error, Result};

/// Metadata key of the [`MaeSpec`].
pub const MAE_KEY: &str = "vitdet.mae";

/// Writes `tensors` (the MAE's variables) with `spec` to `path`, atomically.
///
/// # Errors
/// The file cannot be written.
pub fn save(path: &Path, tensors: &[(String, Tensor)], spec: &MaeSpec) -> Result<()> {
    let bad = |e: serde_json::Error| Error::BadWeights { path: path.to_path_buf(), msg: e.to_string() };
    let mut sorted = tensors.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([
        (CONFIG_KEY.to_string(), serde_json::to_string(&spec.encoder).map_err(bad)?),
        (MAE_KEY.to_string(), serde_json::to_string(spec).map_err(bad)?),
    ]);
    engine::checkpoint::write_safetensors_with_metadata(path, &sorted, metadata)?;
    Ok(())
}

/// Reads an autoencoder written by [`save`] onto `device`.
///
/// # Errors
/// [`Error::BadWeights`] naming the file when it is missing, lacks the MAE
/// metadata (an encoder alone, e.g. an imported backbone) or a tensor.
pub fn load(path: &Path, device: &Device) -> Result<Mae> {
    let bad = |msg: String| Error::BadWeights { path: path.to_path_buf(), msg };
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let (tensors, meta) = engine::checkpoint::read_safetensors_with_metadata(path, device)?;
    let json = meta.get(MAE_KEY).ok_or_else(|| bad(format!("no `{MAE_KEY}` metadata: not a model written by `vitdet pretrain --method mae`")))?;
    let spec: MaeSpec = serde_json::from_str(json).map_err(|e| bad(format!("metadata `{MAE_KEY}`: {e}")))?;
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let vb = VarBuilder::from_tensors(map, DType::F32, device);
    Mae::new(&spec, vb).map_err(|e| bad(format!("does not match its MAE metadata: {e}")))
}
