//! The model file `vitdet pretrain` writes is read as it is by every ViT
//! loader: `backbone::import::load_vit` (`vitdet features`) and
//! `backbone::load_vitdet_backbone` (`vitdet train --backbone FILE`) get the
//! encoder's exact values and drop the decoder; `pretrain::weights::load`
//! rebuilds the whole autoencoder. (`vitdet finetune --backbone FILE` is
//! checked end to end in `tests/pretrain_cli.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use backbone::named::WeightSearch;
use backbone::vitdet::{BackboneInit, BackboneWeights};
use backbone::{VitConfig, WindowedConfig};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use pretrain::encoder::EncoderTaps;
use pretrain::mae::{DecoderConfig, MaeSpec};
use pretrain::masking::Masking;

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn the_model_file_loads_in_every_vit_loader() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    let arch = VitConfig { depth: 2, ..VitConfig::tiny() };
    let spec = MaeSpec::new(&arch, 64, DecoderConfig::default(), 0.75, true);
    let varmap = VarMap::new();
    let mae = pretrain::task::build_mae(&spec, 3, &varmap, &Device::Cpu).unwrap();
    let named = engine::vars::named_vars(&varmap).unwrap();
    pretrain::weights::save(&file, &engine::checkpoint::var_tensors(&named), &spec).unwrap();
    let ours: HashMap<String, Vec<f32>> = named.iter().map(|(n, v)| (n.clone(), values(v.as_tensor()))).collect();

    // vitdet features: the encoder, its config from the metadata, the decoder ignored.
    let loaded = backbone::import::load_vit(&file, "tiny", &Device::Cpu).unwrap();
    assert_eq!(loaded.config, spec.encoder);
    assert_eq!((loaded.report.loaded, loaded.report.ignored), (4 + 2 * 12 + 2, 20), "{}", loaded.report);
    assert!(loaded.report.missing.is_empty() && loaded.report.unexpected.is_empty(), "{}", loaded.report);
    for (name, var) in engine::vars::named_vars(&loaded.varmap).unwrap() {
        assert_eq!(values(var.as_tensor()), ours[&name], "{name}");
    }

    // vitdet train --backbone FILE: the ViTDet backbone takes the blocks and patch embedding as they are.
    let det_vars = VarMap::new();
    let tiny = VitConfig::tiny();
    let weights = BackboneWeights { spec: file.to_str().unwrap(), arch_name: "tiny", arch: &tiny, search: &WeightSearch::default(), seed: 0 };
    let det = backbone::load_vitdet_backbone(&weights, &WindowedConfig { window_block_indexes: vec![0], ..WindowedConfig::default() }, &det_vars, "backbone.net", &Device::Cpu).unwrap();
    let BackboneInit::Checkpoint { report, .. } = det.init else { panic!("loaded from scratch") };
    assert_eq!(report.ignored, 20);
    assert!(report.unexpected.iter().all(|n| n == "cls_token" || n.starts_with("norm.")), "{report}");
    assert!(report.resized.iter().any(|(n, _, _)| n == "pos_embed"), "the 4x4 table is resized to the detector's grid: {report}");
    let data = det_vars.data().lock().unwrap();
    for name in ["blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "patch_embed.proj.weight"] {
        assert_eq!(values(data[&format!("backbone.net.{name}")].as_tensor()), ours[name], "{name}");
    }
    drop(data);

    // The autoencoder itself comes back whole: same predictions.
    let back = pretrain::weights::load(&file, &Device::Cpu).unwrap();
    assert_eq!(back.spec(), &spec);
    let images = engine::testing::random_tensor(&[2, 3, 64, 64], 5).to_dtype(candle_core::DType::F32).unwrap();
    let masking = Masking::random(2, 16, 0.75, &mut engine::rng::TrainRng::seed_from_u64(1)).unwrap();
    let mut no_rng = rand::rngs::mock::StepRng::new(0, 0);
    let a = mae.forward(&images, &masking, &EncoderTaps::default(), &mut no_rng).unwrap();
    let b = back.forward(&images, &masking, &EncoderTaps::default(), &mut no_rng).unwrap();
    assert_eq!(values(&a.pred), values(&b.pred));
}
