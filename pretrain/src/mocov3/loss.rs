//! MoCo-v3's symmetric InfoNCE loss (moco-v3 `moco/builder.py`,
//! `MoCo.contrastive_loss` and `MoCo.forward`): the queries of one view
//! against the momentum keys of the other, each pair a positive and the
//! other keys of the batch its negatives.
//!
//! Single process: `concat_all_gather` of the keys is the identity and the
//! labels are `arange(N)`.
//!
//! Shapes: N queries, M keys (M = N here), E feature width.

use candle_core::Tensor;
use engine::ops::cross_entropy;

use super::Result;

/// `F.normalize`'s floor on the norm.
const NORMALIZE_EPS: f64 = 1e-12;

/// Rows of `x` (N, E) divided by their L2 norm, floored at 1e-12
/// (`F.normalize(x, dim=1)`), with gradients through the norm.
///
/// # Errors
/// `x` is not 2-D.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    x.dims2()?;
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(NORMALIZE_EPS)?;
    Ok(x.broadcast_div(&norm)?)
}

/// `CE(normalize(q) · normalize(k)ᵀ / T, arange(N)) · 2T` for queries `q`
/// (N, E) and keys `k` (M, E), M ≥ N: query i's positive is key i. The keys
/// are targets: no gradient flows into them. The `2T` factor makes the
/// gradient scale independent of T (moco-v3's choice).
///
/// # Errors
/// Shapes that differ in E, fewer keys than queries, or `temperature` not
/// positive.
pub fn contrastive_loss(q: &Tensor, k: &Tensor, temperature: f64) -> Result<Tensor> {
    let (n, e) = q.dims2()?;
    let (m, ek) = k.dims2()?;
    if e != ek || m < n || temperature.is_nan() || temperature <= 0.0 {
        return Err(super::Error::Config(format!(
            "contrastive loss needs queries (N, E), keys (M >= N, E) and T > 0, got {:?}, {:?}, T = {temperature}",
            q.dims(),
            k.dims()
        )));
    }
    let q = l2_normalize(q)?;
    let k = l2_normalize(&k.detach())?;
    let logits = (q.matmul(&k.t()?)? / temperature)?;
    let labels: Vec<u32> = (0..n as u32).collect();
    Ok((cross_entropy(&logits, &labels, 0.0)? * (2.0 * temperature))?)
}

/// The two halves of MoCo-v3's symmetric loss, each a scalar with its graph.
#[derive(Debug, Clone)]
pub struct MocoLoss {
    /// `contrastive_loss(q1, k2)`: view 1's queries against view 2's keys.
    pub q1_k2: Tensor,
    /// `contrastive_loss(q2, k1)`: view 2's queries against view 1's keys.
    pub q2_k1: Tensor,
}

impl MocoLoss {
    /// Names of the terms in [`MocoLoss::terms`].
    pub const TERM_NAMES: [&'static str; 2] = ["loss_q1k2", "loss_q2k1"];

    /// The symmetric loss of queries `q1`, `q2` (B, E) and momentum keys
    /// `k1`, `k2` (B, E) at temperature `temperature`.
    ///
    /// # Errors
    /// As [`contrastive_loss`].
    pub fn new(q1: &Tensor, q2: &Tensor, k1: &Tensor, k2: &Tensor, temperature: f64) -> Result<Self> {
        Ok(Self { q1_k2: contrastive_loss(q1, k2, temperature)?, q2_k1: contrastive_loss(q2, k1, temperature)? })
    }

    /// The loss moco-v3 differentiates: `q1_k2 + q2_k1`.
    ///
    /// # Errors
    /// A tensor error.
    pub fn total(&self) -> Result<Tensor> {
        Ok((&self.q1_k2 + &self.q2_k1)?)
    }

    /// Named terms whose plain sum is [`MocoLoss::total`], for
    /// `engine::trainer::LossTerms::new`.
    pub fn terms(&self) -> Vec<(String, Tensor)> {
        let [a, b] = Self::TERM_NAMES;
        vec![(a.to_string(), self.q1_k2.clone()), (b.to_string(), self.q2_k1.clone())]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;
    use engine::testing::{check_gradients, random_tensor};

    /// Hand-worked: unit-norm q and k with q_i · k_j = 1 if i = j else 0 give
    /// logits diag(1/T), so each row's loss is log(e^{1/T} + (N-1)) - 1/T.
    #[test]
    fn orthonormal_pairs_give_the_closed_form() {
        let eye = Tensor::new(&[[3.0f64, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 2.0]], &Device::Cpu).unwrap();
        let t = 0.2;
        let got = contrastive_loss(&eye, &eye, t).unwrap().to_scalar::<f64>().unwrap();
        let row = ((1.0f64 / t).exp() + 2.0).ln() - 1.0 / t;
        assert!((got - row * 2.0 * t).abs() < 1e-12, "{got} vs {}", row * 2.0 * t);
    }

    #[test]
    fn gradient_matches_finite_differences_and_skips_the_keys() {
        let q = random_tensor(&[4, 5], 1);
        let k = random_tensor(&[4, 5], 2);
        check_gradients(std::slice::from_ref(&q), |t| contrastive_loss(&t[0], &k, 0.2).map_err(|e| candle_core::Error::Msg(e.to_string()))).unwrap();
        let kv = candle_core::Var::from_tensor(&k).unwrap();
        let grads = contrastive_loss(&q, kv.as_tensor(), 0.2).unwrap().backward().unwrap();
        assert!(grads.get(kv.as_tensor()).is_none(), "keys are targets");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let q = random_tensor(&[4, 5], 1);
        assert!(contrastive_loss(&q, &random_tensor(&[4, 6], 2), 0.2).is_err());
        assert!(contrastive_loss(&q, &random_tensor(&[3, 5], 2), 0.2).is_err());
        assert!(contrastive_loss(&q, &q, 0.0).is_err());
    }
}
