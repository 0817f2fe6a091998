//! The masked autoencoder (MAE, He et al. 2022) as MAE-Lite pre-trains
//! ViT-Tiny: the shared [`Vit`] as encoder on the visible patches
//! ([`crate::encoder`]), a light decoder, and the reconstruction loss on the
//! masked patches with per-patch normalised pixel targets. Mirrors
//! `projects/mae_lite/models_mae.py` (MAE's `models_mae.py`):
//! `forward_encoder`, `forward_decoder`, `forward_loss`, `patchify`.
//!
//! Shapes: B images, C channels, (H, W) pixels, p patch side, (h, w) =
//! (H/p, W/p) patches, L = h·w, K visible patches, D encoder width, E
//! decoder width, P = p·p·C values per patch.
//!
//! Parameter names are MAE's (`decoder_embed`, `mask_token`,
//! `decoder_pos_embed`, `decoder_blocks.{i}.*`, `decoder_norm`,
//! `decoder_pred`; the encoder under timm's names), so a checkpoint maps 1:1
//! onto the released `mae_tiny_400e.pth.tar` layout. Both position tables
//! are fixed 2-D sin-cos values (never trained). Parity with a PyTorch
//! implementation of `models_mae.py`, loss and every gradient, is checked by
//! `tests/mae_reference.rs`.


use backbone::vit::{AttentionLayout, Block};
use backbone::{Pool, PosEmbedKind, Vit, VitConfig};
use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use engine::ops::{LayerNorm, Linear};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::encoder::{encode_visible, EncoderOutput, EncoderTaps};
use crate::masking::Masking;
use crate::{Error, Result};

/// `norm_pix_loss`'s epsilon: target = (x - mean) / sqrt(var + 1e-6).
pub const NORM_PIX_EPS: f64 = 1e-6;

/// The decoder's shape (MAE-Lite: width 96, one block, 3 heads, MLP ratio 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// Token width E (`decoder_embed_dim`).
    pub embed_dim: usize,
    /// Transformer blocks (`decoder_depth`).
    pub depth: usize,
    /// Attention heads per block (`decoder_num_heads`); must divide `embed_dim`.
    pub num_heads: usize,
    /// MLP hidden width = `mlp_ratio · embed_dim`.
    pub mlp_ratio: f64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self { embed_dim: 96, depth: 1, num_heads: 3, mlp_ratio: 4.0 }
    }
}

/// Everything that fixes an MAE's network and loss (stored in its files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaeSpec {
    /// The encoder: cls pooling (a final `norm`), sin-cos positions, no
    /// head, `img_size` the pre-training input side.
    pub encoder: VitConfig,
    /// The decoder.
    pub decoder: DecoderConfig,
    /// Fraction of the patches removed (0.75).
    pub mask_ratio: f64,
    /// Normalise each target patch by its own mean and variance (MAE-Lite: true).
    pub norm_pix_loss: bool,
}

impl MaeSpec {
    /// The spec of an encoder `arch` at `input_size` pixels with `decoder`.
    pub fn new(arch: &VitConfig, input_size: usize, decoder: DecoderConfig, mask_ratio: f64, norm_pix_loss: bool) -> Self {
        let encoder = VitConfig { img_size: input_size, pool: Pool::Cls, num_classes: 0, pos_embed: PosEmbedKind::SinCos, drop_path_rate: 0.0, ..arch.clone() };
        Self { encoder, decoder, mask_ratio, norm_pix_loss }
    }

    /// The decoder blocks' configuration as a ViT's (for [`Block::new`]).
    pub fn decoder_vit(&self) -> VitConfig {
        let d = &self.decoder;
        VitConfig { embed_dim: d.embed_dim, num_heads: d.num_heads, mlp_ratio: d.mlp_ratio, depth: d.depth, drop_path_rate: 0.0, ..self.encoder.clone() }
    }

    /// Values per patch P = p·p·C.
    pub fn patch_values(&self) -> usize {
        self.encoder.patch_size * self.encoder.patch_size * self.encoder.in_chans
    }

    /// Patches per image L at the pre-training input size.
    pub fn num_patches(&self) -> usize {
        self.encoder.grid_size() * self.encoder.grid_size()
    }

