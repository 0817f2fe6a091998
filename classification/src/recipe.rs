//! Classification recipes: one TOML file with `[model]`, `[data]` and
//! `[train]` sections. The defaults are MAE-Lite's improved ImageNet
//! fine-tuning recipe (maelite-recipes.md §5); `configs/finetune_*.toml`
//! hold the paper's recipes and the CPU-sized ones for the synthetic set;
//! the per-dataset transfer recipes start from `transfer_cifar100_tiny.toml`
//! (`base`, read through [`engine::recipe_file::RecipeFile`]).
//!
//! Recipes count in epochs, as timm and MAE-Lite do; the training loop counts
//! optimizer steps, so [`Recipe::plan`] converts once the training set's size
//! is known (`iters_per_epoch = floor(N / batch)`, timm's `drop_last`).

use std::path::Path;

use engine::optim::{AdamWConfig, OptimizerConfig};
use engine::schedule::Schedule;
use engine::recipe_file::RecipeFile;
use serde::{Deserialize, Serialize};

use vision::resize::Filter;
use vision::transforms::{Interpolation, TrainTransformConfig};

use crate::mixup::MixupConfig;
use crate::{Error, Result};

/// The network: a plain ViT with a linear classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// ViT size for `scratch` and for checkpoints that do not store their
    /// config: `tiny` (12 heads, the paper's), `tiny3`, `small`, `base`.
    pub arch: String,
    /// `avg`: mean of the patch tokens then `fc_norm` (MAE-style fine-tuning,
    /// the paper's default); `cls`: the cls token after the final `norm`
    /// (DeiT, MoCo-v3, the linear probe).
    pub pool: backbone::Pool,
    /// Stochastic depth of the last block (0.0 in the paper's recipes).
    pub drop_path_rate: f64,
    /// Standard deviation of the classifier's truncated-normal initial
    /// weights (bias 0). MAE's fine-tuning uses 2e-5, its linear probe 0.01.
    pub head_init_std: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { arch: "tiny".into(), pool: backbone::Pool::Avg, drop_path_rate: 0.0, head_init_std: 2e-5 }
    }
}

/// Input resolution and the evaluation transform (the training
/// augmentations are in [`TrainConfig`], since they are part of the recipe's
/// regularisation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Square input side in pixels (timm's `--input-size`); the position
    /// table is resized bicubically to this grid when the model is built.
    pub input_size: usize,
    /// Evaluation resize: shorter side to `floor(input_size / crop_pct)`,
    /// then a centre crop (timm's `crop_pct`, 0.875 for ViTs).
    pub crop_pct: f64,
    /// Evaluation resize filter (`bicubic` as timm's ViTs, or `bilinear`).
    pub eval_interpolation: Filter,
    /// Images per batch at evaluation.
    pub eval_batch_size: usize,
    /// The built-in synthetic set, generated when no `--data` is given.
    pub synthetic: SyntheticConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { input_size: 224, crop_pct: 0.875, eval_interpolation: Filter::Bicubic, eval_batch_size: 64, synthetic: SyntheticConfig::default() }
    }
}

/// The built-in synthetic classification set, shared with the other tasks
/// that generate it ([`coco::shapes::SyntheticClassification`]).
pub use coco::shapes::SyntheticClassification as SyntheticConfig;

