//! Pre-training recipes: one TOML file with `[model]`, `[data]` and
//! `[train]` sections. The defaults are MAE-Lite's released MAE-Tiny recipe
//! (maelite-recipes.md §2: `mae_lite_exp.py`, `timm_imagenet_exp.py`);
//! `configs/pretrain_mae_tiny.toml` spells it out with every value
//! commented, `configs/pretrain_mae_shapes_tiny.toml` is the CPU-sized
//! variant for the built-in synthetic images. A `[distill]` table
//! ([`crate::distill::DistillConfig`]) makes it a distilled-MAE recipe
//! (`configs/pretrain_distill_mae_tiny.toml`, `pretrain_distill_shapes_tiny.toml`,
//! which start from the MAE recipes with `base`, read through
//! [`engine::recipe_file::RecipeFile`]).
//! A `[mocov3]` table ([`MocoV3Section`]) makes it a MoCo-v3 recipe whose
//! left-out keys take MAE-Lite's released MoCo-v3-Tiny values (§3,
//! [`Recipe::released`], the constants of [`crate::mocov3::recipe`]):
//! `configs/pretrain_mocov3_tiny.toml`, `pretrain_mocov3_shapes_tiny.toml`.
//!
//! A `[knn]` table ([`KnnConfig`]) sets the optional k-NN monitor
//! (`--knn-data`): its dataset layout, k, temperature and period.
//!
//! Recipes count in epochs, as MAE-Lite does; the training loop counts
//! optimizer steps, so [`Recipe::plan`] converts once the image count is
//! known (`iters_per_epoch = floor(N / batch)`, the loader's `drop_last`).

use std::path::Path;

use engine::optim::{AdamWConfig, OptimizerConfig};
use engine::schedule::Schedule;
use engine::recipe_file::RecipeFile;
use serde::{Deserialize, Serialize};
use vision::transforms::{Interpolation, TrainTransformConfig};

use crate::knn::KnnConfig;
use crate::mae::{DecoderConfig, MaeSpec};
use crate::mocov3::{self, MocoV3Config};
use crate::{Error, Result};

/// The pre-training objective a recipe trains, from its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Masked autoencoder ([`crate::mae`]): neither `[distill]` nor `[mocov3]`.
    Mae,
    /// MAE with attention distillation ([`crate::distill`]): a `[distill]` table.
    Distill,
    /// MoCo-v3 ([`crate::mocov3`]): a `[mocov3]` table.
    Mocov3,
}

impl Method {
    /// The name `--method` uses.
    pub fn name(self) -> &'static str {
        match self {
            Method::Mae => "mae",
            Method::Distill => "distill",
            Method::Mocov3 => "mocov3",
        }
    }

    /// Augmented views of each image the method trains on.
    pub fn views_per_sample(self) -> usize {
        match self {
            Method::Mae | Method::Distill => 1,
            Method::Mocov3 => 2,
        }
    }
}

/// The masked autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Encoder ViT: `tiny` (the paper's, 12 heads), `tiny3`, `small`, `base`.
    pub arch: String,
    /// Fraction of each image's patches removed (MAE: 0.75).
    pub mask_ratio: f64,
    /// Per-patch normalised pixel targets (MAE-Lite: true).
    pub norm_pix_loss: bool,
    /// The decoder (MAE-Lite: width 96, depth 1, 3 heads, MLP ratio 4).
    pub decoder: DecoderConfig,
}

/// MoCo-v3's own settings (moco-v3's `moco_mlp_dim`, `moco_dim`, `moco_t`,
/// `moco_m`). Its encoder is `model.arch` at `data.input_size`
/// ([`Recipe::mocov3_config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MocoV3Section {
    /// Hidden width of the projector and the predictor (4096).
    pub mlp_dim: usize,
    /// Output width of the projector and the predictor (256).
    pub dim: usize,
    /// InfoNCE temperature T; each loss term is scaled by 2T (0.2).
    pub temperature: f64,
    /// Momentum at iteration 0, rising to 1 by a cosine over the run (0.99).
    pub base_momentum: f64,
}

