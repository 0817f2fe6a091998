//! RandomResizedCrop: torchvision's `RandomResizedCrop.get_params` (which
//! timm's `RandomResizedCropAndInterpolation.get_params` copies) followed by
//! `F.resized_crop` on a PIL image, i.e. a crop and Pillow's `resize`.
//!
//! The box draw: up to 10 attempts, each with the area fraction uniform in
//! `scale` and the aspect ratio log-uniform in `ratio`; the box side lengths
//! are `round(sqrt(area · ratio))` and `round(sqrt(area / ratio))` with
//! Python's round half to even; the first box that fits is placed uniformly.
//! After 10 misses, the central crop with the aspect ratio clamped to `ratio`.
//! One deliberate difference from timm: like torchvision, a box with a zero
//! side is a miss (timm would hand Pillow an empty crop and fail).
//! The size arithmetic is pinned against the real `get_params` in
//! `vision/tests/augment.rs::rrc_sizes_match_timm_get_params`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::random::{randint, round_half_even, uniform};
use crate::resize::{resize_region, Filter};
use crate::RgbImage;

/// Attempts before falling back to the central crop (torchvision: 10).
const ATTEMPTS: usize = 10;

/// A crop box in pixels: rows `top..top + height`, columns `left..left + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows in the box.
    pub height: usize,
    /// Columns in the box.
    pub width: usize,
}

/// The resize filter of a training crop, as timm's `interpolation` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Pillow bilinear.
    Bilinear,
    /// Pillow bicubic.
    Bicubic,
    /// timm's `'random'`: bilinear or bicubic with equal probability, drawn
    /// per image (`random.choice((BILINEAR, BICUBIC))`).
    Random,
}

impl Interpolation {
    /// The filter for one image, drawing it when `self` is `Random`.
    pub fn pick(self, rng: &mut impl Rng) -> Filter {
        match self {
            Interpolation::Bilinear => Filter::Bilinear,
            Interpolation::Bicubic => Filter::Bicubic,
            Interpolation::Random => {
                if rng.gen_bool(0.5) {
                    Filter::Bilinear
                } else {
                    Filter::Bicubic
                }
            }
        }
    }
}

/// The box side lengths `(width, height)` of one attempt for an image of
/// `img_width × img_height`, from the drawn area fraction and log aspect
/// ratio, or `None` when the box does not fit (or has a zero side).
pub fn attempt_size(img_width: usize, img_height: usize, area_fraction: f64, log_ratio: f64) -> Option<(usize, usize)> {
    let target_area = area_fraction * (img_width * img_height) as f64;
    let aspect = log_ratio.exp();
    let w = round_half_even((target_area * aspect).sqrt());
    let h = round_half_even((target_area / aspect).sqrt());
    let fits = |side: f64, limit: usize| side >= 1.0 && side <= limit as f64;
    (fits(w, img_width) && fits(h, img_height)).then_some((w as usize, h as usize))
}

/// The fallback box: the whole image when its aspect ratio is inside
/// `ratio`, else the largest central box at the nearest bound of `ratio`.
pub fn central_box(img_width: usize, img_height: usize, ratio: (f64, f64)) -> CropBox {
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let in_ratio = img_width as f64 / img_height as f64;
    let (width, height) = if in_ratio < lo {
        (img_width, round_half_even(img_width as f64 / lo) as usize)
    } else if in_ratio > hi {
        (round_half_even(img_height as f64 * hi) as usize, img_height)
    } else {
        (img_width, img_height)
    };
    CropBox { top: (img_height - height.min(img_height)) / 2, left: (img_width - width.min(img_width)) / 2, height, width }
}

/// torchvision's `RandomResizedCrop.get_params`: draws a box with area
/// fraction in `scale` and aspect ratio (width / height) in `ratio`.
pub fn random_resized_crop_box(img_width: usize, img_height: usize, scale: (f64, f64), ratio: (f64, f64), rng: &mut impl Rng) -> CropBox {
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..ATTEMPTS {
        let area_fraction = uniform(rng, scale.0, scale.1);
        let log_aspect = uniform(rng, log_ratio.0, log_ratio.1);
        if let Some((width, height)) = attempt_size(img_width, img_height, area_fraction, log_aspect) {
            let top = randint(rng, 0, img_height - height);
            let left = randint(rng, 0, img_width - width);
            return CropBox { top, left, height, width };
        }
    }
    central_box(img_width, img_height, ratio)
}

/// `F.resized_crop(img, top, left, height, width, [out_h, out_w], filter)`
/// on a PIL image: `img.crop(box)` then Pillow's `resize((out_w, out_h), filter)`,
/// reading the box in place (no copy of the crop).
pub fn resized_crop(img: &RgbImage, bbox: CropBox, out_h: usize, out_w: usize, filter: Filter) -> RgbImage {
    let region = (bbox.top..bbox.top + bbox.height, bbox.left..bbox.left + bbox.width);
    resize_region(img, region, out_h, out_w, filter)
}

/// timm's `RandomResizedCropAndInterpolation` (and, with a fixed
/// interpolation, torchvision's `RandomResizedCrop`): a random box, then the
/// interpolation drawn (for `Random`), then the crop resized to `size × size`.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Output side length in pixels.
    pub size: usize,
    /// Range of the box area as a fraction of the image area.
    pub scale: (f64, f64),
    /// Range of the box aspect ratio (width / height).
    pub ratio: (f64, f64),
    /// Resize filter.
    pub interpolation: Interpolation,
}

impl RandomResizedCrop {
    /// Applies the transform (draw order as timm: box, then filter).
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let bbox = random_resized_crop_box(img.width, img.height, self.scale, self.ratio, rng);
        let filter = self.interpolation.pick(rng);
        resized_crop(img, bbox, self.size, self.size, filter)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sides_round_half_to_even() {
        // area 2 x 2.25 = 4.5... choose a fraction giving sqrt = 2.5 exactly:
        // target area 6.25 on a 5x5 image with ratio 1 -> sides round(2.5) = 2
        assert_eq!(attempt_size(5, 5, 0.25, 0.0), Some((2, 2)));
        // 3.5 rounds up to 4: area 12.25 on 7x7 -> 0.25
        assert_eq!(attempt_size(7, 7, 0.25, 0.0), Some((4, 4)));
        assert_eq!(attempt_size(3, 3, 2.0, 0.0), None);
        assert_eq!(attempt_size(1, 1, 0.1, 0.0), None, "zero-sided boxes are misses");
    }

    #[test]
    fn central_box_clamps_the_aspect_ratio() {
        let wide = central_box(200, 30, (0.75, 4.0 / 3.0));
        assert_eq!(wide, CropBox { top: 0, left: 80, height: 30, width: 40 });
        let tall = central_box(30, 200, (0.75, 4.0 / 3.0));
        assert_eq!(tall, CropBox { top: 80, left: 0, height: 40, width: 30 });
        assert_eq!(central_box(40, 40, (0.75, 4.0 / 3.0)), CropBox { top: 0, left: 0, height: 40, width: 40 });
    }
}
