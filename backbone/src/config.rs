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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
}
