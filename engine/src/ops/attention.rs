//! Scaled dot-product attention with an optional additive bias (relative
//! positions) and, on request, the pre-softmax logits (the paper's attention
//! distillation and analysis read them).

use candle_core::{Result, Tensor};

use super::precision::{lowers, matmul};
use super::softmax_last_dim;

/// What [`attention`] returns.
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    /// softmax(logits) @ v: (B, H, N, d).
    pub out: Tensor,
    /// `q @ k^T * scale + bias`, before softmax: (B, H, N, M). Present only
    /// when asked for, so a training step does not keep it alive otherwise.
    pub logits: Option<Tensor>,
}

/// `softmax(q @ k^T * scale + bias) @ v`.
///
/// `q`: (B, H, N, d); `k`, `v`: (B, H, M, d); `bias`: broadcastable to
/// (B, H, N, M). With `keep_logits`, the scaled logits (after the bias) are
/// returned too: the hook point of MAE-Lite's `attn.identity`.
///
/// On the CPU in f32/f64, without bias and logits, a fused kernel runs
/// (`cpu/attention.rs`); the bias and logits cases (relative positions,
/// distillation) take the composed path, whose gradients flow through the
/// logits too. Under [`Precision::Bf16`](super::Precision) with f32 inputs
/// the two products (QKᵀ and probabilities @ V) run in bf16 on the composed
/// path; the logits, scale, bias and softmax stay in f32.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f64, keep_logits: bool) -> Result<AttentionOutput> {
    let nonempty = [q, k, v].iter().all(|t| t.rank() == 4 && t.elem_count() > 0);
    if bias.is_none() && !lowers(&[q, k, v]) && !keep_logits && nonempty && super::cpu::fused_eligible(&[q, k, v]) {
        let out = super::cpu::attention::attention(q, k, v, scale)?;
        return Ok(AttentionOutput { out, logits: None });
    }
    composed(q, k, v, bias, scale, keep_logits)
}

/// Multi-head self-attention from a packed qkv projection: `qkv` (B, N, 3D)
/// in timm's layout (q, k, v blocks of D = `num_heads` * d channels, heads
/// contiguous inside each) to the heads' outputs side by side, (B, N, D),
/// ready for the output projection. Same result as slicing q, k, v into
/// (B, H, N, d) and calling [`attention`] without bias, then moving the head
/// axis back; on the CPU in f32/f64 one fused kernel does it all
/// (`cpu/qkv_attention.rs`), its backward writing d(qkv) in one buffer.
/// Under [`Precision::Bf16`](super::Precision) the products run in bf16 as
/// in [`attention`].
///
/// # Errors
/// `qkv` is not (B, N, 3D) with D divisible by `num_heads`.
pub fn self_attention(qkv: &Tensor, num_heads: usize, scale: f64) -> Result<Tensor> {
    let (_, n, three_d) = qkv_dims(qkv, num_heads)?;
    if n > 0 && three_d > 0 && !lowers(&[qkv]) && super::cpu::fused_eligible(&[qkv]) {
        return super::cpu::qkv_attention::self_attention(&qkv.contiguous()?, num_heads, scale);
    }
    self_attention_composed(qkv, num_heads, scale)
}

/// (B, N, 3D) of `qkv`, or an error unless D splits into `num_heads` heads.
fn qkv_dims(qkv: &Tensor, num_heads: usize) -> Result<(usize, usize, usize)> {
    let (b, n, three_d) = qkv.dims3()?;
    if num_heads == 0 || three_d % 3 != 0 || (three_d / 3) % num_heads != 0 {
        return Err(candle_core::Error::Msg(format!("self_attention: qkv {:?} does not split into 3 x {num_heads} heads", qkv.dims())));
    }
    Ok((b, n, three_d))
}

/// [`self_attention`] from candle primitives (slice q, k, v; [`composed`];
/// move the heads back): what any device runs. Public as
/// `engine::ops::reference::self_attention`.
///
/// # Errors
/// `qkv` is not (B, N, 3D) with D divisible by `num_heads`.
pub fn self_attention_composed(qkv: &Tensor, num_heads: usize, scale: f64) -> Result<Tensor> {
    let (b, n, three_d) = qkv_dims(qkv, num_heads)?;
    let dim = three_d / 3;
    let qkv = qkv.reshape((b, n, 3, num_heads, dim / num_heads))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
    let out = composed(&qkv.get(0)?, &qkv.get(1)?, &qkv.get(2)?, None, scale, false)?.out;
    out.transpose(1, 2)?.reshape((b, n, dim))
}

