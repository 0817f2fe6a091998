//! Fine-tuning, transfer and linear probing: the classifier as a
//! [`TrainTask`] of the shared training loop. The task supplies the model,
//! its loss (cross-entropy, or soft-target cross-entropy under mixup) and its
//! evaluation (top-1 / top-5, and the EMA weights beside the raw ones); the
//! loop does the rest (schedule, accumulation, clipping, checkpoints, resume).
//!
//! With `train.ema_decay > 0` the run also keeps the EMA weights: in every
//! checkpoint (so a resume continues them exactly) and, at the end, as
//! `OUT/model_ema.safetensors`, a classifier file like `OUT/model.safetensors`.
//! The best model is chosen by the raw weights' top-1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::ema::ModelEma;
use engine::ops::{cross_entropy, soft_target_cross_entropy};
use engine::optim::{build_optimizer, build_param_groups, DecayRule};
use engine::progress::ProgressConfig;
use engine::rng::TrainRng;
use engine::run_dir::RunDir;
use engine::trainer::{EvalPeriod, Evaluation, LoopConfig, LossTerms, RunSummary, TaskState, TrainTask, Trainer, DEFAULT_MAX_EMPTY_BATCHES};
use vision::datasets::{ClassificationSet, ClsBatch};
use vision::loader::{train_stream, LoaderConfig};

use backbone::named::WeightSearch;
use backbone::vitdet::BackboneInit;

use crate::evaluate::evaluate;
use crate::metrics::Report;
use crate::mixup::Mixup;
use crate::model::{build_classifier, Classifier, ClassifierSpec};
use crate::recipe::Recipe;
use crate::weights::{self, ClassifierMeta};
use crate::{Error, Result};

/// Prefix of the EMA's tensors in the checkpoint's task state.
const EMA_PREFIX: &str = "ema.";

/// The EMA weights at the end of a run, beside `OUT/model.safetensors`.
pub const EMA_MODEL_FILE: &str = "model_ema.safetensors";

/// Everything a fine-tuning run needs besides the recipe.
#[derive(Debug)]
pub struct FinetuneRun {
    /// The recipe.
    pub recipe: Recipe,
    /// Folders named backbones are looked up in.
    pub weight_search: WeightSearch,
    /// Training split (its transform is the recipe's augmentation).
    pub train: Arc<ClassificationSet>,
    /// Evaluation split, if any.
    pub val: Option<Arc<ClassificationSet>>,
    /// Output directory.
    pub out: PathBuf,
    /// Continue the run saved in `out`.
    pub resume: bool,
    /// Device to train on.
    pub device: Device,
    /// How progress is shown.
    pub progress: ProgressConfig,
}

/// What a finished run reports.
#[derive(Debug)]
pub struct FinetuneSummary {
    /// Where the backbone's initial values came from.
    pub init: BackboneInit,
    /// The loop's summary (iterations, speed, best evaluation, model paths).
    pub run: RunSummary,
    /// The final evaluation of the raw weights (and of the EMA's).
    pub last: Option<(Report, Option<Report>)>,
    /// `OUT/model_ema.safetensors`, when the recipe keeps an EMA.
    pub ema_model_path: Option<PathBuf>,
    /// Optimizer steps per epoch.
    pub iters_per_epoch: usize,
    /// Training images that could not be read.
    pub skipped_images: Option<String>,
    /// Validation images that could not be read (in the last evaluation).
    pub skipped_val_images: Option<String>,
}

/// The classifier as the training loop's task.
struct FinetuneTask {
    model: Classifier,
    spec: ClassifierSpec,
    meta: ClassifierMeta,
    named: Vec<(String, Var)>,
    mixup: Option<Mixup>,
    label_smoothing: f64,
    ema: Option<ModelEma>,
    val: Option<Arc<ClassificationSet>>,
    eval_batch_size: usize,
    device: Device,
    last: Option<(Report, Option<Report>)>,
    /// The last evaluation's unreadable validation images (one pass's count).
    val_skipped: Option<String>,
}

