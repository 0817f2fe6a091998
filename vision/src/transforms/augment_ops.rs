//! The operations of timm's RandAugment (`timm/data/auto_augment.py`,
//! `NAME_TO_OP` and `LEVEL_TO_ARG`): each op's magnitude-to-argument mapping
//! and its Pillow implementation.
//!
//! Magnitudes are on timm's 0..10 scale (`_LEVEL_DENOM = 10`). Level
//! functions follow timm 1.0 (`min(256, ..)` for Solarize, `min(128, ..)` for
//! SolarizeAdd, `max(0.1, ..)` for the increasing enhancements); these clamps
//! only bite above magnitude 10 (`mmax`), where timm 0.4.12 (MAE-Lite's pin)
//! has no `mmax` at all, so both agree on every config 0.4.12 accepts.
//! Pinned against timm's `LEVEL_TO_ARG` in
//! `vision/tests/augment.rs::rand_augment_levels_match_timm`.

use super::color::{adjust_brightness, adjust_contrast, adjust_saturation, adjust_sharpness, auto_contrast, equalize, invert, posterize, solarize, solarize_add};
use super::geometry::{rotate, shear_x, shear_y, translate_x_rel, translate_y_rel, Resample};
use crate::RgbImage;

/// timm's `_LEVEL_DENOM`: magnitude 10 is the full-strength level.
pub const LEVEL_DENOM: f64 = 10.0;

/// One RandAugment operation, named as in timm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AugmentOp {
    /// `ImageOps.autocontrast`.
    AutoContrast,
    /// `ImageOps.equalize`.
    Equalize,
    /// `ImageOps.invert`.
    Invert,
    /// Rotation by up to ±30 degrees.
    Rotate,
    /// Keep `int(m / 10 * 4)` bits.
    Posterize,
    /// Keep `4 - int(m / 10 * 4)` bits.
    PosterizeIncreasing,
    /// Solarize at threshold `int(m / 10 * 256)`.
    Solarize,
    /// Solarize at threshold `256 - int(m / 10 * 256)`.
    SolarizeIncreasing,
    /// Add `int(m / 10 * 110)` below 128.
    SolarizeAdd,
    /// Saturation factor `m / 10 * 1.8 + 0.1`.
    Color,
    /// Saturation factor `1 ± m / 10 * 0.9`.
    ColorIncreasing,
    /// Contrast factor `m / 10 * 1.8 + 0.1`.
    Contrast,
    /// Contrast factor `1 ± m / 10 * 0.9`.
    ContrastIncreasing,
    /// Brightness factor `m / 10 * 1.8 + 0.1`.
    Brightness,
    /// Brightness factor `1 ± m / 10 * 0.9`.
    BrightnessIncreasing,
    /// Sharpness factor `m / 10 * 1.8 + 0.1`.
    Sharpness,
    /// Sharpness factor `1 ± m / 10 * 0.9`.
    SharpnessIncreasing,
    /// Horizontal shear by up to ±0.3.
    ShearX,
    /// Vertical shear by up to ±0.3.
    ShearY,
    /// Horizontal shift by up to ±`translate_pct` of the width.
    TranslateXRel,
    /// Vertical shift by up to ±`translate_pct` of the height.
    TranslateYRel,
}

/// timm's `_RAND_TRANSFORMS`, the ops of `rand-...` without `inc1`.
pub const RAND_TRANSFORMS: [AugmentOp; 15] = [
    AugmentOp::AutoContrast,
    AugmentOp::Equalize,
    AugmentOp::Invert,
    AugmentOp::Rotate,
    AugmentOp::Posterize,
    AugmentOp::Solarize,
    AugmentOp::SolarizeAdd,
    AugmentOp::Color,
    AugmentOp::Contrast,
    AugmentOp::Brightness,
    AugmentOp::Sharpness,
    AugmentOp::ShearX,
    AugmentOp::ShearY,
    AugmentOp::TranslateXRel,
    AugmentOp::TranslateYRel,
];

/// timm's `_RAND_INCREASING_TRANSFORMS`, the ops of `rand-...-inc1`
/// (severity grows with magnitude for every op).
pub const RAND_INCREASING_TRANSFORMS: [AugmentOp; 15] = [
    AugmentOp::AutoContrast,
    AugmentOp::Equalize,
    AugmentOp::Invert,
    AugmentOp::Rotate,
    AugmentOp::PosterizeIncreasing,
    AugmentOp::SolarizeIncreasing,
    AugmentOp::SolarizeAdd,
    AugmentOp::ColorIncreasing,
    AugmentOp::ContrastIncreasing,
    AugmentOp::BrightnessIncreasing,
    AugmentOp::SharpnessIncreasing,
    AugmentOp::ShearX,
    AugmentOp::ShearY,
    AugmentOp::TranslateXRel,
    AugmentOp::TranslateYRel,
];

/// What an op needs besides its argument: timm's `hparams` and kwargs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpContext {
    /// Fill colour of the affine ops (timm's `img_mean`).
    pub fill: [u8; 3],
    /// Resampling filter of the affine ops.
    pub resample: Resample,
    /// Maximum relative shift of TranslateX/YRel (timm `translate_pct`, 0.45).
    pub translate_pct: f64,
}

