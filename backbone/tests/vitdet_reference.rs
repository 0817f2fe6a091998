//! The ViTDet backbone against a PyTorch forward of detectron2's ViT
//! (`tests/fixtures/make_vitdet_fixtures.py`): output map, loss, and the
//! gradient of every parameter and of the input, through the real loading
//! path (checkpoint file -> caller's `VarMap` under a prefix); plus
//! `get_rel_pos` for unequal query/key sizes and the loader's reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;

use backbone::config::{VitConfig, WindowedConfig};
use backbone::named::WeightSearch;
use backbone::vitdet::{load_vitdet_backbone, BackboneInit, BackboneWeights, LoadedVitDet};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

mod common;
use common::{assert_close, rel_err};

/// Where the detector puts the backbone's variables.
const PREFIX: &str = "backbone.net";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vitdet").join(name)
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("vitdet_small_io.safetensors"), &Device::Cpu).unwrap()
}

/// The fixtures' ViT: width 48, 12 heads, 3 blocks, patch 4, pre-training grid 4x4.
fn arch() -> VitConfig {
    VitConfig { embed_dim: 48, num_heads: 12, depth: 3, patch_size: 4, img_size: 16, ..VitConfig::tiny() }
}

/// Blocks 0 and 2 in windows of 4; global tables for a 4x4 grid.
fn windowed() -> WindowedConfig {
    WindowedConfig { window_size: 4, window_block_indexes: vec![0, 2], use_rel_pos: true, img_size: 16, drop_path_rate: 0.0 }
}

fn load(spec: &str, search: &WeightSearch) -> backbone::Result<(LoadedVitDet, VarMap)> {
    load_as(spec, search, &windowed())
}

fn load_as(spec: &str, search: &WeightSearch, windowed: &WindowedConfig) -> backbone::Result<(LoadedVitDet, VarMap)> {
    let varmap = VarMap::new();
    let weights = BackboneWeights { spec, arch_name: "test", arch: &arch(), search, seed: 3 };
    let loaded = load_vitdet_backbone(&weights, windowed, &varmap, PREFIX, &Device::Cpu)?;
    Ok((loaded, varmap))
}

fn no_rng() -> rand::rngs::mock::StepRng {
    rand::rngs::mock::StepRng::new(0, 1)
}

#[test]
fn forward_and_gradients_match_the_pytorch_reference() {
    let refs = io();
    let path = fixture("vitdet_small.safetensors");
    let (loaded, varmap) = load(path.to_str().unwrap(), &WeightSearch::default()).unwrap();
    let BackboneInit::Checkpoint { report, .. } = &loaded.init else { panic!("expected a checkpoint load, got {}", loaded.init) };
    assert!(report.missing.is_empty(), "{report}");
    assert_eq!(report.unexpected, vec!["cls_token", "norm.bias", "norm.weight"], "{report}");

    let input = Var::from_tensor(&refs["input"]).unwrap();
    let out = loaded.backbone.forward(input.as_tensor(), false, &mut no_rng()).unwrap();
    assert_close("output", &out, &refs["output"]);
    let loss = ((&out * &refs["probe"]).unwrap().sum_all().unwrap() + (out.sqr().unwrap().mean_all().unwrap() * 0.1).unwrap()).unwrap();
    assert_close("loss", &loss.reshape(1).unwrap(), &refs["loss"]);

    let grads = loss.backward().unwrap();
    engine::testing::assert_all_vars_have_grad(&varmap, &grads).unwrap();
    assert_close("grad.input", grads.get(&input).unwrap(), &refs["grad.input"]);
    let vars = varmap.data().lock().unwrap();
    for (name, var) in vars.iter() {
        let key = format!("grad.{}", name.strip_prefix("backbone.net.").unwrap());
        assert_close(&key, grads.get(var).unwrap(), refs.get(&key).unwrap_or_else(|| panic!("no reference for {name}")));
    }
    let expected = refs.keys().filter(|k| k.starts_with("grad.") && *k != "grad.input").count();
    assert_eq!(vars.len(), expected, "every reference parameter has a counterpart");
}

#[test]
fn an_input_at_the_pretraining_grid_needs_no_padding_or_resampling() {
    let refs = io();
    let path = fixture("vitdet_small.safetensors");
    let (loaded, _) = load(path.to_str().unwrap(), &WeightSearch::default()).unwrap();
    let out = loaded.backbone.forward(&refs["input_16x16"], false, &mut no_rng()).unwrap();
    assert_close("output_16x16", &out, &refs["output_16x16"]);
}

#[test]
fn get_rel_pos_scales_coordinates_of_unequal_sizes() {
    let refs = io();
    for (name, q, k) in [("q3_k5", 3, 5), ("q5_k2", 5, 2)] {
        let got = backbone::rel_pos::get_rel_pos(q, k, &refs[&format!("rel_pos.{name}.table")]).unwrap();
        assert_close(name, &got, &refs[&format!("rel_pos.{name}.out")]);
    }
}