impl FinetuneTask {
    /// The EMA weights as a model of their own (for evaluation).
    fn ema_model(&self) -> Result<Option<Classifier>> {
        let Some(ema) = &self.ema else { return Ok(None) };
        let map: HashMap<String, Tensor> = ema.tensors().iter().cloned().collect();
        let vb = VarBuilder::from_tensors(map, DType::F32, &self.device);
        Ok(Some(Classifier::new(&self.spec, self.meta.classes.len(), vb)?))
    }
}

impl TrainTask for FinetuneTask {
    type Batch = ClsBatch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        self.named.clone()
    }

    fn losses(&mut self, batch: &ClsBatch, rng: &mut TrainRng) -> Result<LossTerms> {
        let loss = match &self.mixup {
            Some(mixup) => {
                // timm mixes each image with the batch reversed, so it needs an even batch:
                // after skipped images, the odd one out sits this step out.
                let even = batch.len() - batch.len() % 2;
                let images = batch.images.narrow(0, 0, even)?;
                let (_, _, h, w) = images.dims4()?;
                let decision = mixup.sample(h, w, rng)?;
                let mixed = mixup.apply(&images, &batch.labels[..even], &decision)?;
                let logits = self.model.forward(&mixed.images, true, rng)?;
                soft_target_cross_entropy(&logits, &mixed.targets)?
            }
            None => {
                let logits = self.model.forward(&batch.images, true, rng)?;
                cross_entropy(&logits, &batch.labels, self.label_smoothing)?
            }
        };
        Ok(LossTerms::new(vec![("loss_cls".into(), loss)])?)
    }

    fn is_empty(&self, batch: &ClsBatch) -> bool {
        batch.len() < if self.mixup.is_some() { 2 } else { 1 }
    }

    fn after_step(&mut self, _iter: usize) -> Result<()> {
        if let Some(ema) = self.ema.as_mut() {
            ema.update(&self.named)?;
        }
        Ok(())
    }

    fn evaluate(&mut self, _iter: usize) -> Result<Option<Evaluation>> {
        let Some(val) = &self.val else { return Ok(None) };
        if val.images().items.is_empty() {
            return Ok(None);
        }
        let evaluated = evaluate(&self.model, val, self.eval_batch_size, &self.device)?;
        let raw = evaluated.report;
        self.val_skipped = evaluated.skipped;
        let mut metrics = vec![("top1".to_string(), raw.top1), ("top5".to_string(), raw.top5)];
        let ema = match self.ema_model()? {
            Some(model) => {
                let r = evaluate(&model, val, self.eval_batch_size, &self.device)?.report;
                metrics.push(("top1_ema".into(), r.top1));
                metrics.push(("top5_ema".into(), r.top5));
                Some(r)
            }
            None => None,
        };
        self.last = Some((raw, ema));
        Ok(Some(Evaluation::new(metrics).with_primary("top1")))
    }

    fn save_model(&self, path: &Path) -> Result<()> {
        weights::save(path, &engine::checkpoint::var_tensors(&self.named), &self.spec, &self.meta)
    }

    fn extra_state(&self) -> Result<TaskState> {
        let tensors = match &self.ema {
            Some(ema) => ema.tensors().iter().map(|(n, t)| (format!("{EMA_PREFIX}{n}"), t.clone())).collect(),
            None => Vec::new(),
        };
        Ok(TaskState { tensors, json: serde_json::Value::Null })
    }

    fn restore_extra_state(&mut self, state: TaskState) -> Result<()> {
        let ema_tensors: Vec<(String, Tensor)> = state.tensors.into_iter().filter_map(|(n, t)| Some((n.strip_prefix(EMA_PREFIX)?.to_string(), t))).collect();
        match self.ema.as_mut() {
            Some(ema) => ema.load(&ema_tensors)?,
            None if ema_tensors.is_empty() => {}
            None => return Err(Error::Config { key: "train.ema_decay".into(), msg: "the checkpoint has EMA weights but the recipe has no EMA; resume with the run's own config".into() }),
        }
        Ok(())
    }
}