    /// Checks the cross-field rules.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: a mask ratio outside [0, 1) or one
    /// that leaves no visible patch, a decoder width not divisible by its
    /// heads or by 4 (the sin-cos table), or an invalid encoder.
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate().map_err(|e| Error::config("model.arch", e.to_string()))?;
        let d = &self.decoder;
        if d.num_heads == 0 || !d.embed_dim.is_multiple_of(d.num_heads) || !d.embed_dim.is_multiple_of(4) || d.depth == 0 {
            return Err(Error::config("model.decoder", format!("embed_dim {} must be divisible by num_heads {} and by 4, depth >= 1", d.embed_dim, d.num_heads)));
        }
        if !self.encoder.embed_dim.is_multiple_of(4) {
            return Err(Error::config("model.arch", "the sin-cos position table needs a width divisible by 4"));
        }
        if !(0.0..1.0).contains(&self.mask_ratio) || crate::masking::len_keep(self.num_patches(), self.mask_ratio) == 0 {
            return Err(Error::config(
                "model.mask_ratio",
                format!("{} must be in [0, 1) and keep at least one of the {} patches visible", self.mask_ratio, self.num_patches()),
            ));
        }
        Ok(())
    }
}

/// MAE's decoder: `decoder_embed`, mask tokens, `decoder_pos_embed`, blocks,
/// `decoder_norm`, `decoder_pred`.
#[derive(Debug, Clone)]
pub struct MaeDecoder {
    embed: Linear,
    mask_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pred: Linear,
}

impl MaeDecoder {
    /// Builds the decoder's variables under `vb` with MAE's names.
    ///
    /// # Errors
    /// `vb` holds a tensor of another shape.
    pub fn new(spec: &MaeSpec, vb: VarBuilder) -> Result<Self> {
        let cfg = spec.decoder_vit();
        let e = cfg.embed_dim;
        let normal = candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let blocks = (0..cfg.depth).map(|i| Block::new(&cfg, 0.0, AttentionLayout::default(), vb.pp("decoder_blocks").pp(i))).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embed: Linear::new(spec.encoder.embed_dim, e, true, vb.pp("decoder_embed"))?,
            mask_token: vb.get_with_hints((1, 1, e), "mask_token", normal)?,
            pos_embed: vb.get_with_hints((1, 1 + spec.num_patches(), e), "decoder_pos_embed", candle_nn::Init::Const(0.0))?,
            blocks,
            norm: LayerNorm::new(e, cfg.ln_eps, vb.pp("decoder_norm"))?,
            pred: Linear::new(e, spec.patch_values(), true, vb.pp("decoder_pred"))?,
        })
    }

    /// The encoder's latent (B, 1 + K, D) to per-patch predictions (B, L, P)
    /// in the original patch order (MAE's `forward_decoder`).
    ///
    /// # Errors
    /// [`Error::Shape`] when the latent does not fit `masking`.
    pub fn forward(&self, latent: &Tensor, masking: &Masking, rng: &mut dyn RngCore) -> Result<Tensor> {
        let (b, t, _) = latent.dims3()?;
        let (l, k) = (masking.num_patches(), masking.len_keep());
        if t != 1 + k || b != masking.batch() || self.pos_embed.dim(1)? != 1 + l {
            return Err(Error::Shape { what: "decoder input", expected: format!("({}, 1 + {k}, D) for a {l}-patch table", masking.batch()), found: latent.dims().to_vec() });
        }
        let x = self.embed.forward(latent)?;
        let e = x.dim(2)?;
        let mask_tokens = self.mask_token.broadcast_as((b, l - k, e))?;
        let shuffled = Tensor::cat(&[&x.narrow(1, 1, k)?, &mask_tokens], 1)?;
        let patches = masking.unshuffle(&shuffled)?;
        let mut x = Tensor::cat(&[&x.narrow(1, 0, 1)?, &patches], 1)?.broadcast_add(&self.pos_embed.detach())?;
        for block in &self.blocks {
            x = block.forward(&x, false, false, rng)?.0;
        }
        let pred = self.pred.forward(&self.norm.forward(&x)?)?;
        Ok(pred.narrow(1, 1, l)?)
    }
}

/// A masked autoencoder: encoder, decoder and loss.
#[derive(Debug, Clone)]
pub struct Mae {
    spec: MaeSpec,
    encoder: Vit,
    decoder: MaeDecoder,
}