#[test]
fn without_rel_pos_the_blocks_equal_those_with_zero_tables() {
    let refs = io();
    let path = fixture("vitdet_small.safetensors");
    let plain = WindowedConfig { use_rel_pos: false, ..windowed() };
    let (without, _) = load_as(path.to_str().unwrap(), &WeightSearch::default(), &plain).unwrap();
    let BackboneInit::Checkpoint { report, .. } = &without.init else { panic!("expected a checkpoint load") };
    assert_eq!(report.unexpected.iter().filter(|n| n.contains("rel_pos")).count(), 6, "{report}");
    let (zeroed, varmap) = load(path.to_str().unwrap(), &WeightSearch::default()).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name.contains("rel_pos") {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    let a = without.backbone.forward(&refs["input"], false, &mut no_rng()).unwrap();
    let b = zeroed.backbone.forward(&refs["input"], false, &mut no_rng()).unwrap();
    assert!(rel_err(&a, &b) < 1e-6, "{}", rel_err(&a, &b));
    assert!(rel_err(&a, &refs["output"]) > 1e-2, "the reference's tables matter");
}

#[test]
fn a_checkpoint_without_rel_pos_tables_reports_them_missing_and_keeps_them_zero() {
    // What a released MAE-Lite checkpoint looks like to the backbone.
    let mut tensors = candle_core::safetensors::load(fixture("vitdet_small.safetensors"), &Device::Cpu).unwrap();
    tensors.retain(|name, _| !name.contains("rel_pos"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mae_like.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let (loaded, varmap) = load(path.to_str().unwrap(), &WeightSearch::default()).unwrap();
    let BackboneInit::Checkpoint { report, .. } = &loaded.init else { panic!("expected a checkpoint load") };
    let mut want: Vec<String> = (0..3).flat_map(|i| ["h", "w"].map(|a| format!("blocks.{i}.attn.rel_pos_{a}"))).collect();
    want.sort();
    assert_eq!(report.missing, want, "{report}");
    let vars = varmap.data().lock().unwrap();
    let table = vars["backbone.net.blocks.1.attn.rel_pos_h"].as_tensor();
    assert_eq!(table.dims(), &[7, 4]);
    assert_eq!(table.abs().unwrap().sum_all().unwrap().to_vec0::<f32>().unwrap(), 0.0);
    // The loaded weights are the checkpoint's.
    let qkv = vars["backbone.net.blocks.2.attn.qkv.weight"].as_tensor();
    assert_eq!(rel_err(qkv, &tensors["blocks.2.attn.qkv.weight"]), 0.0);
}

#[test]
fn scratch_is_seeded_with_zero_rel_pos_and_leaves_other_variables_alone() {
    let varmap = VarMap::new();
    let other = Var::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    varmap.data().lock().unwrap().insert("head.weight".into(), other.clone());
    let weights = BackboneWeights { spec: "scratch", arch_name: "test", arch: &arch(), search: &WeightSearch::default(), seed: 11 };
    let a = load_vitdet_backbone(&weights, &windowed(), &varmap, PREFIX, &Device::Cpu).unwrap();
    assert_eq!(a.init, BackboneInit::Scratch { seed: 11 });
    let first = varmap.data().lock().unwrap()["backbone.net.blocks.0.attn.qkv.weight"].as_tensor().copy().unwrap();
    let again = VarMap::new();
    load_vitdet_backbone(&weights, &windowed(), &again, PREFIX, &Device::Cpu).unwrap();
    let second = again.data().lock().unwrap()["backbone.net.blocks.0.attn.qkv.weight"].as_tensor().copy().unwrap();
    assert_eq!(rel_err(&first, &second), 0.0, "same seed, same weights");
    let std = first.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_vec0::<f32>().unwrap();
    assert!((std - 0.02).abs() < 0.004, "timm's N(0, 0.02²) linear init, got std {std}");
    let vars = varmap.data().lock().unwrap();
    let rel = vars["backbone.net.blocks.1.attn.rel_pos_w"].as_tensor();
    assert_eq!(rel.abs().unwrap().sum_all().unwrap().to_vec0::<f32>().unwrap(), 0.0);
    assert_eq!(other.as_tensor().abs().unwrap().sum_all().unwrap().to_vec0::<f32>().unwrap(), 0.0, "the detector's variable is untouched");
}

#[test]
fn a_named_backbone_without_its_file_says_where_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let search = WeightSearch { dirs: vec![("--weights-dir".into(), dir.path().into())] };
    let err = load("mae_tiny", &search).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("mae_tiny_400e.pth.tar") && msg.contains("--weights-dir") && msg.contains("MAE-Lite"), "{msg}");
    assert!(err.is_user_error());
    let msg = load("/no/such/weights.pth", &search).err().unwrap().to_string();
    assert!(msg.contains("/no/such/weights.pth") && msg.contains("distilled_mae_tiny"), "{msg}");
}

#[test]
fn a_checkpoint_of_another_width_names_the_arch_that_fits() {
    let cls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vit/vit_cls.pth.tar");
    let varmap = VarMap::new();
    let weights = BackboneWeights { spec: cls.to_str().unwrap(), arch_name: "tiny", arch: &VitConfig::tiny(), search: &WeightSearch::default(), seed: 0 };
    let err = load_vitdet_backbone(&weights, &WindowedConfig::default(), &varmap, "", &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("embed_dim 48") && err.contains("--arch tiny has 192"), "{err}");
}
