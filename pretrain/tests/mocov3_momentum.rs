//! The momentum encoder owns its storage: an optimizer step on the online
//! model reaches it only through the EMA, its forward builds no graph, and
//! its state survives a checkpoint round trip. Also the model's optimizer
//! facts and its encoder export under timm names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{AdamW, Optimizer};
use engine::trainer::TaskState;
use pretrain::mocov3::{recipe, MocoV3, MocoV3Config, MOMENTUM_PREFIX};
use rand::SeedableRng;

/// A small MoCo-v3 model (2 blocks of width 24, MLPs 32 -> 16) on 32-px images.
fn small_config() -> MocoV3Config {
    let vit = backbone::VitConfig { img_size: 32, patch_size: 8, embed_dim: 24, depth: 2, num_heads: 12, ..MocoV3Config::tiny_vit() };
    MocoV3Config { vit, mlp_dim: 32, dim: 16, ..MocoV3Config::default() }
}

fn model(dtype: DType, seed: u64) -> MocoV3 {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    MocoV3::new(&small_config(), &VarMap::new(), dtype, &Device::Cpu, &mut rng).unwrap()
}

fn views(dtype: DType) -> (Tensor, Tensor) {
    let v1 = engine::testing::random_tensor(&[4, 3, 32, 32], 1).to_dtype(dtype).unwrap();
    let v2 = engine::testing::random_tensor(&[4, 3, 32, 32], 2).to_dtype(dtype).unwrap();
    (v1, v2)
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn momentum_tensors(moco: &MocoV3) -> Vec<(String, Vec<f64>)> {
    moco.momentum_encoder().tensors().unwrap().iter().map(|(n, t)| (n.clone(), vals(t))).collect()
}

#[test]
fn an_optimizer_step_moves_the_momentum_encoder_only_through_the_ema() {
    let mut moco = model(DType::F64, 3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (v1, v2) = views(DType::F64);
    // The forward moves the momentum encoder's BatchNorm statistics (its own
    // training-mode forward); snapshot after it.
    let loss = moco.forward_loss(&v1, &v2, &mut rng).unwrap();
    let grads = loss.total().unwrap().backward().unwrap();
    let before = momentum_tensors(&moco);
    let online_before: Vec<(String, Vec<f64>)> = moco.variables().unwrap().iter().map(|(n, v)| (n.clone(), vals(v.as_tensor()))).collect();

    let mut opt = AdamW::new(moco.param_groups(recipe::WEIGHT_DECAY).unwrap(), recipe::adamw()).unwrap();
    opt.step(&grads, 1e-2).unwrap();

    let online: Vec<(String, Vec<f64>)> = moco.variables().unwrap().iter().map(|(n, v)| (n.clone(), vals(v.as_tensor()))).collect();
    let moved = online.iter().zip(&online_before).filter(|(a, b)| a.1 != b.1).count();
    assert!(moved > 30, "the optimizer moved only {moved} online tensors");
    assert_eq!(momentum_tensors(&moco), before, "an optimizer step changed the momentum encoder");

    let m = 0.9;
    moco.update_momentum(m).unwrap();
    let after = momentum_tensors(&moco);
    for ((name, k_new), (_, k_old)) in after.iter().zip(&before) {
        if engine::ops::is_buffer_name(name) {
            assert_eq!(k_new, k_old, "{name}: the EMA leaves BatchNorm statistics alone");
            continue;
        }
        let q = &online.iter().find(|(n, _)| n == name).unwrap().1;
        for ((kn, ko), qv) in k_new.iter().zip(k_old).zip(q) {
            let want = m * ko + (1.0 - m) * qv;
            assert!((kn - want).abs() <= 1e-15 * want.abs().max(1.0), "{name}: {kn} vs m*k + (1-m)*q = {want}");
        }
    }
    // The EMA moved the parameters that the optimizer moved.
    let ema_moved = after.iter().zip(&before).filter(|(a, b)| a.1 != b.1).count();
    assert!(ema_moved > 30, "the EMA moved only {ema_moved} tensors");
}

#[test]
fn momentum_encoder_starts_as_a_copy_in_storage_of_its_own() {
    let moco = model(DType::F32, 4);
    let online = moco.variables().unwrap();
    let momentum = moco.momentum_encoder().tensors().unwrap();
    assert_eq!(momentum.len(), online.iter().filter(|(n, _)| !n.starts_with("predictor.")).count());
    for (name, t) in &momentum {
        let var = &online.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(vals(t), vals(var.as_tensor()), "{name}");
    }
    // Overwrite the online model: the momentum encoder does not follow.
    for (_, var) in &online {
        var.set(&var.as_tensor().ones_like().unwrap()).unwrap();
    }
    let again = moco.momentum_encoder().tensors().unwrap();
    for ((name, a), (_, b)) in again.iter().zip(&momentum) {
        assert_eq!(vals(a), vals(b), "{name} followed the online model");
    }
}

#[test]
fn key_forward_builds_no_graph_and_queries_do() {
    let mut moco = model(DType::F32, 5);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (v1, v2) = views(DType::F32);
    let (k1, k2) = moco.momentum_encoder().forward(&v1, &v2, &mut rng).unwrap();
    assert!(!k1.track_op() && !k2.track_op(), "the key forward recorded a graph");
    assert_eq!(k1.dims(), &[4, 16]);
    let loss = moco.loss(&v1, &v2, 0.99, &mut rng).unwrap();
    assert!(loss.q1_k2.track_op() && loss.q2_k1.track_op());
    let grads = loss.total().unwrap().backward().unwrap();
    // Every online parameter but the fixed position table gets a gradient.
    for (name, var) in moco.variables().unwrap() {
        let fixed = name == "pos_embed" || engine::ops::is_buffer_name(&name);
        assert_eq!(grads.get(var.as_tensor()).is_some(), !fixed, "{name}");
    }
}

#[test]
fn extra_state_round_trips_and_rejects_what_does_not_fit() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (v1, v2) = views(DType::F32);
    let mut a = model(DType::F32, 6);
    a.loss(&v1, &v2, 0.9, &mut rng).unwrap();
    let state = a.extra_state().unwrap();
    assert!(state.tensors.iter().all(|(n, _)| n.starts_with(MOMENTUM_PREFIX)));
    assert!(state.tensors.iter().any(|(n, _)| n == "momentum_encoder.head.7.running_var"));
    let mut b = model(DType::F32, 7);
    assert_ne!(momentum_tensors(&a), momentum_tensors(&b));
    b.restore_extra_state(state.clone()).unwrap();
    assert_eq!(momentum_tensors(&a), momentum_tensors(&b));

    let mut fresh = model(DType::F32, 8);
    let untouched = momentum_tensors(&fresh);
    let missing = TaskState { tensors: state.tensors[1..].to_vec(), json: serde_json::Value::Null };
    assert!(fresh.restore_extra_state(missing).unwrap_err().to_string().contains(&state.tensors[0].0[MOMENTUM_PREFIX.len()..]));
    let mut renamed = state.tensors.clone();
    renamed[0].0 = "other.cls_token".into();
    let err = fresh.restore_extra_state(TaskState { tensors: renamed, json: serde_json::Value::Null }).unwrap_err().to_string();
    assert!(err.contains("other.cls_token"), "{err}");
    let mut reshaped = state.tensors.clone();
    let i = reshaped.iter().position(|(n, _)| n == "momentum_encoder.cls_token").unwrap();
    reshaped[i].1 = Tensor::zeros((1, 2, 24), DType::F32, &Device::Cpu).unwrap();
    let err = fresh.restore_extra_state(TaskState { tensors: reshaped, json: serde_json::Value::Null }).unwrap_err().to_string();
    assert!(err.contains("cls_token") && err.contains("shape"), "{err}");
    assert_eq!(momentum_tensors(&fresh), untouched, "a failed restore changes nothing");
}

#[test]
fn optimizer_sees_every_parameter_with_weight_decay_and_nothing_else() {
    let moco = model(DType::F32, 9);
    let groups = moco.param_groups(0.1).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].weight_decay, 0.1);
    let names: Vec<&str> = groups[0].params.iter().map(|(n, _)| n.as_str()).collect();
    let vars = moco.variables().unwrap();
    let expected: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).filter(|n| *n != "pos_embed" && !engine::ops::is_buffer_name(n)).collect();
    assert_eq!(names, expected);
    assert!(names.contains(&"cls_token") && names.contains(&"blocks.1.norm2.bias") && names.contains(&"predictor.1.bias"));
}