impl AugmentOp {
    /// timm's name of the op (the key of `NAME_TO_OP`).
    pub fn name(self) -> &'static str {
        match self {
            AugmentOp::AutoContrast => "AutoContrast",
            AugmentOp::Equalize => "Equalize",
            AugmentOp::Invert => "Invert",
            AugmentOp::Rotate => "Rotate",
            AugmentOp::Posterize => "Posterize",
            AugmentOp::PosterizeIncreasing => "PosterizeIncreasing",
            AugmentOp::Solarize => "Solarize",
            AugmentOp::SolarizeIncreasing => "SolarizeIncreasing",
            AugmentOp::SolarizeAdd => "SolarizeAdd",
            AugmentOp::Color => "Color",
            AugmentOp::ColorIncreasing => "ColorIncreasing",
            AugmentOp::Contrast => "Contrast",
            AugmentOp::ContrastIncreasing => "ContrastIncreasing",
            AugmentOp::Brightness => "Brightness",
            AugmentOp::BrightnessIncreasing => "BrightnessIncreasing",
            AugmentOp::Sharpness => "Sharpness",
            AugmentOp::SharpnessIncreasing => "SharpnessIncreasing",
            AugmentOp::ShearX => "ShearX",
            AugmentOp::ShearY => "ShearY",
            AugmentOp::TranslateXRel => "TranslateXRel",
            AugmentOp::TranslateYRel => "TranslateYRel",
        }
    }

    /// Whether timm's level function flips the argument's sign with
    /// probability 1/2 (`_randomly_negate`).
    pub fn random_sign(self) -> bool {
        matches!(
            self,
            AugmentOp::Rotate
                | AugmentOp::ShearX
                | AugmentOp::ShearY
                | AugmentOp::TranslateXRel
                | AugmentOp::TranslateYRel
                | AugmentOp::ColorIncreasing
                | AugmentOp::ContrastIncreasing
                | AugmentOp::BrightnessIncreasing
                | AugmentOp::SharpnessIncreasing
        )
    }

    /// Whether the op resamples geometry (and so draws a filter when the
    /// pipeline's interpolation is `random`).
    pub fn is_affine(self) -> bool {
        matches!(self, AugmentOp::Rotate | AugmentOp::ShearX | AugmentOp::ShearY | AugmentOp::TranslateXRel | AugmentOp::TranslateYRel)
    }

    /// timm's `LEVEL_TO_ARG[name](magnitude)` with the sign already chosen
    /// (`negate` is the outcome of `_randomly_negate`; ignored for ops
    /// without a random sign). `None` for ops that take no argument.
    pub fn level_to_arg(self, magnitude: f64, negate: bool, translate_pct: f64) -> Option<f64> {
        let level = magnitude / LEVEL_DENOM;
        let signed = |v: f64| if negate && self.random_sign() { -v } else { v };
        let posterize_bits = (level * 4.0).trunc();
        let solarize_threshold = (level * 256.0).trunc().min(256.0);
        Some(match self {
            AugmentOp::AutoContrast | AugmentOp::Equalize | AugmentOp::Invert => return None,
            AugmentOp::Rotate => signed(level * 30.0),
            AugmentOp::Posterize => posterize_bits,
            AugmentOp::PosterizeIncreasing => 4.0 - posterize_bits,
            AugmentOp::Solarize => solarize_threshold,
            AugmentOp::SolarizeIncreasing => 256.0 - solarize_threshold,
            AugmentOp::SolarizeAdd => (level * 110.0).trunc().min(128.0),
            AugmentOp::Color | AugmentOp::Contrast | AugmentOp::Brightness | AugmentOp::Sharpness => level * 1.8 + 0.1,
            AugmentOp::ColorIncreasing | AugmentOp::ContrastIncreasing | AugmentOp::BrightnessIncreasing | AugmentOp::SharpnessIncreasing => {
                (1.0 + signed(level * 0.9)).max(0.1)
            }
            AugmentOp::ShearX | AugmentOp::ShearY => signed(level * 0.3),
            AugmentOp::TranslateXRel | AugmentOp::TranslateYRel => signed(level * translate_pct),
        })
    }

    /// Applies the op with argument `arg` (from [`AugmentOp::level_to_arg`];
    /// ignored by the ops that take none). Integer arguments (bits,
    /// thresholds) are whole numbers by construction; negative ones count as 0.
    pub fn apply(self, img: &RgbImage, arg: f64, ctx: &OpContext) -> RgbImage {
        let count = arg.max(0.0) as u32;
        match self {
            AugmentOp::AutoContrast => auto_contrast(img),
            AugmentOp::Equalize => equalize(img),
            AugmentOp::Invert => invert(img),
            AugmentOp::Rotate => rotate(img, arg, ctx.resample, ctx.fill),
            AugmentOp::Posterize | AugmentOp::PosterizeIncreasing => posterize(img, count),
            AugmentOp::Solarize | AugmentOp::SolarizeIncreasing => solarize(img, count),
            AugmentOp::SolarizeAdd => solarize_add(img, count),
            AugmentOp::Color | AugmentOp::ColorIncreasing => adjust_saturation(img, arg),
            AugmentOp::Contrast | AugmentOp::ContrastIncreasing => adjust_contrast(img, arg),
            AugmentOp::Brightness | AugmentOp::BrightnessIncreasing => adjust_brightness(img, arg),
            AugmentOp::Sharpness | AugmentOp::SharpnessIncreasing => adjust_sharpness(img, arg),
            AugmentOp::ShearX => shear_x(img, arg, ctx.resample, ctx.fill),
            AugmentOp::ShearY => shear_y(img, arg, ctx.resample, ctx.fill),
            AugmentOp::TranslateXRel => translate_x_rel(img, arg, ctx.resample, ctx.fill),
            AugmentOp::TranslateYRel => translate_y_rel(img, arg, ctx.resample, ctx.fill),
        }
    }
}
