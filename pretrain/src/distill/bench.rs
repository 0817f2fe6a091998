//! `vitdet bench distill`: images per second and peak resident memory of a
//! full distilled-MAE training step (student MAE forward, teacher forward on
//! the visible patches, attention loss, backward, AdamW), on random weights
//! and images. Mirrors `bench/bench_distill.py`, the PyTorch side of the
//! comparison in BENCHMARKS.md (MAE-Lite's MAE-Tiny student and an MAE
//! ViT-Base teacher, last-layer attention distillation).

use std::collections::HashMap;
use std::time::Instant;

use backbone::bench::{peak_rss_mb, reset_peak_rss, sync};
use backbone::{Vit, VitConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::rng::TrainRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{init_adapters, DistillConfig, DistillModel, Teacher};
use crate::mae::{DecoderConfig, MaeSpec};
use crate::masking::Masking;
use crate::recipe::Recipe;
use crate::task::{build_mae, build_mae_optimizer};
use crate::Result;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchDistillOptions {
    /// Images per step.
    pub batch: usize,
    /// Timed steps (after one untimed warm-up).
    pub iters: usize,
    /// Input side in pixels (224 as released).
    pub input_size: usize,
    /// The student encoder (ViT-Tiny, 12 heads).
    pub student: VitConfig,
    /// The teacher encoder (ViT-Base).
    pub teacher: VitConfig,
}

impl Default for BenchDistillOptions {
    fn default() -> Self {
        Self { batch: 64, iters: 3, input_size: 224, student: VitConfig::tiny(), teacher: VitConfig::base() }
    }
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchDistillResult {
    /// Student and teacher.
    pub model: String,
    /// Device used.
    pub device: String,
    /// Worker threads.
    pub threads: usize,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub iters: usize,
    /// Training-step images per second.
    pub train_img_s: f64,
    /// Peak resident memory during training, MiB (CPU only; 0 if unknown).
    pub train_peak_rss_mb: f64,
}

/// Times the training step (module doc) with the released distillation
/// table (last layer, alpha 1) and the released MAE optimizer.
///
/// # Errors
/// Tensor or optimizer errors.
pub fn bench_distill(opts: &BenchDistillOptions, device: &Device) -> Result<BenchDistillResult> {
    let spec = MaeSpec::new(&opts.student, opts.input_size, DecoderConfig::default(), 0.75, true);
    let (student_vars, adapter_vars) = (VarMap::new(), VarMap::new());
    let student = build_mae(&spec, 0, &student_vars, device)?;
    let teacher = random_teacher(&VitConfig { img_size: opts.input_size, ..opts.teacher.clone() }, device)?;
    let cfg = DistillConfig { attn_layers: vec![opts.student.depth.min(opts.teacher.depth)], ..DistillConfig::default() };
    let model = DistillModel::new(&cfg, student, teacher, VarBuilder::from_varmap(&adapter_vars, DType::F32, device))?;
    init_adapters(&adapter_vars, 0)?;
    let mut named = engine::vars::named_vars(&student_vars)?;
    named.extend(engine::vars::named_vars(&adapter_vars)?);
    let mut optimizer = build_mae_optimizer(&named, &model.student().encoder().param_rules(), &Recipe::default())?;

    let mut rng = TrainRng::seed_from_u64(0);
    let mut pixel_rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let side = opts.input_size;
    let pixels: Vec<f32> = (0..opts.batch * 3 * side * side).map(|_| pixel_rng.gen_range(-2.0..2.0)).collect();
    let images = Tensor::from_vec(pixels, (opts.batch, 3, side, side), device)?;
    let mut step = || -> Result<()> {
        let masking = Masking::random(opts.batch, spec.num_patches(), spec.mask_ratio, &mut rng)?;
        let loss = model.losses(&images, &masking, &mut rng)?.total()?;
        optimizer.step(&loss.backward()?, 1e-4)?;
        Ok(sync(&loss)?)
    };
    reset_peak_rss();
    step()?;
    let start = Instant::now();
    for _ in 0..opts.iters.max(1) {
        step()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let s = &opts.student;
    let t = model.teacher().config();
    Ok(BenchDistillResult {
        model: format!("mae student (dim {}, depth {}, heads {}) + teacher (dim {}, depth {}, heads {}) @{side}", s.embed_dim, s.depth, s.num_heads, t.embed_dim, t.depth, t.num_heads),
        device: format!("{device:?}"),
        threads: candle_core::utils::get_num_threads(),
        batch: opts.batch,
        iters: opts.iters,
        train_img_s: (opts.batch * opts.iters) as f64 / seconds,
        train_peak_rss_mb: peak_rss_mb(),
    })
}

/// A teacher of config `cfg` with timm's seeded initial values, as plain tensors.
fn random_teacher(cfg: &VitConfig, device: &Device) -> Result<Teacher> {
    let cfg = VitConfig { num_classes: 0, ..cfg.clone() };
    let varmap = VarMap::new();
    Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    backbone::init::init_weights(&varmap, &cfg, 1)?;
    let map: HashMap<String, Tensor> = engine::vars::named_vars(&varmap)?.into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
    Ok(Teacher::from_tensors(&cfg, map, device)?.0)
}
