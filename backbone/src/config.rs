//! ViT configurations: the paper's ViT-Tiny (12 heads) and its relatives.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the image representation fed to the classifier is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Final `norm` over all tokens, then the cls token (DeiT, MoCo-v3, MAE pre-training).
    Cls,
    /// Mean of the patch tokens (cls excluded), then `fc_norm`; no final `norm`
    /// (MAE-style fine-tuning: the paper's default for classification).
    Avg,
}

/// Kind of absolute position embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosEmbedKind {
    /// A trained parameter (fine-tuning, DeiT).
    Learned,
    /// Fixed 2-D sin-cos values (MAE pre-training); never updated.
    SinCos,
}

/// Hyper-parameters of a plain ViT. Names follow timm's `VisionTransformer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VitConfig {
    /// Input resolution in pixels (square); sets the position-embedding grid.
    pub img_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Token width D.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block (D must be divisible by it).
    pub num_heads: usize,
    /// MLP hidden width = `mlp_ratio * D`.
    pub mlp_ratio: f64,
    /// Whether the qkv projection has a bias.
    pub qkv_bias: bool,
    /// LayerNorm epsilon.
    pub ln_eps: f64,
    /// Classifier outputs; 0 means no head.
    pub num_classes: usize,
    /// Pooling before the head.
    pub pool: Pool,
    /// Position-embedding kind.
    pub pos_embed: PosEmbedKind,
    /// Stochastic depth of the last block (linearly increasing from 0).
    pub drop_path_rate: f64,
}

impl Default for VitConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

impl VitConfig {
    /// The paper's ViT-Tiny: D 192, 12 blocks, **12 heads** (head dim 16), as in MAE-Lite.
    pub fn tiny() -> Self {
        Self {
            img_size: 224,
            patch_size: 16,
            in_chans: 3,
            embed_dim: 192,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4.0,
            qkv_bias: true,
            ln_eps: 1e-6,
            num_classes: 0,
            pool: Pool::Cls,
            pos_embed: PosEmbedKind::Learned,
            drop_path_rate: 0.0,
        }
    }

    /// The original DeiT-Tiny: as `tiny` with 3 heads.
    pub fn tiny3() -> Self {
        Self { num_heads: 3, ..Self::tiny() }
    }

    /// ViT-Small: D 384, 12 blocks, 6 heads.
    pub fn small() -> Self {
        Self { embed_dim: 384, num_heads: 6, ..Self::tiny() }
    }

    /// ViT-Base: D 768, 12 blocks, 12 heads (the MAE-Base distillation teacher).
    pub fn base() -> Self {
        Self { embed_dim: 768, num_heads: 12, ..Self::tiny() }
    }

    /// The configuration named `tiny`, `tiny3`, `small` or `base`.
    ///
    /// # Errors
    /// An unknown name is a config error listing the valid ones.
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "tiny3" => Ok(Self::tiny3()),
            "small" => Ok(Self::small()),
            "base" => Ok(Self::base()),
            other => Err(Error::Config(format!("unknown arch `{other}`; expected one of tiny, tiny3, small, base"))),
        }
    }

    /// Side of the token grid at `img_size`.
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Hidden width of the MLP.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio).round() as usize
    }

    /// Checks cross-field rules once, at load.
    ///
    /// # Errors
    /// Names the field and the rule it breaks.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.num_heads == 0 || !self.embed_dim.is_multiple_of(self.num_heads) {
            return fail(format!("embed_dim {} is not divisible by num_heads {}", self.embed_dim, self.num_heads));
        }
        if self.patch_size == 0 || !self.img_size.is_multiple_of(self.patch_size) {
            return fail(format!("img_size {} is not a multiple of patch_size {}", self.img_size, self.patch_size));
        }
        if self.depth == 0 {
            return fail("depth must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return fail(format!("drop_path_rate {} must be in [0, 1)", self.drop_path_rate));
        }
        let params = self.param_count();
        if params.is_nan() || params > MAX_PARAMS as f64 {
            return fail(format!(
                "{params:.3e} parameters (embed_dim {}, depth {}, mlp_ratio {}, img_size {}, patch_size {}) is more than the {MAX_PARAMS:.0e} a ViT here may have",
                self.embed_dim, self.depth, self.mlp_ratio, self.img_size, self.patch_size
            ));
        }
        Ok(())
    }

    /// The number of parameters the model has (as f64, so absurd configs
    /// cannot overflow): patch embedding, class token, position table,
    /// `depth` blocks (two LayerNorms, qkv, projection, MLP) and the head.
    pub fn param_count(&self) -> f64 {
        let (d, hidden) = (self.embed_dim as f64, self.embed_dim as f64 * self.mlp_ratio);
        let tokens = if self.patch_size == 0 { 1.0 } else { (self.grid_size() as f64).powi(2) + 1.0 };
        let patch = d * (self.in_chans as f64) * (self.patch_size as f64).powi(2) + d;
        let block = 4.0 * d + 3.0 * d * d + 3.0 * d + d * d + d + 2.0 * hidden * d + hidden + d;
        let head = (d + 1.0) * self.num_classes as f64;
        patch + d + tokens * d + self.depth as f64 * block + 2.0 * d + head
    }
}