/// What one MAE forward pass returns.
#[derive(Debug, Clone)]
pub struct MaeOutput {
    /// The reconstruction loss, a scalar.
    pub loss: Tensor,
    /// Per-patch predictions (B, L, P), original patch order.
    pub pred: Tensor,
    /// (B, L): 1 for masked patches.
    pub mask: Tensor,
    /// The encoder's latent and the taps asked for.
    pub encoder: EncoderOutput,
}

impl Mae {
    /// Builds encoder (timm names at the root of `vb`) and decoder (MAE
    /// names). Initial values are `vb`'s hints; [`crate::init::init_mae`]
    /// gives MAE's seeded initialisation.
    ///
    /// # Errors
    /// An invalid spec, or `vb` holding a tensor of another shape.
    pub fn new(spec: &MaeSpec, vb: VarBuilder) -> Result<Self> {
        spec.validate()?;
        Ok(Self { spec: spec.clone(), encoder: Vit::new(&spec.encoder, vb.clone())?, decoder: MaeDecoder::new(spec, vb)? })
    }

    /// The spec it was built with.
    pub fn spec(&self) -> &MaeSpec {
        &self.spec
    }

    /// The encoder.
    pub fn encoder(&self) -> &Vit {
        &self.encoder
    }

    /// Draws a masking for a batch of `batch` images from `rng`.
    ///
    /// # Errors
    /// As [`Masking::random`].
    pub fn random_masking(&self, batch: usize, rng: &mut engine::rng::TrainRng) -> Result<Masking> {
        Masking::random(batch, self.spec.num_patches(), self.spec.mask_ratio, rng)
    }

    /// Encodes the visible patches of `images` (B, C, S, S, normalised, S
    /// the spec's input size), decodes every patch and scores the masked
    /// ones (MAE's `forward`). `taps` asks the encoder for attention logits
    /// and hidden states (distillation).
    ///
    /// # Errors
    /// [`Error::Shape`] for images of another size or batch than `masking`.
    pub fn forward(&self, images: &Tensor, masking: &Masking, taps: &EncoderTaps, rng: &mut dyn RngCore) -> Result<MaeOutput> {
        let s = self.spec.encoder.img_size;
        let dims = images.dims();
        if dims.len() != 4 || dims[2] != s || dims[3] != s {
            return Err(Error::Shape { what: "MAE input images", expected: format!("(B, C, {s}, {s})"), found: dims.to_vec() });
        }
        let encoder = encode_visible(&self.encoder, images, masking, taps, false, rng)?;
        let pred = self.decoder.forward(&encoder.latent, masking, rng)?;
        let mask = masking.mask_tensor(images.device())?;
        let loss = reconstruction_loss(images, &pred, &mask, self.spec.encoder.patch_size, self.spec.norm_pix_loss)?;
        Ok(MaeOutput { loss, pred, mask, encoder })
    }
}

/// Images (B, C, H, W) to patches (B, L, P), each patch's values in
/// (row p, column q, channel c) order: MAE's `einsum('nchpwq->nhwpqc')`.
///
/// # Errors
/// [`Error::Shape`] when H or W is not a multiple of `patch`.
pub fn patchify(images: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, c, height, width) = images.dims4()?;
    if patch == 0 || !height.is_multiple_of(patch) || !width.is_multiple_of(patch) {
        return Err(Error::Shape { what: "images to patchify", expected: format!("sides that are multiples of {patch}"), found: images.dims().to_vec() });
    }
    let (h, w) = (height / patch, width / patch);
    Ok(images.reshape((b, c, h, patch, w, patch))?.permute((0, 2, 4, 3, 5, 1))?.reshape((b, h * w, patch * patch * c))?)
}

/// The inverse of [`patchify`]: patches (B, h·w, p·p·C) to images (B, C, h·p, w·p).
///
/// # Errors
/// [`Error::Shape`] when the patches do not hold (h, w) patches of `patch`² · C values.
pub fn unpatchify(patches: &Tensor, patch: usize, grid: (usize, usize), channels: usize) -> Result<Tensor> {
    let (b, l, values) = patches.dims3()?;
    let (h, w) = grid;
    if l != h * w || values != patch * patch * channels {
        return Err(Error::Shape { what: "patches to unpatchify", expected: format!("(B, {}, {})", h * w, patch * patch * channels), found: patches.dims().to_vec() });
    }
    Ok(patches.reshape((b, h, w, patch, patch, channels))?.permute((0, 5, 1, 3, 2, 4))?.reshape((b, channels, h * patch, w * patch))?)
}

