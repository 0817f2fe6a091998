//! `vitdet bench vit`: images per second of ViT-Tiny at 224 px for
//! inference and for a full training step (forward, backward, AdamW), and
//! the peak resident memory of each phase. Mirrors `bench/torch_vit.py`, the
//! PyTorch side of the comparison in BENCHMARKS.md.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{build_param_groups, AdamW, AdamWConfig, DecayRule, Optimizer};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::VitConfig;
use crate::vit::{ForwardOptions, Vit};

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
pub fn bench_vit(opts: &BenchVitOptions, device: &Device) -> crate::Result<BenchVitResult> {
    let cfg = VitConfig { num_classes: 1000, ..opts.config.clone() };
    let varmap = VarMap::new();
    let model = Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    crate::init::init_weights(&varmap, &cfg, 0)?;
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
        let logits = out.logits.as_ref().ok_or_else(|| crate::Error::Config("bench model has no head".into()))?;
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

/// Runs `step` once untimed, then `iters` (at least 1) times; returns the
/// timed seconds. Generic over the error so that every crate's benchmarks
/// share this one loop.
///
/// # Errors
/// The first error `step` returns.
pub fn time_iters<E>(iters: usize, mut step: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    step()?;
    let start = Instant::now();
    for _ in 0..iters.max(1) {
        step()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// A batch of `batch` random RGB images (B, 3, `side`, `side`), values
/// uniform in [-2, 2) (about the range of normalised pixels), drawn from
/// `rng` in row-major order: the benchmarks' stand-in for data.
///
/// # Errors
/// The tensor cannot be created on `device`.
pub fn random_images(batch: usize, side: usize, rng: &mut impl Rng, device: &Device) -> crate::Result<Tensor> {
    let pixels: Vec<f32> = (0..batch * 3 * side * side).map(|_| rng.gen_range(-2.0..2.0)).collect();
    Ok(Tensor::from_vec(pixels, (batch, 3, side, side), device)?)
}

/// Waits for the device by reading one value back.
pub fn sync(t: &Tensor) -> crate::Result<()> {
    t.flatten_all()?.get(0)?.to_dtype(DType::F32)?.to_vec0::<f32>()?;
    Ok(())
}

/// Resets the kernel's peak-RSS counter (Linux: "5" to /proc/self/clear_refs).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}
