//! The MoCo-v3 model's hyper-parameters (MAE-Lite `projects/mocov3/
//! mocov3_exp.py`: `moco_dim`, `moco_mlp_dim`, `moco_t`, `moco_m`, encoder
//! `vit_tiny`); defaults are the released recipe (maelite-recipes.md §3).

use backbone::{Pool, PosEmbedKind, VitConfig};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// How the MoCo-v3 model is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV3Config {
    /// The encoder: MoCo-v3's ViT-Tiny (192-d, 12 blocks, 12 heads). Its
    /// output is the cls token after the final norm, so `pool` must be
    /// `cls`, `num_classes` 0 (the projector replaces the head) and
    /// `pos_embed` `sin_cos` (MoCo-v3's fixed table).
    pub vit: VitConfig,
    /// Hidden width of the projector and the predictor (`moco_mlp_dim`, 4096).
    pub mlp_dim: usize,
    /// Output width of the projector and the predictor (`moco_dim`, 256).
    pub dim: usize,
    /// Softmax temperature T of the InfoNCE loss (`moco_t`, 0.2).
    pub temperature: f64,
    /// Momentum at iteration 0 of the cosine schedule towards 1 (`moco_m`, 0.99).
    pub base_momentum: f64,
}

impl Default for MocoV3Config {
    fn default() -> Self {
        Self { vit: Self::tiny_vit(), mlp_dim: 4096, dim: 256, temperature: 0.2, base_momentum: 0.99 }
    }
}

impl MocoV3Config {
    /// MAE-Lite's MoCo-v3 `vit_tiny`: the paper's 12-head ViT-Tiny with a
    /// fixed sin-cos position table and no head.
    pub fn tiny_vit() -> VitConfig {
        Self::encoder_vit(&VitConfig::tiny(), 224)
    }

    /// The ViT `arch` (a named config: width, depth, heads, ...) as
    /// MoCo-v3's encoder at `img_size` pixels: cls-token output after the
    /// final norm, no head, the fixed sin-cos table.
    pub fn encoder_vit(arch: &VitConfig, img_size: usize) -> VitConfig {
        VitConfig { img_size, pos_embed: PosEmbedKind::SinCos, pool: Pool::Cls, num_classes: 0, ..arch.clone() }
    }

    /// Checks the cross-field rules once, at load.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: an invalid ViT, a ViT that is not a
    /// cls-token encoder with a sin-cos table and no head, a width not
    /// divisible by 4 (the sin-cos table's quarters), zero MLP widths, a
    /// temperature that is not positive, a momentum outside [0, 1].
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        self.vit.validate().map_err(|e| Error::Config(format!("vit: {e}")))?;
        if self.vit.pool != Pool::Cls {
            return fail("vit.pool must be \"cls\": MoCo-v3's encoder output is the cls token".into());
        }
        if self.vit.num_classes != 0 {
            return fail(format!("vit.num_classes must be 0 (the projector replaces the head), got {}", self.vit.num_classes));
        }
        if self.vit.pos_embed != PosEmbedKind::SinCos {
            return fail("vit.pos_embed must be \"sin_cos\": MoCo-v3 uses a fixed 2-D sin-cos table".into());
        }
        if !self.vit.embed_dim.is_multiple_of(4) {
            return fail(format!("vit.embed_dim {} must be divisible by 4 for the 2-D sin-cos table", self.vit.embed_dim));
        }
        if self.mlp_dim == 0 || self.dim == 0 {
            return fail(format!("mlp_dim and dim must be at least 1, got {} and {}", self.mlp_dim, self.dim));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return fail(format!("temperature must be > 0, got {}", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.base_momentum) {
            return fail(format!("base_momentum must be in [0, 1], got {}", self.base_momentum));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_released_recipe() {
        let c = MocoV3Config::default();
        assert_eq!((c.mlp_dim, c.dim, c.temperature, c.base_momentum), (4096, 256, 0.2, 0.99));
        assert_eq!((c.vit.embed_dim, c.vit.depth, c.vit.num_heads, c.vit.patch_size, c.vit.img_size), (192, 12, 12, 16, 224));
        assert_eq!((c.vit.qkv_bias, c.vit.ln_eps, c.vit.drop_path_rate), (true, 1e-6, 0.0));
        c.validate().unwrap();
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let base = MocoV3Config::default();
        let learned = MocoV3Config { vit: VitConfig { pos_embed: PosEmbedKind::Learned, ..base.vit.clone() }, ..base.clone() };
        assert!(learned.validate().unwrap_err().to_string().contains("vit.pos_embed"));
        let avg = MocoV3Config { vit: VitConfig { pool: Pool::Avg, ..base.vit.clone() }, ..base.clone() };
        assert!(avg.validate().unwrap_err().to_string().contains("vit.pool"));
        let head = MocoV3Config { vit: VitConfig { num_classes: 10, ..base.vit.clone() }, ..base.clone() };
        assert!(head.validate().unwrap_err().to_string().contains("vit.num_classes"));
        let odd = MocoV3Config { vit: VitConfig { embed_dim: 18, num_heads: 3, ..base.vit.clone() }, ..base.clone() };
        assert!(odd.validate().unwrap_err().to_string().contains("divisible by 4"));
        assert!(MocoV3Config { temperature: 0.0, ..base.clone() }.validate().unwrap_err().to_string().contains("temperature"));
        assert!(MocoV3Config { base_momentum: 1.5, ..base.clone() }.validate().unwrap_err().to_string().contains("base_momentum"));
        assert!(MocoV3Config { dim: 0, ..base }.validate().unwrap_err().to_string().contains("dim"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = serde_json::from_str::<MocoV3Config>(r#"{"moco_t": 0.2}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `moco_t`"), "{err}");
    }
}
