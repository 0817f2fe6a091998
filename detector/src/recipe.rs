//! Training recipes: one TOML file with a `[model]` section ([`ModelConfig`])
//! and a `[train]` section ([`TrainConfig`]); `configs/vitdet_tiny_coco.toml`
//! is the paper's, `configs/vitdet_tiny_shapes.toml` the CPU demo's (which
//! starts from it with `base = "vitdet_tiny_coco.toml"`). Files, built-in
//! names, bases and `--set` overrides are read through
//! [`engine::recipe_file::RecipeFile`].

use std::path::Path;

use coco::shapes::{SceneParams, ShapesConfig, ShapesTask};
use engine::optim::AdamWConfig;
use engine::schedule::Schedule;
use engine::recipe_file::RecipeFile;
use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;
use crate::{Error, Result};

/// How a detector is trained. Defaults are the paper's (maelite-recipes.md
/// §7, detectron2 `mask_rcnn_vitdet_b_100ep.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Backbone initialisation: `scratch`, a released checkpoint's name
    /// (`distilled_mae_tiny`, `mae_tiny`, `mocov3_tiny`, `deit_tiny`) or a
    /// weights file; `vitdet train --backbone` overrides it.
    pub backbone: String,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Micro-batches each step is split into (gradients are summed), so a
    /// large batch fits a small device; must divide `batch_size`.
    pub grad_accum: usize,
    /// Optimizer steps of the whole run.
    pub max_iter: usize,
    /// AdamW betas and eps.
    pub optimizer: AdamWConfig,
    /// Weight decay (0 for the backbone's norms and `pos_embed`).
    pub weight_decay: f64,
    /// Layer-wise lr decay of the backbone (1.0: none, the paper's value).
    pub layer_decay: f64,
    /// Learning-rate schedule, in optimizer steps.
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub clip_grad_norm: f64,
    /// Smallest and largest large-scale-jitter scale.
    pub lsj_scale: [f64; 2],
    /// Evaluate on the validation split every this many steps (0: only at the end).
    pub eval_period: usize,
    /// Write the resume checkpoint every this many steps (and at the end).
    pub checkpoint_period: usize,
    /// Images per batch at evaluation.
    pub eval_batch_size: usize,
    /// Seed of initialisation, sampling and augmentation.
    pub seed: u64,
    /// Mixed precision: `"f32"` (everything in f32, the default) or
    /// `"bf16"` (bf16 products in linear layers, attention and convolutions
    /// with f32 weights, norms, softmax, losses and optimizer state, as
    /// `torch.autocast(dtype=torch.bfloat16)`; for GPUs, see
    /// [`engine::ops::Precision`]).
    pub precision: engine::ops::Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        let max_iter = 184_375;
        Self {
            backbone: "distilled_mae_tiny".into(),
            batch_size: 64,
            grad_accum: 1,
            max_iter,
            optimizer: AdamWConfig::default(),
            weight_decay: 0.05,
            layer_decay: 1.0,
            schedule: Schedule::WarmupMultiStep { base_lr: 1e-4, warmup_iters: 250, warmup_factor: 0.001, milestones: vec![max_iter * 24 / 27, max_iter * 26 / 27], gamma: 0.1 },
            clip_grad_norm: 0.0,
            lsj_scale: [0.1, 2.0],
            eval_period: 5000,
            checkpoint_period: 5000,
            eval_batch_size: 1,
            seed: 0,
            precision: engine::ops::Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Checks the cross-field rules once, at load time.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that breaks a rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &'static str, msg: String| Err(Error::Config { key, msg });
        if let Some((key, msg)) = engine::limits::batch_problem("train.batch_size", self.batch_size, "train.grad_accum", self.grad_accum) {
            let key = if key == "train.batch_size" { "train.batch_size" } else { "train.grad_accum" };
            return bad(key, msg);
        }
        if self.max_iter == 0 || self.max_iter > engine::limits::MAX_STEPS {
            return bad("train.max_iter", format!("{} must be from 1 to {}", self.max_iter, engine::limits::MAX_STEPS));
        }
        if !(self.lsj_scale[0] > 0.0 && self.lsj_scale[0] <= self.lsj_scale[1]) {
            return bad("train.lsj_scale", format!("{:?} must be [min, max] with 0 < min <= max", self.lsj_scale));
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return bad("train.layer_decay", format!("{} must be in (0, 1]", self.layer_decay));
        }
        if self.eval_batch_size > engine::limits::MAX_MICRO_BATCH {
            return bad("train.eval_batch_size", format!("{} is more than {} images in one forward pass", self.eval_batch_size, engine::limits::MAX_MICRO_BATCH));
        }
        if self.eval_batch_size == 0 || self.checkpoint_period == 0 {
            return bad("train.checkpoint_period", "checkpoint_period and eval_batch_size must be >= 1".into());
        }
        self.schedule.validate().map_err(|e| Error::Config { key: "train.schedule", msg: e.to_string() })
    }

    /// The same recipe shortened or lengthened to `max_iter` steps: cosine
    /// length and step milestones scale with it, the warmup is kept (capped
    /// at the new length).
    pub fn with_max_iter(&self, max_iter: usize) -> Self {
        let scale = |i: usize| ((i as f64) * max_iter as f64 / self.max_iter as f64).round() as usize;
        let schedule = match &self.schedule {
            Schedule::WarmupCosine { base_lr, total_iters, warmup_iters, warmup_lr_start, min_lr } => {
                Schedule::WarmupCosine { base_lr: *base_lr, total_iters: scale(*total_iters), warmup_iters: (*warmup_iters).min(max_iter), warmup_lr_start: *warmup_lr_start, min_lr: *min_lr }
            }
            Schedule::WarmupMultiStep { base_lr, warmup_iters, warmup_factor, milestones, gamma } => Schedule::WarmupMultiStep {
                base_lr: *base_lr,
                warmup_iters: (*warmup_iters).min(max_iter),
                warmup_factor: *warmup_factor,
                milestones: milestones.iter().map(|&m| scale(m)).collect(),
                gamma: *gamma,
            },
            other => other.clone(),
        };
        Self { max_iter, schedule, ..self.clone() }
    }
}

