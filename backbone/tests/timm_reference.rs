//! The ViT against timm: outputs, attention logits and every parameter's
//! gradient for the reference cases of `tests/fixtures/make_fixtures.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use backbone::import::{backbone_tensors, load_into, load_vit_as, read_checkpoint, save_vit};
use backbone::{ForwardOptions, VitConfig};
use candle_core::{Device, Tensor};
use rand::SeedableRng;

mod common;
use common::assert_close;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vit").join(name)
}

/// The fixtures' architecture: a depth-2, 12-head ViT of width 48 at 32 px.
fn arch() -> VitConfig {
    VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() }
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(&format!("{name}_io.safetensors")), &Device::Cpu).unwrap()
}

fn rng() -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(0)
}

fn check_forward_and_gradients(name: &str, file: &str) {
    let refs = reference(name);
    let loaded = load_vit_as(&fixture(file), &arch(), "test", &Device::Cpu).unwrap();
    assert!(loaded.report.missing.is_empty() && loaded.report.unexpected.is_empty(), "{}", loaded.report);
    let opts = ForwardOptions { train: true, keep_blocks: true, attn_logits: vec![1] };
    let out = loaded.model.forward(&refs["input"], &opts, &mut rng()).unwrap();

    for (i, block) in out.blocks.iter().enumerate() {
        assert_close(&format!("{name} block.{i}"), block, &refs[&format!("block.{i}")]);
    }
    assert_close(&format!("{name} tokens"), &out.tokens, &refs["tokens"]);
    assert_close(&format!("{name} pooled"), &out.pooled, &refs["pooled"]);
    let logits = out.logits.as_ref().expect("the fixtures have a head");
    assert_close(&format!("{name} logits"), logits, &refs["logits"]);
    assert_eq!(out.attn_logits.len(), 1);
    assert_eq!(out.attn_logits[0].0, 1);
    assert_close(&format!("{name} attn_logits.1"), &out.attn_logits[0].1, &refs["attn_logits.1"]);

    // The fixture's loss: cross entropy on targets [3, 7] plus 0.1 * mean(block0^2).
    let target = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let ce = candle_nn::loss::cross_entropy(logits, &target).unwrap();
    let reg = (out.blocks[0].sqr().unwrap().mean_all().unwrap() * 0.1).unwrap();
    let loss = (ce + reg).unwrap();
    assert_close(&format!("{name} loss"), &loss.reshape(1).unwrap(), &refs["loss"]);
    let grads = loss.backward().unwrap();
    engine::testing::assert_all_vars_have_grad(&loaded.varmap, &grads).unwrap();
    let vars = loaded.varmap.data().lock().unwrap();
    let mut checked = 0;
    for (pname, var) in vars.iter() {
        let key = format!("grad.{pname}");
        assert!(refs.contains_key(&key), "no reference gradient for {pname}");
        assert_close(&format!("{name} {key}"), grads.get(var).unwrap(), &refs[&key]);
        checked += 1;
    }
    let expected = refs.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(checked, expected, "every timm parameter has a counterpart");
}

#[test]
fn avg_pool_vit_from_pth_matches_timm() {
    check_forward_and_gradients("vit_avg", "vit_avg.pth.tar");
}

#[test]
fn cls_token_vit_from_pth_matches_timm() {
    check_forward_and_gradients("vit_cls", "vit_cls.pth.tar");
}

#[test]
fn safetensors_and_pth_hold_the_same_weights() {
    check_forward_and_gradients("vit_avg", "vit_avg.safetensors");
}

#[test]
fn released_prefixes_are_stripped_and_non_backbone_keys_ignored() {
    let raw = read_checkpoint(&fixture("vit_avg.pth.tar")).unwrap();
    assert!(raw.tensors.iter().all(|(n, _)| n.starts_with("module.")));
    let (tensors, ignored) = backbone_tensors(raw.tensors);
    // decoder_embed, mask_token, the teacher's qkv and the attention adapter.
    assert_eq!(ignored, 4);
    assert!(tensors.iter().any(|(n, _)| n == "blocks.1.attn.qkv.weight"));
    assert!(tensors.iter().all(|(n, _)| !n.starts_with("module.")));
}

