//! Log-softmax and the classification losses built on it: hard-label
//! cross-entropy with optional label smoothing, and soft-target
//! cross-entropy (the loss under Mixup / CutMix).
//!
//! Mirrors PyTorch `F.log_softmax`, `nn.CrossEntropyLoss(label_smoothing=ε)`
//! (equal to timm `LabelSmoothingCrossEntropy(ε)`) and timm
//! `SoftTargetCrossEntropy`; `tests/cross_entropy_reference.rs` compares all
//! three with PyTorch, values and gradients.
//!
//! Everything is composed from candle primitives with exact backwards: a
//! fused kernel would not pay, the logits being (B, K) with K ≤ 1000, tiny
//! beside the network that produced them.
//!
//! Shapes: B rows (images, or RoIs in the detector), K classes.

use candle_core::{Result, Tensor, D};

/// `log(softmax(x))` over the last dimension, computed as
/// `x - max - log(sum(exp(x - max)))` so no exponential overflows.
///
/// The row maximum is detached: the result does not depend on the shift,
/// so treating it as a constant gives the exact gradient.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let shift = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&shift)?;
    let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&log_z)
}

/// Mean over the batch of `-sum_k targets[b, k] * log_softmax(logits)[b, k]`
/// (timm `SoftTargetCrossEntropy`). `logits`, `targets`: (B, K); target rows
/// are distributions (Mixup's blended one-hots), though any weights work.
/// Gradients flow to both arguments.
///
/// # Errors
/// The two shapes differ or are not (B, K).
pub fn soft_target_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (rows, classes) = logits.dims2()?;
    if targets.dims() != [rows, classes] {
        return Err(candle_core::Error::Msg(format!(
            "soft_target_cross_entropy: targets {:?} do not match logits ({rows}, {classes})",
            targets.dims()
        )));
    }
    (targets * log_softmax_last_dim(logits)?)?.sum(1)?.neg()?.mean_all()
}

