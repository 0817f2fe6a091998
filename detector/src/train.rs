//! Training a detector: the model, its parameter groups and AdamW from the
//! recipe, run by engine's shared loop ([`engine::trainer`]) with the Mask
//! R-CNN losses and COCO evaluation as its [`TrainTask`]. The loop owns the
//! schedule, gradient accumulation, clipping, the NaN/inf guard, metrics,
//! checkpoints (written before the final evaluation) and exact `--resume`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{build_param_groups, AdamW, DecayRule, ParamRules, ViTNameRules};
use engine::progress::ProgressConfig;
use engine::rng::TrainRng;
use engine::run_dir::RunDir;
use engine::trainer::{BestEval, EvalPeriod, Evaluation, LoopConfig, LossTerms, TrainTask, Trainer, DEFAULT_MAX_EMPTY_BATCHES};

use backbone::named::WeightSearch;
use backbone::vitdet::{load_vitdet_backbone, BackboneInit, BackboneWeights};

use crate::data::{train_stream, Batch, DetectionDataset, LoaderConfig, LsjConfig};
use crate::evaluate::{evaluate, EvalReport, EvalSplit};
use crate::model::{is_backbone_param, ModelInputs, ViTDet, BACKBONE_PREFIX};
use crate::recipe::Recipe;
use crate::weights::{self, ClassInfo};
use crate::{Error, Result};

/// Everything a training run needs besides the recipe.
#[derive(Debug)]
pub struct TrainRun {
    /// The recipe (model + training).
    pub recipe: Recipe,
    /// Folders named backbones are looked up in.
    pub weight_search: WeightSearch,
    /// Training split.
    pub train: Arc<DetectionDataset>,
    /// Validation split (evaluated periodically and at the end), if any.
    pub val: Option<EvalSplit>,
    /// Output directory (`config.toml`, `metrics.jsonl`, `model.safetensors`, `checkpoint/`).
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
pub struct TrainSummary {
    /// Where the backbone's initial values came from.
    pub backbone_init: BackboneInit,
    /// The final weights, `OUT/model.safetensors`.
    pub model_path: PathBuf,
    /// The last validation evaluation of this process, when there is a
    /// validation split.
    pub eval: Option<EvalReport>,
    /// The evaluation with the highest bbox AP of the whole run.
    pub best: Option<BestEval>,
    /// Its weights, `OUT/model_best.safetensors`.
    pub best_model_path: Option<PathBuf>,
    /// Training images per second over this process's steps (data waits
    /// included, evaluation and checkpoints not).
    pub train_img_s: f64,
    /// Iterations run by this process (fewer than `max_iter` after a resume).
    pub iterations: usize,
    /// How many training images could not be read (skipped), if any.
    pub skipped_images: Option<String>,
}

/// The detector's optimizer facts: the backbone follows the timm ViT
/// naming (layer ids, `pos_embed` without decay); only the backbone's
/// `nn.LayerNorm`s skip weight decay, as detectron2 (the pyramid's and heads'
/// channel norms are its own `LayerNorm` class and do decay).
struct DetectorRules {
    vit: ViTNameRules,
}

impl ParamRules for DetectorRules {
    fn num_layers(&self) -> usize {
        self.vit.num_layers
    }

    fn layer_id(&self, name: &str) -> usize {
        if is_backbone_param(name) {
            self.vit.layer_id(name)
        } else {
            self.vit.num_layers + 1
        }
    }

    fn no_weight_decay(&self, name: &str) -> bool {
        is_backbone_param(name) && self.vit.no_weight_decay(name)
    }

