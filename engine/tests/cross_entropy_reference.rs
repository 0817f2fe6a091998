//! Log-softmax, hard-label cross-entropy with label smoothing and
//! soft-target cross-entropy against PyTorch / timm: values and gradients,
//! in f32 and f64. Fixtures from `tests/fixtures/make_cls_fixtures.py`
//! (`F.log_softmax`, `F.cross_entropy(label_smoothing=s)` for s in 0, 0.1,
//! 0.3, which the script checks equals timm's `LabelSmoothingCrossEntropy`,
//! and timm's `SoftTargetCrossEntropy` against Mixup targets).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use engine::checkpoint::read_safetensors;
use engine::ops::{cross_entropy, log_softmax_last_dim, soft_target_cross_entropy};

/// f32: PyTorch's vectorised kernels sum the exponentials in another order;
/// the largest difference seen is 2 ulps of the largest entry. 1e-6
/// relative (8 ulps), with a floor for entries near zero.
const F32_REL: f64 = 1e-6;
const F32_ABS: f64 = 1e-7;
/// f64: the same argument at 2^-52 (largest difference seen: 6e-15 relative).
const F64_REL: f64 = 1e-13;
const F64_ABS: f64 = 1e-15;

fn load(dtype: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/cross_entropy_{dtype}.safetensors"));
    read_safetensors(&path, &Device::Cpu).unwrap().into_iter().collect()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, rel: f64, abs: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let g = got.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let w = want.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= abs + rel * b.abs(), "{what}[{i}]: {a} vs PyTorch {b}");
    }
}

fn check(dtype: &str, rel: f64, abs: f64) {
    let f = load(dtype);
    let logits = &f["logits"];
    let labels: Vec<u32> = f["labels"].to_vec1::<i64>().unwrap().into_iter().map(|l| l as u32).collect();

    let x = Var::from_tensor(logits).unwrap();
    let out = log_softmax_last_dim(x.as_tensor()).unwrap();
    assert_close("log_softmax", &out, &f["logsoftmax.out"], rel, abs);
    let grads = (out * &f["logsoftmax.upstream"]).unwrap().sum_all().unwrap().backward().unwrap();
    assert_close("log_softmax grad", grads.get(&x).unwrap(), &f["logsoftmax.grad"], rel, abs);

    for s in ["0.0", "0.1", "0.3"] {
        let x = Var::from_tensor(logits).unwrap();
        let loss = cross_entropy(x.as_tensor(), &labels, s.parse().unwrap()).unwrap();
        assert_close(&format!("cross_entropy({s})"), &loss, &f[&format!("hard.{s}.loss")], rel, abs);
        let grads = loss.backward().unwrap();
        assert_close(&format!("cross_entropy({s}) grad"), grads.get(&x).unwrap(), &f[&format!("hard.{s}.grad")], rel, abs);
    }

    let x = Var::from_tensor(logits).unwrap();
    let t = Var::from_tensor(&f["soft.targets"]).unwrap();
    let loss = soft_target_cross_entropy(x.as_tensor(), t.as_tensor()).unwrap();
    assert_close("soft_target_cross_entropy", &loss, &f["soft.loss"], rel, abs);
    let grads = loss.backward().unwrap();
    assert_close("soft grad logits", grads.get(&x).unwrap(), &f["soft.grad_logits"], rel, abs);
    assert_close("soft grad targets", grads.get(&t).unwrap(), &f["soft.grad_targets"], rel, abs);
}

#[test]
fn f32_matches_pytorch() {
    check("f32", F32_REL, F32_ABS);
}

#[test]
fn f64_matches_pytorch() {
    check("f64", F64_REL, F64_ABS);
}