#[test]
fn a_wrong_arch_says_which_one_fits() {
    let err = load_vit_as(&fixture("vit_avg.pth.tar"), &VitConfig::tiny(), "tiny", &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("embed_dim 48") && err.contains("--arch tiny has 192"), "{err}");
}

#[test]
fn a_shape_mismatch_names_the_key_and_both_shapes() {
    let loaded = load_vit_as(&fixture("vit_cls.pth.tar"), &arch(), "test", &Device::Cpu).unwrap();
    let bad = vec![("head.weight".to_string(), Tensor::zeros((7, 48), candle_core::DType::F32, &Device::Cpu).unwrap())];
    let err = load_into(&loaded.varmap, &bad, 0).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("head.weight") && msg.contains("[10, 48]") && msg.contains("[7, 48]"), "{msg}");
    assert!(err.is_user_error());
}

#[test]
fn missing_and_unexpected_keys_are_reported() {
    let loaded = load_vit_as(&fixture("vit_cls.pth.tar"), &arch(), "test", &Device::Cpu).unwrap();
    let (mut tensors, _) = backbone_tensors(read_checkpoint(&fixture("vit_cls.pth.tar")).unwrap().tensors);
    tensors.retain(|(n, _)| n != "norm.bias");
    tensors.push(("head.0.weight".into(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap()));
    let report = load_into(&loaded.varmap, &tensors, 0).unwrap();
    assert_eq!(report.missing, vec!["norm.bias".to_string()]);
    assert_eq!(report.unexpected, vec!["head.0.weight".to_string()]);
}

#[test]
fn import_round_trip_keeps_outputs_and_config() {
    let refs = reference("vit_avg");
    let loaded = load_vit_as(&fixture("vit_avg.pth.tar"), &arch(), "test", &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported.safetensors");
    save_vit(&loaded.varmap, &loaded.config, &out).unwrap();
    // The saved config (12 heads) wins over the arch passed here (3 heads).
    let wrong_heads = VitConfig { num_heads: 3, ..arch() };
    let again = load_vit_as(&out, &wrong_heads, "test", &Device::Cpu).unwrap();
    assert_eq!(again.config, loaded.config);
    let logits = again.model.forward(&refs["input"], &ForwardOptions::default(), &mut rng()).unwrap().logits.unwrap();
    assert_close("round-trip logits", &logits, &refs["logits"]);
}

#[test]
fn position_embedding_resize_matches_torch_bicubic() {
    let cases = candle_core::safetensors::load(fixture("pos_resize.safetensors"), &Device::Cpu).unwrap();
    let pos = &cases["pos"];
    for (h, w) in [(7, 7), (5, 3), (2, 2), (4, 4)] {
        let got = backbone::pos_embed::resize_pos_embed(pos, (4, 4), 1, (h, w), true).unwrap();
        assert_close(&format!("resize to {h}x{w}"), &got, &cases[&format!("resized_{h}x{w}")]);
    }
}

#[test]
fn a_larger_input_uses_the_resized_table() {
    // A 48 px input gives a 3x3 grid: its patch tokens must be the patch
    // embedding plus the 2x2 table resized bicubically, as the fixture
    // computes them with torch (F.interpolate, align_corners=False).
    let case = candle_core::safetensors::load(fixture("vit_avg_48px.safetensors"), &Device::Cpu).unwrap();
    let loaded = load_vit_as(&fixture("vit_avg.pth.tar"), &arch(), "test", &Device::Cpu).unwrap();
    let (tokens, hw) = loaded.model.embed_patches(&case["input"]).unwrap();
    assert_eq!(hw, (3, 3));
    assert_close("48 px patch tokens", &tokens, &case["patch_tokens"]);
}