#[test]
fn encoder_tensors_load_as_a_timm_vit_with_nothing_missing_or_left_over() {
    let moco = model(DType::F32, 10);
    let tensors = moco.encoder_tensors().unwrap();
    assert!(tensors.iter().all(|(n, _)| !n.starts_with("head.") && !n.starts_with("predictor.")));
    let cfg = backbone::VitConfig { pos_embed: backbone::PosEmbedKind::Learned, ..small_config().vit };
    let varmap = VarMap::new();
    backbone::Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let report = backbone::import::load_into(&varmap, &tensors, 0).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report}");
    assert_eq!(report.loaded, tensors.len());
    let loaded = varmap.data().lock().unwrap()["blocks.1.attn.qkv.weight"].as_tensor().clone();
    let ours = &tensors.iter().find(|(n, _)| n == "blocks.1.attn.qkv.weight").unwrap().1;
    assert_eq!(vals(&loaded), vals(ours));
}

/// The whole step trains: AdamW on one fixed pair of views, the momentum
/// following its schedule, lowers the loss (deterministic: fixed seeds).
#[test]
fn a_few_steps_on_one_batch_lower_the_loss() {
    let mut moco = model(DType::F32, 11);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (v1, v2) = views(DType::F32);
    let mut opt = AdamW::new(moco.param_groups(recipe::WEIGHT_DECAY).unwrap(), recipe::adamw()).unwrap();
    let steps = 30;
    let mut losses = Vec::new();
    for i in 0..steps {
        let m = moco.momentum_at(i, steps);
        let total = moco.loss(&v1, &v2, m, &mut rng).unwrap().total().unwrap();
        losses.push(total.to_scalar::<f32>().unwrap());
        opt.step(&total.backward().unwrap(), 1e-3).unwrap();
    }
    let (first, last) = (losses[0], losses[steps - 1]);
    assert!(last < 0.7 * first, "loss {first} -> {last}: {losses:?}");
}
