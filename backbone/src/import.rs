//! Loading ViT weights from the outside world: PyTorch `.pth` / `.pth.tar`
//! (zip pickle; the state dict directly or under `model` / `state_dict`) and
//! safetensors, with the prefixes of the paper's released checkpoints
//! stripped and the keys that are not backbone weights (MAE decoder,
//! distillation teacher and adapter, MoCo momentum encoder and predictor)
//! left out. Mirrors timm's `checkpoint_filter_fn` and MAE-Lite's
//! `remove_possible_prefix`; returns a [`LoadReport`] like detectron2's
//! "incompatible keys".

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::config::{Pool, VitConfig};
use crate::pos_embed::{resize_pos_embed, square_grid};
use crate::vit::Vit;
use crate::{Error, Result};

/// Prefixes the released checkpoints put before the backbone's names
/// (DDP's `module.`, MAE-Lite's `model.` wrapper, MoCo-v3's `base_encoder.`),
/// tried longest first on every key.
const PREFIXES: &[&str] = &["module.base_encoder.", "module.model.", "module.", "model.", "base_encoder."];

/// Key families that belong to something other than the backbone.
const IGNORED: &[&str] = &[
    "decoder_",          // MAE decoder: decoder_embed, decoder_blocks, decoder_norm, decoder_pred, decoder_pos_embed
    "mask_token",        // MAE
    "tch_model.",        // distillation teacher
    "attn_adapter.",     // distillation head-mixing adapter
    "momentum_encoder.", // MoCo-v3 key encoder
    "predictor.",        // MoCo-v3 predictor
];

/// `__metadata__` key under which an imported file stores its [`VitConfig`] as JSON.
pub const CONFIG_KEY: &str = "vitdet.vit_config";

/// What a load did: which keys were used, left out, missing or resized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Model parameters set from the checkpoint.
    pub loaded: usize,
    /// Model parameters the checkpoint lacks (they keep their initial values).
    pub missing: Vec<String>,
    /// Checkpoint tensors the model has no parameter for.
    pub unexpected: Vec<String>,
    /// Checkpoint tensors dropped as not belonging to a backbone (decoder, teacher, ...).
    pub ignored: usize,
    /// Tensors resized to the model's shape: (name, from, to).
    pub resized: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loaded {} tensors", self.loaded)?;
        if self.ignored > 0 {
            write!(f, ", ignored {} non-backbone tensors", self.ignored)?;
        }
        for (name, from, to) in &self.resized {
            write!(f, ", resized {name} {from:?} -> {to:?}")?;
        }
        if !self.missing.is_empty() {
            write!(f, "; missing {}: {}", self.missing.len(), self.missing.join(", "))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; unexpected {}: {}", self.unexpected.len(), self.unexpected.join(", "))?;
        }
        Ok(())
    }
}

/// Raw tensors of a checkpoint file plus the config it declares (files
/// written by `vitdet import` carry one).
#[derive(Debug)]
pub struct CheckpointTensors {
    /// (name, tensor) as stored, prefixes not yet stripped.
    pub tensors: Vec<(String, Tensor)>,
    /// The model config stored in the file's metadata, if any.
    pub config: Option<VitConfig>,
}

/// Reads every tensor of a `.pth`/`.pth.tar`/`.pt`/`.bin` (PyTorch zip
/// pickle) or `.safetensors` file onto the CPU.
///
/// # Errors
/// A missing or unreadable file, or one that holds no tensors, is a
/// [`Error::Checkpoint`] naming the file and what was expected.
pub fn read_checkpoint(path: &Path) -> Result<CheckpointTensors> {
    if !path.exists() {
        return Err(Error::Checkpoint { path: path.into(), msg: "no such file".into() });
    }
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let (tensors, config) = if is_safetensors {
        let (tensors, meta) = engine::checkpoint::read_safetensors_with_metadata(path, &Device::Cpu)?;
        let config = match meta.get(CONFIG_KEY) {
            Some(json) => Some(serde_json::from_str::<VitConfig>(json).map_err(|e| Error::Checkpoint {
                path: path.into(),
                msg: format!("metadata `{CONFIG_KEY}` is not a valid ViT config: {e}"),
            })?),
            None => None,
        };
        (tensors, config)
    } else {
        (read_pth(path)?, None)
    };
    if tensors.is_empty() {
        return Err(Error::Checkpoint { path: path.into(), msg: "holds no tensors (expected a ViT state dict)".into() });
    }
    Ok(CheckpointTensors { tensors, config })
}

