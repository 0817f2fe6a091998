//! The classifier: the shared ViT with a linear head (fine-tuning), or a
//! frozen ViT with BatchNorm and a linear head (MAE's linear probe).
//!
//! Parameter names are timm's (`blocks.0.attn.qkv.weight`, `fc_norm.weight`,
//! `head.weight`), so a fine-tuned model loads wherever a timm ViT does. The
//! linear probe's head is MAE's `Sequential(BatchNorm1d, Linear)`:
//! `head.0.running_mean`, `head.1.weight`, ...

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::ops::{BatchNorm1d, BatchNormConfig, Linear};
use rand::SeedableRng;

use backbone::import::{backbone_tensors, infer_config, load_into, read_checkpoint, LoadReport};
use backbone::named::{resolve_backbone, BackboneSource, WeightSearch};
use backbone::vitdet::BackboneInit;
use backbone::{ForwardOptions, Pool, PosEmbedKind, Vit, VitConfig};

use crate::recipe::Recipe;
use crate::Result;

/// MAE's linear-probe BatchNorm epsilon (`BatchNorm1d(affine=False, eps=1e-6)`).
const PROBE_BN_EPS: f64 = 1e-6;
/// PyTorch's BatchNorm momentum for the running statistics.
const BN_MOMENTUM: f64 = 0.1;

/// A ViT classifier; see the module doc.
#[derive(Debug, Clone)]
pub struct Classifier {
    vit: Vit,
    probe: Option<LinearProbe>,
}

/// MAE's linear-probe head over frozen features.
#[derive(Debug, Clone)]
struct LinearProbe {
    norm: BatchNorm1d,
    linear: Linear,
}

/// How a classifier is built: the parts of a recipe the network needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierSpec {
    /// The ViT (its `num_classes` is the head's width; `img_size` the input side).
    pub vit: VitConfig,
    /// Frozen backbone, BatchNorm + linear head.
    pub linear_probe: bool,
}

impl ClassifierSpec {
    /// The spec `recipe` asks for, on the ViT `arch` (the architecture of
    /// the initial weights), for `num_classes` classes.
    pub fn from_recipe(recipe: &Recipe, arch: &VitConfig, num_classes: usize) -> Self {
        let probe = recipe.train.linear_probe;
        let vit = VitConfig {
            img_size: recipe.data.input_size,
            // The probe reads MAE's features: the cls token after the final norm.
            pool: if probe { Pool::Cls } else { recipe.model.pool },
            num_classes: if probe { 0 } else { num_classes },
            drop_path_rate: if probe { 0.0 } else { recipe.model.drop_path_rate },
            pos_embed: PosEmbedKind::Learned,
            ..arch.clone()
        };
        Self { vit, linear_probe: probe }
    }
}

impl Classifier {
    /// Builds the network's variables under `vb` (timm names at its root).
    /// `num_classes` is the probe head's width (the fine-tuning head's is
    /// `spec.vit.num_classes`).
    ///
    /// # Errors
    /// An invalid config, or `vb` holding a tensor of the wrong shape.
    pub fn new(spec: &ClassifierSpec, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let vit = Vit::new(&spec.vit, vb.clone())?;
        let probe = if spec.linear_probe {
            let dim = spec.vit.embed_dim;
            let head = vb.pp("head");
            Some(LinearProbe {
                norm: BatchNorm1d::new(dim, BatchNormConfig { eps: PROBE_BN_EPS, momentum: BN_MOMENTUM, affine: false }, head.pp("0"))?,
                linear: Linear::new(dim, num_classes, true, head.pp("1"))?,
            })
        } else {
            None
        };
        Ok(Self { vit, probe })
    }