/// Fine-tunes (or probes) as `run` says: builds the classifier from the
/// recipe's backbone, trains it with the shared loop, writes
/// `OUT/model.safetensors`, `OUT/model_best.safetensors` and, with an EMA,
/// `OUT/model_ema.safetensors`.
///
/// # Errors
/// A bad recipe, unreadable data or weights, a run directory that
/// contradicts `resume`, divergence, or a failing tensor operation.
pub fn finetune(run: &FinetuneRun) -> Result<FinetuneSummary> {
    let recipe = &run.recipe;
    recipe.validate()?;
    let t = &recipe.train;
    let classes = run.train.images().classes.clone();
    let plan = recipe.plan(run.train.images().items.len(), recipe.train.max_iter)?;
    let dir = RunDir::open(&run.out, run.resume)?;
    dir.record_config(recipe, run.resume)?;

    let varmap = VarMap::new();
    let mut recipe_for_build = recipe.clone();
    if run.resume {
        // The checkpoint holds every weight: no need for the pre-trained file.
        recipe_for_build.train.backbone = "scratch".into();
    }
    let built = build_classifier(&recipe_for_build, classes.len(), &run.weight_search, &varmap, &run.device)?;
    let named = engine::vars::named_vars(&varmap)?;
    let trainable: Vec<(String, Var)> = named.iter().filter(|(n, _)| built.model.is_trainable(n)).cloned().collect();
    // timm's ViT rules: layer ids for layer-wise decay (the head in the last layer),
    // no decay for biases, norms, pos_embed and cls_token.
    let rules = built.model.vit().param_rules();
    let layer_decay = (t.layer_decay < 1.0).then_some(t.layer_decay);
    let groups = build_param_groups(&trainable, &rules, t.weight_decay, layer_decay, DecayRule::SkipNormAndListed)?;
    let optimizer = build_optimizer(&t.optimizer, groups)?;
    let mixup = recipe.mixup(classes.len()).map(Mixup::new).transpose()?;
    let ema = if t.ema_decay > 0.0 { Some(ModelEma::new(&named, t.ema_decay)?) } else { None };
    let meta = ClassifierMeta { classes, linear_probe: t.linear_probe, crop_pct: recipe.data.crop_pct, eval_interpolation: recipe.data.eval_interpolation };
    let mut task = FinetuneTask {
        model: built.model,
        spec: built.spec,
        meta,
        named,
        mixup,
        label_smoothing: t.label_smoothing,
        ema,
        val: run.val.clone(),
        eval_batch_size: recipe.data.eval_batch_size,
        device: run.device.clone(),
        last: None,
        val_skipped: None,
    };

    let micro = t.batch_size / t.grad_accum;
    let cfg = LoopConfig {
        max_iter: plan.max_iter,
        images_per_step: t.batch_size,
        grad_accum: t.grad_accum,
        schedule: plan.schedule.clone(),
        clip_grad_norm: (t.clip_grad_norm > 0.0).then_some(t.clip_grad_norm),
        eval_period: if run.val.is_some() { EvalPeriod::Every(plan.eval_period.max(1)) } else { EvalPeriod::Never },
        checkpoint_period: plan.checkpoint_period.max(1),
        seed: t.seed,
        max_empty_batches: DEFAULT_MAX_EMPTY_BATCHES,
        progress: run.progress.clone(),
    };
    let trainer = Trainer::new(&mut task, optimizer, cfg, dir, run.resume)?;
    let loader = LoaderConfig { batch_size: micro, threads: rayon::current_num_threads(), prefetch: 2, seed: t.seed };
    let mut stream = train_stream(Arc::clone(&run.train), loader, trainer.start_micro_batch())?;
    let size = run.train.input_size();
    let device = run.device.clone();
    let batches = stream.by_ref().map(|b| ClsBatch::from_samples(&b.samples, size, &device).map_err(Error::from));
    let summary = trainer.run(batches)?;
    let ema_model_path = match &task.ema {
        Some(ema) => {
            let path = run.out.join(EMA_MODEL_FILE);
            weights::save(&path, ema.tensors(), &task.spec, &task.meta)?;
            Some(path)
        }
        None => None,
    };
    Ok(FinetuneSummary { init: built.init, run: summary, last: task.last.take(), ema_model_path, iters_per_epoch: plan.iters_per_epoch, skipped_images: stream.stats().summary(), skipped_val_images: task.val_skipped.take() })
}
