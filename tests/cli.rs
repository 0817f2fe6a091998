//! End-to-end tests of the `vitdet` binary: help texts, conversions, feature
//! extraction against the timm reference, and user errors (one line, exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use backbone::import::{load_vit_as, save_vit};
use backbone::VitConfig;
use candle_core::{Device, Tensor};

mod common;
use common::{assert_user_error, stderr, stdout, vitdet};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit").join(name)
}

/// The fixture ViT (width 48, 12 heads) converted to a vitdet file with its config.
fn imported_fixture(dir: &Path, name: &str) -> PathBuf {
    let arch = VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() };
    let loaded = load_vit_as(&fixture(&format!("{name}.pth.tar")), &arch, "test", &Device::Cpu).unwrap();
    let out = dir.join(format!("{name}.safetensors"));
    save_vit(&loaded.varmap, &loaded.config, &out).unwrap();
    out
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        vec!["import"],
        vec!["features"],
        vec!["classify"],
        vec!["bench", "vit"],
        vec!["bench", "vitdet"],
        vec!["bench", "convs"],
        vec!["bench", "coco"],
        vec!["train"],
        vec!["predict"],
        vec!["demo"],
        vec!["eval", "coco"],
        vec!["data", "shapes"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let o = vitdet(&args);
        assert!(o.status.success(), "{cmd:?} --help");
        assert!(stdout(&o).contains("Example"), "{cmd:?} --help has an example:\n{}", stdout(&o));
    }
}