/// The built-in synthetic dataset a run generates when it is given no data
/// (`vitdet data shapes` with these sizes and the recipe's seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training images.
    pub shapes_train: usize,
    /// Validation images.
    pub shapes_val: usize,
    /// Image side in pixels.
    pub shapes_size: u32,
    /// What an image contains (`[data.scene]`; default: `vitdet data
    /// shapes`' COCO-like mix).
    pub scene: SceneParams,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { shapes_train: 300, shapes_val: 60, shapes_size: 128, scene: SceneParams::default() }
    }
}

impl DataConfig {
    /// The generator settings for this section and a seed.
    pub fn shapes_config(&self, seed: u64) -> ShapesConfig {
        ShapesConfig {
            train: self.shapes_train,
            val: self.shapes_val,
            size: self.shapes_size,
            seed,
            task: ShapesTask::Detection,
            scene: self.scene.clone(),
            ..ShapesConfig::default()
        }
    }

    /// Checks the sizes and the scene against each other.
    ///
    /// # Errors
    /// [`Error::Config`] naming `data` and what is out of range.
    pub fn validate(&self) -> Result<()> {
        self.shapes_config(0).validate().map_err(|e| match e {
            coco::Error::ShapesConfig { field: "size", reason } => Error::Config { key: "data.shapes_size", msg: reason },
            coco::Error::ShapesConfig { field, reason } => Error::Config { key: "data.scene", msg: format!("{field} {reason}") },
            other => Error::Config { key: "data", msg: other.to_string() },
        })
    }
}

/// The recipes shipped in `configs/`, built into the binary so `--config NAME` works anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("vitdet_tiny_shapes", include_str!("../../configs/vitdet_tiny_shapes.toml")),
    ("vitdet_tiny_coco", include_str!("../../configs/vitdet_tiny_coco.toml")),
];

/// A whole recipe file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// The network.
    pub model: ModelConfig,
    /// The training run.
    pub train: TrainConfig,
    /// Data generated when none is given.
    pub data: DataConfig,
}

impl RecipeFile for Recipe {
    type Error = Error;
    const BUILTIN: &'static [(&'static str, &'static str)] = BUILTIN;

    fn parse(text: &str, origin: &Path) -> Result<Self> {
        let recipe: Recipe = engine::recipe_file::from_text(text, origin)?;
        recipe.validate().map_err(|e| Error::Recipe { path: origin.to_path_buf(), msg: e.to_string() })?;
        Ok(recipe)
    }
}

impl Recipe {
    /// Checks every section.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that breaks a rule.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.train.validate()?;
        self.data.validate()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_are_the_papers_schedule() {
        let t = TrainConfig::default();
        assert_eq!(t.schedule, Schedule::WarmupMultiStep { base_lr: 1e-4, warmup_iters: 250, warmup_factor: 0.001, milestones: vec![163_888, 177_546], gamma: 0.1 });
        t.validate().unwrap();
    }

    #[test]
    fn shortening_scales_the_milestones() {
        let t = TrainConfig::default().with_max_iter(1000);
        match t.schedule {
            Schedule::WarmupMultiStep { milestones, warmup_iters, .. } => {
                assert_eq!(milestones, vec![889, 963]);
                assert_eq!(warmup_iters, 250);
            }
            other => panic!("unexpected schedule {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let err = Recipe::parse("[train]\nmax_iter = 10\nbatch = 3\n", Path::new("r.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("r.toml") && msg.contains("batch") && msg.contains("(line 3, column 1)"), "{msg}");
    }

    #[test]
    fn demo_recipe_asks_for_the_calibration_scene() {
        let recipe = Recipe::load_or_builtin("vitdet_tiny_shapes").unwrap();
        let scene = &recipe.data.scene;
        assert_eq!(scene.categories.len(), 5);
        assert_eq!((scene.objects, scene.sides, scene.crowd_probability), ([1, 6], Some([8.0, 64.0]), 0.0));
    }

    #[test]
    fn out_of_range_scene_is_a_config_error_naming_data() {
        let err = Recipe::parse("[data]\nshapes_size = 64\n[data.scene]\nsides = [8.0, 100.0]\n", Path::new("r.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data.scene") && msg.contains("sides [8, 100]"), "{msg}");
        let err = Recipe::parse("[data.scene]\ncategories = [\"blob\"]\n", Path::new("r.toml")).unwrap_err();
        assert!(err.to_string().contains("blob"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Recipe>("[train]\nbatch = 3\n").unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
    }

    #[test]
    fn precision_defaults_to_f32_reads_bf16_and_rejects_other_values_naming_the_key() {
        use engine::ops::Precision;
        let origin = std::path::Path::new("r.toml");
        assert_eq!(Recipe::default().train.precision, Precision::F32);
        assert_eq!(Recipe::parse("[train]\nprecision = \"bf16\"\n", origin).unwrap().train.precision, Precision::Bf16);
        let err = Recipe::parse("[train]\nprecision = \"fp16\"\n", origin).unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("expected \"f32\" or \"bf16\"") && err.contains("line 2") && !err.contains('\n'), "{err}");
    }
}
