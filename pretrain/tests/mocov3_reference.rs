//! MoCo-v3 against PyTorch: one training step of a small model built as
//! moco-v3 builds it (`tests/fixtures/make_mocov3_fixtures.py`, run with
//! torch and timm): the loss, every online parameter's gradient, the
//! momentum encoder after its EMA step and the BatchNorm running statistics
//! after the step, in f64 and in f32; the sin-cos table and the momentum
//! schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use engine::checkpoint::{read_safetensors, restore_vars};
use engine::trainer::TaskState;
use pretrain::mocov3::init::mocov3_sincos_2d;
use pretrain::mocov3::{momentum_at, MocoV3, MocoV3Config, MOMENTUM_PREFIX};
use rand::SeedableRng;

/// f64 arithmetic agrees with PyTorch's to ~1e-12; the expected values were
/// stored as f32 (relative rounding 6e-8), so this bounds the difference
/// relative to each tensor's largest entry.
const F64_TOL: f64 = 1e-6;
/// The bar for the f32 path (f32 arithmetic, expected values from f64).
const F32_TOL: f64 = 1e-4;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read(name: &str) -> HashMap<String, Tensor> {
    read_safetensors(&fixture_path(name), &Device::Cpu).unwrap().into_iter().collect()
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_path("mocov3_expected.json")).unwrap()).unwrap()
}

fn config(meta: &serde_json::Value) -> MocoV3Config {
    let c = &meta["config"];
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let vit = backbone::VitConfig {
        img_size: n("img_size"),
        patch_size: n("patch_size"),
        embed_dim: n("embed_dim"),
        depth: n("depth"),
        num_heads: n("num_heads"),
        mlp_ratio: c["mlp_ratio"].as_f64().unwrap(),
        ..MocoV3Config::tiny_vit()
    };
    MocoV3Config {
        vit,
        mlp_dim: n("mlp_dim"),
        dim: n("dim"),
        temperature: c["temperature"].as_f64().unwrap(),
        base_momentum: c["base_momentum"].as_f64().unwrap(),
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Below this magnitude a tensor is compared absolutely: some gradients are
/// zero in exact arithmetic (the final norm's bias: a shift common to the
/// batch is removed by the projector's first BatchNorm), and both sides then
/// hold rounding noise.
const SCALE_FLOOR: f64 = 1e-2;

/// `max |a - e| <= tol * max(max |e|, SCALE_FLOOR)` over the tensor (shapes
/// equal); returns the left side over the right side's `max(..)`.
fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) -> f64 {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shape");
    let (a, e) = (values(actual), values(expected));
    let scale = e.iter().fold(0f64, |m, v| m.max(v.abs())).max(SCALE_FLOOR);
    let err = a.iter().zip(&e).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= tol * scale, "{what}: max |diff| {err:e} > {tol:e} x max |expected| {scale:e}");
    err / scale
}

