//! MAE pre-training as a [`TrainTask`] of the shared training loop: the task
//! supplies the autoencoder, its loss on a batch (masking drawn from the
//! loop's checkpointed generator, so a resume is exact) and its model file;
//! the loop does the rest (schedule, accumulation, the NaN guard,
//! `metrics.jsonl`, progress, atomic checkpoints, resume). With k-NN data
//! ([`PretrainRun::knn`]) every method's task is wrapped so that the loop's
//! evaluation hook runs the [`crate::knn`] monitor on its encoder.
//!
//! Optimizer as released (timm's `create_optimizer` on the MAE wrapper, which
//! has no `no_weight_decay`): AdamW, no decay for 1-D parameters and biases,
//! decay for every other trained tensor including `cls_token` and
//! `mask_token`; the fixed sin-cos tables are not trained.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backbone::Vit;
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{build_optimizer, build_param_groups, DecayRule, Optimizer, ParamRules};
use engine::progress::ProgressConfig;
use engine::rng::TrainRng;
use engine::run_dir::RunDir;
use engine::trainer::{EvalPeriod, Evaluation, LoopConfig, LossTerms, RunSummary, TaskState, TrainTask, Trainer, DEFAULT_MAX_EMPTY_BATCHES};
use vision::loader::{train_stream, LoaderConfig};

use crate::data::{ImageBatch, PretrainImages};
use crate::encoder::EncoderTaps;
use crate::knn::{KnnData, KnnMonitor};
use crate::mae::{Mae, MaeSpec};
use crate::recipe::{Plan, Recipe};
use crate::{Error, Result};

/// Name of the loss term in `metrics.jsonl`.
pub const LOSS_TERM: &str = "loss_mae";

/// Everything an MAE pre-training run needs besides the recipe.
#[derive(Debug)]
pub struct PretrainRun {
    /// The recipe.
    pub recipe: Recipe,
    /// The images, with the recipe's augmentation.
    pub images: Arc<PretrainImages>,
    /// Output directory.
    pub out: PathBuf,
    /// Continue the run saved in `out`.
    pub resume: bool,
    /// Device to train on.
    pub device: Device,
    /// How progress is shown.
    pub progress: ProgressConfig,
    /// The k-NN monitor's dataset (`--knn-data`), opened; `None`: no monitor.
    pub knn: Option<KnnData>,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct PretrainSummary {
    /// The loop's summary (iterations, speed, model path).
    pub run: RunSummary,
    /// Optimizer steps per epoch.
    pub iters_per_epoch: usize,
    /// Steps of the whole run.
    pub max_iter: usize,
    /// Images that could not be read (`skipped: N ...`), if any.
    pub skipped_images: Option<String>,
    /// k-NN images that could not be read at the last evaluation, if any.
    pub knn_skipped_images: Option<String>,
}

/// Whether variable `name` is trained: all but the fixed position tables.
pub fn is_trained(name: &str) -> bool {
    name != "pos_embed" && name != "decoder_pos_embed"
}

/// The autoencoder as the training loop's task.
struct MaeTask {
    model: Mae,
    named: Vec<(String, Var)>,
}

impl TrainTask for MaeTask {
    type Batch = ImageBatch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        self.named.clone()
    }

    fn losses(&mut self, batch: &ImageBatch, rng: &mut TrainRng) -> Result<LossTerms> {
        let masking = self.model.random_masking(batch.len(), rng)?;
        let out = self.model.forward(&batch.images, &masking, &EncoderTaps::default(), rng)?;
        Ok(LossTerms::new(vec![(LOSS_TERM.into(), out.loss)])?)
    }

    fn is_empty(&self, batch: &ImageBatch) -> bool {
        batch.is_empty()
    }

    fn save_model(&self, path: &Path) -> Result<()> {
        crate::weights::save(path, &engine::checkpoint::var_tensors(&self.named), self.model.spec())
    }
}

impl EncoderTask for MaeTask {
    fn encoder(&self) -> &Vit {
        self.model.encoder()
    }
}

/// A pre-training task whose encoder the k-NN monitor embeds with.
pub(crate) trait EncoderTask: TrainTask<Batch = ImageBatch, Error = Error> {
    /// The encoder being trained (the ViT that `OUT/model.safetensors` holds).
    fn encoder(&self) -> &Vit;
}

/// `task` with the k-NN monitor as its evaluation; everything else is the
/// task's own.
struct Monitored<'t, T> {
    task: &'t mut T,
    knn: Option<KnnMonitor>,
}