impl Default for MocoV3Section {
    fn default() -> Self {
        let c = MocoV3Config::default();
        Self { mlp_dim: c.mlp_dim, dim: c.dim, temperature: c.temperature, base_momentum: c.base_momentum }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { arch: "tiny".into(), mask_ratio: 0.75, norm_pix_loss: true, decoder: DecoderConfig::default() }
    }
}

/// Input resolution and the built-in synthetic images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Square input side in pixels (a multiple of the patch size); the
    /// encoder's and decoder's sin-cos tables are built for its grid.
    pub input_size: usize,
    /// The built-in synthetic set, generated when no `--data` is given.
    pub synthetic: SyntheticConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { input_size: 224, synthetic: SyntheticConfig::default() }
    }
}

/// The built-in synthetic images: the shapes classification set, whose
/// labels pre-training ignores; the same layout `vitdet finetune` reads, so
/// a pre-training run's `OUT/data` also serves the downstream fine-tune.
pub use coco::shapes::SyntheticClassification as SyntheticConfig;

/// How the autoencoder is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the images.
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
    /// Optimizer and its hyper-parameters (AdamW, betas [0.9, 0.95]).
    pub optimizer: OptimizerConfig,
    /// Learning rate per 256 images: `lr = blr * batch_size / 256`.
    pub blr: f64,
    /// Weight decay. MAE: 1-D parameters and biases get none, the cls and
    /// mask tokens do (timm's `create_optimizer` without a skip list).
    /// MoCo-v3: every parameter (`torch.optim.AdamW(model.parameters())`).
    pub weight_decay: f64,
    /// Linear warmup from `warmup_lr`, in epochs.
    pub warmup_epochs: f64,
    /// Learning rate at iteration 0, where the warmup starts (MAE: 0,
    /// MoCo-v3: MAE-Lite's `warmup_lr` 1e-6).
    pub warmup_lr: f64,
    /// Floor of the per-iteration cosine decay.
    pub min_lr: f64,
    /// Write the resume checkpoint every this many epochs (and at the end).
    pub checkpoint_period_epochs: usize,
    /// Seed of initialisation, masking and augmentation.
    pub seed: u64,
    /// Mixed precision: `"f32"` (everything in f32, the default) or
    /// `"bf16"` (bf16 products in linear layers, attention and convolutions
    /// with f32 weights, norms, softmax, losses and optimizer state, as
    /// `torch.autocast(dtype=torch.bfloat16)`; for GPUs, see
    /// [`engine::ops::Precision`]).
    pub precision: engine::ops::Precision,
    /// Training augmentation.
    pub augment: AugmentConfig,
}

/// MAE's pre-training augmentation (MoCo-v3 has its two fixed views,
/// `vision::transforms::ssl_view`, and leaves this section at its defaults):
/// MAE-Lite's (timm 0.4.12 `create_loader` with
/// `is_training=True`, no colour jitter, no RandAugment, no erasing):
/// RandomResizedCrop, horizontal flip, normalisation. The keys are those of
/// timm's `transforms_imagenet_train` that this pipeline uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// RandomResizedCrop area range, fractions of the image ([0.08, 1]; MAE's own code: [0.2, 1]).
    pub scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio range, width / height ([3/4, 4/3]).
    pub ratio: [f64; 2],
    /// Crop resize filter: `random` (bilinear or bicubic per image, timm's), `bilinear`, `bicubic`.
    pub interpolation: Interpolation,
    /// Horizontal flip probability (0.5).
    pub hflip: f64,
    /// Normalisation mean per channel (ImageNet).
    pub mean: [f32; 3],
    /// Normalisation standard deviation per channel (ImageNet).
    pub std: [f32; 3],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        let timm = TrainTransformConfig::mae_pretrain(224);
        Self { scale: timm.scale, ratio: timm.ratio, interpolation: timm.interpolation, hflip: timm.hflip, mean: timm.mean, std: timm.std }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 400,
            max_iter: None,
            batch_size: 4096,
            grad_accum: 8,
            optimizer: OptimizerConfig::Adamw(AdamWConfig { betas: [0.9, 0.95], eps: 1e-8 }),
            blr: 1.5e-4,
            weight_decay: 0.05,
            warmup_epochs: 40.0,
            warmup_lr: 0.0,
            min_lr: 0.0,
            checkpoint_period_epochs: 1,
            seed: 0,
            precision: engine::ops::Precision::F32,
            augment: AugmentConfig::default(),
        }
    }
}

