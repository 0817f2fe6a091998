//! Property tests of the checkpoint readers (issue 17): safetensors and
//! PyTorch `.pth` files of any bytes, mutated good files and generated
//! headers are read to a value or a typed error, never a panic, an abort or
//! an endless loop; a written ViT and a training checkpoint read back equal.
//!
//! Case counts are bounded (`CASES`) so the file runs in seconds; the `fuzz/`
//! crate at the repository root runs the same readers for longer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use backbone::import::{backbone_tensors, infer_config, load_vit_as, read_checkpoint, save_vit_tensors};
use backbone::VitConfig;
use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Cases per property: enough to reach the odd branches, few enough for CI.
const CASES: u32 = 48;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vit").join(name)
}

/// The fixtures' architecture: a depth-2, 12-head ViT of width 48 at 32 px.
fn arch() -> VitConfig {
    VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() }
}

/// Every reader of a checkpoint file on `path`: each returns (a value or an
/// error), none panics.
fn read_every_way(path: &Path) {
    if let Ok(raw) = read_checkpoint(path) {
        let (tensors, _) = backbone_tensors(raw.tensors);
        let _ = infer_config(&tensors, &arch(), "test", path);
    }
    if let Err(e) = load_vit_as(path, &arch(), "test", &Device::Cpu) {
        // One line, naming the file, as the CLI prints it.
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
    }
    let _ = engine::checkpoint::load_checkpoint(path, &Device::Cpu);
    let _ = engine::checkpoint::read_safetensors_metadata(path);
}

/// Writes `bytes` under `name` in a fresh temporary folder.
fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// The members of a `.pth` zip: (name, bytes), in order.
fn zip_members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().unwrap().to_string(), bytes)
        })
        .collect()
}

/// A zip (stored entries, as `torch.save` writes) of `members`.
fn zip_bytes(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in members {
            zip.start_file(name.as_str(), options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    out.into_inner()
}

/// Applies byte edits (position as a fraction of the length, new byte) and a
/// truncation to `bytes`.
fn mutate(bytes: &[u8], edits: &[(f64, u8)], keep: f64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(at, byte) in edits {
        if !out.is_empty() {
            let i = ((at * out.len() as f64) as usize).min(out.len() - 1);
            out[i] = byte;
        }
    }
    out.truncate((keep * out.len() as f64).ceil() as usize);
    out
}

/// Byte edits: mostly a few, anywhere.
fn edits() -> impl Strategy<Value = Vec<(f64, u8)>> {
    prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..6)
}

/// How much of a file to keep: usually all of it.
fn keep() -> impl Strategy<Value = f64> {
    prop_oneof![3 => Just(1.0), 1 => 0.0f64..1.0]
}

/// A tensor name a ViT checkpoint could hold (timm's, released prefixes,
/// ignored families, absurd block indices).
fn tensor_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "cls_token",
        "pos_embed",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.0.mlp.fc1.weight",
        "blocks.1.norm2.bias",
        "blocks.18446744073709551615.norm1.weight",
        "blocks.99999999.norm1.weight",
        "module.model.norm.weight",
        "fc_norm.weight",
        "head.weight",
        "decoder_embed.weight",
        "model.x",
        "optim.x",
    ])
    .prop_map(str::to_string)
}

/// A dimension: small, the fixture's width, or absurd.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0usize..5, 2 => Just(48), 1 => Just(16), 1 => Just(usize::MAX / 2)]
}

