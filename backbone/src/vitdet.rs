//! The ViTDet backbone: the plain ViT's blocks ([`crate::vit::Block`]) run
//! over the token map of a detection-size image, most of them inside
//! zero-padded windows, all with decomposed relative positions, and the
//! last block's output returned as a stride-16 feature map. Mirrors
//! detectron2 `modeling/backbone/vit.py` `ViT` as MAE-Lite's
//! `mask_rcnn_vitdet_t_100ep.py` configures it (vitdet-and-cocoeval.md §1.2,
//! maelite-recipes.md §7):
//! - no cls token; the pre-training `pos_embed` (1, 1 + 14², D) loses its cls
//!   entry and is resized bicubically to the token grid in every forward;
//! - no final norm after the last block.
//!
//! Parameter names are timm's (`patch_embed.proj.*`, `pos_embed`,
//! `blocks.{i}.*`, plus `blocks.{i}.attn.rel_pos_h/w`), so a released
//! MAE-Lite checkpoint loads through [`crate::import`]: its rel-pos tables
//! are reported missing and stay zero, its `cls_token`, `norm.*` and head
//! are reported unexpected. [`load_vitdet_backbone`] does this for the
//! detector's `--backbone` argument.
//!
//! Shapes: B batch, (H, W) pixels, (h, w) = (H/16, W/16) tokens, D width.
//! Verified against a PyTorch reference in `tests/vitdet_reference.rs`.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::RngCore;

use crate::config::{PosEmbedKind, VitConfig, WindowedConfig};
use crate::import::{backbone_tensors, infer_config, load_into_under, read_checkpoint, LoadReport};
use crate::init::init_weights_under;
use crate::named::{resolve_backbone, BackboneSource, WeightSearch};
use crate::pos_embed::resize_pos_embed;
use crate::vit::{drop_path_rates, AttentionLayout, Block, PatchEmbed};
use crate::Result;

/// A plain ViT as ViTDet's backbone (detectron2 `ViT`).
#[derive(Debug, Clone)]
pub struct VitDetBackbone {
    cfg: VitConfig,
    patch_embed: PatchEmbed,
    /// (1, 1 + g², D) at the pre-training grid g = `cfg.img_size / patch`.
    pos_embed: Tensor,
    blocks: Vec<Block>,
}

