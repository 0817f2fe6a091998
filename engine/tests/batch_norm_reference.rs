//! `BatchNorm1d` against `torch.nn.BatchNorm1d`: two train-mode batches
//! (outputs, gradients to input, weight and bias, running statistics after
//! each) then one eval-mode batch, for an affine layer, MAE's linear-probe
//! layer (`affine=False, eps=1e-6`) and a larger momentum, in f32 and f64.
//! Fixtures from `tests/fixtures/make_cls_fixtures.py`. Also: the running
//! statistics live in the VarMap under PyTorch's names, get no gradient and
//! never reach an optimizer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::checkpoint::read_safetensors;
use engine::ops::{BatchNorm1d, BatchNormConfig};
use engine::optim::{build_param_groups, DecayRule, ViTNameRules};
use engine::vars::named_vars;
use serde::Deserialize;

/// Differences are measured against the largest entry of each compared
/// tensor. f32: PyTorch accumulates the batch statistics in f64 on the CPU,
/// we in f32; the largest difference seen is 2.5e-7 (2 ulps), in a weight
/// gradient. 2e-6 allows 16 ulps.
const F32_REL: f64 = 2e-6;
const F32_ABS: f64 = 1e-7;
/// f64: rounding only (largest difference seen: 3.6e-16).
const F64_REL: f64 = 1e-14;
const F64_ABS: f64 = 1e-15;

#[derive(Deserialize)]
struct Case {
    name: String,
    eps: f64,
    momentum: f64,
    affine: bool,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
    channels: usize,
    batches: Vec<usize>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, rel: f64, abs: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let g = got.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let w = want.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= abs + rel * scale, "{what}[{i}]: {a} vs PyTorch {b}");
    }
}

fn check(dtype: DType, suffix: &str, rel: f64, abs: f64) {
    let cases: Cases = serde_json::from_str(&std::fs::read_to_string(fixtures().join("batch_norm_cases.json")).unwrap()).unwrap();
    let f: HashMap<String, Tensor> = read_safetensors(&fixtures().join(format!("batch_norm_{suffix}.safetensors")), &Device::Cpu).unwrap().into_iter().collect();
    for case in &cases.cases {
        let c = &case.name;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
        let cfg = BatchNormConfig { eps: case.eps, momentum: case.momentum, affine: case.affine };
        let bn = BatchNorm1d::new(cases.channels, cfg, vb.pp("head.0")).unwrap();
        let vars: HashMap<String, Var> = named_vars(&varmap).unwrap().into_iter().collect();
        let mut expected_names = vec!["head.0.running_mean", "head.0.running_var"];
        if case.affine {
            expected_names.extend(["head.0.weight", "head.0.bias"]);
        }
        let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
        names.sort();
        expected_names.sort();
        assert_eq!(names, expected_names, "{c}: state-dict names");
        for (name, var) in &vars {
            let short = name.trim_start_matches("head.0.");
            var.set(&f[&format!("{c}.init.{short}")]).unwrap();
        }

        for (i, &b) in cases.batches.iter().enumerate() {
            let i = i + 1;
            let train = i < 3;
            let x = Var::from_tensor(&f[&format!("{c}.x{i}")]).unwrap();
            assert_eq!(x.dims(), [b, cases.channels]);
            let y = bn.forward_t(x.as_tensor(), train).unwrap();
            let what = |t: &str| format!("{c} {suffix} batch {i} ({}) {t}", if train { "train" } else { "eval" });
            assert_close(&what("y"), &y, &f[&format!("{c}.y{i}")], rel, abs);
            let grads = (y * &f[&format!("{c}.upstream{i}")]).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(&what("grad x"), grads.get(&x).unwrap(), &f[&format!("{c}.grad{i}.x")], rel, abs);
            if case.affine {
                for p in ["weight", "bias"] {
                    let g = grads.get(&vars[&format!("head.0.{p}")]).unwrap();
                    assert_close(&what(&format!("grad {p}")), g, &f[&format!("{c}.grad{i}.{p}")], rel, abs);
                }
            }
            for buffer in ["running_mean", "running_var"] {
                let var = &vars[&format!("head.0.{buffer}")];
                assert!(grads.get(var).is_none(), "{}: a buffer got a gradient", what(buffer));
                assert_close(&what(buffer), var.as_tensor(), &f[&format!("{c}.after{i}.{buffer}")], rel, abs);
            }
        }

        // The optimizer gets the affine parameters and nothing else.
        let groups = build_param_groups(&named_vars(&varmap).unwrap(), &ViTNameRules { num_layers: 12 }, 0.05, Some(0.75), DecayRule::All).unwrap();
        let mut optimized: Vec<String> = groups.iter().flat_map(|g| g.params.iter().map(|(n, _)| n.clone())).collect();
        optimized.sort();
        let want: Vec<&str> = if case.affine { vec!["head.0.bias", "head.0.weight"] } else { vec![] };
        assert_eq!(optimized, want, "{c}: optimized variables");
    }
}

#[test]
fn f32_matches_pytorch() {
    check(DType::F32, "f32", F32_REL, F32_ABS);
}

#[test]
fn f64_matches_pytorch() {
    check(DType::F64, "f64", F64_REL, F64_ABS);
}