/// Reads a PyTorch zip checkpoint: the dict under `model`, else under
/// `state_dict`, else the top-level dict.
fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut last_err = None;
    for key in [Some("model"), Some("state_dict"), None] {
        match candle_core::pickle::read_all_with_key(path, key) {
            Ok(t) if !t.is_empty() => return Ok(t),
            Ok(_) => {}
            // candle attaches a backtrace when RUST_BACKTRACE is set; the
            // message stays one line without it.
            Err(candle_core::Error::WithBacktrace { inner, .. }) => last_err = Some(*inner),
            Err(e) => last_err = Some(e),
        }
    }
    let detail = match last_err {
        Some(candle_core::Error::Zip(_)) | None => {
            "not a zip-format PyTorch checkpoint (files saved by torch < 1.6 must be re-saved with a recent torch.save)".to_string()
        }
        Some(e) => format!("could not read PyTorch checkpoint: {e}"),
    };
    Err(Error::Checkpoint { path: path.into(), msg: detail })
}

/// Strips the released checkpoints' prefixes and drops non-backbone keys.
/// Returns the backbone tensors under timm names and how many were dropped.
pub fn backbone_tensors(raw: Vec<(String, Tensor)>) -> (Vec<(String, Tensor)>, usize) {
    let mut kept = Vec::with_capacity(raw.len());
    let mut ignored = 0;
    for (name, tensor) in raw {
        let stripped = PREFIXES.iter().find_map(|p| name.strip_prefix(p)).unwrap_or(&name);
        if IGNORED.iter().any(|p| stripped.starts_with(p)) {
            ignored += 1;
        } else {
            kept.push((stripped.to_string(), tensor));
        }
    }
    (kept, ignored)
}