impl VitDetBackbone {
    /// Builds the backbone's parameters under `vb` with timm's names: the
    /// patch embedding and blocks of `cfg`, `pos_embed` at `cfg`'s
    /// (pre-training) grid, and per `windowed` the window size of each
    /// block and zero-initialised relative-position tables, (2S-1, d) for
    /// window blocks and `2 * windowed.img_size / patch - 1` rows for global
    /// ones. Stochastic depth follows `windowed.drop_path_rate`.
    ///
    /// # Errors
    /// An invalid config, or `vb` holding a tensor of another shape.
    pub fn new(cfg: &VitConfig, windowed: &WindowedConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        windowed.validate(cfg)?;
        let grid = cfg.grid_size();
        let normal = candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let pos_embed = vb.get_with_hints((1, 1 + grid * grid, cfg.embed_dim), "pos_embed", normal)?;
        let global_side = windowed.img_size / cfg.patch_size;
        let blocks = drop_path_rates(windowed.drop_path_rate, cfg.depth)
            .into_iter()
            .enumerate()
            .map(|(i, rate)| {
                let window_size = if windowed.window_block_indexes.contains(&i) { windowed.window_size } else { 0 };
                let side = if window_size > 0 { window_size } else { global_side };
                let layout = AttentionLayout { window_size, rel_pos_size: windowed.use_rel_pos.then_some((side, side)) };
                Block::new(cfg, rate, layout, vb.pp("blocks").pp(i))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let patch_embed = PatchEmbed::new(cfg, vb.pp("patch_embed").pp("proj"))?;
        Ok(Self { cfg: cfg.clone(), patch_embed, pos_embed, blocks })
    }

    /// Normalised pixels (B, 3, H, W), H and W multiples of the patch size,
    /// to the last block's output as a (B, D, H/16, W/16) map, no final norm.
    /// `train` enables drop path, drawn from `rng`.
    ///
    /// # Errors
    /// An image side that is not a multiple of the patch size.
    pub fn forward(&self, pixels: &Tensor, train: bool, rng: &mut dyn RngCore) -> candle_core::Result<Tensor> {
        let (tokens, (h, w)) = self.patch_embed.forward(pixels)?;
        let grid = self.cfg.grid_size();
        let pos = resize_pos_embed(&self.pos_embed, (grid, grid), 1, (h, w), true)?;
        let mut x = tokens.broadcast_add(&pos)?;
        for block in &self.blocks {
            x = block.forward_grid(&x, (h, w), train, rng)?;
        }
        let (b, _, dim) = x.dims3()?;
        x.transpose(1, 2)?.contiguous()?.reshape((b, dim, h, w))
    }

    /// The ViT configuration it was built with.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Channels of the output map (D).
    pub fn out_channels(&self) -> usize {
        self.cfg.embed_dim
    }

    /// Pixels per output cell (the patch size, 16).
    pub fn stride(&self) -> usize {
        self.cfg.patch_size
    }

    /// The optimizer rules of its parameter names, also below a prefix such
    /// as `backbone.net.`: layer id 0 for `patch_embed`/`pos_embed`, i + 1
    /// for `blocks.i` (the rel-pos tables included), depth + 1 for the
    /// rest; `pos_embed` is exempt from weight decay, the rel-pos tables are
    /// not (detectron2's ViTDet optimizer).
    pub fn param_rules(&self) -> engine::optim::ViTNameRules {
        engine::optim::ViTNameRules { num_layers: self.cfg.depth }
    }
}

/// Which weights a ViTDet backbone starts from: the detector's
/// `--backbone` and `--arch`.
#[derive(Debug, Clone, Copy)]
pub struct BackboneWeights<'a> {
    /// `scratch`, a named backbone (`mae_tiny`, `distilled_mae_tiny`,
    /// `deit_tiny`, `mocov3_tiny`, ...) or a path to a weights file.
    pub spec: &'a str,
    /// Name of `arch` (`tiny`); named backbones bring their own.
    pub arch_name: &'a str,
    /// The ViT used for `scratch` and for files whose config is not stored
    /// in them (it fixes the number of heads); its `img_size` is the
    /// pre-training grid of `pos_embed` (224 px for the paper's models).
    pub arch: &'a VitConfig,
    /// The folders named backbones are looked up in.
    pub search: &'a WeightSearch,
    /// Seed of the initialisation of what no checkpoint sets.
    pub seed: u64,
}

/// Where a backbone's initial values came from.
#[derive(Debug, Clone, PartialEq)]
pub enum BackboneInit {
    /// Seeded random initialisation (`scratch`).
    Scratch {
        /// The seed.
        seed: u64,
    },
    /// A checkpoint file, and what loading it did.
    Checkpoint {
        /// The file read.
        path: PathBuf,
        /// Loaded, missing (the rel-pos tables), unexpected (cls token,
        /// final norm, head) and resized keys.
        report: LoadReport,
    },
}

impl std::fmt::Display for BackboneInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackboneInit::Scratch { seed } => write!(f, "random initialisation (seed {seed})"),
            BackboneInit::Checkpoint { path, report } => write!(f, "{}: {report}", path.display()),
        }
    }
}

/// A ViTDet backbone whose variables live in the caller's `VarMap`.
#[derive(Debug, Clone)]
pub struct LoadedVitDet {
    /// The model.
    pub backbone: VitDetBackbone,
    /// The ViT configuration used (from the checkpoint when it has one).
    pub config: VitConfig,
    /// Where its initial values came from.
    pub init: BackboneInit,
}