/// How the classifier is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Initial weights: `scratch`, a released checkpoint's name
    /// (`mae_tiny`, `distilled_mae_tiny`, `mocov3_tiny`, `deit_tiny`) or a
    /// weights file; `vitdet finetune --backbone` overrides it.
    pub backbone: String,
    /// Train only a linear classifier on frozen features: BatchNorm without
    /// affine before the head, as MAE's linear probe.
    pub linear_probe: bool,
    /// Keep only the first K pre-trained blocks and re-initialise the rest
    /// (the paper's layer-reservation experiment, Fig. 2 and 4); absent: all.
    pub keep_blocks: Option<usize>,
    /// Passes over the training set.
    pub epochs: usize,
    /// Optimizer steps of the run when it is cut short or stretched
    /// (`--max-iter`; the schedule then spans them instead of `epochs`);
    /// absent: `epochs` decide. Kept in `OUT/config.toml` like every key, so
    /// `--resume` continues with the length the run was given.
    pub max_iter: Option<usize>,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Micro-batches each step is split into (gradients summed); must divide `batch_size`.
    pub grad_accum: usize,
    /// Optimizer and its hyper-parameters (`kind = "adamw"`, `"sgd"` or `"lars"`).
    pub optimizer: OptimizerConfig,
    /// Learning rate per 256 images: `lr = blr * batch_size / 256`.
    pub blr: f64,
    /// Weight decay (none for biases, norms, `pos_embed` and `cls_token`).
    pub weight_decay: f64,
    /// Layer-wise lr decay: block i's lr is scaled by `decay^(depth + 1 - (i + 1))` (1.0: none).
    pub layer_decay: f64,
    /// Linear warmup from 0, in epochs.
    pub warmup_epochs: f64,
    /// Floor of the cosine decay.
    pub min_lr: f64,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub clip_grad_norm: f64,
    /// Label smoothing of the targets (of the mixed targets under mixup).
    pub label_smoothing: f64,
    /// Mixup / cutmix (timm's `Mixup`; its `num_classes` and
    /// `label_smoothing` are set from the dataset and `label_smoothing`).
    pub mixup: MixupConfig,
    /// Decay of an exponential moving average of the weights, evaluated
    /// beside them (timm's `ModelEmaV2`; 0: none).
    pub ema_decay: f64,
    /// Evaluate every this many epochs (and at the end).
    pub eval_period_epochs: usize,
    /// Write the resume checkpoint every this many epochs (and at the end).
    pub checkpoint_period_epochs: usize,
    /// Seed of initialisation, sampling and augmentation.
    pub seed: u64,
    /// Mixed precision: `"f32"` (everything in f32, the default) or
    /// `"bf16"` (bf16 products in linear layers, attention and convolutions
    /// with f32 weights, norms, softmax, losses and optimizer state, as
    /// `torch.autocast(dtype=torch.bfloat16)`; for GPUs, see
    /// [`engine::ops::Precision`]).
    pub precision: engine::ops::Precision,
    /// Training augmentation, timm's `transforms_imagenet_train` keys (its
    /// `size` is set from `data.input_size`). Keys a recipe leaves out take
    /// this recipe default's values (no colour jitter), not timm's
    /// (`color_jitter = 0.4`), like every other key of the recipe.
    #[serde(deserialize_with = "augment_over_recipe_defaults")]
    pub augment: TrainTransformConfig,
}

/// Reads `[train.augment]` over [`TrainConfig::default`]'s `augment`.
///
/// Without this, serde would fill the missing keys from
/// `TrainTransformConfig::default()`, timm's `transforms_imagenet_train`
/// defaults, and a transfer recipe that says nothing about colour jitter
/// would train with timm's 0.4 (the paper's transfer and probe recipes have
/// none). TOML has no null, so an optional key that the recipe default
/// leaves unset and the file does not name stays unset.
fn augment_over_recipe_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<TrainTransformConfig, D::Error> {
    use serde::de::Error as _;
    let given = toml::Table::deserialize(d)?;
    let mut merged = toml::Table::try_from(TrainConfig::default().augment).map_err(D::Error::custom)?;
    merged.extend(given);
    let (no_jitter, no_policy) = (!merged.contains_key("color_jitter"), !merged.contains_key("auto_augment"));
    let mut augment = TrainTransformConfig::deserialize(toml::Value::Table(merged)).map_err(D::Error::custom)?;
    if no_jitter {
        augment.color_jitter = None;
    }
    if no_policy {
        augment.auto_augment = None;
    }
    Ok(augment)
}

