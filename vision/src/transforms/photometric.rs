//! The random colour augmentations of timm's and MAE-Lite's pipelines:
//! torchvision's `ColorJitter` (PIL path), `RandomGrayscale`, and the
//! MoCo-v3/BYOL `GaussianBlur` (sigma uniform in [0.1, 2]) and `Solarization`
//! of `mae_lite/data/transforms.py`. Each draws its parameters as the
//! reference does and applies the exact Pillow operations of [`super::color`]
//! and [`super::filter`].

use rand::seq::SliceRandom;
use rand::Rng;

use super::color::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, solarize, to_grayscale};
use super::filter::gaussian_blur;
use super::random::{coin, uniform};
use super::TransformError;
use crate::RgbImage;

/// The colour operations of `ColorJitter`, indexed as torchvision's `fn_idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitterOp {
    /// `fn_id == 0`: `adjust_brightness`.
    Brightness,
    /// `fn_id == 1`: `adjust_contrast`.
    Contrast,
    /// `fn_id == 2`: `adjust_saturation`.
    Saturation,
    /// `fn_id == 3`: `adjust_hue`.
    Hue,
}

/// One draw of `ColorJitter.get_params`: the order of the four operations
/// and each factor (`None` where that component is disabled).
#[derive(Clone, Debug, PartialEq)]
pub struct JitterParams {
    /// The application order (a permutation of the four operations).
    pub order: [JitterOp; 4],
    /// Brightness factor.
    pub brightness: Option<f64>,
    /// Contrast factor.
    pub contrast: Option<f64>,
    /// Saturation factor.
    pub saturation: Option<f64>,
    /// Hue shift in [-0.5, 0.5] turns.
    pub hue: Option<f64>,
}

/// Applies the drawn colour operations in their drawn order (the body of
/// `ColorJitter.forward`).
pub fn apply_jitter(img: &RgbImage, params: &JitterParams) -> RgbImage {
    let mut out = img.clone();
    for op in params.order {
        out = match (op, params.brightness, params.contrast, params.saturation, params.hue) {
            (JitterOp::Brightness, Some(f), ..) => adjust_brightness(&out, f),
            (JitterOp::Contrast, _, Some(f), ..) => adjust_contrast(&out, f),
            (JitterOp::Saturation, _, _, Some(f), _) => adjust_saturation(&out, f),
            (JitterOp::Hue, .., Some(f)) => adjust_hue(&out, f),
            _ => out,
        };
    }
    out
}

/// torchvision's `ColorJitter(brightness, contrast, saturation, hue)`: each
/// factor uniform in its range, the four applied in a random order.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorJitter {
    brightness: Option<(f64, f64)>,
    contrast: Option<(f64, f64)>,
    saturation: Option<(f64, f64)>,
    hue: Option<(f64, f64)>,
}

impl ColorJitter {
    /// Builds the ranges as torchvision's `_check_input` does: `v` gives
    /// `[max(0, 1 - v), 1 + v]` for brightness, contrast and saturation and
    /// `[-v, v]` for hue; 0 disables a component.
    ///
    /// # Errors
    /// [`TransformError::InvalidConfig`] for a negative or non-finite
    /// strength, or a hue above 0.5.
    pub fn new(brightness: f64, contrast: f64, saturation: f64, hue: f64) -> Result<Self, TransformError> {
        let factor_range = |key: &'static str, v: f64| -> Result<Option<(f64, f64)>, TransformError> {
            if !(v.is_finite() && v >= 0.0) {
                return Err(TransformError::invalid(key, "a non-negative number", v));
            }
            Ok((v != 0.0).then_some(((1.0 - v).max(0.0), 1.0 + v)))
        };
        if !(hue.is_finite() && (0.0..=0.5).contains(&hue)) {
            return Err(TransformError::invalid("color_jitter hue", "a number in [0, 0.5]", hue));
        }
        Ok(Self {
            brightness: factor_range("color_jitter brightness", brightness)?,
            contrast: factor_range("color_jitter contrast", contrast)?,
            saturation: factor_range("color_jitter saturation", saturation)?,
            hue: (hue != 0.0).then_some((-hue, hue)),
        })
    }

    /// `ColorJitter.get_params`: a random permutation, then one uniform draw
    /// per enabled component.
    pub fn draw(&self, rng: &mut impl Rng) -> JitterParams {
        let mut order = [JitterOp::Brightness, JitterOp::Contrast, JitterOp::Saturation, JitterOp::Hue];
        order.shuffle(rng);
        let mut draw = |range: Option<(f64, f64)>| range.map(|(lo, hi)| uniform(rng, lo, hi));
        JitterParams {
            order,
            brightness: draw(self.brightness),
            contrast: draw(self.contrast),
            saturation: draw(self.saturation),
            hue: draw(self.hue),
        }
    }

    /// Draws the parameters and applies them.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let params = self.draw(rng);
        apply_jitter(img, &params)
    }
}

/// torchvision's `RandomGrayscale(p)`: with probability `p`, the luma
/// replicated to three channels.
pub fn random_grayscale(img: &RgbImage, p: f64, rng: &mut impl Rng) -> RgbImage {
    if coin(rng, p) {
        to_grayscale(img)
    } else {
        img.clone()
    }
}

/// Range of the blur's sigma in MoCo-v3/BYOL/MAE-Lite's `GaussianBlur`.
pub const BLUR_SIGMA: (f64, f64) = (0.1, 2.0);

/// MAE-Lite's `RandomApply([GaussianBlur([0.1, 2.0])], p)`: with
/// probability `p`, `ImageFilter.GaussianBlur(radius=sigma)` with sigma
/// uniform in [`BLUR_SIGMA`].
pub fn random_gaussian_blur(img: &RgbImage, p: f64, rng: &mut impl Rng) -> RgbImage {
    if coin(rng, p) {
        gaussian_blur(img, uniform(rng, BLUR_SIGMA.0, BLUR_SIGMA.1))
    } else {
        img.clone()
    }
}

/// Threshold of MAE-Lite's `Solarization` (`ImageOps.solarize` default).
pub const SOLARIZE_THRESHOLD: u32 = 128;

/// MAE-Lite's `RandomApply([Solarization()], p)`.
pub fn random_solarize(img: &RgbImage, p: f64, rng: &mut impl Rng) -> RgbImage {
    if coin(rng, p) {
        solarize(img, SOLARIZE_THRESHOLD)
    } else {
        img.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ranges_follow_torchvision_check_input() {
        let j = ColorJitter::new(0.4, 1.5, 0.0, 0.1).unwrap();
        assert_eq!(j.brightness, Some((0.6, 1.4)));
        assert_eq!(j.contrast, Some((0.0, 2.5)));
        assert_eq!(j.saturation, None);
        assert_eq!(j.hue, Some((-0.1, 0.1)));
        assert!(ColorJitter::new(0.4, 0.4, 0.4, 0.6).is_err());
        assert!(ColorJitter::new(-0.1, 0.4, 0.4, 0.0).is_err());
    }

    #[test]
    fn draws_are_permutations_within_ranges() {
        let j = ColorJitter::new(0.4, 0.4, 0.2, 0.1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = j.draw(&mut rng);
            let mut sorted = p.order.map(|o| o as u8);
            firsts.insert(sorted[0]);
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
            assert!((0.6..1.4).contains(&p.brightness.unwrap()));
            assert!((0.8..1.2).contains(&p.saturation.unwrap()));
            assert!((-0.1..0.1).contains(&p.hue.unwrap()));
        }
        assert_eq!(firsts.len(), 4, "every operation comes first sometimes");
    }
}
