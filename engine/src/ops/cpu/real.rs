//! The float types the fused kernels run in, with the scalar functions they
//! need written so that loops over them auto-vectorise (no branches, no
//! library calls on the f32 path).

use candle_core::WithDType;

/// f32 or f64.
pub(crate) trait Real: WithDType + std::ops::Neg<Output = Self> {
    /// Largest finite value's negation, the identity of a running max.
    const NEG_INF: Self;
    /// `e^x`. The f32 version is a branch-free polynomial (relative error
    /// below 2e-7 for x in [-87, 88]; smaller inputs give ~1e-38, not 0).
    fn exp(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `max(self, other)` (named apart from `Ord::max`).
    fn maximum(self, other: Self) -> Self;
    /// Exact GELU `x * Φ(x)`, Φ the standard normal CDF.
    fn gelu(self) -> Self;
    /// Its derivative `Φ(x) + x φ(x)`.
    fn gelu_grad(self) -> Self;
}

/// 1 / sqrt(2).
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2π), the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `e^x` in f32 without branches: x = n ln2 + r with |r| <= ln2 / 2, e^r
/// from its degree-7 Taylor polynomial (truncation < 5e-9 relative), 2^n
/// assembled in the exponent bits.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for |n| < 2^8.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // n sits in the low bits of t's mantissa (two's complement around 0x4b400000).
    let n_int = t.to_bits().wrapping_sub(0x4b40_0000) as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    p * scale
}

/// `erfc(z)` for z >= 0 in f32, branch-free (Numerical Recipes' `erfcc`:
/// fractional error below 1.2e-7 everywhere), so that Φ(x) = erfc(-x/√2)/2
/// keeps its relative accuracy in the far negative tail.
#[inline(always)]
// The coefficients are kept as published, beyond f32 precision.
#[allow(clippy::excessive_precision)]
fn erfc_pos_f32(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p.mul_add(t, -0.822_152_23);
    p = p.mul_add(t, 1.488_515_87);
    p = p.mul_add(t, -1.135_203_98);
    p = p.mul_add(t, 0.278_868_07);
    p = p.mul_add(t, -0.186_288_06);
    p = p.mul_add(t, 0.096_784_18);
    p = p.mul_add(t, 0.374_091_96);
    p = p.mul_add(t, 1.000_023_68);
    p = p.mul_add(t, -1.265_512_23);
    t * exp_f32(p - z * z)
}

/// Φ(x) in f32: erfc(|x|/√2)/2 on the tail side, 1 minus it on the other.
#[inline(always)]
fn phi_f32(x: f32) -> f32 {
    let half_tail = 0.5 * erfc_pos_f32(x.abs() * FRAC_1_SQRT_2 as f32);
    if x < 0.0 {
        half_tail
    } else {
        1.0 - half_tail
    }
}

impl Real for f32 {
    const NEG_INF: Self = f32::MIN;
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn maximum(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
    #[inline(always)]
    fn gelu(self) -> Self {
        self * phi_f32(self)
    }
    #[inline(always)]
    fn gelu_grad(self) -> Self {
        phi_f32(self) + self * INV_SQRT_2PI as f32 * exp_f32(-0.5 * self * self)
    }
}

impl Real for f64 {
    const NEG_INF: Self = f64::MIN;
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn maximum(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
    fn gelu(self) -> Self {
        self * 0.5 * candle_core::cpu::erf::erfc_f64(-self * FRAC_1_SQRT_2)
    }
    fn gelu_grad(self) -> Self {
        0.5 * candle_core::cpu::erf::erfc_f64(-self * FRAC_1_SQRT_2) + self * INV_SQRT_2PI * (-0.5 * self * self).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * f64::from(i) / 200_000.0;
            let got = f64::from(exp_f32(x as f32));
            let want = (f64::from(x as f32)).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
    }

    #[test]
    fn f32_gelu_and_its_gradient_match_f64() {
        let mut worst = 0f64;
        for i in 0..=100_000 {
            let x = -10.0 + 20.0 * f64::from(i) / 100_000.0;
            let xf = x as f32;
            let xd = f64::from(xf);
            // GELU relative to its value (the far negative tail included).
            // The derivative Φ(x) + x φ(x) sums two O(1) terms that cancel
            // near x = -0.75, so its error is taken relative to max(|d|, 1).
            // In the tail e^(-x²/2) amplifies the f32 rounding of x² by x²/2
            // (condition number), hence the bound 5e-7 * (1 + x²): 5e-7 near
            // 0 (a few f32 ulps: the 1.2e-7 erfc fit plus rounding), 5e-5 at
            // |x| = 10.
            let (g, gw) = (f64::from(xf.gelu()), xd.gelu());
            let (d, dw) = (f64::from(xf.gelu_grad()), xd.gelu_grad());
            let err = ((g - gw).abs() / gw.abs().max(1e-30)).max((d - dw).abs() / dw.abs().max(1.0));
            worst = worst.max(err / (1.0 + xd * xd));
        }
        assert!(worst < 5e-7, "worst relative error over (1 + x²): {worst}");
    }
}