impl<T: EncoderTask> TrainTask for Monitored<'_, T> {
    type Batch = ImageBatch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        self.task.variables()
    }

    fn losses(&mut self, batch: &ImageBatch, rng: &mut TrainRng) -> Result<LossTerms> {
        self.task.losses(batch, rng)
    }

    fn is_empty(&self, batch: &ImageBatch) -> bool {
        self.task.is_empty(batch)
    }

    fn after_step(&mut self, iter: usize) -> Result<()> {
        self.task.after_step(iter)
    }

    fn step_metrics(&self, iter: usize) -> Vec<(String, f64)> {
        self.task.step_metrics(iter)
    }

    fn evaluate(&mut self, _iter: usize) -> Result<Option<Evaluation>> {
        match &mut self.knn {
            Some(knn) => knn.evaluate(self.task.encoder()),
            None => Ok(None),
        }
    }

    fn save_model(&self, path: &Path) -> Result<()> {
        self.task.save_model(path)
    }

    fn extra_state(&self) -> Result<TaskState> {
        self.task.extra_state()
    }

    fn restore_extra_state(&mut self, state: TaskState) -> Result<()> {
        self.task.restore_extra_state(state)
    }
}

/// Builds the autoencoder `spec` describes in `varmap` with MAE's seeded initialisation.
///
/// # Errors
/// An invalid spec; tensor errors.
pub fn build_mae(spec: &MaeSpec, seed: u64, varmap: &VarMap, device: &Device) -> Result<Mae> {
    let model = Mae::new(spec, VarBuilder::from_varmap(varmap, DType::F32, device))?;
    crate::init::init_mae(varmap, spec, seed)?;
    Ok(model)
}

/// Pre-trains as `run` says: builds the MAE, trains it with the shared loop,
/// writes `OUT/config.toml` (fresh runs), `OUT/metrics.jsonl`,
/// `OUT/checkpoint/last.safetensors` and `OUT/model.safetensors`.
///
/// # Errors
/// A bad recipe, a run directory that contradicts `resume`, unreadable
/// data (every image failing), divergence, or a failing tensor operation.
pub fn pretrain_mae(run: &PretrainRun) -> Result<PretrainSummary> {
    let (spec, plan, dir) = open_run(run)?;
    let varmap = VarMap::new();
    let model = build_mae(&spec, run.recipe.train.seed, &varmap, &run.device)?;
    let named = engine::vars::named_vars(&varmap)?;
    let optimizer = build_mae_optimizer(&named, &model.encoder().param_rules(), &run.recipe)?;
    let mut task = MaeTask { model, named };
    train_on_images(run, &plan, dir, &mut task, optimizer)
}

/// The first steps every masked-image run shares (MAE, distillation): the
/// checked recipe's model spec, its plan for the images, and the run
/// directory (`OUT/config.toml` written for a fresh run).
///
/// # Errors
/// A bad recipe or a MoCo-v3 one, images prepared at another size than the
/// model's, or a run directory that contradicts `resume`.
pub(crate) fn open_run(run: &PretrainRun) -> Result<(MaeSpec, Plan, RunDir)> {
    if run.recipe.mocov3.is_some() {
        return Err(Error::config("mocov3", "a MoCo-v3 recipe trains no masked autoencoder (--method mocov3)"));
    }
    let spec = run.recipe.spec()?;
    let (plan, dir) = plan_and_open(run, spec.encoder.img_size)?;
    Ok((spec, plan, dir))
}

/// What every method does before building its model: checks the recipe,
/// that the images are prepared for its method (views per image) at the
/// model's `input_size`, plans the run and opens its directory
/// (`OUT/config.toml` written for a fresh run).
///
/// # Errors
/// A bad recipe, images that do not fit, no images, or a run directory
/// that contradicts `resume`.
pub(crate) fn plan_and_open(run: &PretrainRun, input_size: usize) -> Result<(Plan, RunDir)> {
    let recipe = &run.recipe;
    recipe.validate()?;
    if run.images.input_size() != input_size {
        return Err(Error::config("data.input_size", format!("the images are prepared at {} px, the model expects {input_size}", run.images.input_size())));
    }
    let views = recipe.method().views_per_sample();
    if run.images.views_per_sample() != views {
        return Err(Error::config("data", format!("the images are prepared with {} view(s) each, {} trains on {views}", run.images.views_per_sample(), recipe.method().name())));
    }
    let plan = recipe.plan(run.images.files().len(), recipe.train.max_iter)?;
    let dir = RunDir::open(&run.out, run.resume)?;
    dir.record_config(recipe, run.resume)?;
    Ok((plan, dir))
}

