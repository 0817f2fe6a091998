//! `vitdet bench vit`: images per second of ViT-Tiny at 224 px for
//! inference and for a full training step (forward, backward, AdamW), and
//! the peak resident memory of each phase. Mirrors `bench/torch_vit.py`, the
//! PyTorch side of the comparison in BENCHMARKS.md.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{build_param_groups, AdamW, AdamWConfig, DecayRule, Optimizer};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use anyhow::{anyhow, Result};
use backbone::config::VitConfig;
use backbone::vit::{ForwardOptions, Vit};

use engine::testing::random_images;

use crate::timing::{peak_rss_mb, reset_peak_rss, sync, time_iters};

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchVitOptions {
    /// Images per step.
    pub batch: usize,
    /// Timed iterations per phase (after one untimed warm-up).
    pub iters: usize,
    /// Model config (timm's `vit_tiny_patch16_224` with 12 heads by default).
    pub config: VitConfig,
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchVitResult {
    /// Model name.
    pub model: String,
    /// Device used.
    pub device: String,
    /// Worker threads.
    pub threads: usize,
    /// Batch size.
    pub batch: usize,
    /// Timed iterations per phase.
    pub iters: usize,
    /// Inference images per second.
    pub infer_img_s: f64,
    /// Training-step images per second.
    pub train_img_s: f64,
    /// Peak resident memory during inference, MiB (CPU only; 0 if unknown).
    pub infer_peak_rss_mb: f64,
    /// Peak resident memory during training, MiB (CPU only; 0 if unknown).
    pub train_peak_rss_mb: f64,
}

/// Runs both phases.
///
/// # Errors
/// Tensor or optimizer errors.
pub fn bench_vit(opts: &BenchVitOptions, device: &Device) -> Result<BenchVitResult> {
    let cfg = VitConfig { num_classes: 1000, ..opts.config.clone() };
    let varmap = VarMap::new();
    let model = Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    backbone::init::init_weights(&varmap, &cfg, 0)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let side = cfg.img_size;
    let x = random_images(opts.batch, side, &mut rng, device)?;
    let labels: Vec<u32> = (0..opts.batch).map(|_| rng.gen_range(0..1000)).collect();
    let labels = Tensor::from_vec(labels, opts.batch, device)?;

    // Inference on a copy built from plain tensors: candle records a graph
    // whenever an input is a variable, and inference should not pay for it.
    let frozen = {
        let named = engine::vars::named_vars(&varmap)?;
        let tensors = named.into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
        Vit::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, device))?
    };
    let eval = ForwardOptions::default();
    reset_peak_rss();
    let infer_s = time_iters(opts.iters, || {
        let out = frozen.forward(&x, &eval, &mut rng)?;
        sync(out.logits.as_ref().unwrap_or(&out.pooled))
    })?;
    let infer_peak = peak_rss_mb();

    let named = engine::vars::named_vars(&varmap)?;
    let groups = build_param_groups(&named, &model.param_rules(), 0.05, None, DecayRule::SkipOneDimBiasAndListed)?;
    let mut adamw = AdamW::new(groups, AdamWConfig::default())?;
    let train = ForwardOptions { train: true, ..Default::default() };
    reset_peak_rss();
    let train_s = time_iters(opts.iters, || {
        let out = model.forward(&x, &train, &mut rng)?;
        let logits = out.logits.as_ref().ok_or_else(|| anyhow!("bench model has no head"))?;
        let loss = candle_nn::loss::cross_entropy(logits, &labels)?;
        let grads = loss.backward()?;
        adamw.step(&grads, 1e-4)?;
        sync(&loss)
    })?;
    let train_peak = peak_rss_mb();

    let img = (opts.batch * opts.iters) as f64;
    Ok(BenchVitResult {
        model: format!("vit(dim {}, depth {}, heads {}) @{}", cfg.embed_dim, cfg.depth, cfg.num_heads, side),
        device: format!("{device:?}"),
        threads: candle_core::utils::get_num_threads(),
        batch: opts.batch,
        iters: opts.iters,
        infer_img_s: img / infer_s,
        train_img_s: img / train_s,
        infer_peak_rss_mb: infer_peak,
        train_peak_rss_mb: train_peak,
    })
}
