//! Layer normalisation over the last dimension (tokens) and over channels of
//! an NCHW map (ViTDet's "LN" norm), with a backward (candle's fused
//! `layer_norm` and `candle_nn::LayerNorm` have none).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension
/// (biased variance, as PyTorch). `x`: (..., D); `weight`, `bias`: (D).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if super::cpu::fused_eligible(&[x, weight, bias]) && x.rank() >= 1 && weight.rank() == 1 && bias.rank() == 1 {
        return super::cpu::layer_norm::layer_norm(&x.contiguous()?, weight, bias, eps);
    }
    composed(x, weight, bias, eps)
}

/// Layer norm over the channel dimension of an NCHW map, as detectron2's
/// `LayerNorm` for convolutional features. `x`: (N, C, H, W); `weight`, `bias`: (C).
///
/// On the CPU in f32/f64 a fused kernel normalises the map where it lies,
/// each pixel down its channel planes: candle's reductions over a non-last
/// dimension are slow in both directions (candle-notes.md §5), and
/// permuting to channels-last and back would copy the map twice each way.
pub fn layer_norm_channels_first(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if super::cpu::fused_eligible(&[x, weight, bias]) && x.rank() == 4 && weight.rank() == 1 && bias.rank() == 1 {
        return super::cpu::layer_norm_2d::layer_norm_2d(&x.contiguous()?, weight, bias, eps);
    }
    channels_first_composed(x, weight, bias, eps)
}

/// [`layer_norm_channels_first`] from candle primitives (means over dim 1,
/// broadcasts): what any device runs. Public as
/// `engine::ops::reference::layer_norm_channels_first`.
///
/// # Errors
/// Shapes that do not fit together.
pub fn channels_first_composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let c = weight.dim(0)?;
    let normed = normalize(x, 1, eps)?;
    normed
        .broadcast_mul(&weight.reshape((1, c, 1, 1))?)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)
}

/// [`layer_norm`] from candle primitives (means over the last dimension,
/// broadcasts): what any device runs. Public as
/// `engine::ops::reference::layer_norm`.
///
/// # Errors
/// Shapes that do not fit together.
pub fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let last = x.rank().saturating_sub(1);
    normalize(x, last, eps)?.broadcast_mul(weight)?.broadcast_add(bias)
}

/// Zero mean, unit (biased) variance along `dim`.
fn normalize(x: &Tensor, dim: usize, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(dim)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(dim)?;
    centered.broadcast_div(&(var + eps)?.sqrt()?)
}

/// A layer-norm module holding `weight` and `bias` (timm names), normalising
/// the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Builds the module, creating `weight` (ones) and `bias` (zeros) under `vb`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    /// Normalises the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.weight, &self.bias, self.eps)
    }

    /// Normalises the channel dimension of an NCHW map.
    pub fn forward_channels_first(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm_channels_first(x, &self.weight, &self.bias, self.eps)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::cpu::{self, test_support::assert_matches_composed};
    use crate::testing::{check_gradients, random_tensor};

    #[test]
    fn normalises_a_hand_worked_row() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::new(&[[1.0f64, 2.0, 3.0, 6.0]], &dev).unwrap();
        let w = Tensor::new(&[1.0f64, 2.0, 1.0, 1.0], &dev).unwrap();
        let b = Tensor::new(&[0.0f64, 0.0, 0.0, 10.0], &dev).unwrap();
        let y = layer_norm(&x, &w, &b, 0.0).unwrap().to_vec2::<f64>().unwrap();
        // mean 3, biased var (4+1+0+9)/4 = 3.5
        let s = 3.5f64.sqrt();
        // Normalised [-2, -1, 0, 3] / s, then weight [1, 2, 1, 1] and bias.
        let expected = [-2.0 / s, 2.0 * (-1.0 / s), 0.0, 3.0 / s + 10.0];
        for (a, e) in y[0].iter().zip(expected) {
            assert!((a - e).abs() < 1e-14, "{a} vs {e}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 3, 8], 3);
        let w = random_tensor(&[8], 4);
        let b = random_tensor(&[8], 5);
        check_gradients(&[x, w, b], |t| layer_norm(&t[0], &t[1], &t[2], 1e-6)).unwrap();
    }

    #[test]
    fn composed_gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 3, 8], 3);
        let w = random_tensor(&[8], 4);
        let b = random_tensor(&[8], 5);
        check_gradients(&[x, w, b], |t| composed(&t[0], &t[1], &t[2], 1e-6)).unwrap();
    }

    #[test]
    fn fused_matches_composed() {
        // 300 rows of 43: several tasks, a row length that is no multiple of 8;
        // an offset mean so the centring matters.
        let x = random_tensor(&[2, 150, 43], 12).affine(3.0, 5.0).unwrap();
        let w = random_tensor(&[43], 13);
        let b = random_tensor(&[43], 14);
        assert_matches_composed(&[x, w, b], |t| cpu::layer_norm::layer_norm(&t[0], &t[1], &t[2], 1e-6), |t| composed(&t[0], &t[1], &t[2], 1e-6), 1e-5, 1e-12);
    }

    #[test]
    fn channels_first_equals_last_dim_on_permuted_input() {
        let x = random_tensor(&[2, 5, 3, 4], 6);
        let w = random_tensor(&[5], 7);
        let b = random_tensor(&[5], 8);
        let cf = layer_norm_channels_first(&x, &w, &b, 1e-6).unwrap();
        let last = layer_norm(&x.permute((0, 2, 3, 1)).unwrap(), &w, &b, 1e-6)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        let diff = (cf - last).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f64>().unwrap();
        assert!(diff < 1e-14, "{diff}");
    }

    #[test]
    fn channels_first_gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 4, 3, 3], 9);
        let w = random_tensor(&[4], 10);
        let b = random_tensor(&[4], 11);
        check_gradients(&[x.clone(), w.clone(), b.clone()], |t| layer_norm_channels_first(&t[0], &t[1], &t[2], 1e-6)).unwrap();
        check_gradients(&[x, w, b], |t| channels_first_composed(&t[0], &t[1], &t[2], 1e-6)).unwrap();
    }

    #[test]
    fn channels_first_fused_matches_composed() {
        // 37 channels, offset so the centring matters; 5 x 7 maps (one block
        // of pixels an image) and 20 x 15 (a full block of 256 and one of 44).
        for (shape, seed) in [([2, 37, 5, 7], 15), ([2, 37, 20, 15], 18)] {
            let x = random_tensor(&shape, seed).affine(2.0, -3.0).unwrap();
            let w = random_tensor(&[37], 16);
            let b = random_tensor(&[37], 17);
            assert_matches_composed(&[x, w, b], |t| layer_norm_channels_first(&t[0], &t[1], &t[2], 1e-6), |t| channels_first_composed(&t[0], &t[1], &t[2], 1e-6), 1e-5, 1e-12);
        }
    }
}
