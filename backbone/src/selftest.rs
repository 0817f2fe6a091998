//! The backbone's `vitdet selftest` cases ([`engine::selftest`]): a plain
//! ViT classifying (forward, cross-entropy, backward) and the ViTDet
//! backbone (window and global blocks with relative positions, the
//! position table resized to a larger grid; a probe loss on its feature
//! map), each two blocks of width 32 on two 32–48 px images, drop path on.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use engine::selftest::{build_on, probe_loss, Case, CaseResult, CaseRun, SEED};
use rand::SeedableRng;

use engine::testing::random_images;
use crate::config::{Pool, VitConfig, WindowedConfig};
use crate::vit::{ForwardOptions, Vit};
use crate::vitdet::VitDetBackbone;

/// Images per case.
const BATCH: usize = 2;

/// The backbone's cases: `vit`, `vitdet-backbone`.
pub fn cases() -> Vec<Case> {
    vec![Case { model: "vit", run: vit }, Case { model: "vitdet-backbone", run: vitdet_backbone }]
}

/// A ViT of 2 blocks, width 32, 2 heads, 8 px patches at 32 px (16
/// tokens), drop path 0.1: the smallest that has every part of ViT-Tiny.
pub fn tiny_vit() -> VitConfig {
    VitConfig { img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, drop_path_rate: 0.1, ..VitConfig::tiny() }
}

fn vit(device: &Device) -> CaseResult {
    let cfg = VitConfig { num_classes: 5, pool: Pool::Avg, ..tiny_vit() };
    let (varmap, model) = build_on(device, |vm, dev| {
        let model = Vit::new(&cfg, VarBuilder::from_varmap(vm, DType::F32, dev))?;
        crate::init::init_weights(vm, &cfg, SEED)?;
        Ok(model)
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let images = random_images(BATCH, cfg.img_size, &mut rng, device)?;
    let out = model.forward(&images, &ForwardOptions { train: true, ..Default::default() }, &mut rng)?;
    let logits = out.logits.ok_or("the selftest ViT has no head")?;
    let loss = engine::ops::cross_entropy(&logits, &[1, 3], 0.1)?;
    let grads = loss.backward()?;
    Ok(CaseRun::new(vec![("logits", logits), ("loss", loss)], &[("", &varmap)], &grads)?)
}

fn vitdet_backbone(device: &Device) -> CaseResult {
    let cfg = tiny_vit();
    // 48 px: a 6x6 grid, so the 4x4 position table is resized; block 0
    // attends in 3x3 windows, block 1 globally.
    let windowed = WindowedConfig { window_size: 3, window_block_indexes: vec![0], use_rel_pos: true, img_size: 48, drop_path_rate: 0.1 };
    let (varmap, model) = build_on(device, |vm, dev| {
        let model = VitDetBackbone::new(&cfg, &windowed, VarBuilder::from_varmap(vm, DType::F32, dev))?;
        crate::init::init_weights(vm, &cfg, SEED)?;
        Ok(model)
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let images = random_images(BATCH, windowed.img_size, &mut rng, device)?;
    let features: Tensor = model.forward(&images, true, &mut rng)?;
    let loss = probe_loss(&features, SEED)?;
    let grads = loss.backward()?;
    Ok(CaseRun::new(vec![("features", features), ("loss", loss)], &[("", &varmap)], &grads)?)
}