/// The RandAugment policy of `augment`, or `None` when `auto_augment` is
/// absent or `"none"` (TOML has no null, so recipes switch it off by name).
pub fn rand_augment_policy(augment: &TrainTransformConfig) -> Option<&str> {
    augment.auto_augment.as_deref().filter(|p| !p.is_empty() && *p != "none")
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            backbone: "mae_tiny".into(),
            linear_probe: false,
            keep_blocks: None,
            epochs: 300,
            max_iter: None,
            batch_size: 1024,
            grad_accum: 1,
            optimizer: OptimizerConfig::Adamw(AdamWConfig::default()),
            blr: 1e-3,
            weight_decay: 0.05,
            layer_decay: 0.85,
            warmup_epochs: 5.0,
            min_lr: 1e-6,
            clip_grad_norm: 0.0,
            label_smoothing: 0.0,
            mixup: MixupConfig { mixup_alpha: 0.2, cutmix_alpha: 0.0, prob: 1.0, switch_prob: 0.5, ..MixupConfig::default() },
            ema_decay: 0.0,
            eval_period_epochs: 1,
            checkpoint_period_epochs: 1,
            seed: 0,
            precision: engine::ops::Precision::F32,
            augment: TrainTransformConfig {
                size: 224,
                scale: [0.08, 1.0],
                ratio: [3.0 / 4.0, 4.0 / 3.0],
                interpolation: Interpolation::Bicubic,
                hflip: 0.5,
                // 0.3 in the release, but timm ignores it under RandAugment.
                color_jitter: None,
                auto_augment: Some("rand-m10-mstd0.5-inc1".into()),
                re_prob: 0.0,
                ..TrainTransformConfig::default()
            },
        }
    }
}

/// The recipes shipped in `configs/`, built into the binary so `--config NAME` works anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("finetune_imagenet_tiny", include_str!("../../configs/finetune_imagenet_tiny.toml")),
    ("finetune_shapes_tiny", include_str!("../../configs/finetune_shapes_tiny.toml")),
    ("scratch_deit_tiny", include_str!("../../configs/scratch_deit_tiny.toml")),
    ("linprobe_tiny", include_str!("../../configs/linprobe_tiny.toml")),
    ("transfer_cifar100_tiny", include_str!("../../configs/transfer_cifar100_tiny.toml")),
    ("transfer_flowers_tiny", include_str!("../../configs/transfer_flowers_tiny.toml")),
    ("transfer_pets_tiny", include_str!("../../configs/transfer_pets_tiny.toml")),
    ("transfer_aircraft_tiny", include_str!("../../configs/transfer_aircraft_tiny.toml")),
    ("transfer_cars_tiny", include_str!("../../configs/transfer_cars_tiny.toml")),
    ("transfer_inat18_tiny", include_str!("../../configs/transfer_inat18_tiny.toml")),
];

/// A whole classification recipe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// The network.
    pub model: ModelConfig,
    /// Input size and evaluation transform.
    pub data: DataConfig,
    /// Optimisation and augmentation.
    pub train: TrainConfig,
}

/// A recipe's run in optimizer steps, for a training set of known size.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Optimizer steps per epoch (`floor(N / batch)`, at least 1).
    pub iters_per_epoch: usize,
    /// Steps of the whole run.
    pub max_iter: usize,
    /// Peak learning rate `blr * batch / 256`.
    pub lr: f64,
    /// The per-step learning-rate schedule.
    pub schedule: Schedule,
    /// Evaluate every this many steps.
    pub eval_period: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_period: usize,
}

impl RecipeFile for Recipe {
    type Error = Error;
    const BUILTIN: &'static [(&'static str, &'static str)] = BUILTIN;

    fn parse(text: &str, origin: &Path) -> Result<Self> {
        let recipe: Recipe = engine::recipe_file::from_text(text, origin)?;
        recipe.validate()?;
        Ok(recipe)
    }
}