impl TrainConfig {
    /// MAE-Lite's released MoCo-v3-Tiny optimisation
    /// ([`crate::mocov3::recipe`]): 400 epochs at batch 1024, AdamW (0.9,
    /// 0.999), weight decay 0.1 on every parameter, lr 1.5e-4 · batch / 256
    /// warmed up from 1e-6 over 40 epochs, then a cosine to 0.
    pub fn mocov3() -> Self {
        use mocov3::recipe as r;
        Self {
            epochs: r::EPOCHS,
            batch_size: r::BATCH_SIZE,
            grad_accum: 1,
            optimizer: OptimizerConfig::Adamw(r::adamw()),
            blr: r::BLR,
            weight_decay: r::WEIGHT_DECAY,
            warmup_epochs: r::WARMUP_EPOCHS as f64,
            warmup_lr: r::WARMUP_LR_START,
            ..Self::default()
        }
    }
}

/// The recipes shipped in `configs/`, built into the binary so `--config NAME` works anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("pretrain_mae_tiny", include_str!("../../configs/pretrain_mae_tiny.toml")),
    ("pretrain_mae_shapes_tiny", include_str!("../../configs/pretrain_mae_shapes_tiny.toml")),
    ("pretrain_distill_mae_tiny", include_str!("../../configs/pretrain_distill_mae_tiny.toml")),
    ("pretrain_distill_shapes_tiny", include_str!("../../configs/pretrain_distill_shapes_tiny.toml")),
    ("pretrain_mocov3_tiny", include_str!("../../configs/pretrain_mocov3_tiny.toml")),
    ("pretrain_mocov3_shapes_tiny", include_str!("../../configs/pretrain_mocov3_shapes_tiny.toml")),
];

/// A whole pre-training recipe. `Default` is MAE's released recipe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// The network and its loss.
    pub model: ModelConfig,
    /// Input size and synthetic images.
    pub data: DataConfig,
    /// Optimisation and augmentation.
    pub train: TrainConfig,
    /// The teacher and the distilled layers (`--method distill` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distill: Option<crate::distill::DistillConfig>,
    /// MoCo-v3's projector, predictor, temperature and momentum (`--method mocov3` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mocov3: Option<MocoV3Section>,
    /// The k-NN monitor's vote and period (read with `--knn-data` only).
    pub knn: KnnConfig,
}

/// A recipe's run in optimizer steps, for a known number of images.
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
    /// Checkpoint every this many steps.
    pub checkpoint_period: usize,
    /// Run the k-NN monitor every this many steps (0: after the last only).
    pub knn_period: usize,
}

impl RecipeFile for Recipe {
    type Error = Error;
    const BUILTIN: &'static [(&'static str, &'static str)] = BUILTIN;

    fn parse(text: &str, origin: &Path) -> Result<Self> {
        // First pass on the text itself, so a mistake is reported with its line.
        let mut recipe: Recipe = engine::recipe_file::from_text(text, origin)?;
        if recipe.mocov3.is_some() {
            recipe = with_released_defaults(Method::Mocov3, text).map_err(|e| Error::config("recipe", format!("{}: {e}", origin.display())))?;
        }
        recipe.validate()?;
        Ok(recipe)
    }
}

