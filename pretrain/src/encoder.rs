//! The ViT encoder on the visible patches only, as MAE's `forward_encoder`:
//! patch embedding plus the patch part of `pos_embed` (no cls), the visible
//! tokens gathered in noise order, `cls_token + pos_embed[:, :1]` prepended,
//! the blocks, the final `norm`.
//!
//! Shapes: B images, L patches, K visible patches (`masking.len_keep()`),
//! T = 1 + K tokens (cls first), D width, H heads.
//!
//! One function serves every pre-training objective that masks: the MAE
//! student, and the distillation teacher and student, which must see the
//! same visible patches: call [`encode_visible`] on both models with one
//! [`Masking`]. [`EncoderTaps`] picks which blocks' pre-softmax attention
//! logits (MAE-Lite's `Attention.identity` hook), output tokens and
//! representations (MAE-Lite's `RepCatcher`, for hidden-state
//! distillation) to return.

use backbone::{ForwardOptions, Vit};
use candle_core::Tensor;
use rand::RngCore;

use crate::masking::Masking;
use crate::{Error, Result};

/// Intermediate results to return besides the final tokens; block indices
/// are 0-based.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncoderTaps {
    /// Blocks whose scaled pre-softmax attention logits (B, H, T, T) to return.
    pub attn_logits: Vec<usize>,
    /// Blocks whose output tokens (B, T, D), before the final norm, to return.
    pub hidden: Vec<usize>,
    /// Representations (B, T, D) to return, as MAE-Lite's `RepCatcher`
    /// reads them: for i below the depth, the LayerNormed input of block i
    /// (`blocks.i.norm1`'s output); for i = depth, the last block's output
    /// through the final `norm` (the latent). Indices 0..=depth.
    pub reps: Vec<usize>,
}

/// What [`encode_visible`] returns.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// (B, T, D): the last block's output after the final `norm` (cls
    /// first, then the visible patches in noise order). A ViT without a
    /// final norm (`Pool::Avg`) returns the last block's output.
    pub latent: Tensor,
    /// `(block, (B, H, T, T))` for each block of `taps.attn_logits`, in that order.
    pub attn_logits: Vec<(usize, Tensor)>,
    /// `(block, (B, T, D))` for each block of `taps.hidden`, in that order.
    pub hidden: Vec<(usize, Tensor)>,
    /// `(index, (B, T, D))` for each index of `taps.reps`, in that order.
    pub reps: Vec<(usize, Tensor)>,
}

/// Runs `vit` on the patches of `images` (B, C, H, W, normalised) that
/// `masking` keeps visible (see the module doc). `train` enables drop path
/// (drawn from `rng`; MAE pre-trains without it).
///
/// # Errors
/// [`Error::Shape`] when the image's patch grid or batch does not match
/// `masking`, a requested block is beyond the depth (a representation
/// beyond the depth, or the depth itself for a ViT without a final norm);
/// tensor errors.
pub fn encode_visible(vit: &Vit, images: &Tensor, masking: &Masking, taps: &EncoderTaps, train: bool, rng: &mut dyn RngCore) -> Result<EncoderOutput> {
    let depth = vit.config().depth;
    if let Some(&bad) = taps.attn_logits.iter().chain(&taps.hidden).find(|&&i| i >= depth) {
        return Err(Error::Shape { what: "encoder taps", expected: format!("block indices below the depth {depth}"), found: vec![bad] });
    }
    if let Some(&bad) = taps.reps.iter().find(|&&i| i > depth || (i == depth && vit.final_norm().is_none())) {
        return Err(Error::Shape { what: "encoder representation taps", expected: format!("indices up to the depth {depth} (the depth needs a final norm)"), found: vec![bad] });
    }
    let (patches, (h, w)) = vit.embed_patches(images)?;
    if h * w != masking.num_patches() || patches.dim(0)? != masking.batch() {
        return Err(Error::Shape {
            what: "images for this masking",
            expected: format!("{} images of {} patches", masking.batch(), masking.num_patches()),
            found: images.dims().to_vec(),
        });
    }
    let visible = masking.gather_visible(&patches)?;
    let tokens = vit.prepend_cls(&visible)?;
    let keep_blocks = !taps.hidden.is_empty() || taps.reps.iter().any(|&i| i > 0 && i < depth);
    let opts = ForwardOptions { train, keep_blocks, attn_logits: taps.attn_logits.clone() };
    let out = vit.forward_blocks(&tokens, &opts, rng)?;
    let latent = match vit.final_norm() {
        Some(norm) => norm.forward(&out.last)?,
        None => out.last,
    };
    let hidden = taps.hidden.iter().map(|&i| (i, out.blocks[i].clone())).collect();
    let mut reps = Vec::with_capacity(taps.reps.len());
    for &i in &taps.reps {
        let rep = if i == depth {
            latent.clone()
        } else {
            // Block i's input is the tokens (i = 0) or block i - 1's output.
            let input = if i == 0 { &tokens } else { &out.blocks[i - 1] };
            vit.blocks()[i].norm1().forward(input)?
        };
        reps.push((i, rep));
    }
    Ok(EncoderOutput { latent, attn_logits: out.attn_logits, hidden, reps })
}
