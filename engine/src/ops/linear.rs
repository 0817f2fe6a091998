//! Affine map `x @ weight^T + bias` (PyTorch's `nn.Linear` layout).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `x`: (..., in); `weight`: (out, in); `bias`: (out). Returns (..., out).
///
/// Leading dimensions are flattened into one matrix so the product is a
/// single GEMM rather than a batch of small ones. Under
/// [`Precision::Bf16`](super::Precision) with f32 operands the product runs
/// in bf16 on the composed path and the bias is added to its f32 result.
///
/// # Errors
/// Shapes that do not fit (`x`'s last dimension against `weight`'s, `bias`
/// against the output width), named in the message, on every path.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    check_shapes(x, weight, bias)?;
    if super::precision::lowers(&[x, weight]) {
        let y = super::precision::product([x, weight], |[x, w]| composed(x, w, None))?;
        return add_bias(y, bias);
    }
    let mut operands = vec![x, weight];
    operands.extend(bias);
    if super::cpu::fused_eligible(&operands) && x.rank() >= 1 && weight.rank() == 2 && bias.is_none_or(|b| b.rank() == 1) {
        // The kernel reads x as one (rows, in) matrix, so it must be contiguous.
        return super::cpu::linear::linear(&x.contiguous()?, weight, bias);
    }
    composed(x, weight, bias)
}

