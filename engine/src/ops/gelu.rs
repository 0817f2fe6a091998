//! GELU with the exact erf form (timm's `nn.GELU()`), not the tanh approximation.

use candle_core::{Result, Tensor};

/// `x * 0.5 * (1 + erf(x / sqrt(2)))`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if super::cpu::fused_eligible(&[x]) {
        return super::cpu::gelu::gelu(&x.contiguous()?);
    }
    composed(x)
}

/// [`gelu`] from candle primitives (`erf`, affine, multiply): what any
/// device runs. Public as `engine::ops::reference::gelu`.
///
/// # Errors
/// As the primitives (none for a float tensor).
pub fn composed(x: &Tensor) -> Result<Tensor> {
    // Built from `erf` rather than candle's `gelu_erf`, whose backward uses
    // the 6-digit constant 0.398942 for 1/sqrt(2π) (relative error 7e-7,
    // visible next to an exact f64 kernel).
    let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)?;
    (x * 0.5)? * cdf
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::cpu::{self, test_support::assert_matches_composed};
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

    #[test]
    fn composed_gradient_matches_finite_differences() {
        let x = random_tensor(&[4, 9], 2);
        check_gradients(&[x], |xs| composed(&xs[0])).unwrap();
    }

    #[test]
    fn fused_matches_composed() {
        // 40 000 values in [-6, 6): several tasks, both tails.
        let x = (random_tensor(&[200, 200], 3) * 6.0).unwrap();
        assert_matches_composed(&[x], |t| cpu::gelu::gelu(&t[0]), |t| composed(&t[0]), 1e-5, 1e-12);
    }
}
