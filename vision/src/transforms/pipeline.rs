//! Whole training pipelines: timm's `transforms_imagenet_train` (fine-tuning,
//! transfer and MAE pre-training) and MAE-Lite's two asymmetric MoCo-v3/BYOL
//! views (`mae_lite/data/transforms.py::ssl_transform`).
//!
//! Shapes: every pipeline returns one image as a `3 × size × size` float
//! tensor, channel-major, normalised with `mean`/`std` (ToTensor then
//! Normalize).
//!
//! timm order (0.4.12 and 1.0 alike): RandomResizedCropAndInterpolation →
//! horizontal flip → RandAugment *or* ColorJitter (timm 0.4.12 ignores colour
//! jitter whenever `auto_augment` is set) → normalise → RandomErasing.
//! RandAugment gets timm's hparams: fill `round(255 · mean)`, the train
//! interpolation for its affine ops unless it is `random` (then a random
//! bilinear/bicubic per op), `translate_pct` 0.45. (timm's
//! `translate_const = int(0.45 · size)` only feeds the absolute Translate
//! ops, which RandAugment's lists do not contain.)

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::crop::{Interpolation, RandomResizedCrop};
use super::erasing::{EraseMode, RandomErasing};
use super::geometry::{hflip_in_place, Resample};
use super::photometric::{random_gaussian_blur, random_grayscale, random_solarize, ColorJitter};
use super::rand_augment::{RandAugment, RandAugmentConfig, TRANSLATE_PCT};
use super::random::coin;
use super::TransformError;
use crate::normalize::{to_chw_normalized, IMAGENET_MEAN, IMAGENET_STD};
use crate::RgbImage;


/// timm's `color_jitter` argument: one strength for brightness, contrast and
/// saturation (no hue), or 3 or 4 per-component strengths. 0 disables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColorJitterSpec {
    /// `(v, v, v)`: brightness, contrast and saturation, no hue.
    Uniform(f64),
    /// `[brightness, contrast, saturation]` or `[.., hue]`.
    PerComponent(Vec<f64>),
}

/// The arguments of timm's `transforms_imagenet_train`, with its defaults.
/// Checked and resolved by [`TrainTransformConfig::build`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainTransformConfig {
    /// Output side length in pixels (224).
    pub size: usize,
    /// RandomResizedCrop area range, fractions of the image ([0.08, 1]).
    pub scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio range, width / height ([3/4, 4/3]).
    pub ratio: [f64; 2],
    /// Crop resize filter, also used by RandAugment's affine ops ("random").
    pub interpolation: Interpolation,
    /// Horizontal flip probability (0.5).
    pub hflip: f64,
    /// Colour jitter strengths (0.4); ignored when `auto_augment` is set.
    pub color_jitter: Option<ColorJitterSpec>,
    /// timm auto-augment string, e.g. `rand-m9-mstd0.5-inc1` (none).
    pub auto_augment: Option<String>,
    /// RandomErasing probability (0).
    pub re_prob: f64,
    /// RandomErasing fill (`const`).
    pub re_mode: EraseMode,
    /// RandomErasing maximum number of boxes (1).
    pub re_count: usize,
    /// Normalisation mean per channel (ImageNet).
    pub mean: [f32; 3],
    /// Normalisation standard deviation per channel (ImageNet).
    pub std: [f32; 3],
}