/// Derives the model config from tensor shapes, taking what shapes cannot
/// tell (the number of heads, LayerNorm eps, drop path) from `arch`.
///
/// # Errors
/// A checkpoint whose width differs from `arch`'s is a config error saying
/// which `--arch` fits; one without `cls_token`/`patch_embed` is not a ViT.
pub fn infer_config(tensors: &[(String, Tensor)], arch: &VitConfig, arch_name: &str, path: &Path) -> Result<VitConfig> {
    let shape = |key: &str| tensors.iter().find(|(n, _)| n == key).map(|(_, t)| t.dims().to_vec());
    let bad = |msg: String| Error::Checkpoint { path: path.into(), msg };
    let patch = shape("patch_embed.proj.weight").ok_or_else(|| bad("no `patch_embed.proj.weight`: not a ViT checkpoint".into()))?;
    let (dim, in_chans, patch_size) = match patch.as_slice() {
        [d, c, p, q] if p == q => (*d, *c, *p),
        other => return Err(bad(format!("`patch_embed.proj.weight` has shape {other:?}, expected (D, C, P, P)"))),
    };
    if dim != arch.embed_dim {
        let fits = ["tiny", "small", "base"].into_iter().find(|n| VitConfig::by_name(n).is_ok_and(|c| c.embed_dim == dim)).unwrap_or("a matching arch");
        return Err(Error::Config(format!(
            "{}: checkpoint has embed_dim {dim} but --arch {arch_name} has {}; pass --arch {fits}",
            path.display(),
            arch.embed_dim
        )));
    }
    let depth = tensors
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("blocks.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |i| i + 1);
    let grid = match shape("pos_embed") {
        Some(s) if s.len() == 3 => s[1]
            .checked_sub(1)
            .and_then(square_grid)
            .ok_or_else(|| bad(format!("`pos_embed` has shape {s:?}: expected (1, 1 + a square grid, D)")))?,
        Some(s) => return Err(bad(format!("`pos_embed` has shape {s:?}: expected (1, 1 + a square grid, D)"))),
        _ => arch.grid_size(),
    };
    let mlp_ratio = match shape("blocks.0.mlp.fc1.weight") {
        Some(s) if s.len() == 2 && s[0] > 0 => s[0] as f64 / dim as f64,
        Some(s) => return Err(bad(format!("`blocks.0.mlp.fc1.weight` has shape {s:?}: expected (hidden, {dim})"))),
        None => arch.mlp_ratio,
    };
    let num_classes = shape("head.weight").filter(|s| s.len() == 2).map_or(0, |s| s[0]);
    let has = |key: &str| tensors.iter().any(|(n, _)| n == key);
    let pool = if has("fc_norm.weight") { Pool::Avg } else { Pool::Cls };
    let cfg = VitConfig {
        img_size: grid * patch_size,
        patch_size,
        in_chans,
        embed_dim: dim,
        depth,
        mlp_ratio,
        qkv_bias: has("blocks.0.attn.qkv.bias"),
        num_classes,
        pool,
        ..arch.clone()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Sets the variables of a model built in `varmap` from `tensors` (timm
/// names). `pos_embed` is resized bicubically when only its token grid
/// differs; any other shape difference is an error.
///
/// # Errors
/// [`engine::Error::ShapeMismatch`] naming the key and both shapes.
pub fn load_into(varmap: &VarMap, tensors: &[(String, Tensor)], ignored: usize) -> Result<LoadReport> {
    load_into_under(varmap, "", tensors, ignored)
}

/// [`load_into`] for a model built under `prefix` in a larger `varmap` (a
/// detector's `backbone.net`): checkpoint name `n` sets variable
/// `prefix.n`, and only the variables under `prefix` can be missing. The
/// report uses the checkpoint's names, without the prefix.
///
/// # Errors
/// As [`load_into`].
pub fn load_into_under(varmap: &VarMap, prefix: &str, tensors: &[(String, Tensor)], ignored: usize) -> Result<LoadReport> {
    let data: std::collections::HashMap<String, candle_core::Var> = engine::vars::named_vars(varmap)?.into_iter().collect();
    let full_name = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
    let mut report = LoadReport { ignored, ..Default::default() };
    let mut seen = HashSet::new();
    for (name, tensor) in tensors {
        let Some(var) = data.get(&full_name(name)) else {
            report.unexpected.push(name.clone());
            continue;
        };
        seen.insert(name.as_str());
        let want = var.dims().to_vec();
        let mut value = tensor.to_dtype(var.dtype())?.to_device(var.device())?;
        if value.dims() != want.as_slice() {
            match pos_embed_grids(name, value.dims(), &want) {
                Some((from, to)) => {
                    report.resized.push((name.clone(), value.dims().to_vec(), want.clone()));
                    value = resize_pos_embed(&value, (from, from), 1, (to, to), false)?;
                }
                None => return Err(engine::Error::ShapeMismatch { key: name.clone(), expected: want, found: value.dims().to_vec() }.into()),
            }
        }
        var.set(&value)?;
        report.loaded += 1;
    }
    report.missing = data.keys().filter_map(|k| strip_var_prefix(k, prefix)).filter(|k| !seen.contains(k)).map(str::to_string).collect();
    report.missing.sort();
    report.unexpected.sort();
    Ok(report)
}

/// The (from, to) token grids when `name` is a position table `(1, 1 + g², D)`
/// whose grid alone differs from the model's; `None` for any other mismatch.
fn pos_embed_grids(name: &str, found: &[usize], want: &[usize]) -> Option<(usize, usize)> {
    match (found, want) {
        ([1, n, d], [1, m, e]) if name == "pos_embed" && d == e => {
            Some((n.checked_sub(1).and_then(square_grid)?, m.checked_sub(1).and_then(square_grid)?))
        }
        _ => None,
    }
}

/// The name of variable `name` below `prefix` (`prefix.` removed), or
/// `None` when it lies elsewhere; every name is below the empty prefix.
pub(crate) fn strip_var_prefix<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(name);
    }
    name.strip_prefix(prefix)?.strip_prefix('.')
}

/// A ViT with its variables, loaded from a checkpoint.
pub struct LoadedVit {
    /// The model.
    pub model: Vit,
    /// Its variables (timm names), for training or saving.
    pub varmap: VarMap,
    /// The configuration used.
    pub config: VitConfig,
    /// What the load did.
    pub report: LoadReport,
}

/// Reads `path` and builds a ViT from it on `device`. The config comes from
/// the file's metadata when `vitdet import` wrote it, else from the tensor
/// shapes plus `arch` (which fixes the number of heads).
///
/// # Errors
/// As [`read_checkpoint`], [`infer_config`] and [`load_into`].
pub fn load_vit(path: &Path, arch_name: &str, device: &Device) -> Result<LoadedVit> {
    load_vit_as(path, &VitConfig::by_name(arch_name)?, arch_name, device)
}

/// [`load_vit`] with an explicit architecture instead of a name.
///
/// # Errors
/// As [`load_vit`].
pub fn load_vit_as(path: &Path, arch: &VitConfig, arch_name: &str, device: &Device) -> Result<LoadedVit> {
    let raw = read_checkpoint(path)?;
    let (tensors, ignored) = backbone_tensors(raw.tensors);
    let config = match raw.config {
        Some(c) => {
            c.validate().map_err(|e| Error::Checkpoint { path: path.into(), msg: format!("metadata `{CONFIG_KEY}`: {e}") })?;
            c
        }
        None => infer_config(&tensors, arch, arch_name, path)?,
    };
    let varmap = VarMap::new();
    let model = Vit::new(&config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let report = load_into(&varmap, &tensors, ignored).map_err(|e| e.in_file(path))?;
    Ok(LoadedVit { model, varmap, config, report })
}

/// Writes the model's variables to `out` as safetensors (timm names, sorted)
/// with its config in the metadata, atomically.
///
/// # Errors
/// An I/O error naming `out`.
pub fn save_vit(varmap: &VarMap, config: &VitConfig, out: &Path) -> Result<()> {
    let tensors: Vec<(String, Tensor)> =
        engine::vars::named_vars(varmap)?.into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    save_vit_tensors(tensors, config, out)
}

/// Writes a ViT's named `tensors` (timm names; sorted here) with its
/// `config` in the metadata to `out`, atomically: the file every ViT loader
/// reads as it is (a pre-trained encoder taken out of a larger model).
///
/// # Errors
/// An I/O error naming `out`.
pub fn save_vit_tensors(mut tensors: Vec<(String, Tensor)>, config: &VitConfig, out: &Path) -> Result<()> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let json = serde_json::to_string(config).map_err(|e| Error::Config(e.to_string()))?;
    let meta = HashMap::from([(CONFIG_KEY.to_string(), json)]);
    engine::checkpoint::write_safetensors_with_metadata(out, &tensors, meta)?;
    Ok(())
}

/// The path a checkpoint is written to by default: `FILE.safetensors` next to `FILE`.
pub fn default_import_path(from: &Path) -> PathBuf {
    let name = from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.trim_end_matches(".tar").trim_end_matches(".pth").trim_end_matches(".pt");
    from.with_file_name(format!("{stem}.safetensors"))
}