/// Builds a ViTDet backbone in `varmap` under `prefix` (`""` for none, or
/// e.g. `backbone.net`, giving `backbone.net.blocks.0.attn.qkv.weight`) and
/// sets its values: every variable is first initialised from
/// `weights.seed` (timm's rules, rel-pos tables zero), then, unless the
/// spec is `scratch`, overwritten from the checkpoint the spec resolves to
/// (released `.pth.tar` or imported safetensors). The caller's `varmap`
/// owns the variables, so the detector trains them.
///
/// # Errors
/// A named backbone whose file is in none of the searched folders or an
/// unknown name ([`crate::Error::WeightsNotFound`], saying where to get
/// it); an unreadable checkpoint, or one whose width does not match the
/// arch; shape mismatches; an invalid config.
pub fn load_vitdet_backbone(weights: &BackboneWeights, windowed: &WindowedConfig, varmap: &VarMap, prefix: &str, device: &Device) -> Result<LoadedVitDet> {
    let root = VarBuilder::from_varmap(varmap, DType::F32, device);
    let vb = if prefix.is_empty() { root } else { root.pp(prefix) };
    let source = resolve_backbone(weights.spec, weights.arch_name, weights.search)?;
    let BackboneSource::File { path, arch } = source else {
        let config = VitConfig { pos_embed: PosEmbedKind::Learned, ..weights.arch.clone() };
        let backbone = VitDetBackbone::new(&config, windowed, vb)?;
        init_weights_under(varmap, prefix, &config, weights.seed)?;
        return Ok(LoadedVitDet { backbone, config, init: BackboneInit::Scratch { seed: weights.seed } });
    };
    let arch_cfg = if arch == weights.arch_name { weights.arch.clone() } else { VitConfig::by_name(&arch)? };
    let raw = read_checkpoint(&path)?;
    let (tensors, ignored) = backbone_tensors(raw.tensors);
    let stored = match raw.config {
        Some(c) => c,
        None => infer_config(&tensors, &arch_cfg, &arch, &path)?,
    };
    // The checkpoint decides the architecture; `pos_embed` keeps the arch's
    // pre-training grid (a table of another grid is resized on load).
    let config = VitConfig { img_size: arch_cfg.img_size, pos_embed: PosEmbedKind::Learned, ..stored };
    let backbone = VitDetBackbone::new(&config, windowed, vb)?;
    init_weights_under(varmap, prefix, &config, weights.seed)?;
    let report = load_into_under(varmap, prefix, &tensors, ignored).map_err(|e| e.in_file(&path))?;
    Ok(LoadedVitDet { backbone, config, init: BackboneInit::Checkpoint { path, report } })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use engine::optim::ParamRules;
    use engine::testing::{check_gradients, random_tensor};
    use std::collections::HashMap;

    /// A block over a 3x5 map of width 4 with 2 heads, built from `t` =
    /// [x, qkv.weight, rel_pos_h, rel_pos_w], norms and the other
    /// projections fixed.
    fn block_output(t: &[Tensor], window: usize, rel_side: usize) -> candle_core::Result<Tensor> {
        let cfg = VitConfig { embed_dim: 4, num_heads: 2, depth: 1, mlp_ratio: 1.0, img_size: 16, patch_size: 4, ..VitConfig::tiny() };
        let mut map: HashMap<String, Tensor> = HashMap::new();
        map.insert("attn.qkv.weight".into(), t[1].clone());
        map.insert("attn.rel_pos_h".into(), t[2].clone());
        map.insert("attn.rel_pos_w".into(), t[3].clone());
        let fixed: [(&str, &[usize]); 10] = [
            ("norm1.weight", &[4]),
            ("norm1.bias", &[4]),
            ("norm2.weight", &[4]),
            ("norm2.bias", &[4]),
            ("attn.qkv.bias", &[12]),
            ("attn.proj.weight", &[4, 4]),
            ("attn.proj.bias", &[4]),
            ("mlp.fc1.weight", &[4, 4]),
            ("mlp.fc1.bias", &[4]),
            ("mlp.fc2.weight", &[4, 4]),
        ];
        for (i, (name, shape)) in fixed.iter().enumerate() {
            map.insert((*name).into(), random_tensor(shape, 100 + i as u64));
        }
        map.insert("mlp.fc2.bias".into(), random_tensor(&[4], 120));
        let vb = VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
        let layout = AttentionLayout { window_size: window, rel_pos_size: Some((rel_side, rel_side)) };
        let block = Block::new(&cfg, 0.0, layout, vb)?;
        let mut rng = rand::rngs::mock::StepRng::new(0, 1);
        block.forward_grid(&t[0], (3, 5), false, &mut rng)
    }

    #[test]
    fn window_block_gradient_matches_finite_differences() {
        // 3x5 tokens in windows of 2: padded to 4x6, 6 windows, tables of the needed 3 rows.
        let t = [random_tensor(&[2, 15, 4], 1), random_tensor(&[12, 4], 2), random_tensor(&[3, 2], 3), random_tensor(&[3, 2], 4)];
        check_gradients(&t, |t| block_output(t, 2, 2)).unwrap();
    }

    #[test]
    fn global_block_with_resampled_tables_gradient_matches_finite_differences() {
        // Tables for a 2x2 grid (3 rows) used on the 3x5 map (5 and 9 rows needed).
        let t = [random_tensor(&[1, 15, 4], 5), random_tensor(&[12, 4], 6), random_tensor(&[3, 2], 7), random_tensor(&[3, 2], 8)];
        check_gradients(&t, |t| block_output(t, 0, 2)).unwrap();
    }

    fn tiny_backbone(varmap: &VarMap, prefix: &str) -> VitDetBackbone {
        let cfg = VitConfig { embed_dim: 24, num_heads: 3, depth: 3, img_size: 64, ..VitConfig::tiny() };
        let windowed = WindowedConfig { window_size: 3, window_block_indexes: vec![0, 2], img_size: 96, ..WindowedConfig::default() };
        let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu).pp(prefix);
        VitDetBackbone::new(&cfg, &windowed, vb).unwrap()
    }

    #[test]
    fn tables_are_sized_by_window_or_detection_grid_and_start_at_zero() {
        let varmap = VarMap::new();
        let model = tiny_backbone(&varmap, "net");
        let data = varmap.data().lock().unwrap();
        // Window blocks: 2*3-1 rows; the global block: 2*(96/16)-1 = 11 rows; head dim 8.
        assert_eq!(data["net.blocks.0.attn.rel_pos_h"].dims(), &[5, 8]);
        assert_eq!(data["net.blocks.1.attn.rel_pos_w"].dims(), &[11, 8]);
        assert_eq!(data["net.pos_embed"].dims(), &[1, 17, 24]);
        assert!(!data.contains_key("net.cls_token") && !data.contains_key("net.norm.weight"));
        let abs_sum = data["net.blocks.1.attn.rel_pos_h"].as_tensor().abs().unwrap().sum_all().unwrap().to_vec0::<f32>().unwrap();
        assert_eq!(abs_sum, 0.0);
        drop(data);
        let x = Tensor::zeros((2, 3, 80, 48), DType::F32, &Device::Cpu).unwrap();
        let out = model.forward(&x, false, &mut rand::rngs::mock::StepRng::new(0, 1)).unwrap();
        assert_eq!(out.dims(), &[2, 24, 5, 3]);
    }

    #[test]
    fn the_papers_tiny_backbone_at_128_px_pads_every_window_block() {
        // ViT-Tiny (12 heads, d 16) for 640 px: windows of 14 (27-row tables), global
        // blocks 2, 5, 8, 11 with 79-row tables; a 128 px image is an 8x8 map, padded to
        // 14x14 in window blocks, and the global tables are resampled to 15 rows.
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = VitDetBackbone::new(&VitConfig::tiny(), &WindowedConfig::default(), vb).unwrap();
        {
            let data = varmap.data().lock().unwrap();
            for i in 0..12 {
                let rows = if [2, 5, 8, 11].contains(&i) { 79 } else { 27 };
                assert_eq!(data[&format!("blocks.{i}.attn.rel_pos_h")].dims(), &[rows, 16], "block {i}");
                assert_eq!(data[&format!("blocks.{i}.attn.rel_pos_w")].dims(), &[rows, 16], "block {i}");
            }
            assert_eq!(data["pos_embed"].dims(), &[1, 197, 192]);
            assert_eq!(data.len(), 3 + 12 * 14, "patch_embed (2), pos_embed, 14 per block; no cls token, norm or head");
        }
        let x = Tensor::zeros((1, 3, 128, 128), DType::F32, &Device::Cpu).unwrap();
        let out = model.forward(&x, false, &mut rand::rngs::mock::StepRng::new(0, 1)).unwrap();
        assert_eq!(out.dims(), &[1, 192, 8, 8]);
    }

    #[test]
    fn rel_pos_tables_decay_and_pos_embed_does_not() {
        let varmap = VarMap::new();
        let model = tiny_backbone(&varmap, "backbone.net");
        let rules = model.param_rules();
        assert_eq!(rules.layer_id("backbone.net.blocks.2.attn.rel_pos_h"), 3);
        assert_eq!(rules.layer_id("backbone.net.pos_embed"), 0);
        assert_eq!(rules.layer_id("backbone.net.patch_embed.proj.weight"), 0);
        assert!(!rules.no_weight_decay("backbone.net.blocks.0.attn.rel_pos_w"));
        assert!(!rules.is_norm("backbone.net.blocks.0.attn.rel_pos_w"));
        assert!(rules.no_weight_decay("backbone.net.pos_embed"));
        assert!(rules.is_norm("backbone.net.blocks.0.norm1.weight"));
    }
}