impl Recipe {
    /// Checks the cross-field rules once, at load time.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that breaks a rule.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let bad = |key: &str, msg: &str| Err(Error::Config { key: key.into(), msg: msg.into() });
        if self.data.input_size == 0 || !self.data.input_size.is_multiple_of(16) {
            return bad("data.input_size", "must be a positive multiple of the patch size 16");
        }
        if !(self.data.crop_pct > 0.0 && self.data.crop_pct <= 1.0) {
            return bad("data.crop_pct", "must be in (0, 1]");
        }
        self.data.synthetic.shapes_config(0).validate().map_err(|e| Error::Config { key: "data.synthetic".into(), msg: e.to_string() })?;
        if self.data.eval_batch_size == 0 || self.data.eval_batch_size > engine::limits::MAX_MICRO_BATCH {
            return bad("data.eval_batch_size", &format!("must be from 1 to {}", engine::limits::MAX_MICRO_BATCH));
        }
        if let Some((key, msg)) = engine::limits::batch_problem("train.batch_size", t.batch_size, "train.grad_accum", t.grad_accum) {
            return bad(&key, &msg);
        }
        if t.epochs == 0 {
            return bad("train.epochs", "must be >= 1");
        }
        if !(t.blr > 0.0 && t.blr.is_finite()) {
            return bad("train.blr", "must be a positive learning rate");
        }
        if !(t.layer_decay > 0.0 && t.layer_decay <= 1.0) {
            return bad("train.layer_decay", "must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return bad("train.label_smoothing", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&t.ema_decay) {
            return bad("train.ema_decay", "must be in [0, 1) (0 disables the EMA)");
        }
        if t.warmup_epochs < 0.0 || t.warmup_epochs > t.epochs as f64 {
            return bad("train.warmup_epochs", "must be between 0 and train.epochs");
        }
        if t.eval_period_epochs == 0 || t.checkpoint_period_epochs == 0 {
            return bad("train.eval_period_epochs", "periods must be >= 1 epoch");
        }
        if let Err(e) = self.train_transform().build() {
            return Err(Error::Config { key: "train.augment".into(), msg: e.to_string() });
        }
        if t.keep_blocks == Some(0) && t.backbone != "scratch" {
            // Allowed but pointless: say so rather than silently train from scratch.
            return bad("train.keep_blocks", "0 keeps no pre-trained block; use --backbone scratch instead");
        }
        Ok(())
    }

    /// The training transform: `train.augment` at `data.input_size`, with
    /// `auto_augment = "none"` meaning none.
    pub fn train_transform(&self) -> TrainTransformConfig {
        let augment = &self.train.augment;
        let auto_augment = rand_augment_policy(augment).map(str::to_string);
        TrainTransformConfig { size: self.data.input_size, auto_augment, ..augment.clone() }
    }

    /// The mixup settings for `num_classes` classes, or `None` when mixing is off.
    pub fn mixup(&self, num_classes: usize) -> Option<MixupConfig> {
        let m = &self.train.mixup;
        let on = m.prob > 0.0 && (m.mixup_alpha > 0.0 || m.cutmix_alpha > 0.0 || m.cutmix_minmax.is_some());
        on.then(|| MixupConfig { num_classes, label_smoothing: self.train.label_smoothing, ..m.clone() })
    }