    /// The ViT underneath.
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// Whether only the head trains.
    pub fn is_linear_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Logits (B, K) of normalised pixels (B, 3, S, S). `train` enables drop
    /// path and BatchNorm's batch statistics.
    ///
    /// # Errors
    /// A tensor operation fails (e.g. a wrong input shape).
    pub fn forward(&self, pixels: &Tensor, train: bool, rng: &mut dyn rand::RngCore) -> Result<Tensor> {
        match &self.probe {
            None => {
                let out = self.vit.forward(pixels, &ForwardOptions { train, ..Default::default() }, rng)?;
                out.logits.ok_or_else(|| crate::Error::Config { key: "model".into(), msg: "the ViT was built without a head".into() })
            }
            Some(probe) => {
                // Frozen features: no dropout, no graph back into the backbone.
                let out = self.vit.forward(pixels, &ForwardOptions::default(), rng)?;
                let features = probe.norm.forward_t(&out.pooled.detach(), train)?;
                Ok(probe.linear.forward(&features)?)
            }
        }
    }

    /// Logits (B, K) in eval mode (no drop path, BatchNorm's running statistics).
    ///
    /// # Errors
    /// As [`Classifier::forward`].
    pub fn predict(&self, pixels: &Tensor) -> Result<Tensor> {
        // Eval mode draws no random number.
        self.forward(pixels, false, &mut rand::rngs::mock::StepRng::new(0, 0))
    }

    /// Whether variable `name` is trained: everything when fine-tuning, the
    /// probe's head (not its BatchNorm statistics) when probing.
    pub fn is_trainable(&self, name: &str) -> bool {
        match self.probe {
            None => true,
            Some(_) => name.starts_with("head.1."),
        }
    }
}

/// A classifier built from a recipe and its initial weights.
#[derive(Debug)]
pub struct BuiltClassifier {
    /// The model.
    pub model: Classifier,
    /// Its specification (stored with the trained weights).
    pub spec: ClassifierSpec,
    /// Where the backbone's initial values came from.
    pub init: BackboneInit,
}

/// Builds the classifier `recipe` describes in `varmap` and sets its initial
/// values: timm's seeded initialisation everywhere, then the backbone
/// checkpoint (`recipe.train.backbone`: `scratch`, a released name or a
/// file) without its head, and without blocks `keep_blocks..` for the
/// layer-reservation experiment; the position table is resized to the
/// input's grid; finally the head gets MAE's initialisation
/// (truncated normal of `model.head_init_std`, zero bias).
///
/// # Errors
/// A named backbone that is not found (saying where to get it), an
/// unreadable checkpoint or one of another width, `keep_blocks` beyond the
/// depth, or an invalid config.
pub fn build_classifier(recipe: &Recipe, num_classes: usize, search: &WeightSearch, varmap: &VarMap, device: &Device) -> Result<BuiltClassifier> {
    let t = &recipe.train;
    let arch = VitConfig::by_name(&recipe.model.arch)?;
    let source = resolve_backbone(&t.backbone, &recipe.model.arch, search)?;
    let (arch, checkpoint) = match source {
        BackboneSource::Scratch => (arch, None),
        BackboneSource::File { path, arch: file_arch } => {
            let arch = if file_arch == recipe.model.arch { arch } else { VitConfig::by_name(&file_arch)? };
            let raw = read_checkpoint(&path)?;
            let (tensors, ignored) = backbone_tensors(raw.tensors);
            let stored = match raw.config {
                Some(c) => c,
                None => infer_config(&tensors, &arch, &file_arch, &path)?,
            };
            // The checkpoint decides the shape of the network; its own head does not come along.
            let arch = VitConfig { num_classes: 0, drop_path_rate: arch.drop_path_rate, ..stored };
            (arch, Some((path, tensors, ignored)))
        }
    };
    let spec = ClassifierSpec::from_recipe(recipe, &arch, num_classes);
    if let Some(k) = t.keep_blocks {
        if k > spec.vit.depth {
            return Err(crate::Error::Config { key: "train.keep_blocks".into(), msg: format!("{k} is more than the model's {} blocks", spec.vit.depth) });
        }
    }
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    let model = Classifier::new(&spec, num_classes, vb)?;
    backbone::init::init_weights(varmap, &spec.vit, t.seed)?;
    let init = match checkpoint {
        None => BackboneInit::Scratch { seed: t.seed },
        Some((path, tensors, ignored)) => {
            let keep = |name: &str| !name.starts_with("head.") && t.keep_blocks.is_none_or(|k| block_index(name).is_none_or(|i| i < k));
            let dropped = tensors.len() - tensors.iter().filter(|(n, _)| keep(n)).count();
            let kept: Vec<(String, Tensor)> = tensors.into_iter().filter(|(n, _)| keep(n)).collect();
            let report: LoadReport = load_into(varmap, &kept, ignored + dropped).map_err(|e| e.in_file(&path))?;
            BackboneInit::Checkpoint { path, report }
        }
    };
    init_head(varmap, recipe.model.head_init_std, t.seed)?;
    Ok(BuiltClassifier { model, spec, init })
}