/// Builds the model in `dtype`, loads the fixture's weights and momentum
/// encoder, runs the step and checks everything; returns the worst
/// relative error.
fn check_step(dtype: DType, tol: f64) -> f64 {
    let meta = meta();
    let cfg = config(&meta);
    let inputs = read("mocov3_inputs.safetensors");
    let expected = read("mocov3_expected.safetensors");
    let varmap = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut moco = MocoV3::new(&cfg, &varmap, dtype, &Device::Cpu, &mut rng).unwrap();

    // Strict restores: the variable names are PyTorch's state-dict names.
    let online: Vec<(String, Tensor)> =
        inputs.iter().filter(|(n, _)| !n.starts_with(MOMENTUM_PREFIX) && !n.starts_with("input.")).map(|(n, t)| (n.clone(), t.clone())).collect();
    restore_vars(&moco.variables().unwrap(), &online).unwrap();
    let momentum: Vec<(String, Tensor)> = inputs.iter().filter(|(n, _)| n.starts_with(MOMENTUM_PREFIX)).map(|(n, t)| (n.clone(), t.clone())).collect();
    moco.restore_extra_state(TaskState { tensors: momentum, json: serde_json::Value::Null }).unwrap();

    let view = |n: &str| inputs[n].to_dtype(dtype).unwrap();
    let m = meta["momentum"].as_f64().unwrap();
    assert_eq!(m, moco.momentum_at(meta["iter"].as_u64().unwrap() as usize, meta["total_iters"].as_u64().unwrap() as usize));
    let loss = moco.loss(&view("input.view1"), &view("input.view2"), m, &mut rng).unwrap();

    let mut worst = 0f64;
    let mut check = |what: &str, a: &Tensor, e: &Tensor| worst = worst.max(assert_close(what, a, e, tol));
    let scalar = |k: &str| Tensor::new(meta[k].as_f64().unwrap(), &Device::Cpu).unwrap();
    check("loss_q1k2", &loss.q1_k2, &scalar("loss_q1k2"));
    check("loss_q2k1", &loss.q2_k1, &scalar("loss_q2k1"));
    check("loss", &loss.total().unwrap(), &scalar("loss"));

    // Every online parameter's gradient, and no gradient the reference lacks.
    let grads = loss.total().unwrap().backward().unwrap();
    let mut compared = 0;
    for (name, var) in moco.variables().unwrap() {
        let want = expected.get(&format!("grad.{name}"));
        match (grads.get(var.as_tensor()), want) {
            (Some(g), Some(w)) => {
                check(&format!("grad.{name}"), g, w);
                compared += 1;
            }
            (None, None) => assert!(name == "pos_embed" || engine::ops::is_buffer_name(&name), "{name} has no gradient in either"),
            (g, w) => panic!("{name}: gradient here {}, in PyTorch {}", g.is_some(), w.is_some()),
        }
    }
    assert_eq!(compared, expected.keys().filter(|k| k.starts_with("grad.")).count());

    // The momentum encoder after its EMA step and the forward (its BN statistics).
    let state = moco.extra_state().unwrap();
    assert_eq!(state.tensors.len(), expected.keys().filter(|k| k.starts_with(MOMENTUM_PREFIX)).count());
    for (name, t) in &state.tensors {
        check(name, t, &expected[name]);
    }
    // The online BatchNorm statistics after both views.
    let mut buffers = 0;
    for (name, var) in moco.variables().unwrap() {
        if engine::ops::is_buffer_name(&name) {
            check(&name, var.as_tensor(), &expected[&format!("online.{name}")]);
            buffers += 1;
        }
    }
    assert_eq!(buffers, 2 * (3 + 2), "running mean and variance of the projector's 3 and the predictor's 2 BatchNorms");
    worst
}

#[test]
fn f64_step_matches_pytorch_loss_gradients_momentum_and_bn_statistics() {
    let worst = check_step(DType::F64, F64_TOL);
    eprintln!("f64: worst relative difference {worst:e}");
}

#[test]
fn f32_step_matches_pytorch_within_1e4() {
    let worst = check_step(DType::F32, F32_TOL);
    eprintln!("f32: worst relative difference {worst:e}");
}

#[test]
fn sincos_table_matches_mocov3() {
    let expected = read("mocov3_expected.safetensors");
    for (grid, dim) in [(4, 24), (14, 16)] {
        let ours = mocov3_sincos_2d(dim, grid, &Device::Cpu).unwrap();
        // f32 sin/cos of arguments up to 13 rad: a few ulps apart.
        assert_close(&format!("sincos {grid}x{dim}"), &ours, &expected[&format!("sincos.{grid}x{dim}")], 1e-6);
    }
}

#[test]
fn momentum_schedule_matches_python() {
    let meta = meta();
    for row in meta["momentum_schedule"].as_array().unwrap() {
        let r = row.as_array().unwrap();
        let (i, n, base, m) = (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize, r[2].as_f64().unwrap(), r[3].as_f64().unwrap());
        assert_eq!(momentum_at(i, n, base), m, "iter {i} of {n}");
    }
}