    /// The run in optimizer steps for `train_len` training images, or for
    /// `max_iter` steps when given (`--max-iter`, the schedule then spans
    /// those steps, with the warmup scaled to the same fraction).
    ///
    /// # Errors
    /// [`Error::Config`] when the training set is empty.
    pub fn plan(&self, train_len: usize, max_iter: Option<usize>) -> Result<Plan> {
        let t = &self.train;
        if train_len == 0 {
            return Err(Error::Config { key: "data".into(), msg: "the training split has no images".into() });
        }
        let iters_per_epoch = (train_len / t.batch_size).max(1);
        let max_iter = match max_iter {
            Some(n) => n,
            None => engine::limits::epochs_in_steps(t.epochs, iters_per_epoch)
                .map_err(|msg| Error::Config { key: "train.epochs".into(), msg })?,
        }
        .max(1);
        let warmup = (t.warmup_epochs / t.epochs as f64 * max_iter as f64).round() as usize;
        let lr = t.blr * t.batch_size as f64 / 256.0;
        let schedule = Schedule::WarmupCosine { base_lr: lr, total_iters: max_iter, warmup_iters: warmup.min(max_iter), warmup_lr_start: 0.0, min_lr: t.min_lr.min(lr) };
        Ok(Plan {
            iters_per_epoch,
            max_iter,
            lr,
            schedule,
            // Past the run's end a period only means "at the end".
            eval_period: t.eval_period_epochs.saturating_mul(iters_per_epoch),
            checkpoint_period: t.checkpoint_period_epochs.saturating_mul(iters_per_epoch),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_papers_improved_imagenet_recipe() {
        let r = Recipe::default();
        assert_eq!((r.train.blr, r.train.weight_decay, r.train.layer_decay), (1e-3, 0.05, 0.85));
        assert_eq!((r.train.epochs, r.train.batch_size, r.train.warmup_epochs), (300, 1024, 5.0));
        assert_eq!(r.train.mixup.mixup_alpha, 0.2);
        assert_eq!(rand_augment_policy(&r.train.augment), Some("rand-m10-mstd0.5-inc1"));
        assert_eq!((r.data.input_size, r.data.crop_pct), (224, 0.875));
        assert_eq!(r.model.pool, backbone::Pool::Avg);
    }

    #[test]
    fn plan_scales_the_lr_with_the_batch_and_counts_whole_batches() {
        let mut r = Recipe::default();
        r.train.batch_size = 512;
        r.train.epochs = 10;
        r.train.warmup_epochs = 2.0;
        let plan = r.plan(5_000, None).unwrap();
        assert_eq!(plan.iters_per_epoch, 9); // 5000 / 512, drop_last
        assert_eq!(plan.max_iter, 90);
        assert!((plan.lr - 2e-3).abs() < 1e-15);
        assert!(matches!(plan.schedule, Schedule::WarmupCosine { warmup_iters: 18, total_iters: 90, .. }), "{:?}", plan.schedule);
        // --max-iter keeps the warmup's share of the run.
        let short = r.plan(5_000, Some(30)).unwrap();
        assert!(matches!(short.schedule, Schedule::WarmupCosine { warmup_iters: 6, total_iters: 30, .. }), "{:?}", short.schedule);
    }

    #[test]
    fn every_built_in_recipe_parses_and_names_its_policy() {
        for (name, _) in BUILTIN {
            let r = Recipe::load_or_builtin(name).map_err(|e| format!("{name}: {e}")).unwrap();
            let transfer = name.starts_with("transfer_") || name.starts_with("linprobe");
            assert_eq!(rand_augment_policy(&r.train.augment).is_none(), transfer || name.contains("shapes"), "{name}");
        }
        let transfer = Recipe::load_or_builtin("transfer_cifar100_tiny").unwrap();
        assert_eq!(transfer.train.optimizer, OptimizerConfig::Sgd(engine::optim::SgdConfig { momentum: 0.9, nesterov: true }));
        assert_eq!((transfer.train.layer_decay, transfer.train.clip_grad_norm, transfer.train.weight_decay), (0.75, 1.0, 0.0));
        let e = Recipe::load_or_builtin("nope").unwrap_err().to_string();
        assert!(e.contains("finetune_imagenet_tiny"), "{e}");
    }

    #[test]
    fn augment_keys_left_out_take_the_recipe_defaults_not_timms() {
        let r = Recipe::parse("[train.augment]\nhflip = 0.0\n", Path::new("r.toml")).unwrap();
        let want = TrainTransformConfig { hflip: 0.0, ..Recipe::default().train.augment };
        assert_eq!(r.train.augment, want);
        assert_eq!(r.train.augment.color_jitter, None);
        // A written config.toml reads back as the same recipe.
        for (name, _) in BUILTIN {
            let r = Recipe::load_or_builtin(name).unwrap();
            let again = Recipe::parse(&toml::to_string(&r).unwrap(), Path::new(name)).unwrap();
            assert_eq!(again, r, "{name}");
        }
        let e = Recipe::parse("[train.augment]\nhflipp = 0.0\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("hflipp") && e.contains("r.toml"), "{e}");
    }

    #[test]
    fn transfer_and_probe_recipes_have_no_colour_jitter() {
        for (name, _) in BUILTIN.iter().filter(|(n, _)| n.starts_with("transfer_") || n.starts_with("linprobe")) {
            let r = Recipe::load_or_builtin(name).unwrap();
            assert_eq!((r.train.augment.color_jitter.as_ref(), rand_augment_policy(&r.train.augment)), (None, None), "{name}");
        }
        let probe = Recipe::load_or_builtin("linprobe_tiny").unwrap();
        assert_eq!(probe.train.optimizer, OptimizerConfig::Lars(engine::optim::LarsConfig { momentum: 0.9, trust_coefficient: 0.001 }));
        assert!((probe.plan(1_281_167, None).unwrap().lr - 6.4).abs() < 1e-12, "blr 0.1 x 16384 / 256");
    }

    #[test]
    fn errors_name_the_key_or_position() {
        let e = Recipe::parse("[train]\nepochs = 0\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("train.epochs"), "{e}");
        let e = Recipe::parse("[train]\nepoch = 3\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("r.toml (line 2, column 1)") && e.contains("epoch"), "{e}");
        let e = Recipe::parse("[train]\nbatch_size = 10\ngrad_accum = 3\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("train.grad_accum"), "{e}");
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
