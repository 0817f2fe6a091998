//! A ViT-Tiny (D 192, 12 blocks, 12 heads, MLP 768; 64 px input, batch 4,
//! 10 classes, seeded) under `Precision::Bf16` against the same model in
//! f32: logits, the cross-entropy loss and every parameter's gradient stay
//! within the tolerances below, every gradient arrives in f32, and bf16
//! does change the numbers (the products did run in bf16).
//!
//! Tolerances, from bf16's unit roundoff u = 2^-8 (8 significant bits):
//! each lowered product is off by at most 3u relative to its sum of
//! absolute terms (operands and result rounded; f32 accumulation), and its
//! root-mean-square error is about u (independent roundings of ~u/√3 on
//! each of the three). A block runs 6 lowered products (qkv, QKᵀ, AV, proj,
//! fc1, fc2); through 12 residual blocks and the head, 73 products add
//! their errors like a random walk: √73 · u ≈ 8.5u ≈ 3.3% RMS on the
//! logits and the loss's logit terms. The tolerances take that estimate:
//! [`LOGIT_REL_TOL`] for the logits and the loss, and 1 - cos ≤
//! [`GRAD_COSINE_TOL`] = (8.5u)²/2 · 4 for each parameter's gradient (two
//! passes, forward and backward, doubling the error's magnitude); the
//! global gradient norm within [`LOGIT_REL_TOL`] as well. Measured with
//! these seeds: logits 0.41%, loss 0.013%, worst cosine 1 - 2.6e-5,
//! gradient norm 0.04%.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use backbone::{ForwardOptions, Pool, Vit, VitConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::ops::{cross_entropy, with_precision, Precision};
use engine::rng::TrainRng;

/// bf16's unit roundoff.
const U: f64 = 1.0 / 256.0;
/// Relative L2 error allowed on the logits, and relative error on the loss
/// and the global gradient norm: √73 products · u.
const LOGIT_REL_TOL: f64 = 8.5 * U;
/// Allowed 1 - cosine between a parameter's bf16 and f32 gradients.
const GRAD_COSINE_TOL: f64 = 2.0 * LOGIT_REL_TOL * LOGIT_REL_TOL;

struct Pass {
    logits: Vec<f64>,
    loss: f64,
    grads: Vec<(String, Vec<f64>)>,
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// The forward and backward of `vit` on `pixels` with the precision `p`.
fn pass(vit: &Vit, varmap: &VarMap, pixels: &Tensor, labels: &[u32], p: Precision) -> Pass {
    with_precision(p, || {
        let out = vit.forward(pixels, &ForwardOptions::default(), &mut rand::rngs::mock::StepRng::new(0, 0)).unwrap();
        let logits = out.logits.unwrap();
        assert_eq!(logits.dtype(), DType::F32);
        let loss = cross_entropy(&logits, labels, 0.0).unwrap();
        let grads = loss.backward().unwrap();
        let grads = engine::vars::named_vars(varmap)
            .unwrap()
            .into_iter()
            .map(|(name, var)| {
                let g = grads.get(&var).unwrap_or_else(|| panic!("no gradient for {name} in {p:?}"));
                assert_eq!(g.dtype(), DType::F32, "{name}: the gradient reaches the f32 weight in f32");
                (name, values(g))
            })
            .collect();
        Pass { logits: values(&logits), loss: loss.to_scalar::<f32>().unwrap().into(), grads }
    })
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn relative_l2(a: &[f64], b: &[f64]) -> f64 {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&diff) / norm(b)
}

#[test]
fn vit_tiny_in_bf16_stays_close_to_f32() {
    let dev = Device::Cpu;
    let cfg = VitConfig { img_size: 64, num_classes: 10, pool: Pool::Avg, ..VitConfig::tiny() };
    let varmap = VarMap::new();
    let vit = Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    backbone::init::init_weights(&varmap, &cfg, 0).unwrap();
    // Move every variable off timm's init (zero biases, unit norms) so that
    // each one's gradient is generic.
    let mut rng = TrainRng::seed_from_u64(1);
    for (_, var) in engine::vars::named_vars(&varmap).unwrap() {
        let noise = rng.normal(var.shape().clone(), 0.0, 0.02, &dev).unwrap();
        var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
    }
    let pixels = rng.normal((4, 3, 64, 64), 0.0, 1.0, &dev).unwrap();
    let labels = [3u32, 7, 0, 9];

    let full = pass(&vit, &varmap, &pixels, &labels, Precision::F32);
    let mixed = pass(&vit, &varmap, &pixels, &labels, Precision::Bf16);

    let logit_err = relative_l2(&mixed.logits, &full.logits);
    assert!(logit_err <= LOGIT_REL_TOL, "logits: relative error {logit_err} > {LOGIT_REL_TOL}");
    assert!(logit_err > 10.0 * f64::from(f32::EPSILON), "logits identical to f32's ({logit_err}): the products did not run in bf16");
    let loss_err = (mixed.loss - full.loss).abs() / full.loss;
    assert!(loss_err <= LOGIT_REL_TOL, "loss {} vs {}: relative error {loss_err}", mixed.loss, full.loss);

    let (mut all_mixed, mut all_full) = (Vec::new(), Vec::new());
    for ((name, m), (_, f)) in mixed.grads.iter().zip(&full.grads) {
        let cosine = m.iter().zip(f).map(|(a, b)| a * b).sum::<f64>() / (norm(m) * norm(f));
        assert!(1.0 - cosine <= GRAD_COSINE_TOL, "{name}: gradient cosine {cosine} < 1 - {GRAD_COSINE_TOL}");
        all_mixed.extend_from_slice(m);
        all_full.extend_from_slice(f);
    }
    let norm_err = (norm(&all_mixed) - norm(&all_full)).abs() / norm(&all_full);
    assert!(norm_err <= LOGIT_REL_TOL, "global gradient norm: relative error {norm_err}");
}