/// A safetensors dtype name, known or not.
fn dtype() -> impl Strategy<Value = (&'static str, usize)> {
    prop::sample::select(vec![("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("I64", 8), ("U8", 1), ("BOOL", 1), ("I8", 1), ("F8_E4M3", 1), ("Q4", 1)])
}

/// A `vitdet.vit_config` metadata value: a config with some fields absurd, or junk.
fn vit_config_json() -> impl Strategy<Value = String> {
    let size = || prop_oneof![4 => 0usize..5, 2 => Just(48), 1 => Just(16), 1 => Just(1usize << 40)];
    prop_oneof![
        (size(), size(), size(), size(), size()).prop_map(|(embed_dim, depth, num_heads, img_size, patch_size)| {
            let mut c = serde_json::to_value(arch()).unwrap();
            c["embed_dim"] = json!(embed_dim.max(12));
            c["depth"] = json!(depth);
            c["num_heads"] = json!(num_heads);
            c["img_size"] = json!(img_size);
            c["patch_size"] = json!(patch_size);
            c.to_string()
        }),
        Just(serde_json::to_string(&arch()).unwrap()),
        "[ -~]{0,20}",
    ]
}

/// One header entry: its name, dtype, shape, and whether its offsets are consistent.
type Entry = (String, (&'static str, usize), Vec<usize>, bool, (usize, usize));

/// A safetensors file from generated header entries and metadata: offsets
/// either consistent with the shapes (a readable file) or anything.
fn safetensors_file(entries: &[Entry], meta: Option<(String, String)>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, (dtype, size), shape, consistent, raw) in entries {
        let offsets = if *consistent {
            let len = shape.iter().try_fold(*size, |acc, d| acc.checked_mul(*d)).unwrap_or(usize::MAX).min(1 << 16);
            let span = (offset, offset + len);
            offset += len;
            span
        } else {
            *raw
        };
        header.insert(name.clone(), json!({"dtype": dtype, "shape": shape, "data_offsets": [offsets.0, offsets.1]}));
    }
    if let Some((key, value)) = meta {
        header.insert("__metadata__".into(), json!({ key: value }));
    }
    let header = Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..offset).map(|i| (i * 31 % 251) as u8));
    bytes
}

fn entry() -> impl Strategy<Value = Entry> {
    (tensor_name(), dtype(), prop::collection::vec(dim(), 0..5), any::<bool>(), (0usize..4096, 0usize..4096))
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512), ext in prop::sample::select(vec!["safetensors", "pth.tar"])) {
        let (_dir, path) = write(&format!("ck.{ext}"), &bytes);
        read_every_way(&path);
    }

    #[test]
    fn mutated_safetensors_are_read_or_refused(edits in edits(), keep in keep(), in_header in any::<bool>()) {
        let good = std::fs::read(fixture("vit_avg_io.safetensors")).unwrap();
        // Edits in the header (its first kilobyte) reach the parser; others the data.
        let edits: Vec<(f64, u8)> = edits.iter().map(|&(at, b)| (if in_header { at * 1024.0 / good.len() as f64 } else { at }, b)).collect();
        let (_dir, path) = write("ck.safetensors", &mutate(&good, &edits, keep));
        read_every_way(&path);
    }

    #[test]
    fn generated_safetensors_headers_are_read_or_refused(
        entries in prop::collection::vec(entry(), 0..6),
        meta in prop::option::of((prop::sample::select(vec![backbone::import::CONFIG_KEY, engine::checkpoint::FORMAT_KEY, engine::checkpoint::TRAIN_STATE_KEY]), vit_config_json())),
    ) {
        let meta = meta.map(|(k, v)| (k.to_string(), if k == engine::checkpoint::FORMAT_KEY { engine::checkpoint::FORMAT.to_string() } else { v }));
        let (_dir, path) = write("ck.safetensors", &safetensors_file(&entries, meta));
        read_every_way(&path);
    }

    #[test]
    fn pth_files_with_mutated_pickles_are_read_or_refused(edits in edits(), keep in keep(), member in 0usize..3) {
        let mut members = zip_members(&fixture("vit_cls.pth.tar"));
        // data.pkl (the pickle), a storage, or the byte-order record.
        let index = [0, 4, 3][member].min(members.len() - 1);
        members[index].1 = mutate(&members[index].1, &edits, keep);
        let (_dir, path) = write("ck.pth.tar", &zip_bytes(&members));
        read_every_way(&path);
    }

    #[test]
    fn written_vits_read_back_equal(scale in -4.0f64..4.0) {
        let good = read_checkpoint(&fixture("vit_avg.safetensors")).unwrap().tensors;
        let tensors: Vec<(String, Tensor)> = good.iter().map(|(n, t)| (n.clone(), t.affine(scale, 0.0).unwrap())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vit.safetensors");
        save_vit_tensors(tensors.clone(), &arch(), &path).unwrap();
        let back = read_checkpoint(&path).unwrap();
        prop_assert_eq!(back.config.as_ref(), Some(&arch()));
        prop_assert_eq!(back.tensors.len(), tensors.len());
        for ((n, t), (m, u)) in back.tensors.iter().zip(&tensors) {
            prop_assert_eq!(n, m);
            let same = t.eq(u).unwrap().to_dtype(DType::F32).unwrap().min_all().unwrap().to_scalar::<f32>().unwrap();
            prop_assert_eq!(same, 1.0, "{}", n);
        }
        load_vit_as(&path, &arch(), "test", &Device::Cpu).unwrap();
    }
}

#[test]
fn good_files_load() {
    for name in ["vit_avg.safetensors", "vit_cls.pth.tar"] {
        load_vit_as(&fixture(name), &arch(), "test", &Device::Cpu).unwrap();
    }
    // The zip rewrite of the tests above keeps a good file good.
    let (_dir, path) = write("ck.pth.tar", &zip_bytes(&zip_members(&fixture("vit_cls.pth.tar"))));
    load_vit_as(&path, &arch(), "test", &Device::Cpu).unwrap();
}

/// Found by `generated_safetensors_headers_are_read_or_refused`'s metadata:
/// a config of 10^14 parameters aborted the process in the allocator.
#[test]
fn metadata_config_of_an_absurd_size_is_refused() {
    let good = read_checkpoint(&fixture("vit_avg.safetensors")).unwrap().tensors;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vit.safetensors");
    // Written as a hostile or corrupt header would say it (save_vit_tensors does not check).
    let cfg = VitConfig { embed_dim: 3 << 20, ..arch() };
    save_vit_tensors(good, &cfg, &path).unwrap();
    let err = load_vit_as(&path, &arch(), "test", &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("parameters") && err.contains(path.to_str().unwrap()) && !err.contains('\n'), "{err}");
}