/// Per-patch mean and unbiased variance of patches (B, L, P): (B, L, 1) each
/// (`target.mean(-1)`, `target.var(-1)`, torch's default correction 1).
///
/// # Errors
/// Tensor errors (P must be at least 2).
pub fn patch_stats(patches: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = patches.dim(D::Minus1)?;
    if n < 2 {
        return Err(Error::Shape { what: "patches", expected: "at least 2 values per patch".into(), found: patches.dims().to_vec() });
    }
    let mean = patches.mean_keepdim(D::Minus1)?;
    let var = (patches.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n - 1) as f64)?;
    Ok((mean, var))
}

/// MAE's `norm_pix_loss` target: each patch (B, L, P) normalised by its own
/// statistics, `(x - mean) / sqrt(var + 1e-6)` with the unbiased variance.
///
/// # Errors
/// As [`patch_stats`].
pub fn norm_pix_target(patches: &Tensor) -> Result<Tensor> {
    let (mean, var) = patch_stats(patches)?;
    Ok(patches.broadcast_sub(&mean)?.broadcast_div(&(var + NORM_PIX_EPS)?.sqrt()?)?)
}

/// MAE's `forward_loss`: the squared error between `pred` (B, L, P) and the
/// patchified `images` (normalised per patch with `norm_pix`), averaged over
/// the P values, then over the patches where `mask` (B, L) is 1. The target
/// carries no gradient.
///
/// # Errors
/// Shape errors.
pub fn reconstruction_loss(images: &Tensor, pred: &Tensor, mask: &Tensor, patch: usize, norm_pix: bool) -> Result<Tensor> {
    let target = patchify(&images.detach(), patch)?;
    let target = if norm_pix { norm_pix_target(&target)? } else { target };
    let per_patch = (pred - target)?.sqr()?.mean(D::Minus1)?;
    Ok(((per_patch * mask)?.sum_all()? / mask.sum_all()?)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn norm_pix_target_uses_each_patchs_unbiased_variance() {
        // One patch [1, 2, 3, 6]: mean 3, unbiased variance (4 + 1 + 0 + 9) / 3 = 14/3.
        let x = Tensor::new(&[[[1f32, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]]], &Device::Cpu).unwrap();
        let t = norm_pix_target(&x).unwrap().to_vec3::<f32>().unwrap();
        let s = (14.0f64 / 3.0 + NORM_PIX_EPS).sqrt();
        let want = [-2.0 / s, -1.0 / s, 0.0, 3.0 / s];
        for (a, b) in t[0][0].iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
        }
        // A constant patch maps to zeros (the epsilon keeps it finite).
        assert_eq!(t[0][1], vec![0.0; 4]);
    }

    #[test]
    fn patchify_orders_values_row_column_channel_and_unpatchify_inverts_it() {
        // (1, 2, 4, 4) image, value = 100 c + 10 y + x; patches of 2.
        let v: Vec<f32> = (0..2).flat_map(|c| (0..4).flat_map(move |y| (0..4).map(move |x| (100 * c + 10 * y + x) as f32))).collect();
        let img = Tensor::from_vec(v, (1, 2, 4, 4), &Device::Cpu).unwrap();
        let p = patchify(&img, 2).unwrap();
        assert_eq!(p.dims(), &[1, 4, 8]);
        // Patch 1 (row 0, column 1): pixels (0,2), (0,3), (1,2), (1,3), channels innermost.
        assert_eq!(p.to_vec3::<f32>().unwrap()[0][1], vec![2.0, 102.0, 3.0, 103.0, 12.0, 112.0, 13.0, 113.0]);
        let back = unpatchify(&p, 2, (2, 2), 2).unwrap();
        assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), img.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(patchify(&Tensor::zeros((1, 3, 5, 4), DType::F32, &Device::Cpu).unwrap(), 2).is_err());
    }

    #[test]
    fn spec_rejects_a_mask_that_leaves_nothing_visible() {
        let spec = MaeSpec::new(&VitConfig::tiny(), 32, DecoderConfig::default(), 0.8, true);
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("model.mask_ratio"), "{e}");
        assert!(MaeSpec::new(&VitConfig::tiny(), 224, DecoderConfig::default(), 0.75, true).validate().is_ok());
    }
}
