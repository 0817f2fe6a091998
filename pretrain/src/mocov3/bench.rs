//! `vitdet bench mocov3`: one MoCo-v3 training step of the released model (ViT-Tiny with 12
//! heads, projector 192 → 4096 → 4096 → 256, predictor 256 → 4096 → 256),
//! as [`crate::mocov3::task`] runs it: the momentum encoder's EMA step,
//! queries of both views with their graph, keys of both views from the
//! momentum encoder, the symmetric loss, backward, AdamW (0.9, 0.999) with
//! weight decay 0.1 on every parameter. Two fixed random views stand in for
//! the data. Mirrors `bench/bench_mocov3.py` (moco-v3's `MoCo_ViT` built on
//! timm's `VisionTransformer`).
//!
//! Memory is the process's peak resident set size (Linux `VmHWM`, read
//! after the last step, never reset), runtime included, as a user of the
//! command sees it; the Python side reads its own the same way.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use engine::optim::{AdamW, Optimizer};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use backbone::bench::{peak_rss_mb, sync};

use super::{recipe, MocoV3, MocoV3Config};
use crate::Result;

/// The constant learning rate of the timed steps (its size does not change the work).
const LR: f64 = 1e-4;
/// The momentum of the timed steps' EMA (MoCo-v3's first value).
const MOMENTUM: f64 = 0.99;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchMocoV3Options {
    /// Images per step (each seen in two views).
    pub batch: usize,
    /// Timed steps (after one untimed warm-up step).
    pub iters: usize,
    /// Square input side in pixels (a multiple of 16).
    pub input_size: usize,
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchMocoV3Result {
    /// What ran.
    pub model: String,
    /// Device used.
    pub device: String,
    /// Compute threads.
    pub threads: usize,
    /// Images per step.
    pub batch: usize,
    /// Input side in pixels.
    pub input_size: usize,
    /// Timed steps.
    pub iters: usize,
    /// Images (not views) per second over the timed steps.
    pub train_img_s: f64,
    /// The process's peak resident memory, MiB (Linux only; 0 if unknown).
    pub peak_rss_mb: f64,
}

/// Runs the benchmark on `device`.
///
/// # Errors
/// A batch below 2 or an input size the ViT cannot take; tensor or
/// optimizer errors.
pub fn bench_mocov3(opts: &BenchMocoV3Options, device: &Device) -> Result<BenchMocoV3Result> {
    let cfg = MocoV3Config { vit: MocoV3Config::encoder_vit(&backbone::VitConfig::tiny(), opts.input_size), ..MocoV3Config::default() };
    let varmap = VarMap::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model = MocoV3::new(&cfg, &varmap, DType::F32, device, &mut rng)?;
    let mut adamw = AdamW::new(model.param_groups(recipe::WEIGHT_DECAY)?, recipe::adamw())?;

    let side = opts.input_size;
    let mut view = || -> Result<Tensor> {
        let pixels: Vec<f32> = (0..opts.batch * 3 * side * side).map(|_| rng.gen_range(-2.0..2.0)).collect();
        Ok(Tensor::from_vec(pixels, (opts.batch, 3, side, side), device)?)
    };
    let (x1, x2) = (view()?, view()?);
    let mut step_rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut step = || -> Result<()> {
        model.update_momentum(MOMENTUM)?;
        let loss = model.forward_loss(&x1, &x2, &mut step_rng)?.total()?;
        let grads = loss.backward()?;
        adamw.step(&grads, LR)?;
        sync(&loss)?;
        Ok(())
    };
    step()?;
    let start = Instant::now();
    for _ in 0..opts.iters {
        step()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let v = &cfg.vit;
    Ok(BenchMocoV3Result {
        model: format!("vitdet mocov3 vit(dim {}, depth {}, heads {}) projector/predictor {}/{} @{side}", v.embed_dim, v.depth, v.num_heads, cfg.mlp_dim, cfg.dim),
        device: format!("{device:?}"),
        threads: candle_core::utils::get_num_threads(),
        batch: opts.batch,
        input_size: side,
        iters: opts.iters,
        train_img_s: (opts.batch * opts.iters) as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
    })
}