/// The recipe's optimizer over `named`'s trained variables (all but the
/// fixed position tables), with MAE-Lite's decay rule (module doc).
///
/// # Errors
/// An invalid weight decay or optimizer setting.
pub fn build_mae_optimizer(named: &[(String, Var)], rules: &dyn ParamRules, recipe: &Recipe) -> Result<Box<dyn Optimizer>> {
    let t = &recipe.train;
    let trained: Vec<(String, Var)> = named.iter().filter(|(n, _)| is_trained(n)).cloned().collect();
    let groups = build_param_groups(&trained, rules, t.weight_decay, None, DecayRule::SkipOneDimAndBias)?;
    Ok(build_optimizer(&t.optimizer, groups)?)
}

/// Trains `task` on `run`'s images with the shared loop as `plan` says
/// (the recipe's batch, accumulation and seed; the k-NN monitor as the
/// evaluation when `run.knn` is given, none otherwise) and reports.
///
/// # Errors
/// Unreadable data (every image failing), divergence, a failing tensor
/// operation or checkpoint.
pub(crate) fn train_on_images<T>(run: &PretrainRun, plan: &Plan, dir: RunDir, task: &mut T, optimizer: Box<dyn Optimizer>) -> Result<PretrainSummary>
where
    T: EncoderTask,
{
    let t = &run.recipe.train;
    let micro_batch = t.batch_size / t.grad_accum;
    let knn = run.knn.clone().map(|data| KnnMonitor::new(data, &run.recipe.knn, micro_batch, run.device.clone())).transpose()?;
    let eval_period = if knn.is_some() { EvalPeriod::from_period(plan.knn_period) } else { EvalPeriod::Never };
    let mut task = Monitored { task, knn };
    let cfg = LoopConfig {
        max_iter: plan.max_iter,
        images_per_step: t.batch_size,
        grad_accum: t.grad_accum,
        schedule: plan.schedule.clone(),
        clip_grad_norm: None,
        eval_period,
        checkpoint_period: plan.checkpoint_period.max(1),
        seed: t.seed,
        max_empty_batches: DEFAULT_MAX_EMPTY_BATCHES,
        progress: run.progress.clone(),
    };
    let trainer = Trainer::new(&mut task, optimizer, cfg, dir, run.resume)?;
    let loader = LoaderConfig { batch_size: micro_batch, threads: rayon::current_num_threads(), prefetch: 2, seed: t.seed };
    let mut stream = train_stream(Arc::clone(&run.images), loader, trainer.start_micro_batch())?;
    let size = run.images.input_size();
    let device = run.device.clone();
    let batches = stream.by_ref().map(|b| ImageBatch::from_samples(&b.samples, size, &device).map_err(Error::from));
    let summary = trainer.run(batches)?;
    let knn_skipped_images = task.knn.as_ref().and_then(|k| k.skipped().map(str::to_owned));
    Ok(PretrainSummary { run: summary, iters_per_epoch: plan.iters_per_epoch, max_iter: plan.max_iter, skipped_images: stream.stats().summary(), knn_skipped_images })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use engine::optim::ViTNameRules;

    #[test]
    fn decay_follows_timms_create_optimizer_on_the_mae() {
        let varmap = VarMap::new();
        let arch = backbone::VitConfig { depth: 1, embed_dim: 16, num_heads: 2, patch_size: 8, ..backbone::VitConfig::tiny() };
        let spec = MaeSpec::new(&arch, 16, crate::mae::DecoderConfig { embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2.0 }, 0.5, true);
        build_mae(&spec, 0, &varmap, &Device::Cpu).unwrap();
        let named = engine::vars::named_vars(&varmap).unwrap();
        let trained: Vec<(String, Var)> = named.iter().filter(|(n, _)| is_trained(n)).cloned().collect();
        assert_eq!(named.len() - trained.len(), 2, "only the two sin-cos tables are fixed");
        let groups = build_param_groups(&trained, &ViTNameRules { num_layers: 1 }, 0.05, None, DecayRule::SkipOneDimAndBias).unwrap();
        let decayed: Vec<&str> = groups.iter().filter(|g| g.weight_decay > 0.0).flat_map(|g| g.params.iter().map(|(n, _)| n.as_str())).collect();
        for name in ["cls_token", "mask_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "decoder_pred.weight", "decoder_embed.weight"] {
            assert!(decayed.contains(&name), "{name} decays: {decayed:?}");
        }
        for name in decayed {
            assert!(!name.ends_with(".bias") && !name.contains("norm"), "{name} must not decay");
        }
    }
}
