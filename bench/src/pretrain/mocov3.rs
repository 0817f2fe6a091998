//! `vitdet bench mocov3`: one MoCo-v3 training step of the released model (ViT-Tiny with 12
//! heads, projector 192 → 4096 → 4096 → 256, predictor 256 → 4096 → 256),
//! as [`pretrain::mocov3::task`] runs it: the momentum encoder's EMA step,
//! queries of both views with their graph, keys of both views from the
//! momentum encoder, the symmetric loss, backward, AdamW (0.9, 0.999) with
//! weight decay 0.1 on every parameter. Two fixed random views stand in for
//! the data. Mirrors `bench/bench_mocov3.py` (moco-v3's `MoCo_ViT` built on
//! timm's `VisionTransformer`). Timing and memory as [`super`] says.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use engine::optim::{AdamW, Optimizer};
use rand::SeedableRng;


use pretrain::mocov3::{recipe, MocoV3, MocoV3Config};
use super::{time_train_steps, StepBenchOptions, StepBenchResult, LR};
use anyhow::Result;
use engine::testing::random_images;

/// The momentum of the timed steps' EMA (MoCo-v3's first value).
const MOMENTUM: f64 = 0.99;

/// Runs the benchmark on `device` (each of the `opts.batch` images in two views).
///
/// # Errors
/// A batch below 2 or an input size the ViT cannot take; tensor or
/// optimizer errors.
pub fn bench_mocov3(opts: &StepBenchOptions, device: &Device) -> Result<StepBenchResult> {
    let cfg = MocoV3Config { vit: MocoV3Config::encoder_vit(&backbone::VitConfig::tiny(), opts.input_size), ..MocoV3Config::default() };
    let varmap = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = MocoV3::new(&cfg, &varmap, DType::F32, device, &mut rng)?;
    let mut adamw = AdamW::new(model.param_groups(recipe::WEIGHT_DECAY)?, recipe::adamw())?;

    let x1 = random_images(opts.batch, opts.input_size, &mut rng, device)?;
    let x2 = random_images(opts.batch, opts.input_size, &mut rng, device)?;
    let mut step_rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let v = &cfg.vit;
    let name = format!("vitdet mocov3 vit(dim {}, depth {}, heads {}) projector/predictor {}/{} @{}", v.embed_dim, v.depth, v.num_heads, cfg.mlp_dim, cfg.dim, opts.input_size);
    time_train_steps(opts, name, device, || {
        model.update_momentum(MOMENTUM)?;
        let loss = model.forward_loss(&x1, &x2, &mut step_rng)?.total()?;
        adamw.step(&loss.backward()?, LR)?;
        Ok(loss)
    })
}
