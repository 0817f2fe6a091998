//! The losses of Mask R-CNN, composed from candle primitives whose backward
//! is exact: binary cross-entropy on logits, softmax cross-entropy (engine's)
//! and L1 (detectron2's `smooth_l1_loss` with beta = 0).

use candle_core::{Result, Tensor};

/// `sum(max(x, 0) - x * y + log(1 + exp(-|x|)))`: PyTorch's
/// `binary_cross_entropy_with_logits(reduction="sum")`, stable for any x.
pub fn bce_with_logits_sum(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * targets)?)?.add(&softplus_neg_abs)?.sum_all()
}

/// `sum(|pred - target|)`.
pub fn l1_sum(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    (pred - target)?.abs()?.sum_all()
}

/// Mean softmax cross-entropy of `logits` (R, C) against class `labels`
/// (R); PyTorch's `cross_entropy(reduction="mean")`. Zero for R = 0. The
/// one implementation is engine's [`engine::ops::cross_entropy`]; the box
/// head uses it without label smoothing.
pub fn cross_entropy_mean(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    engine::ops::cross_entropy(logits, labels, 0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;
    use engine::testing::{check_gradients, random_tensor};

    #[test]
    fn bce_matches_the_textbook_formula() {
        let x = [-3.0f64, -0.5, 0.0, 0.7, 20.0];
        let y = [0.0f64, 1.0, 1.0, 0.0, 1.0];
        let want: f64 = x.iter().zip(&y).map(|(&x, &y)| {
            let p = 1.0 / (1.0 + (-x).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        }).sum();
        let got = bce_with_logits_sum(&Tensor::new(&x, &Device::Cpu).unwrap(), &Tensor::new(&y, &Device::Cpu).unwrap()).unwrap().to_scalar::<f64>().unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn losses_have_exact_gradients() {
        let y = random_tensor(&[3, 4], 2).ge(0.0).unwrap().to_dtype(candle_core::DType::F64).unwrap();
        check_gradients(&[random_tensor(&[3, 4], 1)], |xs| bce_with_logits_sum(&(&xs[0] * 3.0)?, &y)).unwrap();
        check_gradients(&[random_tensor(&[5, 4], 3)], |xs| cross_entropy_mean(&(&xs[0] * 2.0)?, &[0, 3, 1, 1, 2])).unwrap();
        let t = random_tensor(&[6], 5);
        check_gradients(&[random_tensor(&[6], 4)], |xs| l1_sum(&xs[0], &t)).unwrap();
    }
}
