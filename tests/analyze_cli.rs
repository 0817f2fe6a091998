//! End-to-end tests of `vitdet analyze`: the three analyses on a small
//! imported ViT and the synthetic images (JSON keys and settings, PNGs,
//! stdout listing the files) and user mistakes (exit 2, one line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use backbone::import::{load_vit_as, save_vit};
use backbone::VitConfig;
use candle_core::Device;

mod common;
use common::{assert_ok, assert_user_error, path, text, vitdet};

/// The fixture ViT (width 48, 12 heads, 32 px) as a vitdet file with its config.
fn imported(dir: &Path, name: &str) -> PathBuf {
    let arch = VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() };
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit").join(format!("{name}.pth.tar"));
    let loaded = load_vit_as(&source, &arch, "test", &Device::Cpu).unwrap();
    let out = dir.join(format!("{name}.safetensors"));
    save_vit(&loaded.varmap, &loaded.config, &out).unwrap();
    out
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn analyze_help_has_examples() {
    for sub in ["cka", "attention", "fourier"] {
        let o = vitdet(&["analyze", sub, "--help"]);
        assert_ok(&o);
        assert!(text(&o.stdout).contains("Example"), "{sub}: {}", text(&o.stdout));
    }
    assert!(text(&vitdet(&["bench", "cka", "--help"]).stdout).contains("Example"));
}

#[test]
fn user_mistakes_exit_two_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_user_error(&vitdet(&["analyze", "cka", "--a", "x.pth", "--b", "y.pth", "--batch", "3", "--out", path(&out)]), "--batch");
    assert_user_error(&vitdet(&["analyze", "attention", "--weights", "missing.safetensors", "--out", path(&out)]), "missing.safetensors");
    assert_user_error(&vitdet(&["analyze", "fourier", "--weights", "x", "--images", path(&dir.path().join("nowhere")), "--out", path(&out)]), "nowhere");
    let model = imported(dir.path(), "vit_cls");
    assert_user_error(&vitdet(&["analyze", "cka", "--a", path(&model), "--b", path(&model), "--max-images", "6", "--batch", "8", "--out", path(&out)]), "--batch");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_user_error(&vitdet(&["analyze", "fourier", "--weights", path(&model), "--out", path(&file)]), "--out");
}

#[test]
fn the_three_analyses_write_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (cls, avg) = (imported(dir.path(), "vit_cls"), imported(dir.path(), "vit_avg"));
    let out = dir.path().join("out");
    let a = format!("CLS={}", path(&cls));
    let o = vitdet(&["analyze", "cka", "--a", &a, "--b", &a, "--b", path(&avg), "--max-images", "10", "--batch", "4", "--out", path(&out)]);
    assert_ok(&o);
    let cka = json(&out.join("cka.json"));
    assert_eq!((cka["batch"].as_u64(), cka["minibatches"].as_u64(), cka["images"]["dropped"].as_u64()), (Some(4), Some(2), Some(2)));
    assert_eq!(cka["a"]["label"], "CLS");
    assert_eq!(cka["pairs"][1]["b"]["label"], "vit_avg");
    let diag = cka["pairs"][0]["diagonal"].as_array().unwrap();
    assert_eq!(diag.len(), 3);
    assert!(diag.iter().all(|v| (v.as_f64().unwrap() - 1.0).abs() < 1e-9), "{diag:?}");
    let listed = text(&o.stdout);
    for name in ["cka.json", "cka_0_CLS_vs_CLS.png", "cka_1_CLS_vs_vit_avg.png", "cka_diagonal.png"] {
        assert!(out.join(name).is_file() && listed.contains(name), "{name}: {listed}");
    }

    let o = vitdet(&["analyze", "attention", "--weights", path(&cls), "--weights", path(&avg), "--max-images", "3", "--released", "--out", path(&out)]);
    assert_ok(&o);
    let att = json(&out.join("attention.json"));
    assert_eq!((att["distance_unit"].as_str(), att["distance_scale"].as_f64(), att["entropy_eps"].as_f64()), (Some("released"), Some(14.0), Some(1e-6)));
    assert_eq!(att["models"][0]["entropy"].as_array().unwrap().len(), 2);
    assert_eq!(att["models"][0]["entropy"][0].as_array().unwrap().len(), 12);
    assert!(out.join("attention_distance.png").is_file() && out.join("attention_entropy.png").is_file());

    let o = vitdet(&["analyze", "fourier", "--weights", path(&cls), "--max-images", "3", "--out", path(&out)]);
    assert_ok(&o);
    let four = json(&out.join("fourier.json"));
    assert_eq!(four["models"][0]["points"].as_array().unwrap().len(), 5);
    assert!(four["models"][0]["points"][0]["delta"].as_f64().is_some());
    assert!(out.join("fourier.png").is_file());
}
