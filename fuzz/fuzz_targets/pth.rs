//! The PyTorch `.pth` importer (zip pickle through candle's reader, the
//! `model` / `state_dict` keys, the ViT build and load). Any bytes give a
//! value or a one-line error. Seed the corpus with a real file (see
//! README.md) so the fuzzer starts inside the zip and the pickle.
#![no_main]

use backbone::import::load_vit_as;
use backbone::VitConfig;
use candle_core::Device;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("checkpoint.pth.tar");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let arch = VitConfig { embed_dim: 48, num_heads: 12, depth: 2, img_size: 32, ..VitConfig::tiny() };
    if let Err(e) = load_vit_as(&path, &arch, "test", &Device::Cpu) {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
});
