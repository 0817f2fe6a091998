//! Pictures of an MAE's reconstructions, as MAE's visualisation demo draws
//! them: one column per image; rows original, masked (removed patches grey),
//! reconstruction (the predicted masked patches with the visible ones pasted
//! back).
//!
//! With `norm_pix_loss` the model predicts each patch *normalised by its own
//! mean and variance*; shown as they are, the predictions look like noise
//! (the usual cause of the "broken reconstruction" pictures users report).
//! [`reconstruct`] maps each predicted patch back with the statistics of the
//! same patch of the original image (`pred · sqrt(var + 1e-6) + mean`,
//! unbiased variance, exactly the loss's normalisation inverted).
//!
//! Shapes: B images, (S, S) pixels, L patches, P values per patch.

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};

use crate::encoder::EncoderTaps;
use crate::mae::{patch_stats, patchify, unpatchify, Mae, NORM_PIX_EPS};
use crate::masking::Masking;
use crate::{Error, Result};

/// Pixels between the pictures of the grid.
const GAP: u32 = 2;
/// Grey of the removed patches in the masked row.
const MASK_GREY: u8 = 128;

/// The three rows for a batch, in the model's normalised pixel space
/// (B, 3, S, S) each.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// The inputs.
    pub original: Tensor,
    /// (B, L): 1 for the patches the model did not see.
    pub mask: Tensor,
    /// The predicted patches where masked, the original where visible, in
    /// pixel space (de-normalised per patch under `norm_pix_loss`).
    pub reconstruction: Tensor,
}

/// Runs `mae` on `images` (B, 3, S, S, normalised) with `masking` and puts
/// the predictions back into pixel space (see the module doc).
///
/// # Errors
/// Images of another size than the model's; tensor errors.
pub fn reconstruct(mae: &Mae, images: &Tensor, masking: &Masking) -> Result<Reconstruction> {
    let spec = mae.spec();
    let p = spec.encoder.patch_size;
    let mut no_rng = rand::rngs::mock::StepRng::new(0, 0);
    let out = mae.forward(images, masking, &EncoderTaps::default(), &mut no_rng)?;
    let target = patchify(images, p)?;
    let pred = if spec.norm_pix_loss {
        let (mean, var) = patch_stats(&target)?;
        out.pred.broadcast_mul(&(var + NORM_PIX_EPS)?.sqrt()?)?.broadcast_add(&mean)?
    } else {
        out.pred
    };
    let m = out.mask.unsqueeze(2)?;
    let pasted = (pred.broadcast_mul(&m)? + target.broadcast_mul(&(1.0 - &m)?)?)?;
    let g = spec.encoder.grid_size();
    let reconstruction = unpatchify(&pasted, p, (g, g), spec.encoder.in_chans)?;
    Ok(Reconstruction { original: images.clone(), mask: out.mask, reconstruction })
}

/// The grid picture of `rec`: one column per image, rows original, masked,
/// reconstruction; normalised pixels are mapped back with `mean`/`std`.
///
/// # Errors
/// Tensor errors.
pub fn grid_image(rec: &Reconstruction, patch: usize, mean: [f32; 3], std: [f32; 3]) -> Result<RgbImage> {
    let (b, c, s, _) = rec.original.dims4()?;
    if c != 3 {
        return Err(Error::Shape { what: "images to draw", expected: "3 channels".into(), found: rec.original.dims().to_vec() });
    }
    let original = rec.original.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let recon = rec.reconstruction.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let mask = rec.mask.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let (side, g) = (s as u32, s / patch);
    let mut canvas = RgbImage::from_pixel(b as u32 * (side + GAP) + GAP, 3 * (side + GAP) + GAP, Rgb([255, 255, 255]));
    let to_u8 = |v: f32, ch: usize| ((v * std[ch] + mean[ch]) * 255.0).round().clamp(0.0, 255.0) as u8;
    for i in 0..b {
        let x0 = GAP + i as u32 * (side + GAP);
        for y in 0..s {
            for x in 0..s {
                let at = |buf: &[f32], ch: usize| buf[((i * 3 + ch) * s + y) * s + x];
                let masked = mask[i * g * g + (y / patch) * g + x / patch] > 0.5;
                let orig = Rgb([to_u8(at(&original, 0), 0), to_u8(at(&original, 1), 1), to_u8(at(&original, 2), 2)]);
                let rec_px = Rgb([to_u8(at(&recon, 0), 0), to_u8(at(&recon, 1), 1), to_u8(at(&recon, 2), 2)]);
                let (px, py) = (x0 + x as u32, GAP + y as u32);
                canvas.put_pixel(px, py, orig);
                canvas.put_pixel(px, py + side + GAP, if masked { Rgb([MASK_GREY; 3]) } else { orig });
                canvas.put_pixel(px, py + 2 * (side + GAP), rec_px);
            }
        }
    }
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mae::{DecoderConfig, MaeSpec};
    use candle_nn::VarMap;

    #[test]
    fn visible_patches_are_pasted_and_masked_ones_denormalised_per_patch() {
        let arch = backbone::VitConfig { depth: 1, embed_dim: 16, num_heads: 2, patch_size: 8, ..backbone::VitConfig::tiny() };
        let spec = MaeSpec::new(&arch, 16, DecoderConfig { embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2.0 }, 0.5, true);
        let varmap = VarMap::new();
        let mae = crate::task::build_mae(&spec, 0, &varmap, &Device::Cpu).unwrap();
        let images = engine::testing::random_tensor(&[2, 3, 16, 16], 1).to_dtype(candle_core::DType::F32).unwrap();
        let masking = Masking::from_noise(&[0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.4], 2, 4, 0.5).unwrap();
        let rec = reconstruct(&mae, &images, &masking).unwrap();
        let orig = patchify(&images, 8).unwrap();
        let got = patchify(&rec.reconstruction, 8).unwrap();
        let mut no_rng = rand::rngs::mock::StepRng::new(0, 0);
        let pred = mae.forward(&images, &masking, &EncoderTaps::default(), &mut no_rng).unwrap().pred;
        let (o, g, p) = (orig.to_vec3::<f32>().unwrap(), got.to_vec3::<f32>().unwrap(), pred.to_vec3::<f32>().unwrap());
        let mask = masking.mask();
        for b in 0..2 {
            for l in 0..4 {
                if mask[b * 4 + l] == 0.0 {
                    assert_eq!(g[b][l], o[b][l], "visible patch {b},{l} is the original");
                } else {
                    // Normalising the shown patch with the original's statistics gives the prediction back.
                    let n = o[b][l].len() as f32;
                    let mean = o[b][l].iter().sum::<f32>() / n;
                    let var = o[b][l].iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / (n - 1.0);
                    for (shown, predicted) in g[b][l].iter().zip(&p[b][l]) {
                        assert!(((shown - mean) / (var + 1e-6).sqrt() - predicted).abs() < 1e-4);
                    }
                }
            }
        }
        let picture = grid_image(&rec, 8, [0.5; 3], [0.25; 3]).unwrap();
        assert_eq!(picture.dimensions(), (2 * 18 + 2, 3 * 18 + 2));
    }
}