#[test]
fn features_from_pixels_match_timm() {
    let dir = tempfile::tempdir().unwrap();
    let weights = imported_fixture(dir.path(), "vit_cls");
    let refs = candle_core::safetensors::load(fixture("vit_cls_io.safetensors"), &Device::Cpu).unwrap();
    let pixels = dir.path().join("x.safetensors");
    candle_core::safetensors::save(&std::collections::HashMap::from([("pixels".to_string(), refs["input"].clone())]), &pixels).unwrap();
    let out = dir.path().join("f.safetensors");
    let o = vitdet(&["features", "--weights", weights.to_str().unwrap(), "--pixels", pixels.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let mut keys: Vec<&String> = got.keys().collect();
    keys.sort();
    assert_eq!(keys, ["block.0", "block.1", "logits", "norm", "pooled"]);
    for (ours, theirs) in [("block.0", "block.0"), ("block.1", "block.1"), ("norm", "tokens"), ("logits", "logits")] {
        let diff = (&got[ours] - &refs[theirs]).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
        let scale = refs[theirs].abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
        assert!(diff / scale < 1e-4, "{ours}: {diff} / {scale}");
    }
}

#[test]
fn classify_prints_the_top_classes() {
    let dir = tempfile::tempdir().unwrap();
    let weights = imported_fixture(dir.path(), "vit_avg");
    let img = dir.path().join("img.png");
    image::RgbImage::from_fn(40, 50, |x, y| image::Rgb([(x * 6) as u8, (y * 5) as u8, 90])).save(&img).unwrap();
    let o = vitdet(&["classify", "--weights", weights.to_str().unwrap(), "--image", img.to_str().unwrap(), "--topk", "3", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let probs: Vec<f64> = top.iter().map(|p| p["prob"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().all(|p| *p > 0.0 && *p <= 1.0), "{probs:?}");
}

#[test]
fn import_converts_a_released_style_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("conv.safetensors");
    // The fixture is 48 wide; `--arch tiny` is 192 wide: the error says so and what to do.
    let o = vitdet(&["import", "--from", fixture("vit_avg.pth.tar").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_user_error(&o, "embed_dim 48");
    assert!(!out.exists(), "nothing is written on error");
}

#[test]
fn user_errors_exit_2_with_one_line() {
    let missing = vitdet(&["import", "--from", "/no/such/file.pth.tar"]);
    assert_user_error(&missing, "/no/such/file.pth.tar");

    let not_a_checkpoint = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_checkpoint.path(), b"hello").unwrap();
    let o = vitdet(&["import", "--from", not_a_checkpoint.path().to_str().unwrap()]);
    assert_user_error(&o, &not_a_checkpoint.path().display().to_string());

    let o = vitdet(&["features", "--weights", "distilled_mae_tiny", "--pixels", "x.safetensors", "--out", "f.safetensors"]);
    assert_user_error(&o, "x.safetensors: No such file");
    assert_eq!(stderr(&o).matches("No such file").count(), 1, "the cause is named once: {}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let pixels = dir.path().join("x.safetensors");
    let x = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("pixels".to_string(), x)]), &pixels).unwrap();
    let o = vitdet(&["features", "--weights", "distilled_mae_tiny", "--pixels", pixels.to_str().unwrap(), "--out", "f.safetensors"]);
    assert_user_error(&o, "mae_tiny_distill_400e.pth.tar");

    let o = vitdet(&["bench", "vit", "--device", "cuda"]);
    if !cfg!(feature = "cuda") {
        assert_user_error(&o, "cuda");
    }
    let o = vitdet(&["bench", "vit", "--device", "tpu"]);
    assert_user_error(&o, "tpu");

    // Sizes and paths that used to give misleading messages or aborts.
    let out = dir.path().join("run");
    let o = vitdet(&["train", "--max-iter", "18446744073709551615", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("expected a number of steps from 1 to"), "{}", stderr(&o));
    for (setting, key) in [("batch_size = 0", "train.batch_size: must be at least 1"), ("batch_size = 100000", "split it with train.grad_accum")] {
        let recipe = dir.path().join("recipe.toml");
        std::fs::write(&recipe, format!("[train]\n{setting}\n")).unwrap();
        assert_user_error(&vitdet(&["train", "--config", recipe.to_str().unwrap(), "--out", out.to_str().unwrap()]), key);
    }
    assert_user_error(&vitdet(&["bench", "coco", "--images", "100000000"]), "--images 100000000 is more than");
    let nowhere = dir.path().join("no/such/folder/f.safetensors");
    let o = vitdet(&["features", "--weights", "distilled_mae_tiny", "--pixels", pixels.to_str().unwrap(), "--out", nowhere.to_str().unwrap()]);
    assert_user_error(&o, "no/such/folder does not exist");
    assert!(!stderr(&o).contains("f.safetensors.tmp"), "{}", stderr(&o));

    // --images skips an unreadable file, counts it and keeps the rest.
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::new(40, 30).save(images.join("a.png")).unwrap();
    std::fs::write(images.join("b.jpg"), b"not a jpeg").unwrap();
    let model = imported_fixture(dir.path(), "vit_avg");
    let feats = dir.path().join("feats.safetensors");
    let o = vitdet(&["features", "--weights", model.to_str().unwrap(), "--images", images.to_str().unwrap(), "--out", feats.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped: 1 image load(s)") && stderr(&o).contains("b.jpg"), "{}", stderr(&o));
    let meta = engine::checkpoint::read_safetensors_metadata(&feats).unwrap();
    assert!(meta["images"].contains("a.png") && !meta["images"].contains("b.jpg"), "{meta:?}");
    // --pixels with no image is refused (Python's safetensors cannot read the file it would make).
    let empty = dir.path().join("empty.safetensors");
    let none = Tensor::zeros((0, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("pixels".to_string(), none)]), &empty).unwrap();
    assert_user_error(&vitdet(&["features", "--weights", model.to_str().unwrap(), "--pixels", empty.to_str().unwrap(), "--out", feats.to_str().unwrap()]), "N = 0");

    let o = vitdet(&["import", "--bogus-flag"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--bogus-flag"));
}

#[test]
fn pixels_that_do_not_tile_into_patches_are_a_user_error() {
    let dir = tempfile::tempdir().unwrap();
    let weights = imported_fixture(dir.path(), "vit_cls");
    let pixels = dir.path().join("x.safetensors");
    let x = Tensor::zeros((1, 3, 40, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("pixels".to_string(), x)]), &pixels).unwrap();
    let o = vitdet(&["features", "--weights", weights.to_str().unwrap(), "--pixels", pixels.to_str().unwrap(), "--out", "/tmp/unused.safetensors"]);
    assert_user_error(&o, "multiple of the patch size 16");
}

#[test]
fn pixels_of_the_wrong_shape_are_a_user_error() {
    let dir = tempfile::tempdir().unwrap();
    let weights = imported_fixture(dir.path(), "vit_cls");
    let pixels = dir.path().join("x.safetensors");
    let bad = Tensor::zeros((2, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("pixels".to_string(), bad)]), &pixels).unwrap();
    let o = vitdet(&["features", "--weights", weights.to_str().unwrap(), "--pixels", pixels.to_str().unwrap(), "--out", "/tmp/unused.safetensors"]);
    assert_user_error(&o, "N x 3 x H x W");
}
