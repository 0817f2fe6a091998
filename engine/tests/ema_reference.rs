//! The model EMA against timm's `ModelEmaV2`, bit for bit in f32: a
//! Linear-BatchNorm1d-Linear model changes over four steps (parameters moved,
//! BatchNorm buffers updated by a train-mode forward) and the average of
//! every float state-dict entry, parameters and buffers, must equal timm's
//! after each, for decays 0.9 and 0.9998; also across a save / load of the
//! average half-way. Fixtures from `tests/fixtures/make_cls_fixtures.py`.
//! Then: an optimizer step moves the model and leaves the average alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::checkpoint::{read_safetensors, write_safetensors_atomic};
use engine::ema::ModelEma;
use engine::ops::{BatchNorm1d, BatchNormConfig, Linear};
use engine::optim::{build_param_groups, AdamW, AdamWConfig, DecayRule, Optimizer, ViTNameRules};
use engine::vars::named_vars;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    decays: Vec<f64>,
    steps: usize,
    names: Vec<String>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

/// Python's `str(float)` of the decays, as the fixture keys spell them.
fn key(decay: f64) -> String {
    format!("{decay:?}")
}

#[test]
fn average_equals_timm_model_ema_v2_bit_for_bit() {
    let cases: Cases = serde_json::from_str(&std::fs::read_to_string(fixtures().join("ema_cases.json")).unwrap()).unwrap();
    let f: HashMap<String, Tensor> = read_safetensors(&fixtures().join("ema_f32.safetensors"), &Device::Cpu).unwrap().into_iter().collect();
    assert!(cases.names.iter().any(|n| n.ends_with("running_var")), "the buffers are part of the average");
    for &decay in &cases.decays {
        let model: Vec<(String, Var)> = cases.names.iter().map(|n| (n.clone(), Var::from_tensor(&f[&format!("init.{n}")]).unwrap())).collect();
        let mut ema = ModelEma::new(&model, decay).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for step in 0..cases.steps {
            for (n, v) in &model {
                v.set(&f[&format!("model.{step}.{n}")]).unwrap();
            }
            ema.update(&model).unwrap();
            for (n, t) in ema.tensors() {
                assert_eq!(bits(t), bits(&f[&format!("ema_{}.{step}.{n}", key(decay))]), "decay {decay} step {step} {n}");
            }
            if step == 1 {
                // Save, and continue from a fresh average restored from the file.
                let path = dir.path().join("ema.safetensors");
                write_safetensors_atomic(&path, ema.tensors()).unwrap();
                ema = ModelEma::new(&model, decay).unwrap();
                ema.load(&read_safetensors(&path, &Device::Cpu).unwrap()).unwrap();
            }
        }
    }
}

#[test]
fn optimizer_steps_move_the_model_not_the_average() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let fc = Linear::new(4, 3, true, vb.pp("fc")).unwrap();
    let bn = BatchNorm1d::new(3, BatchNormConfig::default(), vb.pp("bn")).unwrap();
    let named = named_vars(&varmap).unwrap();
    let mut ema = ModelEma::new(&named, 0.99).unwrap();
    let before: Vec<Vec<u32>> = ema.tensors().iter().map(|(_, t)| bits(t)).collect();

    let groups = build_param_groups(&named, &ViTNameRules { num_layers: 1 }, 0.05, None, DecayRule::All).unwrap();
    let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
    let x = Tensor::arange(0f32, 16.0, &dev).unwrap().reshape((4, 4)).unwrap();
    let h = fc.forward(&x).unwrap();
    let y = bn.forward_t(&h, true).unwrap();
    // Every parameter needs a gradient that is not zero in exact arithmetic
    // (else rounding noise decides whether it moves): the train-mode
    // BatchNorm removes any shift common to the batch, so `fc.bias` gets its
    // gradient from the `h` term; `bn.bias` gets one from the targets `t`.
    let t = Tensor::new(&[[1f32, 2.0, 3.0]], &dev).unwrap();
    let loss = (y.broadcast_sub(&t).unwrap().sqr().unwrap().sum_all().unwrap() + h.sum_all().unwrap()).unwrap();
    opt.step(&loss.backward().unwrap(), 0.1).unwrap();

    let moved = named.iter().zip(&before).filter(|((_, v), b)| bits(v.as_tensor()) != **b).count();
    assert_eq!(moved, named.len(), "the step and the forward moved every parameter and buffer");
    let after: Vec<Vec<u32>> = ema.tensors().iter().map(|(_, t)| bits(t)).collect();
    assert_eq!(after, before, "the average must not move with the model");

    // The next update moves the average by (1 - decay) of the gap.
    ema.update(&named).unwrap();
    for (((name, avg), (_, var)), start) in ema.tensors().iter().zip(&named).zip(&before) {
        let start: Vec<f32> = start.iter().map(|b| f32::from_bits(*b)).collect();
        let start = Tensor::from_vec(start, var.dims(), &dev).unwrap();
        let want = ((start.clone() * 0.99).unwrap() + (var.as_tensor() * 0.01).unwrap()).unwrap();
        assert_eq!(bits(avg), bits(&want), "{name}");
    }
}
