//! timm's `RandomErasing` (`timm/data/random_erasing.py`), applied after
//! normalisation to one CHW float tensor.
//!
//! Shapes: C channels, H rows, W columns; the tensor is `C·H·W` floats,
//! channel-major (`[c][y][x]`).
//!
//! Per image: with probability `probability`, `count` boxes (uniform in
//! `1..=max_count`), each from up to 10 attempts: area fraction uniform in
//! [0.02, 1/3] divided by `count`, aspect ratio log-uniform in
//! [0.3, 1/0.3], sides `round(sqrt(area · ratio))` (height) and
//! `round(sqrt(area / ratio))` (width), accepted when both are *strictly*
//! smaller than the image; the box is then filled with zeros (`const`, the
//! normalised mean), one standard-normal value per channel (`rand`) or one
//! per element (`pixel`). The size arithmetic and the filling are pinned
//! against timm in `vision/tests/augment.rs::random_erasing_matches_timm`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::random::{coin, gauss, randint, round_half_even, uniform};
use super::TransformError;

/// Attempts per box (timm: 10).
const ATTEMPTS: usize = 10;
/// timm's default area range of one box, as a fraction of the image.
pub const AREA: (f64, f64) = (0.02, 1.0 / 3.0);
/// timm's default minimum aspect ratio (the maximum is its inverse).
pub const MIN_ASPECT: f64 = 0.3;

/// What an erased box is filled with (timm's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EraseMode {
    /// Zeros (the channel mean after normalisation).
    Const,
    /// One standard-normal value per channel.
    Rand,
    /// One standard-normal value per element.
    Pixel,
}

/// A box in tensor coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EraseBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// The box sides `(height, width)` of one attempt, or `None` when it does
/// not fit strictly inside `img_h × img_w`. `area_fraction` is the uniform
/// draw in [`AREA`], `log_aspect` the uniform draw of the log aspect ratio.
pub fn attempt_size(img_h: usize, img_w: usize, count: usize, area_fraction: f64, log_aspect: f64) -> Option<(usize, usize)> {
    let target_area = area_fraction * (img_h * img_w) as f64 / count as f64;
    let aspect = log_aspect.exp();
    let h = round_half_even((target_area * aspect).sqrt());
    let w = round_half_even((target_area / aspect).sqrt());
    (w < img_w as f64 && h < img_h as f64).then_some((h as usize, w as usize))
}

/// Overwrites `bbox` in every channel of `chw` (`channels × img_h × img_w`)
/// with `fill(channel, y, x)`, visiting elements in memory order.
pub fn erase(chw: &mut [f32], img_h: usize, img_w: usize, bbox: EraseBox, mut fill: impl FnMut(usize, usize, usize) -> f32) {
    let channels = chw.len() / (img_h * img_w).max(1);
    for c in 0..channels {
        for y in bbox.top..(bbox.top + bbox.height).min(img_h) {
            for x in bbox.left..(bbox.left + bbox.width).min(img_w) {
                chw[(c * img_h + y) * img_w + x] = fill(c, y, x);
            }
        }
    }
}

/// timm's `RandomErasing(probability, mode=..., max_count=...)` with the
/// default area and aspect ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomErasing {
    probability: f64,
    mode: EraseMode,
    max_count: usize,
}

impl RandomErasing {
    /// # Errors
    /// [`TransformError::InvalidConfig`] when `probability` is outside
    /// [0, 1] or `max_count` is 0.
    pub fn new(probability: f64, mode: EraseMode, max_count: usize) -> Result<Self, TransformError> {
        if !(0.0..=1.0).contains(&probability) {
            return Err(TransformError::invalid("re_prob", "a probability in [0, 1]", probability));
        }
        if max_count == 0 {
            return Err(TransformError::invalid("re_count", "at least 1", max_count));
        }
        Ok(Self { probability, mode, max_count })
    }

    /// Erases boxes of `chw` (`channels × img_h × img_w`) in place.
    pub fn apply(&self, chw: &mut [f32], img_h: usize, img_w: usize, rng: &mut impl Rng) {
        if !coin(rng, self.probability) {
            return;
        }
        let count = if self.max_count == 1 { 1 } else { randint(rng, 1, self.max_count) };
        let log_aspect = (MIN_ASPECT.ln(), (1.0 / MIN_ASPECT).ln());
        for _ in 0..count {
            for _ in 0..ATTEMPTS {
                let area_fraction = uniform(rng, AREA.0, AREA.1);
                let aspect = uniform(rng, log_aspect.0, log_aspect.1);
                let Some((height, width)) = attempt_size(img_h, img_w, count, area_fraction, aspect) else { continue };
                let top = randint(rng, 0, img_h - height);
                let left = randint(rng, 0, img_w - width);
                let bbox = EraseBox { top, left, height, width };
                match self.mode {
                    EraseMode::Const => erase(chw, img_h, img_w, bbox, |_, _, _| 0.0),
                    EraseMode::Rand => {
                        let channels = chw.len() / (img_h * img_w).max(1);
                        let values: Vec<f32> = (0..channels).map(|_| gauss(rng, 0.0, 1.0) as f32).collect();
                        erase(chw, img_h, img_w, bbox, |c, _, _| values[c]);
                    }
                    EraseMode::Pixel => erase(chw, img_h, img_w, bbox, |_, _, _| gauss(rng, 0.0, 1.0) as f32),
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn boxes_must_fit_strictly() {
        // ratio 1, area 1/3 of 6x6 = 12 -> side round(3.46) = 3
        assert_eq!(attempt_size(6, 6, 1, 1.0 / 3.0, 0.0), Some((3, 3)));
        // a box as tall as the image is rejected (timm: `h < img_h`)
        assert_eq!(attempt_size(2, 50, 1, 0.02, (0.5f64).ln() * -2.0), None);
    }

    #[test]
    fn erase_touches_only_the_box_in_every_channel() {
        let mut t = vec![1.0f32; 2 * 3 * 4];
        erase(&mut t, 3, 4, EraseBox { top: 1, left: 2, height: 2, width: 1 }, |c, _, _| c as f32 + 5.0);
        let changed: Vec<usize> = (0..t.len()).filter(|&i| t[i] != 1.0).collect();
        assert_eq!(changed, vec![6, 10, 18, 22]);
        assert_eq!((t[6], t[18]), (5.0, 6.0));
    }
}