/// Most parameters a [`VitConfig`] may describe: 2^30, above ViT-g/14's
/// 1.0 billion. A config read from a file (a checkpoint's metadata, a recipe)
/// could otherwise ask for any size and end in an allocator abort instead of
/// a message; found by `backbone/tests/import_properties.rs`.
pub const MAX_PARAMS: usize = 1 << 30;

/// The ViTDet layout of a plain ViT's blocks (detectron2 `vit.py` `ViT`
/// arguments as MAE-Lite's `mask_rcnn_vitdet_t_100ep.py` sets them): which
/// blocks attend inside windows, relative positions, and the detection
/// input size the global blocks' relative-position tables are sized for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowedConfig {
    /// Side of the square attention windows, in tokens.
    pub window_size: usize,
    /// Blocks (0-based) with window attention; the others attend globally
    /// (2, 5, 8, 11 for the 12-block ViT).
    pub window_block_indexes: Vec<usize>,
    /// Decomposed relative positions in every block (zero-initialised).
    pub use_rel_pos: bool,
    /// Detection input side in pixels: global blocks get tables for an
    /// `img_size / patch_size` token grid (79 rows at 640 px); other sizes
    /// resample them.
    pub img_size: usize,
    /// Stochastic depth of the last block (linearly increasing from 0);
    /// replaces the [`VitConfig`]'s rate for the backbone.
    pub drop_path_rate: f64,
}

impl Default for WindowedConfig {
    fn default() -> Self {
        Self { window_size: 14, window_block_indexes: vec![0, 1, 3, 4, 6, 7, 9, 10], use_rel_pos: true, img_size: 640, drop_path_rate: 0.0 }
    }
}

impl WindowedConfig {
    /// Checks the layout against the ViT it is applied to.
    ///
    /// # Errors
    /// Names the field and the rule it breaks: a zero window, a block index
    /// beyond the depth, an `img_size` that is not a positive multiple of
    /// the patch size, a drop-path rate outside [0, 1).
    pub fn validate(&self, vit: &VitConfig) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.window_size == 0 {
            return fail("window_size must be at least 1".into());
        }
        if let Some(i) = self.window_block_indexes.iter().find(|&&i| i >= vit.depth) {
            return fail(format!("window_block_indexes has block {i}, but the ViT has {} blocks", vit.depth));
        }
        if self.img_size == 0 || !self.img_size.is_multiple_of(vit.patch_size) {
            return fail(format!("img_size {} is not a positive multiple of patch_size {}", self.img_size, vit.patch_size));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return fail(format!("drop_path_rate {} must be in [0, 1)", self.drop_path_rate));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn param_count_is_timms() {
        // timm's vit_tiny_patch16_224 (1000 classes) has 5,717,416 parameters.
        assert_eq!(VitConfig { num_classes: 1000, ..VitConfig::tiny() }.param_count(), 5_717_416.0);
        let huge = VitConfig { embed_dim: 3 << 20, ..VitConfig::tiny() };
        let err = huge.validate().unwrap_err().to_string();
        assert!(err.contains("parameters") && err.contains("embed_dim 3145728"), "{err}");
    }

    #[test]
    fn tiny_is_the_papers_12_head_variant() {
        let c = VitConfig::tiny();
        assert_eq!((c.embed_dim, c.depth, c.num_heads, c.head_dim(), c.mlp_hidden(), c.grid_size()), (192, 12, 12, 16, 768, 14));
        assert_eq!(VitConfig::tiny3().head_dim(), 64);
        c.validate().unwrap();
    }

    #[test]
    fn invalid_configs_name_the_rule() {
        let err = VitConfig { num_heads: 5, ..VitConfig::tiny() }.validate().unwrap_err().to_string();
        assert!(err.contains("not divisible by num_heads 5"), "{err}");
        let err = VitConfig::by_name("huge").unwrap_err().to_string();
        assert!(err.contains("tiny, tiny3, small, base"), "{err}");
    }

    #[test]
    fn windowed_defaults_are_the_papers_and_unknown_keys_fail() {
        let c: WindowedConfig = serde_json::from_str("{}").unwrap();
        assert_eq!((c.window_size, c.use_rel_pos, c.img_size, c.drop_path_rate), (14, true, 640, 0.0));
        assert_eq!(c.window_block_indexes, vec![0, 1, 3, 4, 6, 7, 9, 10]);
        c.validate(&VitConfig::tiny()).unwrap();
        let err = serde_json::from_str::<WindowedConfig>(r#"{"window": 7}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `window`"), "{err}");
        let err = WindowedConfig { window_block_indexes: vec![12], ..c.clone() }.validate(&VitConfig::tiny()).unwrap_err().to_string();
        assert!(err.contains("block 12") && err.contains("12 blocks"), "{err}");
        let err = WindowedConfig { img_size: 600, ..c }.validate(&VitConfig::tiny()).unwrap_err().to_string();
        assert!(err.contains("img_size 600"), "{err}");
    }
}
