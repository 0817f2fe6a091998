//! MoCo-v3 pre-training as a [`TrainTask`] of the shared training loop, on
//! the shared loader's two-view image batches ([`crate::data`]): the task
//! supplies the model, its symmetric loss (`loss_q1k2`, `loss_q2k1`), the
//! momentum encoder's EMA step after each optimizer step, the momentum in
//! `metrics.jsonl`, the momentum encoder as checkpoint state, and the model
//! file; the loop does the rest (schedule, accumulation, the NaN guard,
//! progress, atomic checkpoints, exact resume).
//!
//! Momentum: the key forward of iteration i uses the encoder after the EMA
//! step with `m_i = momentum_at(i, T)`, as moco-v3's loop does (its update
//! comes first in iteration i); the step lands in `after_step(i - 1)` (see
//! the module docs of [`crate::mocov3`]) and `metrics.jsonl` logs `m_i` as
//! [`MOMENTUM_FIELD`] on line i. T is the whole run's steps, so
//! `--max-iter` rescales the momentum schedule as it does the learning
//! rate.
//!
//! Optimizer as released: the recipe's (AdamW (0.9, 0.999)), its weight
//! decay on every parameter ([`MocoV3::param_groups`]); the fixed sin-cos
//! table and the BatchNorm buffers are not trained.

use std::path::Path;

use backbone::Vit;
use candle_core::{DType, Var};
use candle_nn::VarMap;
use engine::optim::build_optimizer;
use engine::rng::TrainRng;
use engine::trainer::{LossTerms, TaskState, TrainTask};
use rand::SeedableRng;

use super::MocoV3;
use crate::data::ImageBatch;
use crate::task::{plan_and_open, train_on_images, EncoderTask, PretrainRun, PretrainSummary};
use crate::{Error, Result};

/// Field of the momentum in `metrics.jsonl`.
pub const MOMENTUM_FIELD: &str = "momentum";

/// The MoCo-v3 model as the training loop's task.
struct MocoV3Task {
    model: MocoV3,
    /// The online variables (encoder, projector, predictor, BatchNorm statistics).
    named: Vec<(String, Var)>,
    /// Steps of the whole run: the momentum schedule's T.
    total_iters: usize,
}

impl TrainTask for MocoV3Task {
    type Batch = ImageBatch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        self.named.clone()
    }

    fn losses(&mut self, batch: &ImageBatch, rng: &mut TrainRng) -> Result<LossTerms> {
        let Some(view2) = &batch.view2 else {
            return Err(Error::config("method", "MoCo-v3 needs two views of every image; the batch holds one"));
        };
        let loss = self.model.forward_loss(&batch.images, view2, rng)?;
        Ok(LossTerms::new(loss.terms())?)
    }

    /// Fewer than two images (all others unreadable) give no negative and
    /// no BatchNorm statistics: nothing to train on.
    fn is_empty(&self, batch: &ImageBatch) -> bool {
        batch.len() < 2
    }

    fn after_step(&mut self, iter: usize) -> Result<()> {
        let m = self.model.momentum_at(iter + 1, self.total_iters);
        Ok(self.model.update_momentum(m)?)
    }

    fn step_metrics(&self, iter: usize) -> Vec<(String, f64)> {
        vec![(MOMENTUM_FIELD.to_string(), self.model.momentum_at(iter, self.total_iters))]
    }

    /// The online ViT under timm's names with its config: a backbone file
    /// every ViT loader reads as it is. Projector, predictor and momentum
    /// encoder stay in the checkpoint.
    fn save_model(&self, path: &Path) -> Result<()> {
        Ok(backbone::import::save_vit_tensors(self.model.encoder_tensors()?, &self.model.config().vit, path)?)
    }

    fn extra_state(&self) -> Result<TaskState> {
        Ok(self.model.extra_state()?)
    }

    fn restore_extra_state(&mut self, state: TaskState) -> Result<()> {
        Ok(self.model.restore_extra_state(state)?)
    }
}

impl EncoderTask for MocoV3Task {
    /// The online encoder's ViT (the model file's), not the momentum encoder.
    fn encoder(&self) -> &Vit {
        self.model.encoder().vit()
    }
}

/// Pre-trains as `run` says with MoCo-v3 (`run.recipe` must have a
/// `[mocov3]` table and the images two views each): builds the model with
/// MoCo-v3's initialisation (seeded by `train.seed`), trains it with the
/// shared loop, writes `OUT/config.toml` (fresh runs), `OUT/metrics.jsonl`,
/// `OUT/checkpoint/last.safetensors` and `OUT/model.safetensors`.
///
/// # Errors
/// A bad recipe, a run directory that contradicts `resume`, unreadable
/// data (every image failing), divergence, or a failing tensor operation.
pub fn pretrain_mocov3(run: &PretrainRun) -> Result<PretrainSummary> {
    let recipe = &run.recipe;
    if recipe.mocov3.is_none() {
        return Err(Error::config("mocov3", "the recipe has no [mocov3] table: it is not a MoCo-v3 recipe"));
    }
    let cfg = recipe.mocov3_config()?;
    let (plan, dir) = plan_and_open(run, cfg.vit.img_size)?;
    let t = &recipe.train;
    let varmap = VarMap::new();
    let mut init_rng = rand_chacha::ChaCha8Rng::seed_from_u64(t.seed);
    let model = MocoV3::new(&cfg, &varmap, DType::F32, &run.device, &mut init_rng)?;
    let optimizer = build_optimizer(&t.optimizer, model.param_groups(t.weight_decay)?)?;
    let named = model.variables()?;
    let mut task = MocoV3Task { model, named, total_iters: plan.max_iter };
    train_on_images(run, &plan, dir, &mut task, optimizer)
}
