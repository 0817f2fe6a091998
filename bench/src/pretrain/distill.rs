//! `vitdet bench distill`: images per second and peak resident memory of a
//! full distilled-MAE training step (student MAE forward, teacher forward on
//! the visible patches, attention loss, backward, AdamW), on random weights
//! and images. Mirrors `bench/bench_distill.py`, the PyTorch side of the
//! comparison in BENCHMARKS.md (MAE-Lite's MAE-Tiny student and an MAE
//! ViT-Base teacher, last-layer attention distillation). Timing and memory
//! as [`super`] says.

use std::collections::HashMap;

use backbone::{Vit, VitConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::rng::TrainRng;
use rand::SeedableRng;

use pretrain::distill::{init_adapters, DistillConfig, DistillModel, Teacher};
use super::{time_train_steps, StepBenchOptions, StepBenchResult, LR};
use pretrain::mae::{DecoderConfig, MaeSpec};
use pretrain::masking::Masking;
use pretrain::recipe::Recipe;
use pretrain::task::{build_mae, build_mae_optimizer};
use anyhow::Result;
use engine::testing::random_images;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchDistillOptions {
    /// Batch, timed steps and input side.
    pub step: StepBenchOptions,
    /// The student encoder (ViT-Tiny, 12 heads).
    pub student: VitConfig,
    /// The teacher encoder (ViT-Base).
    pub teacher: VitConfig,
}

impl Default for BenchDistillOptions {
    fn default() -> Self {
        Self { step: StepBenchOptions::default(), student: VitConfig::tiny(), teacher: VitConfig::base() }
    }
}

/// Times the training step (module doc) with the released distillation
/// table (last layer, alpha 1) and the released MAE optimizer.
///
/// # Errors
/// Tensor or optimizer errors.
pub fn bench_distill(opts: &BenchDistillOptions, device: &Device) -> Result<StepBenchResult> {
    let StepBenchOptions { batch, input_size, .. } = opts.step;
    let spec = MaeSpec::new(&opts.student, input_size, DecoderConfig::default(), 0.75, true);
    let (student_vars, adapter_vars) = (VarMap::new(), VarMap::new());
    let student = build_mae(&spec, 0, &student_vars, device)?;
    let teacher = random_teacher(&VitConfig { img_size: input_size, ..opts.teacher.clone() }, device)?;
    let cfg = DistillConfig { attn_layers: vec![opts.student.depth.min(opts.teacher.depth)], ..DistillConfig::default() };
    let model = DistillModel::new(&cfg, student, teacher, VarBuilder::from_varmap(&adapter_vars, DType::F32, device))?;
    init_adapters(&adapter_vars, 0)?;
    let mut named = engine::vars::named_vars(&student_vars)?;
    named.extend(engine::vars::named_vars(&adapter_vars)?);
    let mut optimizer = build_mae_optimizer(&named, &model.student().encoder().param_rules(), &Recipe::default())?;

    let images = random_images(batch, input_size, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0), device)?;
    let mut rng = TrainRng::seed_from_u64(0);
    let s = &opts.student;
    let t = model.teacher().config();
    let name = format!(
        "mae student (dim {}, depth {}, heads {}) + teacher (dim {}, depth {}, heads {}) @{input_size}",
        s.embed_dim, s.depth, s.num_heads, t.embed_dim, t.depth, t.num_heads
    );
    time_train_steps(&opts.step, name, device, || {
        let masking = Masking::random(batch, spec.num_patches(), spec.mask_ratio, &mut rng)?;
        let loss = model.losses(&images, &masking, &mut rng)?.total()?;
        optimizer.step(&loss.backward()?, LR)?;
        Ok(loss)
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