/// Mean hard-label cross-entropy of `logits` (B, K) against `labels` (B
/// class indices), with label smoothing `ε`: each row's loss is
/// `(1 - ε) * nll + ε * mean_k(-log_softmax)`, i.e. the cross-entropy
/// against the target `(1 - ε) * one_hot + ε / K` (PyTorch
/// `CrossEntropyLoss(label_smoothing=ε)`, timm
/// `LabelSmoothingCrossEntropy(ε)`). `ε = 0` is the plain loss. Zero for
/// B = 0 (a detector image may have no RoIs), still connected to `logits`.
///
/// # Errors
/// `logits` is not 2-D, `labels` has a length other than B or a class
/// index ≥ K, or `ε` is outside [0, 1].
pub fn cross_entropy(logits: &Tensor, labels: &[u32], label_smoothing: f64) -> Result<Tensor> {
    let (rows, classes) = logits.dims2()?;
    if labels.len() != rows {
        return Err(candle_core::Error::Msg(format!(
            "cross_entropy: {} labels for {rows} rows of logits",
            labels.len()
        )));
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &c)| c as usize >= classes) {
        return Err(candle_core::Error::Msg(format!(
            "cross_entropy: label {label} of row {row} is not below the {classes} classes"
        )));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(candle_core::Error::Msg(format!(
            "cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}"
        )));
    }
    if rows == 0 {
        return logits.sum_all()?.affine(0.0, 0.0);
    }
    let log_probs = log_softmax_last_dim(logits)?;
    let picks: Vec<u32> = labels.iter().enumerate().map(|(r, &c)| (r * classes) as u32 + c).collect();
    let picks = Tensor::from_vec(picks, rows, logits.device())?;
    let nll = log_probs.flatten_all()?.index_select(&picks, 0)?.neg()?;
    if label_smoothing == 0.0 {
        return nll.mean_all();
    }
    let smooth = log_probs.mean(1)?.neg()?;
    (nll.affine(1.0 - label_smoothing, 0.0)? + smooth.affine(label_smoothing, 0.0)?)?.mean_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::{check_gradients, random_tensor};
    use candle_core::Device;

    fn textbook_log_softmax(row: &[f64]) -> Vec<f64> {
        let z: f64 = row.iter().map(|v| v.exp()).sum();
        row.iter().map(|v| v - z.ln()).collect()
    }

    #[test]
    fn log_softmax_matches_the_definition_and_survives_huge_logits() {
        let x = Tensor::new(&[[1.0f64, 2.0, 3.0], [1000.0, 1001.0, 999.0]], &Device::Cpu).unwrap();
        let y = log_softmax_last_dim(&x).unwrap().to_vec2::<f64>().unwrap();
        for (got, row) in y.iter().zip([[1.0, 2.0, 3.0], [1.0, 2.0, 0.0]]) {
            for (a, b) in got.iter().zip(textbook_log_softmax(&row)) {
                assert!((a - b).abs() < 1e-13, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn hard_label_loss_matches_the_textbook_formula() {
        let logits = [[1.0f64, 2.0, 0.5], [-1.0, 0.0, 3.0]];
        let labels = [2u32, 0];
        for eps in [0.0, 0.1, 1.0] {
            let want: f64 = logits
                .iter()
                .zip(&labels)
                .map(|(row, &c)| {
                    let lp = textbook_log_softmax(row);
                    let smooth = -lp.iter().sum::<f64>() / 3.0;
                    (1.0 - eps) * -lp[c as usize] + eps * smooth
                })
                .sum::<f64>()
                / 2.0;
            let got = cross_entropy(&Tensor::new(&logits, &Device::Cpu).unwrap(), &labels, eps).unwrap().to_scalar::<f64>().unwrap();
            assert!((got - want).abs() < 1e-12, "eps {eps}: {got} vs {want}");
        }
    }

    /// Smoothing by ε is the soft-target loss against `(1 - ε) one_hot + ε / K`.
    #[test]
    fn label_smoothing_equals_soft_targets_of_the_smoothed_one_hot() {
        let logits = random_tensor(&[4, 5], 1).affine(3.0, 0.0).unwrap();
        let labels = [4u32, 0, 2, 2];
        let eps = 0.2;
        let mut t = vec![eps / 5.0; 20];
        for (r, &c) in labels.iter().enumerate() {
            t[r * 5 + c as usize] += 1.0 - eps;
        }
        let targets = Tensor::from_vec(t, (4, 5), &Device::Cpu).unwrap();
        let a = cross_entropy(&logits, &labels, eps).unwrap().to_scalar::<f64>().unwrap();
        let b = soft_target_cross_entropy(&logits, &targets).unwrap().to_scalar::<f64>().unwrap();
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        check_gradients(&[random_tensor(&[2, 3, 7], 2).affine(4.0, 0.0).unwrap()], |x| log_softmax_last_dim(&x[0])).unwrap();
        for eps in [0.0, 0.1] {
            check_gradients(&[random_tensor(&[5, 4], 3)], |x| cross_entropy(&(&x[0] * 2.0)?, &[0, 3, 1, 1, 2], eps)).unwrap();
        }
        // Soft targets: gradients to the logits and to the targets.
        check_gradients(&[random_tensor(&[3, 6], 4), random_tensor(&[3, 6], 5)], |x| soft_target_cross_entropy(&(&x[0] * 3.0)?, &x[1])).unwrap();
    }

    #[test]
    fn empty_batch_gives_zero_and_backward_runs() {
        let logits = candle_core::Var::zeros((0, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let loss = cross_entropy(logits.as_tensor(), &[], 0.1).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.0);
        loss.backward().unwrap();
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_problem() {
        let logits = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let msg = |r: Result<Tensor>| r.unwrap_err().to_string();
        assert!(msg(cross_entropy(&logits, &[0], 0.0)).contains("1 labels for 2 rows"));
        assert!(msg(cross_entropy(&logits, &[0, 3], 0.0)).contains("label 3 of row 1"));
        assert!(msg(cross_entropy(&logits, &[0, 1], 1.5)).contains("label_smoothing"));
        let targets = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(msg(soft_target_cross_entropy(&logits, &targets)).contains("[2, 4]"));
    }
}