/// `i` of a `blocks.{i}.` parameter name.
fn block_index(name: &str) -> Option<usize> {
    name.strip_prefix("blocks.")?.split('.').next()?.parse().ok()
}

/// MAE's head initialisation: weight ~ truncated N(0, std²) (the ±2 cut never
/// binds at these widths), bias 0; the probe's BatchNorm statistics start at
/// mean 0, variance 1.
fn init_head(varmap: &VarMap, std: f64, seed: u64) -> Result<()> {
    let named = engine::vars::named_vars(varmap)?; // sorted by name
    // A stream of its own, so the head does not depend on how many draws the backbone took.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6865_6164); // "head"
    for (name, var) in named.iter().filter(|(n, _)| n.starts_with("head.") || n.as_str() == "head") {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("running_var") {
            vec![1.0; n]
        } else if name.ends_with("bias") || name.ends_with("running_mean") {
            vec![0.0; n]
        } else {
            (0..n).map(|_| (std * engine::rng::standard_normal(&mut rng)).clamp(-2.0, 2.0) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tiny_recipe() -> Recipe {
        let mut r = Recipe::default();
        r.model.arch = "tiny".into();
        r.data.input_size = 32;
        r.train.backbone = "scratch".into();
        r
    }

    #[test]
    fn fine_tuning_model_has_timm_names_and_a_small_head() {
        let varmap = VarMap::new();
        let built = build_classifier(&tiny_recipe(), 7, &WeightSearch::default(), &varmap, &Device::Cpu).unwrap();
        let data = varmap.data().lock().unwrap();
        assert_eq!(data["head.weight"].dims(), &[7, 192]);
        assert_eq!(data["pos_embed"].dims(), &[1, 5, 192]);
        assert!(data.contains_key("fc_norm.weight") && !data.contains_key("norm.weight"));
        let w = data["head.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!(std > 1e-5 && std < 4e-5, "head std {std}");
        drop(data);
        let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let logits = built.model.forward(&x, true, &mut rand::rngs::mock::StepRng::new(0, 1)).unwrap();
        assert_eq!(logits.dims(), &[2, 7]);
    }

    #[test]
    fn linear_probe_trains_only_the_head_behind_a_batch_norm() {
        let varmap = VarMap::new();
        let mut r = tiny_recipe();
        r.train.linear_probe = true;
        let built = build_classifier(&r, 3, &WeightSearch::default(), &varmap, &Device::Cpu).unwrap();
        let data = varmap.data().lock().unwrap();
        assert!(data.contains_key("head.0.running_var") && data.contains_key("head.1.weight"));
        assert!(!data.contains_key("head.0.weight"), "affine=False");
        assert!(data.contains_key("norm.weight"), "cls pooling after the final norm");
        let trainable: Vec<&String> = data.keys().filter(|n| built.model.is_trainable(n)).collect();
        assert_eq!(trainable.len(), 2, "{trainable:?}");
    }

    #[test]
    fn keep_blocks_beyond_the_depth_is_a_config_error() {
        let mut r = tiny_recipe();
        r.train.keep_blocks = Some(13);
        r.train.backbone = "scratch".into();
        // Scratch has no checkpoint, but the bound is still checked.
        let e = build_classifier(&r, 3, &WeightSearch::default(), &VarMap::new(), &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("train.keep_blocks"), "{e}");
    }

    #[test]
    fn block_index_reads_only_block_parameters() {
        assert_eq!(block_index("blocks.11.mlp.fc1.weight"), Some(11));
        assert_eq!(block_index("pos_embed"), None);
    }
}
