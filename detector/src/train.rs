//! The training loop: parameter groups, AdamW with the recipe's schedule,
//! gradient accumulation, clipping, periodic COCO evaluation, atomic
//! checkpoints and exact `--resume`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::checkpoint::{var_tensors, TrainState};
use engine::optim::{build_param_groups, clip_grad_norm, AdamW, DecayRule, Optimizer, ParamRules, ViTNameRules};
use engine::progress::{Progress, ProgressConfig, StepStats};
use engine::rng::TrainRng;
use engine::run_dir::{Record, RunDir};

use backbone::named::WeightSearch;
use backbone::vitdet::{load_vitdet_backbone, BackboneInit, BackboneWeights};

use crate::data::{train_stream, DetectionDataset, LoaderConfig, LsjConfig};
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
    /// The final validation evaluation, when there is a validation split.
    pub eval: Option<EvalReport>,
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

/// Consecutive empty batches (every image unreadable) before training gives up.
const MAX_EMPTY_BATCHES: usize = 100;

/// Trains a detector as `run` says and writes `OUT/model.safetensors`.
///
/// # Errors
/// A bad recipe, unreadable data or weights, a run directory that
/// contradicts `resume`, or a failing tensor operation.
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
    let mut optimizer = AdamW::new(groups, cfg.optimizer.clone())?;
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();

    let (start, mut rng) = if run.resume {
        let ckpt = dir.load_checkpoint(&run.device)?;
        engine::checkpoint::restore_vars(&named, &ckpt.model)?;
        optimizer.load_state(&ckpt.optim, ckpt.state.optimizer_steps)?;
        (ckpt.state.iter, ckpt.state.rng)
    } else {
        dir.write_config(recipe)?;
        (0, TrainRng::seed_from_u64(cfg.seed))
    };
    let mut metrics = dir.metrics_writer(run.resume.then_some(start))?;
    let micro = cfg.batch_size / cfg.grad_accum;
    let lsj = LsjConfig { image_size: recipe.model.input_size(), min_scale: cfg.lsj_scale[0], max_scale: cfg.lsj_scale[1], flip_prob: 0.5 };
    let loader_cfg = LoaderConfig { batch_size: micro, threads: rayon::current_num_threads(), prefetch: 2, seed: cfg.seed, lsj };
    let mut stream = train_stream(run.train.clone(), loader_cfg, (start * cfg.grad_accum) as u64)?;
    let mut progress = Progress::new(cfg.max_iter, start, run.progress.clone());
    let mut train_seconds = 0.0;
    let mut last_eval = None;

    for iter in start..cfg.max_iter {
        let step_began = Instant::now();
        let lr = cfg.schedule.lr_at(iter);
        let mut grads: Option<GradStore> = None;
        let mut terms = vec![0.0f64; 5];
        let mut term_names = Vec::new();
        for _ in 0..cfg.grad_accum {
            // A batch whose every image failed to decode (counted by the loader) is skipped.
            let batch = stream
                .by_ref()
                .take(MAX_EMPTY_BATCHES)
                .find(|b| !b.samples.is_empty())
                .ok_or(Error::Config { key: "data", msg: format!("{MAX_EMPTY_BATCHES} training batches in a row had no readable image") })?;
            let inputs = ModelInputs::from_samples(&batch.samples, &run.device)?;
            let losses = model.losses(&inputs.images, &inputs.image_hw, &inputs.targets, &mut rng)?;
            let total = (losses.total()? / cfg.grad_accum as f64)?;
            let g = total.backward()?;
            for (k, (name, v)) in losses.values()?.into_iter().enumerate() {
                terms[k] += v / cfg.grad_accum as f64;
                if term_names.len() < 5 {
                    term_names.push(name);
                }
            }
            grads = Some(match grads {
                None => g,
                Some(acc) => add_grads(acc, &g, &vars)?,
            });
        }
        let mut grads = grads.ok_or(Error::Config { key: "train.grad_accum", msg: "no micro-batch ran".into() })?;
        let grad_norm = if cfg.clip_grad_norm > 0.0 { Some(clip_grad_norm(&mut grads, &vars, cfg.clip_grad_norm)?) } else { None };
        optimizer.step(&grads, lr)?;

        let loss: f64 = terms.iter().sum();
        if !loss.is_finite() {
            return Err(Error::Config { key: "train.schedule", msg: format!("loss became {loss} at iteration {iter}; lower the learning rate or enable clip_grad_norm") });
        }
        let step_seconds = step_began.elapsed().as_secs_f64();
        train_seconds += step_seconds;
        let img_s = cfg.batch_size as f64 / step_seconds.max(1e-9);
        let mut record = Record::new(iter, loss, lr, img_s);
        for (name, v) in term_names.iter().zip(&terms) {
            record = record.term(*name, *v);
        }
        if let Some(n) = grad_norm {
            record = record.extra("grad_norm", n);
        }
        let done = iter + 1;
        let eval_now = done == cfg.max_iter || (cfg.eval_period > 0 && done % cfg.eval_period == 0);
        if eval_now {
            if let Some(val) = &run.val {
                let frozen = weights::inference_copy(&varmap, &recipe.model, classes.len(), &run.device)?;
                let report = evaluate(&frozen, val, recipe.model.input_size(), cfg.eval_batch_size, &run.device, None)?;
                record = record.extra("bbox_AP", report.bbox.stats[0]).extra("bbox_AP50", report.bbox.stats[1]).extra("segm_AP", report.segm.stats[0]).extra("segm_AP50", report.segm.stats[1]);
                last_eval = Some(report);
            }
        }
        metrics.log(&record)?;
        progress.update(iter, StepStats { loss, lr, img_s });
        if done == cfg.max_iter || done % cfg.checkpoint_period == 0 {
            let state = TrainState { iter: done, optimizer_steps: optimizer.step_count(), rng: rng.clone(), user: serde_json::Value::Null };
            dir.save_checkpoint(&var_tensors(&named), &optimizer.state()?, &state)?;
            weights::save(&dir.model_path(), &varmap, &recipe.model, &classes)?;
        }
    }
    progress.finish();
    let iterations = cfg.max_iter.saturating_sub(start);
    if iterations == 0 {
        weights::save(&dir.model_path(), &varmap, &recipe.model, &classes)?;
    }
    Ok(TrainSummary {
        backbone_init: loaded.init,
        model_path: dir.model_path(),
        eval: last_eval,
        train_img_s: (iterations * cfg.batch_size) as f64 / train_seconds.max(1e-9),
        iterations,
        skipped_images: stream.stats().summary(),
    })
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

/// `acc + g` for every variable's gradient (gradient accumulation).
fn add_grads(mut acc: GradStore, g: &GradStore, vars: &[Var]) -> Result<GradStore> {
    for v in vars {
        let t: &Tensor = v.as_tensor();
        match (acc.get(t).cloned(), g.get(t)) {
            (Some(a), Some(b)) => {
                acc.insert(t, (a + b)?);
            }
            (None, Some(b)) => {
                acc.insert(t, b.clone());
            }
            _ => {}
        }
    }
    Ok(acc)
}
