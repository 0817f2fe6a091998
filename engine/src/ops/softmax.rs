//! Softmax over the last dimension, with a backward (candle's fused
//! `softmax_last_dim` has none).

use candle_core::{Result, Tensor, D};

/// Softmax over the last dimension.
///
/// The row maximum is subtracted for stability and detached: softmax does not
/// depend on the shift, so treating it as a constant gives the exact gradient.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    composed(x)
}

/// [`softmax_last_dim`] from candle primitives (max, exp, sum, divide):
/// what every device runs (there is no fused kernel). Public as
/// `engine::ops::reference::softmax_last_dim`.
///
/// # Errors
/// `x` is a scalar.
pub fn composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::{check_gradients, random_tensor};

    #[test]
    fn rows_sum_to_one_and_match_the_definition() {
        let x = Tensor::new(&[[1.0f64, 2.0, 3.0], [1000.0, 1000.0, 1000.0]], &candle_core::Device::Cpu).unwrap();
        let y = softmax_last_dim(&x).unwrap().to_vec2::<f64>().unwrap();
        let z: f64 = 1.0 + 1f64.exp() + 2f64.exp();
        let expected = [1.0 / z, 1f64.exp() / z, 2f64.exp() / z];
        for (a, b) in y[0].iter().zip(expected) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        // Large equal logits must not overflow.
        for a in &y[1] {
            assert!((a - 1.0 / 3.0).abs() < 1e-15);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 3, 7], 1);
        check_gradients(&[x], |xs| softmax_last_dim(&xs[0])).unwrap();
    }
}
