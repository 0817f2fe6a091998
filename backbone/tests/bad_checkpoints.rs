//! Checkpoints whose tensors have impossible shapes: every one is a one-line
//! error naming the file, the tensor and the shapes, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use backbone::import::{load_vit_as, read_checkpoint};
use backbone::VitConfig;
use candle_core::{DType, Device, Tensor};

/// The fixtures' architecture: a depth-2, 12-head ViT of width 48 at 32 px.
fn arch() -> VitConfig {
    VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() }
}

/// A good checkpoint's tensors, without config metadata (so shapes are read).
fn good_tensors() -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vit/vit_avg.safetensors");
    read_checkpoint(&path).unwrap().tensors.into_iter().collect()
}

/// Writes `tensors` with `name` replaced by `value`, and loads the file.
fn load_with(dir: &Path, name: &str, value: Tensor) -> String {
    let mut tensors = good_tensors();
    assert!(tensors.contains_key(name), "{name}");
    tensors.insert(name.to_string(), value);
    let path = dir.join(format!("{}.safetensors", name.replace('.', "_")));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = load_vit_as(&path, &arch(), "test", &Device::Cpu).err().expect("a bad shape must not load");
    assert!(err.is_user_error(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(path.to_str().unwrap()) && !msg.contains('\n'), "{msg}");
    msg
}

#[test]
fn impossible_shapes_are_one_line_errors_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    // A 1-D parameter stored with another rank.
    let msg = load_with(dir.path(), "fc_norm.weight", zeros(&[1, 48]));
    assert!(msg.contains("fc_norm.weight") && msg.contains("[48]") && msg.contains("[1, 48]"), "{msg}");
    // A 1-D parameter of the wrong length.
    let msg = load_with(dir.path(), "blocks.0.norm1.bias", zeros(&[30]));
    assert!(msg.contains("blocks.0.norm1.bias") && msg.contains("[30]"), "{msg}");
    // A position table with no token at all, and one of rank 1.
    let msg = load_with(dir.path(), "pos_embed", zeros(&[1, 0, 48]));
    assert!(msg.contains("pos_embed") && msg.contains("[1, 0, 48]"), "{msg}");
    let msg = load_with(dir.path(), "pos_embed", zeros(&[48]));
    assert!(msg.contains("pos_embed"), "{msg}");
    // A 0-D tensor where a matrix belongs.
    let msg = load_with(dir.path(), "blocks.0.mlp.fc1.weight", Tensor::new(1f32, &Device::Cpu).unwrap());
    assert!(msg.contains("blocks.0.mlp.fc1.weight"), "{msg}");
    // A position table whose grid is not square, and one of another width.
    let msg = load_with(dir.path(), "pos_embed", zeros(&[1, 8, 48]));
    assert!(msg.contains("pos_embed"), "{msg}");
    let msg = load_with(dir.path(), "pos_embed", zeros(&[1, 5, 40]));
    assert!(msg.contains("pos_embed"), "{msg}");
}