impl Default for TrainTransformConfig {
    fn default() -> Self {
        Self {
            size: 224,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            interpolation: Interpolation::Random,
            hflip: 0.5,
            color_jitter: Some(ColorJitterSpec::Uniform(0.4)),
            auto_augment: None,
            re_prob: 0.0,
            re_mode: EraseMode::Const,
            re_count: 1,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl TrainTransformConfig {
    /// MAE-Lite's MAE pre-training pipeline (maelite-recipes §2, timm
    /// `create_loader(is_training=True)` with `color_jitter=None`):
    /// RandomResizedCrop (0.08-1, random interpolation), flip 0.5, normalise.
    pub fn mae_pretrain(size: usize) -> Self {
        Self { size, color_jitter: None, ..Self::default() }
    }

    /// Checks every field and resolves the pipeline.
    ///
    /// # Errors
    /// [`TransformError::InvalidConfig`] naming the key and what it must be;
    /// [`TransformError::RandAugment`] for a malformed `auto_augment`;
    /// [`TransformError::UnsupportedAutoAugment`] for timm's AutoAugment or
    /// AugMix policies.
    pub fn build(&self) -> Result<TrainTransform, TransformError> {
        if self.size == 0 {
            return Err(TransformError::invalid("size", "at least 1", self.size));
        }
        let range = |key: &'static str, r: [f64; 2]| {
            if r.iter().all(|v| v.is_finite() && *v > 0.0) && r[0] <= r[1] {
                Ok((r[0], r[1]))
            } else {
                Err(TransformError::invalid(key, "[lo, hi] with 0 < lo <= hi", format!("{r:?}")))
            }
        };
        let crop = RandomResizedCrop { size: self.size, scale: range("scale", self.scale)?, ratio: range("ratio", self.ratio)?, interpolation: self.interpolation };
        if !(0.0..=1.0).contains(&self.hflip) {
            return Err(TransformError::invalid("hflip", "a probability in [0, 1]", self.hflip));
        }
        if !self.std.iter().all(|s| s.is_finite() && *s > 0.0) || !self.mean.iter().all(|m| m.is_finite()) {
            return Err(TransformError::invalid("mean/std", "finite, with std > 0", format!("{:?} / {:?}", self.mean, self.std)));
        }
        let rand_augment = match self.auto_augment.as_deref() {
            None | Some("") => None,
            Some(s) if s.starts_with("rand") => Some(RandAugment {
                config: RandAugmentConfig::parse(s)?,
                fill: self.mean.map(|m| (255.0 * f64::from(m)).round_ties_even().min(255.0) as u8),
                resample: match self.interpolation {
                    Interpolation::Bilinear => Some(Resample::Bilinear),
                    Interpolation::Bicubic => Some(Resample::Bicubic),
                    Interpolation::Random => None,
                },
                translate_pct: TRANSLATE_PCT,
            }),
            Some(other) => return Err(TransformError::UnsupportedAutoAugment(other.to_string())),
        };
        let color_jitter = match (&self.color_jitter, &rand_augment) {
            (Some(spec), None) => Some(color_jitter_from(spec)?),
            _ => None,
        };
        let erasing = if self.re_prob > 0.0 { Some(RandomErasing::new(self.re_prob, self.re_mode, self.re_count)?) } else { None };
        Ok(TrainTransform { crop, hflip: self.hflip, rand_augment, color_jitter, erasing, mean: self.mean, std: self.std })
    }
}

/// timm's expansion of `color_jitter` into `ColorJitter(*color_jitter)`.
fn color_jitter_from(spec: &ColorJitterSpec) -> Result<ColorJitter, TransformError> {
    match spec {
        ColorJitterSpec::Uniform(v) => ColorJitter::new(*v, *v, *v, 0.0),
        ColorJitterSpec::PerComponent(v) => match v.as_slice() {
            [b, c, s] => ColorJitter::new(*b, *c, *s, 0.0),
            [b, c, s, h] => ColorJitter::new(*b, *c, *s, *h),
            _ => Err(TransformError::invalid("color_jitter", "a number or a list of 3 or 4 numbers", format!("{v:?}"))),
        },
    }
}

/// A checked `transforms_imagenet_train` pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTransform {
    crop: RandomResizedCrop,
    hflip: f64,
    rand_augment: Option<RandAugment>,
    color_jitter: Option<ColorJitter>,
    erasing: Option<RandomErasing>,
    mean: [f32; 3],
    std: [f32; 3],
}

/// Rejects images with no pixels (no crop box exists).
fn check_not_empty(img: &RgbImage) -> Result<(), TransformError> {
    if img.height == 0 || img.width == 0 {
        return Err(TransformError::EmptyImage { height: img.height, width: img.width });
    }
    Ok(())
}

/// torchvision's `RandomHorizontalFlip(p)`: flips with probability `p`.
pub fn random_hflip(mut img: RgbImage, p: f64, rng: &mut impl Rng) -> RgbImage {
    if coin(rng, p) {
        hflip_in_place(&mut img);
    }
    img
}

impl TrainTransform {
    /// Augments one image into a normalised `3 × size × size` tensor.
    ///
    /// # Errors
    /// [`TransformError::EmptyImage`] for an image without pixels.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> Result<Vec<f32>, TransformError> {
        check_not_empty(img)?;
        let mut out = self.crop.apply(img, rng);
        out = random_hflip(out, self.hflip, rng);
        if let Some(ra) = &self.rand_augment {
            out = ra.apply_owned(out, rng);
        } else if let Some(cj) = &self.color_jitter {
            out = cj.apply(&out, rng);
        }
        let mut tensor = to_chw_normalized(&out, self.mean, self.std);
        if let Some(erasing) = &self.erasing {
            erasing.apply(&mut tensor, out.height, out.width, rng);
        }
        Ok(tensor)
    }