impl Recipe {
    /// `method`'s released recipe: for MoCo-v3, what a key left out of a
    /// recipe with a `[mocov3]` table takes.
    pub fn released(method: Method) -> Self {
        match method {
            Method::Mae => Self::default(),
            Method::Distill => Self { distill: Some(crate::distill::DistillConfig::default()), ..Self::default() },
            Method::Mocov3 => Self { mocov3: Some(MocoV3Section::default()), train: TrainConfig::mocov3(), ..Self::default() },
        }
    }

    /// The objective this recipe trains.
    pub fn method(&self) -> Method {
        match (&self.distill, &self.mocov3) {
            (_, Some(_)) => Method::Mocov3,
            (Some(_), None) => Method::Distill,
            (None, None) => Method::Mae,
        }
    }

    /// The model spec: the encoder `model.arch` at `data.input_size`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown arch.
    pub fn spec(&self) -> Result<MaeSpec> {
        let arch = backbone::VitConfig::by_name(&self.model.arch).map_err(|e| Error::config("model.arch", e.to_string()))?;
        let m = &self.model;
        Ok(MaeSpec::new(&arch, self.data.input_size, m.decoder.clone(), m.mask_ratio, m.norm_pix_loss))
    }

    /// The MoCo-v3 model: `[mocov3]` (its defaults when absent) around the
    /// encoder `model.arch` at `data.input_size`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown arch.
    pub fn mocov3_config(&self) -> Result<MocoV3Config> {
        let arch = backbone::VitConfig::by_name(&self.model.arch).map_err(|e| Error::config("model.arch", e.to_string()))?;
        let m = self.mocov3.clone().unwrap_or_default();
        Ok(MocoV3Config {
            vit: MocoV3Config::encoder_vit(&arch, self.data.input_size),
            mlp_dim: m.mlp_dim,
            dim: m.dim,
            temperature: m.temperature,
            base_momentum: m.base_momentum,
        })
    }

