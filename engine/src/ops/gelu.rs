//! GELU with the exact erf form (timm's `nn.GELU()`), not the tanh approximation.

use candle_core::{Result, Tensor};

/// `x * 0.5 * (1 + erf(x / sqrt(2)))`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    composed(x)
}

fn composed(x: &Tensor) -> Result<Tensor> {
    // candle's `gelu_erf` is an elementwise primitive with a backward.
    x.gelu_erf()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::{check_gradients, random_tensor};

    #[test]
    fn matches_the_erf_definition() {
        // Values from torch.nn.functional.gelu in f64.
        let x = Tensor::new(&[-3.0f64, -1.0, 0.0, 0.5, 2.0], &candle_core::Device::Cpu).unwrap();
        let y = gelu(&x).unwrap().to_vec1::<f64>().unwrap();
        let expected = [
            -0.00404969409489031,
            -0.15865525393145702,
            0.0,
            0.34573123063700656,
            1.9544997361036416,
        ];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[4, 9], 2);
        check_gradients(&[x], |xs| gelu(&xs[0])).unwrap();
    }
}