/// [`attention`] from candle primitives (`matmul`, the composed
/// [`softmax_last_dim`]), gradients through the bias and logits too: what
/// any device runs. Public as `engine::ops::reference::attention`.
///
/// # Errors
/// Shapes that do not fit together.
pub fn composed(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f64, keep_logits: bool) -> Result<AttentionOutput> {
    let logits = (matmul(q, &k.t()?)? * scale)?;
    let logits = match bias {
        Some(b) => logits.broadcast_add(b)?,
        None => logits,
    };
    let probs = softmax_last_dim(&logits)?;
    let out = matmul(&probs, &v.contiguous()?)?;
    Ok(AttentionOutput { out, logits: keep_logits.then_some(logits) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::DType;

    use crate::ops::cpu::{self, test_support::assert_matches_composed};
    use crate::ops::precision::test_support::{output_and_grads, product_bound, relative_l2, values, BF16_UNIT_ROUNDOFF, F32_UNIT_ROUNDOFF};
    use crate::ops::{with_precision, Precision};
    use crate::testing::{check_gradients, random_tensor};

    #[test]
    fn matches_a_direct_evaluation() {
        // One head, two queries over three keys, checked element by element.
        let q = random_tensor(&[1, 1, 2, 4], 30);
        let k = random_tensor(&[1, 1, 3, 4], 31);
        let v = random_tensor(&[1, 1, 3, 2], 32);
        let got = attention(&q, &k, &v, None, 0.5, true).unwrap();
        let (qv, kv, vv) = (
            q.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            k.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            v.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        );
        let out = got.out.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let logits = got.logits.unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in 0..2 {
            let l: Vec<f64> = (0..3).map(|j| (0..4).map(|c| qv[i * 4 + c] * kv[j * 4 + c]).sum::<f64>() * 0.5).collect();
            let z: f64 = l.iter().map(|x| x.exp()).sum();
            for j in 0..3 {
                assert!((logits[i * 3 + j] - l[j]).abs() < 1e-14);
            }
            for c in 0..2 {
                let e: f64 = (0..3).map(|j| l[j].exp() / z * vv[j * 2 + c]).sum();
                assert!((out[i * 2 + c] - e).abs() < 1e-14, "{} vs {e}", out[i * 2 + c]);
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let q = random_tensor(&[2, 3, 4, 5], 33);
        let k = random_tensor(&[2, 3, 6, 5], 34);
        let v = random_tensor(&[2, 3, 6, 2], 35);
        check_gradients(&[q, k, v], |t| Ok(attention(&t[0], &t[1], &t[2], None, 0.7, false)?.out)).unwrap();
    }

    #[test]
    fn composed_gradient_matches_finite_differences() {
        let q = random_tensor(&[2, 3, 4, 5], 33);
        let k = random_tensor(&[2, 3, 6, 5], 34);
        let v = random_tensor(&[2, 3, 6, 2], 35);
        check_gradients(&[q, k, v], |t| Ok(composed(&t[0], &t[1], &t[2], None, 0.7, false)?.out)).unwrap();
    }

    #[test]
    fn fused_matches_composed() {
        // N != M and d != dv; logits spread wide enough to test the softmax shift.
        let q = (random_tensor(&[2, 3, 17, 8], 40) * 3.0).unwrap();
        let k = (random_tensor(&[2, 3, 13, 8], 41) * 3.0).unwrap();
        let v = random_tensor(&[2, 3, 13, 5], 42);
        assert_matches_composed(&[q, k, v], |t| cpu::attention::attention(&t[0], &t[1], &t[2], 0.4), |t| Ok(composed(&t[0], &t[1], &t[2], None, 0.4, false)?.out), 1e-5, 1e-12);
    }

    #[test]
    fn fused_matches_composed_over_several_query_blocks() {
        // 150 queries: two full blocks of 64 and a partial one, so dK and dV
        // sum over blocks; d = 16 as in ViT-Tiny, dv = 7.
        let q = (random_tensor(&[1, 2, 150, 16], 47) * 2.0).unwrap();
        let k = (random_tensor(&[1, 2, 70, 16], 48) * 2.0).unwrap();
        let v = random_tensor(&[1, 2, 70, 7], 49);
        assert_matches_composed(&[q, k, v], |t| cpu::attention::attention(&t[0], &t[1], &t[2], 0.3), |t| Ok(composed(&t[0], &t[1], &t[2], None, 0.3, false)?.out), 1e-5, 1e-12);
        let qkv = (random_tensor(&[2, 130, 3 * 2 * 16], 50) * 2.0).unwrap();
        assert_matches_composed(&[qkv], |t| cpu::qkv_attention::self_attention(&t[0], 2, 0.25), |t| self_attention_composed(&t[0], 2, 0.25), 1e-5, 1e-12);
    }

    #[test]
    fn fused_reads_strided_heads() {
        // As the ViT slices q, k, v out of one (B, N, 3, H, d) projection.
        let qkv = random_tensor(&[2, 11, 3, 4, 6], 43);
        let split = |t: &Tensor, i: usize| t.permute((2, 0, 3, 1, 4)).unwrap().get(i).unwrap();
        assert_matches_composed(
            &[qkv],
            |t| cpu::attention::attention(&split(&t[0], 0), &split(&t[0], 1), &split(&t[0], 2), 0.5),
            |t| Ok(composed(&split(&t[0], 0), &split(&t[0], 1), &split(&t[0], 2), None, 0.5, false)?.out),
            1e-5,
            1e-12,
        );
    }

    #[test]
    fn self_attention_gradient_matches_finite_differences() {
        // (B, N, 3D) with D = 2 heads x 3.
        let qkv = random_tensor(&[2, 4, 18], 44);
        check_gradients(std::slice::from_ref(&qkv), |t| self_attention(&t[0], 2, 0.6)).unwrap();
        check_gradients(&[qkv], |t| self_attention_composed(&t[0], 2, 0.6)).unwrap();
    }

    #[test]
    fn fused_self_attention_matches_composed() {
        let qkv = (random_tensor(&[3, 19, 3 * 4 * 8], 45) * 2.0).unwrap();
        assert_matches_composed(&[qkv], |t| cpu::qkv_attention::self_attention(&t[0], 4, 0.35), |t| self_attention_composed(&t[0], 4, 0.35), 1e-5, 1e-12);
    }

    #[test]
    fn self_attention_rejects_a_bad_split() {
        let qkv = random_tensor(&[1, 2, 12], 46);
        assert!(self_attention(&qkv, 3, 1.0).is_err(), "D = 4 does not split into 3 heads");
    }

    #[test]
    fn gradient_with_bias_and_logits_matches_finite_differences() {
        let q = random_tensor(&[1, 2, 4, 3], 36);
        let k = random_tensor(&[1, 2, 4, 3], 37);
        let v = random_tensor(&[1, 2, 4, 3], 38);
        let bias = random_tensor(&[1, 2, 4, 4], 39);
        // Both outputs feed the loss, so gradients through the logits are checked too.
        check_gradients(&[q, k, v, bias], |t| {
            let a = attention(&t[0], &t[1], &t[2], Some(&t[3]), 0.3, true)?;
            let logits = a.logits.ok_or_else(|| candle_core::Error::Msg("no logits".into()))?;
            a.out.sum_all()?.broadcast_add(&logits.sqr()?.sum_all()?)
        })
        .unwrap();
    }

    /// Relative L2 error allowed on the gradients of bf16 attention against
    /// exact ones. Each gradient passes through at most three bf16 products
    /// (forward QKᵀ, then dO Vᵀ and dS K or dSᵀ Q backward, or P and dO for
    /// d(V)), each off by at most 3u relative to its sum of absolute terms
    /// (u = 2^-8, [`product_bound`]), plus the softmax's sensitivity to the
    /// logits' error: 12u ≈ 4.7% in all. Measured here: 0.43% to 0.58%.
    const GRAD_REL_TOL: f64 = 12.0 * BF16_UNIT_ROUNDOFF;

    /// Checks bf16 attention (without and with a bias) against exact f64:
    /// the output element by element against the bound derived from the
    /// products' ([`product_bound`]): the logits are off by at most
    /// Δᵢ = scale · product_bound(d) · maxⱼ (|q| |k|ᵀ)ᵢⱼ, which moves each
    /// probability by a factor within e^{±2Δᵢ}; the output then is off by
    /// at most ((e^{2Δᵢ} - 1) + product_bound(M) e^{2Δᵢ}) Σⱼ pᵢⱼ |vⱼ|.
    /// Gradients: relative L2 error within [`GRAD_REL_TOL`]. And the error
    /// is far above f32's, so the products did run in bf16.
    fn check_bf16_attention(with_bias: bool) {
        let (d, m, scale) = (16, 37, 0.25);
        let mut inputs = vec![
            (random_tensor(&[2, 3, 29, d], 70) * 2.0).unwrap(),
            (random_tensor(&[2, 3, m, d], 71) * 2.0).unwrap(),
            random_tensor(&[2, 3, m, 8], 72),
        ];
        if with_bias {
            inputs.push(random_tensor(&[1, 3, 29, m], 73));
        }
        let f = |t: &[Tensor]| Ok(attention(&t[0], &t[1], &t[2], t.get(3), scale, with_bias)?.out);
        let lowered = output_and_grads(&inputs, DType::F32, Precision::Bf16, false, &f);
        let plain = output_and_grads(&inputs, DType::F32, Precision::F32, false, &f);
        let exact = output_and_grads(&inputs, DType::F64, Precision::Bf16, false, &f);
        for t in &lowered {
            assert_eq!(t.dtype(), DType::F32, "gradients reach f32 inputs in f32");
        }

        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        let magnitude = q.abs().unwrap().matmul(&k.abs().unwrap().t().unwrap()).unwrap();
        let delta = (magnitude.max_keepdim(3).unwrap() * (scale * (product_bound(d) + 4.0 * F32_UNIT_ROUNDOFF))).unwrap();
        let logits = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let logits = if with_bias { logits.broadcast_add(&inputs[3]).unwrap() } else { logits };
        let probs = crate::ops::softmax_last_dim(&logits).unwrap();
        let spread = probs.matmul(&v.abs().unwrap()).unwrap(); // Σⱼ pᵢⱼ |vⱼ|
        let growth = (delta * 2.0).unwrap().exp().unwrap();
        let factor = ((&growth - 1.0).unwrap() + (growth * product_bound(m)).unwrap()).unwrap() + 8.0 * F32_UNIT_ROUNDOFF;
        let bound = values(&spread.broadcast_mul(&factor.unwrap()).unwrap());
        let (got, want, f32_got) = (values(&lowered[0]), values(&exact[0]), values(&plain[0]));
        let mut worst = (0f64, 0f64);
        for i in 0..want.len() {
            let err = (got[i] - want[i]).abs();
            assert!(err <= bound[i], "output {i}: |{} - {}| = {err} > {}", got[i], want[i], bound[i]);
            worst = (worst.0.max(err), worst.1.max((f32_got[i] - want[i]).abs()));
        }
        assert!(worst.0 > 10.0 * worst.1, "bf16 error {} is not above f32's {}: the products did not run in bf16", worst.0, worst.1);
        for i in 1..lowered.len() {
            let rel = relative_l2(&lowered[i], &exact[i]);
            assert!(rel <= GRAD_REL_TOL, "gradient of input {}: relative error {rel} > {GRAD_REL_TOL}", i - 1);
            assert!(rel > 10.0 * relative_l2(&plain[i], &exact[i]), "gradient of input {} is as exact as f32's", i - 1);
        }
    }

    #[test]
    fn bf16_attention_stays_within_the_derived_bounds() {
        check_bf16_attention(false);
        check_bf16_attention(true);
    }

    #[test]
    fn bf16_self_attention_is_bf16_attention_over_the_split_heads() {
        let qkv = random_tensor(&[2, 13, 3 * 2 * 8], 74).to_dtype(DType::F32).unwrap();
        let (got, split, plain) = with_precision(Precision::Bf16, || {
            let split = |i: usize| qkv.reshape((2, 13, 3, 2, 8)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().get(i).unwrap();
            let heads = attention(&split(0), &split(1), &split(2), None, 0.35, false).unwrap().out;
            (self_attention(&qkv, 2, 0.35).unwrap(), heads.transpose(1, 2).unwrap().reshape((2, 13, 16)).unwrap(), with_precision(Precision::F32, || self_attention(&qkv, 2, 0.35).unwrap()))
        });
        assert_eq!(values(&got), values(&split));
        assert_ne!(values(&got), values(&plain));
    }
}
