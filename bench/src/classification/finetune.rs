//! One fine-tuning step of the paper's ViT-Tiny classifier at 224 px:
//! forward in training mode, cross-entropy over 1000 classes, backward,
//! AdamW over MAE-Lite's fine-tuning parameter groups (weight decay 0.05 but
//! not on biases, norms and embeddings; layer-wise lr decay 0.85). The model
//! is `finetune_imagenet_tiny`'s: global average pooling, `fc_norm`, a
//! linear head, drop path 0. Mirrors `bench/bench_finetune.py` (timm's
//! `vit_tiny_patch16_224` with 12 heads and `global_pool="avg"`, timm's
//! `create_optimizer_v2(..., layer_decay=0.85)`).
//!
//! Memory is the process's peak resident set size (Linux `VmHWM` of
//! `/proc/self/status`, read after the last step, never reset): everything
//! the process held at its worst moment, runtime included, as a user of the
//! command would see it. The Python side reads its own `VmHWM` the same way.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use engine::ops::cross_entropy;
use engine::recipe_file::RecipeFile as _;
use engine::optim::{build_param_groups, AdamW, AdamWConfig, DecayRule, Optimizer};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use anyhow::Result;
use backbone::named::WeightSearch;

use classification::model::build_classifier;
use classification::recipe::Recipe;

use crate::timing::{peak_rss_mb, sync};

/// ImageNet's classes: the head's width.
pub const NUM_CLASSES: usize = 1000;

/// The constant learning rate of the timed steps (any value: its size does
/// not change the work).
const LR: f64 = 1e-4;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchFinetuneOptions {
    /// Images per step.
    pub batch: usize,
    /// Timed steps (after one untimed warm-up step).
    pub iters: usize,
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchFinetuneResult {
    /// What ran.
    pub model: String,
    /// Device used.
    pub device: String,
    /// Compute threads.
    pub threads: usize,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub iters: usize,
    /// Images per second over the timed steps.
    pub train_img_s: f64,
    /// The process's peak resident memory, MiB (Linux only; 0 if unknown).
    pub peak_rss_mb: f64,
}

/// Runs the benchmark on `device`.
///
/// # Errors
/// Tensor or optimizer errors.
pub fn bench_finetune(opts: &BenchFinetuneOptions, device: &Device) -> Result<BenchFinetuneResult> {
    let mut recipe = Recipe::load_or_builtin("finetune_imagenet_tiny")?;
    recipe.train.backbone = "scratch".into();
    let t = &recipe.train;
    let varmap = VarMap::new();
    let built = build_classifier(&recipe, NUM_CLASSES, &WeightSearch::default(), &varmap, device)?;
    let named = engine::vars::named_vars(&varmap)?;
    let rules = built.model.vit().param_rules();
    let groups = build_param_groups(&named, &rules, t.weight_decay, Some(t.layer_decay), DecayRule::SkipNormAndListed)?;
    let mut adamw = AdamW::new(groups, AdamWConfig::default())?;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let side = recipe.data.input_size;
    let pixels: Vec<f32> = (0..opts.batch * 3 * side * side).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let x = Tensor::from_vec(pixels, (opts.batch, 3, side, side), device)?;
    let labels: Vec<u32> = (0..opts.batch).map(|_| rng.gen_range(0..NUM_CLASSES as u32)).collect();
    let mut step = || -> Result<()> {
        let logits = built.model.forward(&x, true, &mut rng)?;
        let loss = cross_entropy(&logits, &labels, 0.0)?;
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
    let cfg = &built.spec.vit;
    Ok(BenchFinetuneResult {
        model: format!("vitdet classifier vit(dim {}, depth {}, heads {}) avg pool + fc_norm, {NUM_CLASSES} classes @{side}", cfg.embed_dim, cfg.depth, cfg.num_heads),
        device: format!("{device:?}"),
        threads: candle_core::utils::get_num_threads(),
        batch: opts.batch,
        iters: opts.iters,
        train_img_s: (opts.batch * opts.iters) as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
    })
}
