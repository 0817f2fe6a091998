//! timm's evaluation transform against `timm.data.create_transform(size,
//! is_training=False, interpolation, crop_pct)` on the fixture images of
//! `fixtures/make_eval_fixtures.py`: the 8-bit crop identical, the
//! normalised floats within [`FLOAT_TOL`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{fixture, usizes};
use vision::decode::decode_upright;
use vision::eval_transform::{eval_transform, resize_and_crop, shorter_side_size, EvalTransform};
use vision::normalize::{to_chw_normalized, IMAGENET_MEAN, IMAGENET_STD};
use vision::resize::Filter;

/// Largest difference allowed between our floats and torch's: the same f32
/// operations run in the same order (with torch 2.15 the floats are
/// identical; the margin covers a torch that divides by 255 differently).
const FLOAT_TOL: f32 = 1e-6;

fn eval_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn torch_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(eval_dir().join("eval.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            (name, view.shape().to_vec(), values)
        })
        .collect()
}

fn assert_close(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= FLOAT_TOL, "{what}[{i}]: {a} vs torch {b}");
    }
}

#[test]
fn crops_and_floats_match_timm() {
    let data = fixture("eval/cases.json");
    let tensors = torch_tensors();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    let mut float_cases = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg = EvalTransform {
            size: case["size"].as_u64().unwrap() as usize,
            crop_pct: case["crop_pct"].as_f64().unwrap(),
            interpolation: serde_json::from_value::<Filter>(case["interpolation"].clone()).unwrap(),
            ..EvalTransform::default()
        };
        let img = decode_upright(&eval_dir().join(case["image"].as_str().unwrap())).unwrap();
        let resized = shorter_side_size(img.height, img.width, cfg.scale_size());
        assert_eq!(vec![resized.0, resized.1], usizes(&case["resized_hw"]), "{name}: resized size");
        let crop = resize_and_crop(&img, &cfg).unwrap();
        let want = decode_upright(&eval_dir().join(format!("crop_{name}.png"))).unwrap();
        assert_eq!((crop.height, crop.width), (want.height, want.width), "{name}");
        let differing = crop.data.iter().zip(&want.data).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{name}: {differing} of {} bytes differ from timm's crop", want.data.len());

        let pixels = eval_transform(&img, &cfg).unwrap();
        assert_eq!(pixels, to_chw_normalized(&crop, IMAGENET_MEAN, IMAGENET_STD), "{name}");
        if let Some((_, shape, theirs)) = tensors.iter().find(|(n, _, _)| *n == format!("pixels_{name}")) {
            assert_eq!(shape, &[3, cfg.size, cfg.size]);
            assert_close(name, &pixels, theirs);
            float_cases += 1;
        }
    }
    assert_eq!(float_cases, 6, "every case but the 224 px one has torch's floats");
}

#[test]
fn every_byte_normalises_as_torch_does() {
    let (_, shape, table) = torch_tensors().into_iter().find(|(n, _, _)| n == "imagenet_table").unwrap();
    assert_eq!(shape, [3, 256]);
    let ramp = vision::RgbImage { height: 1, width: 256, data: (0..=255u8).flat_map(|v| [v, v, v]).collect() };
    assert_close("imagenet_table", &to_chw_normalized(&ramp, IMAGENET_MEAN, IMAGENET_STD), &table);
}

#[test]
fn defaults_are_timms() {
    let data = fixture("eval/cases.json");
    let cfg = EvalTransform::default();
    assert_eq!((cfg.size, cfg.crop_pct, cfg.interpolation), (224, 0.875, Filter::Bicubic));
    let mean: Vec<f32> = common::f32s(&data["mean"]);
    let std: Vec<f32> = common::f32s(&data["std"]);
    assert_eq!((cfg.mean.to_vec(), cfg.std.to_vec()), (mean, std));
}