    fn is_norm(&self, name: &str) -> bool {
        is_backbone_param(name) && name.split('.').any(|p| p.starts_with("norm"))
    }
}

/// Trains a detector as `run` says and writes `OUT/model.safetensors`
/// (and `OUT/model_best.safetensors`, the highest bbox AP, with a
/// validation split), through engine's shared loop.
///
/// # Errors
/// A bad recipe, unreadable data or weights, a run directory that
/// contradicts `resume`, a diverging loss, or a failing tensor operation.
pub fn train(run: &TrainRun) -> Result<TrainSummary> {
    let recipe = &run.recipe;
    recipe.validate()?;
    let cfg = &recipe.train;
    let dir = RunDir::open(&run.out, run.resume)?;
    let classes: Vec<ClassInfo> = (0..run.train.num_classes())
        .map(|i| ClassInfo { id: run.train.category_id(i).unwrap_or_default(), name: run.train.class_names()[i].clone() })
        .collect();

    let vit = recipe.model.vit_config()?;
    let varmap = VarMap::new();
    // A resumed run's weights come from its checkpoint: no need for the pre-trained file.
    let spec = if run.resume { "scratch" } else { cfg.backbone.as_str() };
    let weights = BackboneWeights { spec, arch_name: &recipe.model.arch, arch: &vit, search: &run.weight_search, seed: cfg.seed };
    let loaded = load_vitdet_backbone(&weights, &recipe.model.backbone, &varmap, BACKBONE_PREFIX, &run.device)?;
    check_backbone_arch(&loaded.config, &vit, &cfg.backbone, &recipe.model.arch)?;
    let model = ViTDet::with_backbone(&recipe.model, loaded.backbone, classes.len(), VarBuilder::from_varmap(&varmap, DType::F32, &run.device))?;
    let named = engine::vars::named_vars(&varmap)?;
    crate::init::init_heads(&named, BACKBONE_PREFIX, cfg.seed)?;

    let rules = DetectorRules { vit: ViTNameRules { num_layers: vit.depth } };
    let layer_decay = (cfg.layer_decay < 1.0).then_some(cfg.layer_decay);
    let groups = build_param_groups(&named, &rules, cfg.weight_decay, layer_decay, DecayRule::SkipNormAndListed)?;
    let optimizer = Box::new(AdamW::new(groups, cfg.optimizer.clone())?);
    dir.record_config(recipe, run.resume)?;

    let mut task = DetectionTask { run, varmap, named, model, classes, last_report: None };
    let trainer = Trainer::new(&mut task, optimizer, loop_config(run), dir, run.resume)?;
    let lsj = LsjConfig { image_size: recipe.model.input_size(), min_scale: cfg.lsj_scale[0], max_scale: cfg.lsj_scale[1], flip_prob: 0.5 };
    let loader_cfg = LoaderConfig { batch_size: cfg.batch_size / cfg.grad_accum, threads: rayon::current_num_threads(), prefetch: 2, seed: cfg.seed, lsj };
    let mut stream = train_stream(run.train.clone(), loader_cfg, trainer.start_micro_batch())?;
    let summary = trainer.run(stream.by_ref().map(Ok))?;
    Ok(TrainSummary {
        backbone_init: loaded.init,
        model_path: summary.model_path,
        eval: task.last_report,
        best: summary.best,
        best_model_path: summary.best_model_path,
        train_img_s: summary.train_img_s,
        iterations: summary.iterations,
        skipped_images: stream.stats().summary(),
    })
}

/// The shared loop's settings from the recipe: evaluation only with a
/// validation split.
fn loop_config(run: &TrainRun) -> LoopConfig {
    let cfg = &run.recipe.train;
    LoopConfig {
        max_iter: cfg.max_iter,
        images_per_step: cfg.batch_size,
        grad_accum: cfg.grad_accum,
        schedule: cfg.schedule.clone(),
        clip_grad_norm: (cfg.clip_grad_norm > 0.0).then_some(cfg.clip_grad_norm),
        eval_period: if run.val.is_some() { EvalPeriod::from_period(cfg.eval_period) } else { EvalPeriod::Never },
        checkpoint_period: cfg.checkpoint_period,
        seed: cfg.seed,
        max_empty_batches: DEFAULT_MAX_EMPTY_BATCHES,
        progress: run.progress.clone(),
    }
}

/// Detection as a [`TrainTask`]: Mask R-CNN losses on LSJ batches, COCO
/// bbox and segm evaluation on the validation split.
struct DetectionTask<'a> {
    run: &'a TrainRun,
    /// The variables, which the model's layers share.
    varmap: VarMap,
    /// The same variables with their names, sorted.
    named: Vec<(String, Var)>,
    model: ViTDet,
    classes: Vec<ClassInfo>,
    /// The report of the last evaluation.
    last_report: Option<EvalReport>,
}

/// The metric that selects `OUT/model_best.safetensors`.
const PRIMARY_METRIC: &str = "bbox_AP";

impl TrainTask for DetectionTask<'_> {
    type Batch = Batch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        self.named.clone()
    }

    fn losses(&mut self, batch: &Batch, rng: &mut TrainRng) -> Result<LossTerms> {
        let inputs = ModelInputs::from_samples(&batch.samples, &self.run.device)?;
        let losses = self.model.losses(&inputs.images, &inputs.image_hw, &inputs.targets, rng)?;
        Ok(LossTerms::new(losses.named().into_iter().map(|(name, t)| (name.to_string(), t.clone())).collect())?)
    }

    /// A batch whose every image failed to decode (counted by the loader).
    fn is_empty(&self, batch: &Batch) -> bool {
        batch.samples.is_empty()
    }

    fn evaluate(&mut self, _iter: usize) -> Result<Option<Evaluation>> {
        let Some(val) = &self.run.val else { return Ok(None) };
        let model = &self.run.recipe.model;
        let frozen = weights::inference_copy(&self.varmap, model, self.classes.len(), &self.run.device)?;
        let report = evaluate(&frozen, val, model.input_size(), self.run.recipe.train.eval_batch_size, &self.run.device, None)?;
        let metrics = vec![
            ("bbox_AP".to_string(), report.bbox.stats[0]),
            ("bbox_AP50".to_string(), report.bbox.stats[1]),
            ("segm_AP".to_string(), report.segm.stats[0]),
            ("segm_AP50".to_string(), report.segm.stats[1]),
        ];
        self.last_report = Some(report);
        Ok(Some(Evaluation::new(metrics).with_primary(PRIMARY_METRIC)))
    }

    fn save_model(&self, path: &Path) -> Result<()> {
        weights::save(path, &self.varmap, &self.run.recipe.model, &self.classes)
    }
}

/// A pre-trained backbone must be the recipe's architecture: the pyramid
/// and the saved model configuration are built for it.
fn check_backbone_arch(found: &backbone::VitConfig, want: &backbone::VitConfig, spec: &str, arch: &str) -> Result<()> {
    if (found.embed_dim, found.depth, found.num_heads) != (want.embed_dim, want.depth, want.num_heads) {
        return Err(Error::Config {
            key: "model.arch",
            msg: format!(
                "--backbone {spec} is a ViT of width {}, depth {}, {} heads, but the recipe's arch `{arch}` has width {}, depth {}, {} heads; set model.arch to match",
                found.embed_dim, found.depth, found.num_heads, want.embed_dim, want.depth, want.num_heads
            ),
        });
    }
    Ok(())
}