    /// Checks the cross-field rules once, at load time.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that breaks a rule.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let spec = self.spec()?;
        if self.data.input_size == 0 || !self.data.input_size.is_multiple_of(spec.encoder.patch_size) {
            return Err(Error::config("data.input_size", format!("must be a positive multiple of the patch size {}", spec.encoder.patch_size)));
        }
        spec.validate()?;
        if let Some(d) = &self.distill {
            d.validate(spec.encoder.depth)?;
        }
        self.data.synthetic.shapes_config(0).validate().map_err(|e| Error::config("data.synthetic", e.to_string()))?;
        if let Some((key, msg)) = engine::limits::batch_problem("train.batch_size", t.batch_size, "train.grad_accum", t.grad_accum) {
            return Err(Error::config(&key, msg));
        }
        if t.epochs == 0 {
            return Err(Error::config("train.epochs", "must be >= 1"));
        }
        if !(t.blr > 0.0 && t.blr.is_finite()) {
            return Err(Error::config("train.blr", "must be a positive learning rate"));
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return Err(Error::config("train.weight_decay", "must be >= 0"));
        }
        if !(t.min_lr >= 0.0 && t.min_lr.is_finite()) {
            return Err(Error::config("train.min_lr", "must be >= 0"));
        }
        if t.warmup_epochs < 0.0 || t.warmup_epochs > t.epochs as f64 {
            return Err(Error::config("train.warmup_epochs", "must be between 0 and train.epochs"));
        }
        if !(t.warmup_lr >= 0.0 && t.warmup_lr.is_finite()) {
            return Err(Error::config("train.warmup_lr", "must be >= 0"));
        }
        if t.checkpoint_period_epochs == 0 {
            return Err(Error::config("train.checkpoint_period_epochs", "must be >= 1 epoch"));
        }
        self.train_transform().build().map_err(|e| Error::config("train.augment", e.to_string()))?;
        self.knn.validate()?;
        if self.mocov3.is_some() {
            self.validate_mocov3()?;
        }
        Ok(())
    }

    /// A MoCo-v3 recipe's own rules: no `[distill]`, the MAE-only keys at
    /// their defaults (a value there would be silently ignored), a valid
    /// model, and at least two images a micro-batch.
    fn validate_mocov3(&self) -> Result<()> {
        if self.distill.is_some() {
            return Err(Error::config("distill", "a recipe trains one method: [distill] and [mocov3] exclude each other"));
        }
        let (m, mae) = (&self.model, ModelConfig::default());
        if m.mask_ratio != mae.mask_ratio || m.norm_pix_loss != mae.norm_pix_loss || m.decoder != mae.decoder {
            return Err(Error::config("model.mask_ratio, model.norm_pix_loss, model.decoder", "MAE settings; a [mocov3] recipe does not read them"));
        }
        if self.train.augment != AugmentConfig::default() {
            return Err(Error::config("train.augment", "MoCo-v3 trains on MAE-Lite's two fixed BYOL views (vision::transforms::ssl_view); leave this section out"));
        }
        self.mocov3_config()?.validate().map_err(|e| Error::config("mocov3", e.to_string()))?;
        let micro = self.train.batch_size / self.train.grad_accum;
        if micro < 2 {
            return Err(Error::config("train.batch_size", format!("MoCo-v3 contrasts the images of a micro-batch: batch_size / grad_accum must be >= 2, got {micro}")));
        }
        Ok(())
    }

    /// The training transform, timm's pipeline at `data.input_size` with
    /// `train.augment`'s crop, flip and normalisation and nothing else.
    pub fn train_transform(&self) -> TrainTransformConfig {
        let a = &self.train.augment;
        TrainTransformConfig { scale: a.scale, ratio: a.ratio, interpolation: a.interpolation, hflip: a.hflip, mean: a.mean, std: a.std, ..TrainTransformConfig::mae_pretrain(self.data.input_size) }
    }

    /// The run in optimizer steps for `images` training images, or for
    /// `max_iter` steps when given (`--max-iter`: the schedule then spans
    /// those steps, with the warmup scaled to the same fraction).
    ///
    /// # Errors
    /// [`Error::Config`] when there are no images.
    pub fn plan(&self, images: usize, max_iter: Option<usize>) -> Result<Plan> {
        let t = &self.train;
        if images == 0 {
            return Err(Error::config("data", "the pre-training set has no images"));
        }
        let iters_per_epoch = (images / t.batch_size).max(1);
        let max_iter = match max_iter {
            Some(n) => n,
            None => engine::limits::epochs_in_steps(t.epochs, iters_per_epoch).map_err(|msg| Error::config("train.epochs", msg))?,
        }
        .max(1);
        let warmup = (t.warmup_epochs / t.epochs as f64 * max_iter as f64).round() as usize;
        let lr = t.blr * t.batch_size as f64 / 256.0;
        let schedule = Schedule::WarmupCosine { base_lr: lr, total_iters: max_iter, warmup_iters: warmup.min(max_iter), warmup_lr_start: t.warmup_lr, min_lr: t.min_lr.min(lr) };
        let knn_period = self.knn.period_epochs.saturating_mul(iters_per_epoch);
        Ok(Plan { iters_per_epoch, max_iter, lr, schedule, checkpoint_period: t.checkpoint_period_epochs.saturating_mul(iters_per_epoch), knn_period })
    }
}

