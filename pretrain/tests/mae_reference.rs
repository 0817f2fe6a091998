//! MAE parity with a PyTorch implementation of MAE's `models_mae.py`
//! (`tests/fixtures/make_mae_fixtures.py`, computed in f64): with the same
//! weights, images and masking noise, the loss, the predictions, the
//! encoder's taps and the gradient of every trainable parameter agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};

use backbone::VitConfig;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use pretrain::encoder::EncoderTaps;
use pretrain::mae::{DecoderConfig, Mae, MaeSpec};
use pretrain::masking::Masking;

/// Values and gradients: f32 arithmetic against an f64 reference.
const TOL: f32 = 1e-4;
/// Relative error of a whole gradient tensor (so that small gradients,
/// which an absolute bound alone would let through, are checked too).
const REL_NORM_TOL: f32 = 1e-4;

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mae_reference.safetensors");
    engine::checkpoint::read_safetensors(std::path::Path::new(path), &Device::Cpu).unwrap().into_iter().collect()
}

/// The fixture's model: width 32, 4 heads, depth 2; decoder 16 wide, 2 heads, depth 2; 8-px patches, 32 px.
fn spec(mask_ratio: f64, norm_pix_loss: bool) -> MaeSpec {
    let arch = VitConfig { patch_size: 8, embed_dim: 32, depth: 2, num_heads: 4, ..VitConfig::tiny() };
    MaeSpec::new(&arch, 32, DecoderConfig { embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 4.0 }, mask_ratio, norm_pix_loss)
}

/// The MAE built with MAE's init, then every variable set from the fixture
/// (the names must be exactly the fixture's).
fn model(fx: &HashMap<String, Tensor>, spec: &MaeSpec) -> (Mae, VarMap) {
    let varmap = VarMap::new();
    let mae = Mae::new(spec, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    pretrain::init::init_mae(&varmap, spec, 0).unwrap();
    let data = varmap.data().lock().unwrap();
    let ours: BTreeSet<String> = data.keys().cloned().collect();
    let theirs: BTreeSet<String> = fx.keys().filter_map(|k| k.strip_prefix("param.")).map(str::to_string).collect();
    assert_eq!(ours, theirs, "parameter names");
    for (name, var) in data.iter() {
        let value = &fx[&format!("param.{name}")];
        if name.ends_with("pos_embed") {
            // Our init must have produced the reference's fixed sin-cos tables already.
            assert_close(name, var.as_tensor(), value, 1e-6);
        }
        var.set(value).unwrap();
    }
    drop(data);
    (mae, varmap)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let max = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= tol, "{what}: max |diff| {max} > {tol}");
    let norm = w.iter().map(|v| v * v).sum::<f32>().sqrt();
    let diff = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
    assert!(diff <= REL_NORM_TOL * norm.max(1e-3), "{what}: relative error {} (norm {norm})", diff / norm.max(1e-30));
}

fn scalar(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap()
}

fn masking(fx: &HashMap<String, Tensor>, ratio: f64) -> Masking {
    let noise = fx["noise"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    Masking::from_noise(&noise, 2, 16, ratio).unwrap()
}

#[test]
fn loss_outputs_and_every_gradient_match_pytorch() {
    let fx = fixture();
    let spec = spec(0.75, true);
    let (mae, varmap) = model(&fx, &spec);
    let m = masking(&fx, 0.75);
    let taps = EncoderTaps { attn_logits: vec![1], hidden: vec![0], reps: vec![] };
    let mut rng = rand::rngs::mock::StepRng::new(0, 0);
    let out = mae.forward(&fx["images"], &m, &taps, &mut rng).unwrap();

    assert!((scalar(&out.loss) - scalar(&fx["a.loss"])).abs() <= TOL, "loss {} vs {}", scalar(&out.loss), scalar(&fx["a.loss"]));
    assert_close("mask", &out.mask, &fx["a.mask"], 0.0);
    assert_close("pred", &out.pred, &fx["a.pred"], TOL);
    assert_close("latent", &out.encoder.latent, &fx["a.latent"], TOL);
    assert_eq!(out.encoder.attn_logits.len(), 1);
    assert_close("attn_logits.1", &out.encoder.attn_logits[0].1, &fx["a.attn_logits.1"], TOL);
    assert_close("hidden.0", &out.encoder.hidden[0].1, &fx["a.hidden.0"], TOL);

    let grads = out.loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let mut checked = 0;
    for (name, var) in data.iter() {
        let want = fx.get(&format!("grad.{name}"));
        let got = grads.get(var.as_tensor());
        match (want, got) {
            (Some(w), Some(g)) => {
                assert_close(&format!("grad {name}"), g, w, TOL);
                checked += 1;
            }
            // The fixed sin-cos tables have no gradient in either.
            (None, None) if name.ends_with("pos_embed") => {}
            (w, g) => panic!("{name}: reference gradient {}, ours {}", w.is_some(), g.is_some()),
        }
    }
    assert_eq!(checked, fx.keys().filter(|k| k.starts_with("grad.")).count());
}

#[test]
fn other_mask_ratio_and_plain_pixel_targets_match_pytorch() {
    let fx = fixture();
    let mut rng = rand::rngs::mock::StepRng::new(0, 0);
    // Ratio 0.6 on 16 patches keeps int(6.4) = 6.
    let (mae, _) = model(&fx, &spec(0.6, true));
    let m = masking(&fx, 0.6);
    assert_eq!(m.len_keep(), 6);
    let out = mae.forward(&fx["images"], &m, &EncoderTaps::default(), &mut rng).unwrap();
    assert_close("b.mask", &out.mask, &fx["b.mask"], 0.0);
    assert!((scalar(&out.loss) - scalar(&fx["b.loss"])).abs() <= TOL);

    let (mae, _) = model(&fx, &spec(0.75, false));
    let out = mae.forward(&fx["images"], &masking(&fx, 0.75), &EncoderTaps::default(), &mut rng).unwrap();
    assert!((scalar(&out.loss) - scalar(&fx["c.loss"])).abs() <= TOL, "{} vs {}", scalar(&out.loss), scalar(&fx["c.loss"]));
}