/// `x` (..., in), `weight` (out, in), `bias` (out), or an error saying which differs.
fn check_shapes(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<()> {
    let fail = |what: String| Err(candle_core::Error::Msg(format!("linear: {what}")));
    let (out_dim, in_dim) = match weight.dims() {
        &[o, i] => (o, i),
        other => return fail(format!("weight has shape {other:?}, expected (out, in)")),
    };
    if x.dims().last() != Some(&in_dim) {
        return fail(format!("input has shape {:?}, expected (..., {in_dim}) for weight {:?}", x.dims(), weight.dims()));
    }
    match bias.map(Tensor::dims) {
        Some(b) if b != [out_dim] => fail(format!("bias has shape {b:?}, expected [{out_dim}] for weight {:?}", weight.dims())),
        _ => Ok(()),
    }
}

/// [`linear`] from candle primitives (one `matmul` over the flattened
/// leading dimensions, a broadcast add): what any device runs. Public as
/// `engine::ops::reference::linear`.
///
/// # Errors
/// As [`linear`].
pub fn composed(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    check_shapes(x, weight, bias)?;
    let dims = x.dims();
    let in_dim = *dims.last().ok_or_else(|| candle_core::Error::Msg("linear: scalar input".into()))?;
    let rows = x.elem_count() / in_dim.max(1);
    let out_dim = weight.dim(0)?;
    let y = add_bias(x.reshape((rows, in_dim))?.matmul(&weight.t()?)?, bias)?;
    let mut out_dims = dims.to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = out_dim;
    }
    y.reshape(out_dims)
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// A linear layer holding `weight` (out, in) and an optional `bias` (timm names).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Builds the layer under `vb` (weights ~ N(0, 0.02²) as timm's ViT init, bias zero).
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let bias = if bias { Some(vb.get_with_hints(out_dim, "bias", candle_nn::Init::Const(0.0))?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight, self.bias.as_ref())
    }

    /// The weight, (out, in).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::cpu::{self, test_support::assert_matches_composed};
    use crate::ops::precision::test_support::assert_within_product_bound;
    use crate::ops::{with_precision, Precision};
    use crate::testing::{check_gradients, random_tensor};

    #[test]
    fn mismatched_shapes_are_errors_on_the_fused_and_composed_paths() {
        let dev = candle_core::Device::Cpu;
        for dtype in [candle_core::DType::F32, candle_core::DType::BF16] {
            // f32 takes the fused kernel, bf16 the composed path.
            let x = Tensor::zeros((2, 4), dtype, &dev).unwrap();
            let w = Tensor::zeros((3, 4), dtype, &dev).unwrap();
            for (bias_len, ok) in [(3, true), (2, false), (5, false)] {
                let b = Tensor::zeros(bias_len, dtype, &dev).unwrap();
                let got = linear(&x, &w, Some(&b));
                assert_eq!(got.is_ok(), ok, "{dtype:?} bias {bias_len}");
                if let Err(e) = got {
                    assert!(e.to_string().contains("bias has shape"), "{e}");
                }
            }
            let wide = Tensor::zeros((2, 5), dtype, &dev).unwrap();
            assert!(linear(&wide, &w, None).unwrap_err().to_string().contains("input has shape"));
        }
    }

    #[test]
    fn computes_a_hand_worked_product() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::new(&[[[1.0f64, 2.0]], [[3.0, 4.0]]], &dev).unwrap(); // (2, 1, 2)
        let w = Tensor::new(&[[1.0f64, 0.0], [1.0, 1.0], [0.0, -1.0]], &dev).unwrap(); // (3, 2)
        let b = Tensor::new(&[0.5f64, 0.0, 1.0], &dev).unwrap();
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.dims(), &[2, 1, 3]);
        assert_eq!(y.to_vec3::<f64>().unwrap(), vec![vec![vec![1.5, 3.0, -1.0]], vec![vec![3.5, 7.0, -3.0]]]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 3, 5], 12);
        let w = random_tensor(&[4, 5], 13);
        let b = random_tensor(&[4], 14);
        check_gradients(&[x, w, b], |t| linear(&t[0], &t[1], Some(&t[2]))).unwrap();
    }

    #[test]
    fn composed_gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 3, 5], 12);
        let w = random_tensor(&[4, 5], 13);
        let b = random_tensor(&[4], 14);
        check_gradients(&[x, w, b], |t| composed(&t[0], &t[1], Some(&t[2]))).unwrap();
    }

    #[test]
    fn fused_matches_composed_with_and_without_bias() {
        // 3 * 250 rows: more than one bias-gradient task.
        let x = random_tensor(&[3, 250, 24], 15);
        let w = random_tensor(&[40, 24], 16);
        let b = random_tensor(&[40], 17);
        let inputs = [x, w, b];
        assert_matches_composed(&inputs, |t| cpu::linear::linear(&t[0], &t[1], Some(&t[2])), |t| composed(&t[0], &t[1], Some(&t[2])), 1e-5, 1e-12);
        assert_matches_composed(&inputs[..2], |t| cpu::linear::linear(&t[0], &t[1], None), |t| composed(&t[0], &t[1], None), 1e-5, 1e-12);
    }

    #[test]
    fn fused_reads_a_transposed_weight() {
        // The patch embedding passes a reshaped conv weight; a transposed view
        // exercises the strided weight path.
        let x = random_tensor(&[5, 7], 18);
        let wt = random_tensor(&[7, 6], 19);
        let b = random_tensor(&[6], 20);
        assert_matches_composed(
            &[x, wt, b],
            |t| cpu::linear::linear(&t[0], &t[1].t()?, Some(&t[2])),
            |t| composed(&t[0], &t[1].t()?, Some(&t[2])),
            1e-5,
            1e-12,
        );
    }

    #[test]
    fn bf16_output_and_gradients_stay_within_the_bf16_product_bound() {
        // x (3, 50, 96), weight (40, 96): the output sums 96 terms, d(x) 40,
        // d(weight) and d(bias) the 150 rows.
        let inputs = [random_tensor(&[3, 50, 96], 60), random_tensor(&[40, 96], 61), random_tensor(&[40], 62)];
        assert_within_product_bound(&inputs, |t| linear(&t[0], &t[1], Some(&t[2])), &[96, 40, 150, 150]);
        assert_within_product_bound(&inputs[..2], |t| linear(&t[0], &t[1], None), &[96, 40, 150]);
    }

    #[test]
    fn bf16_adds_the_bias_in_f32() {
        // A bias that bf16 cannot hold (1 + 2^-12) reaches the output whole.
        let dev = candle_core::Device::Cpu;
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::ones((1, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::new(&[1.0f32 + 1.0 / 4096.0], &dev).unwrap();
        let y = with_precision(Precision::Bf16, || linear(&x, &w, Some(&b))).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![1.0 + 1.0 / 4096.0]; 2]);
    }
}