    /// The output side length.
    pub fn size(&self) -> usize {
        self.crop.size
    }
}

/// Which of MAE-Lite's two MoCo-v3/BYOL views (maelite-recipes §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslView {
    /// View 1 (`transform_q`): blur always, no solarisation.
    Query,
    /// View 2 (`transform_k`): blur with p 0.1, solarisation with p 0.2.
    Key,
}

/// MAE-Lite's view `view` (1: query, 2: key) at `size` pixels; see
/// [`SslViewTransform::new`].
///
/// # Errors
/// As [`SslViewTransform::new`].
pub fn ssl_view(view: u8, size: usize) -> Result<SslViewTransform, TransformError> {
    SslViewTransform::new(view, size)
}

/// Probability of ColorJitter(0.4, 0.4, 0.2, 0.1) in both views.
const SSL_JITTER_PROB: f64 = 0.8;
/// Probability of grayscale in both views.
const SSL_GRAYSCALE_PROB: f64 = 0.2;
/// Horizontal flip probability in both views.
const SSL_FLIP_PROB: f64 = 0.5;

/// MAE-Lite's `ssl_transform` for one view: RandomResizedCrop (0.08-1,
/// bilinear) → ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8 → GaussianBlur
/// (sigma 0.1-2) with p 1.0 (view 1) or 0.1 (view 2) → grayscale p 0.2 →
/// flip p 0.5 → (view 2 only) solarise p 0.2 → normalise (ImageNet).
#[derive(Clone, Debug, PartialEq)]
pub struct SslViewTransform {
    view: SslView,
    crop: RandomResizedCrop,
    jitter: ColorJitter,
}

impl SslViewTransform {
    /// The view pipeline for `view` 1 (query) or 2 (key) at `size` pixels.
    ///
    /// # Errors
    /// [`TransformError::InvalidConfig`] for a view other than 1 or 2 or a
    /// zero size.
    pub fn new(view: u8, size: usize) -> Result<Self, TransformError> {
        let view = match view {
            1 => SslView::Query,
            2 => SslView::Key,
            _ => return Err(TransformError::invalid("ssl view", "1 or 2", view)),
        };
        if size == 0 {
            return Err(TransformError::invalid("size", "at least 1", size));
        }
        let crop = RandomResizedCrop { size, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), interpolation: Interpolation::Bilinear };
        Ok(Self { view, crop, jitter: ColorJitter::new(0.4, 0.4, 0.2, 0.1)? })
    }

    /// Augments one image into a normalised `3 × size × size` tensor.
    ///
    /// # Errors
    /// [`TransformError::EmptyImage`] for an image without pixels.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> Result<Vec<f32>, TransformError> {
        check_not_empty(img)?;
        let (blur_prob, solarize_prob) = match self.view {
            SslView::Query => (1.0, 0.0),
            SslView::Key => (0.1, 0.2),
        };
        let mut out = self.crop.apply(img, rng);
        if coin(rng, SSL_JITTER_PROB) {
            out = self.jitter.apply(&out, rng);
        }
        out = random_gaussian_blur(&out, blur_prob, rng);
        out = random_grayscale(&out, SSL_GRAYSCALE_PROB, rng);
        out = random_hflip(out, SSL_FLIP_PROB, rng);
        if self.view == SslView::Key {
            out = random_solarize(&out, solarize_prob, rng);
        }
        Ok(to_chw_normalized(&out, IMAGENET_MEAN, IMAGENET_STD))
    }
}