/// The recipe in `text` with the keys it leaves out taken from `method`'s
/// released recipe, merged one level deep: a `[section]` of the text
/// overrides the keys it names, a sub-table (`[train.optimizer]`) replaces
/// the released one whole.
fn with_released_defaults(method: Method, text: &str) -> std::result::Result<Recipe, String> {
    let user: toml::Table = toml::from_str(text).map_err(|e| engine::toml_errors::message(&e))?;
    let mut merged = toml::Table::try_from(Recipe::released(method)).map_err(|e| e.to_string())?;
    for (key, value) in user {
        match (merged.get_mut(&key), value) {
            (Some(toml::Value::Table(section)), toml::Value::Table(keys)) => section.extend(keys),
            (_, value) => {
                merged.insert(key, value);
            }
        }
    }
    merged.try_into().map_err(|e: toml::de::Error| engine::toml_errors::message(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_released_mae_tiny_recipe() {
        let r = Recipe::default();
        let spec = r.spec().unwrap();
        assert_eq!((spec.encoder.embed_dim, spec.encoder.depth, spec.encoder.num_heads, spec.encoder.img_size), (192, 12, 12, 224));
        assert_eq!(spec.decoder, DecoderConfig { embed_dim: 96, depth: 1, num_heads: 3, mlp_ratio: 4.0 });
        assert_eq!((r.model.mask_ratio, r.model.norm_pix_loss), (0.75, true));
        assert_eq!(r.train.optimizer, OptimizerConfig::Adamw(AdamWConfig { betas: [0.9, 0.95], eps: 1e-8 }));
        assert_eq!((r.train.blr, r.train.weight_decay, r.train.min_lr), (1.5e-4, 0.05, 0.0));
        assert_eq!((r.train.epochs, r.train.warmup_epochs, r.train.batch_size), (400, 40.0, 4096));
        let a = r.train_transform();
        assert_eq!((a.scale, a.interpolation, a.hflip, a.color_jitter.clone(), a.re_prob), ([0.08, 1.0], Interpolation::Random, 0.5, None, 0.0));
        // The built-in file says the same as the defaults.
        assert_eq!(Recipe::load_or_builtin("pretrain_mae_tiny").unwrap(), r);
    }

    #[test]
    fn plan_gives_the_released_lr_and_warmup() {
        let r = Recipe::default();
        // ImageNet-1k: 1,281,167 images, 312 steps per epoch at 4096.
        let plan = r.plan(1_281_167, None).unwrap();
        assert_eq!(plan.iters_per_epoch, 312);
        assert!((plan.lr - 2.4e-3).abs() < 1e-15);
        assert_eq!(plan.schedule, Schedule::WarmupCosine { base_lr: plan.lr, total_iters: 124_800, warmup_iters: 12_480, warmup_lr_start: 0.0, min_lr: 0.0 });
        let short = r.plan(1_281_167, Some(100)).unwrap();
        assert!(matches!(short.schedule, Schedule::WarmupCosine { warmup_iters: 10, total_iters: 100, .. }));
    }

    #[test]
    fn every_built_in_recipe_parses_and_errors_name_the_key() {
        for (name, _) in BUILTIN {
            Recipe::load_or_builtin(name).map_err(|e| format!("{name}: {e}")).unwrap();
        }
        let e = Recipe::parse("[model]\nmask_ratio = 1.0\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("model.mask_ratio"), "{e}");
        let e = Recipe::parse("[train]\nepoch = 3\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("r.toml (line 2, column 1)") && e.contains("epoch"), "{e}");
        let e = Recipe::parse("[data]\ninput_size = 70\n", Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("data.input_size"), "{e}");
        let e = Recipe::load_or_builtin("nope").unwrap_err().to_string();
        assert!(e.contains("pretrain_mae_shapes_tiny") && e.contains("pretrain_mocov3_tiny"), "{e}");
    }

    #[test]
    fn keys_a_mocov3_recipe_leaves_out_take_the_released_mocov3_values() {
        let r = Recipe::parse("[mocov3]\n[train]\nepochs = 50\n[train.optimizer]\nkind = \"adamw\"\nbetas = [0.9, 0.98]\n", Path::new("r.toml")).unwrap();
        assert_eq!(r.method(), Method::Mocov3);
        let released = Recipe::released(Method::Mocov3);
        assert_eq!(r.train, TrainConfig { epochs: 50, optimizer: OptimizerConfig::Adamw(AdamWConfig { betas: [0.9, 0.98], eps: 1e-8 }), ..released.train.clone() });
        assert_eq!((r.train.batch_size, r.train.weight_decay, r.train.warmup_lr), (1024, 0.1, 1e-6));
        assert_eq!(r.mocov3_config().unwrap(), MocoV3Config::default());
        // --input-size reaches the encoder.
        let small = Recipe { data: DataConfig { input_size: 64, ..r.data.clone() }, ..r };
        assert_eq!(small.mocov3_config().unwrap().vit.img_size, 64);
        // An MAE recipe keeps MAE's values.
        let mae = Recipe::parse("[train]\nepochs = 50\n", Path::new("r.toml")).unwrap();
        assert_eq!((mae.method(), mae.train.batch_size), (Method::Mae, 4096));
        // The written recipe reads back unchanged.
        let text = toml::to_string(&released).unwrap();
        assert_eq!(Recipe::parse(&text, Path::new("config.toml")).unwrap(), released);
    }

    #[test]
    fn settings_a_mocov3_recipe_would_ignore_are_errors() {
        let cases = [
            ("[mocov3]\n[model]\nmask_ratio = 0.5\n", "model.mask_ratio"),
            ("[mocov3]\n[train.augment]\nhflip = 0.0\n", "train.augment"),
            ("[mocov3]\nbase_momentum = 1.5\n", "base_momentum"),
            ("[mocov3]\n[train]\nbatch_size = 8\ngrad_accum = 8\n", "train.batch_size"),
            ("[mocov3]\n[distill]\n", "[distill] and [mocov3]"),
            ("[mocov3]\nmoco_t = 0.2\n", "r.toml (line 2, column 1)"),
        ];
        for (text, needle) in cases {
            let e = Recipe::parse(text, Path::new("r.toml")).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_knn_table_takes_dinos_values_and_names_bad_keys() {
        use vision::datasets::DatasetKind;
        let r = Recipe::parse("[knn]\ndataset = \"flowers\"\nperiod_epochs = 2\n", Path::new("r.toml")).unwrap();
        assert_eq!(r.knn, KnnConfig { dataset: DatasetKind::Flowers, k: 20, temperature: 0.07, period_epochs: 2 });
        assert_eq!(r.plan(3 * 4096, None).unwrap().knn_period, 6, "2 epochs of 3 steps");
        let text = toml::to_string(&r).unwrap();
        assert_eq!(Recipe::parse(&text, Path::new("config.toml")).unwrap(), r);
        let moco = Recipe::parse("[mocov3]\n[knn]\nk = 5\n", Path::new("r.toml")).unwrap();
        assert_eq!((moco.knn.k, moco.knn.temperature, moco.knn.period_epochs), (5, 0.07, 10));
        let cases = [
            ("[knn]\ndataset = \"nope\"\n", "unknown dataset `nope`: expected one of imagenet, folder"),
            ("[knn]\nk = 0\n", "knn.k"),
            ("[knn]\ntemperature = -1.0\n", "knn.temperature"),
            ("[knn]\nneighbours = 5\n", "r.toml (line 2, column 1)"),
        ];
        for (text, needle) in cases {
            let e = Recipe::parse(text, Path::new("r.toml")).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_warmup_starts_at_warmup_lr() {
        let mut r = Recipe::released(Method::Mocov3);
        let plan = r.plan(10_240, Some(100)).unwrap();
        assert_eq!(plan.schedule.lr_at(0), 1e-6);
        assert!(matches!(plan.schedule, Schedule::WarmupCosine { warmup_iters: 10, total_iters: 100, min_lr, .. } if min_lr == 0.0));
        r.train.warmup_lr = -1.0;
        assert!(r.validate().unwrap_err().to_string().contains("train.warmup_lr"));
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
