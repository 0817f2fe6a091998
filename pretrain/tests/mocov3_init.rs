//! MoCo-v3's initialisation (moco-v3 `vits.py` and `moco/builder.py`):
//! every variable's distribution, the fixed position table, and
//! reproducibility from the seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use pretrain::mocov3::init::mocov3_sincos_2d;
use pretrain::mocov3::{MocoV3, MocoV3Config};
use rand::SeedableRng;

/// Width 48, 2 blocks, MLP hidden 256 and output 64: tensors large enough
/// for the sample statistics below.
fn config() -> MocoV3Config {
    let vit = backbone::VitConfig { img_size: 32, patch_size: 8, embed_dim: 48, depth: 2, num_heads: 12, ..MocoV3Config::tiny_vit() };
    MocoV3Config { vit, mlp_dim: 256, dim: 64, ..MocoV3Config::default() }
}

fn build(seed: u64) -> MocoV3 {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    MocoV3::new(&config(), &VarMap::new(), DType::F32, &Device::Cpu, &mut rng).unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Values within ±bound, their largest close to it, and the standard
/// deviation of U(±bound), bound/√3, within 10%.
fn assert_uniform(name: &str, v: &[f64], bound: f64) {
    let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
    assert!(max <= bound, "{name}: |value| {max} beyond the bound {bound}");
    assert!(max > 0.95 * bound, "{name}: largest |value| {max} far below the bound {bound}");
    let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let want = bound / 3f64.sqrt();
    assert!((std / want - 1.0).abs() < 0.1, "{name}: std {std}, U(±{bound}) has {want}");
}

#[test]
fn every_variable_follows_its_mocov3_rule() {
    let cfg = config();
    let moco = build(1);
    let (d, p, hidden, out) = (48.0f64, 8.0f64, 256.0f64, 64.0f64);
    let mut seen = 0;
    for (name, var) in moco.variables().unwrap() {
        let v = vals(var.as_tensor());
        seen += 1;
        match name.as_str() {
            "cls_token" => {
                let std = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
                assert!(std > 0.6e-6 && std < 1.4e-6, "cls_token std {std}, want 1e-6");
            }
            "pos_embed" => {
                let table = mocov3_sincos_2d(cfg.vit.embed_dim, cfg.vit.grid_size(), &Device::Cpu).unwrap();
                assert_eq!(v, vals(&table));
            }
            "patch_embed.proj.weight" => assert_uniform(&name, &v, (6.0 / (3.0 * p * p + d)).sqrt()),
            n if n.ends_with(".attn.qkv.weight") => assert_uniform(n, &v, (6.0 / (3.0 * d / 3.0 + d)).sqrt()),
            n if n.ends_with(".attn.proj.weight") => assert_uniform(n, &v, (6.0 / (d + d)).sqrt()),
            n if n.ends_with(".mlp.fc1.weight") || n.ends_with(".mlp.fc2.weight") => assert_uniform(n, &v, (6.0 / (d + 4.0 * d)).sqrt()),
            // PyTorch's default Linear init: U(±1/√fan_in).
            "head.0.weight" => assert_uniform(&name, &v, 1.0 / d.sqrt()),
            "head.3.weight" | "predictor.3.weight" => assert_uniform(&name, &v, 1.0 / hidden.sqrt()),
            "head.6.weight" => assert_uniform(&name, &v, 1.0 / hidden.sqrt()),
            "predictor.0.weight" => assert_uniform(&name, &v, 1.0 / out.sqrt()),
            n if n.ends_with(".bias") || n.ends_with(".running_mean") => assert!(v.iter().all(|x| *x == 0.0), "{n} must be 0"),
            n if n.ends_with(".weight") || n.ends_with(".running_var") => {
                assert_eq!(var.rank(), 1, "{n}");
                assert!(v.iter().all(|x| *x == 1.0), "{n} must be 1");
            }
            other => panic!("no expectation for {other}"),
        }
    }
    // 4 stem + 2 x 12 per block + 2 norm + projector (3 linear + 2 x 4 + 2) + predictor (2 linear + 4 + 2).
    assert_eq!(seen, 4 + 2 * 12 + 2 + (3 + 8 + 2) + (2 + 4 + 2));
}

#[test]
fn head_and_predictor_layers_have_the_released_shapes() {
    let moco = build(1);
    let shape = |n: &str| moco.variables().unwrap().into_iter().find(|(m, _)| m == n).unwrap().1.dims().to_vec();
    assert_eq!(shape("head.0.weight"), [256, 48]);
    assert_eq!(shape("head.1.weight"), [256]);
    assert_eq!(shape("head.3.weight"), [256, 256]);
    assert_eq!(shape("head.6.weight"), [64, 256]);
    assert_eq!(shape("head.7.running_var"), [64]);
    assert_eq!(shape("predictor.0.weight"), [256, 64]);
    assert_eq!(shape("predictor.3.weight"), [64, 256]);
    let names: Vec<String> = moco.variables().unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n == "head.7.weight" || n == "predictor.4.bias"), "the last BatchNorms have no affine parameters");
    let linear_biases = ["head.0.bias", "head.3.bias", "head.6.bias", "predictor.0.bias", "predictor.3.bias"];
    assert!(!names.iter().any(|n| linear_biases.contains(&n.as_str())), "the MLPs' linear layers have no bias");
}

#[test]
fn the_seed_fixes_the_model() {
    let a: Vec<Vec<f64>> = build(11).variables().unwrap().iter().map(|(_, v)| vals(v.as_tensor())).collect();
    let b: Vec<Vec<f64>> = build(11).variables().unwrap().iter().map(|(_, v)| vals(v.as_tensor())).collect();
    let c: Vec<Vec<f64>> = build(12).variables().unwrap().iter().map(|(_, v)| vals(v.as_tensor())).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}
