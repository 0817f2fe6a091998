//! Every reader of a safetensors checkpoint: the backbone importer (tensors,
//! metadata config, ViT build and load), the training-checkpoint reader and
//! the header-only metadata reader. Any bytes give a value or a one-line
//! error, never a panic or an allocator abort.
#![no_main]

use backbone::import::load_vit_as;
use backbone::VitConfig;
use candle_core::Device;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("checkpoint.safetensors");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let arch = VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() };
    if let Err(e) = load_vit_as(&path, &arch, "test", &Device::Cpu) {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let _ = engine::checkpoint::load_checkpoint(&path, &Device::Cpu);
    let _ = engine::checkpoint::read_safetensors_metadata(&path);
});
