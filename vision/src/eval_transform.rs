//! timm's evaluation transform (`timm/data/transforms_factory.py:
//! transforms_imagenet_eval`, center crop mode, square size):
//! 1. `Resize(floor(size / crop_pct))` of torchvision: the shorter side
//!    becomes that length and the longer side `int(short' · long / short)`,
//!    truncated (`_compute_resized_output_size`); Pillow-exact resampling
//!    ([`crate::resize`], bicubic by default); nothing happens when the size
//!    is already right;
//! 2. torchvision `CenterCrop(size)`: offsets `round((len - size) / 2)` with
//!    Python's `round` (half to even); a side shorter than the crop (only
//!    when `crop_pct > 1`) is first padded with zeros, `(size - len) // 2`
//!    before and the rest after;
//! 3. `ToTensor` + `Normalize(mean, std)` ([`crate::normalize`]).
//!
//! The 8-bit pixels after step 2 equal timm's exactly and the floats after
//! step 3 bit for bit on every fixture case of `tests/eval_transform.rs`
//! (`fixtures/make_eval_fixtures.py`: portrait, landscape, smaller than the
//! crop, `crop_pct` 0.9, 1.0 and 1.15, timm's 224 defaults).
//!
//! Shapes: S = `size`; the output is (3, S, S) row-major f32.

use serde::{Deserialize, Serialize};

use crate::normalize::{to_chw_normalized, IMAGENET_MEAN, IMAGENET_STD};
use crate::resize::{resize_window, Filter};
use crate::{Error, Result, RgbImage};

/// The settings of timm's evaluation transform; `Default` is timm's for
/// ImageNet ViTs (224, crop_pct 0.875, bicubic, ImageNet mean and std).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalTransform {
    /// Side S of the square output in pixels.
    pub size: usize,
    /// Fraction of the resized shorter side kept by the center crop: the
    /// shorter side is first resized to `floor(size / crop_pct)`.
    pub crop_pct: f64,
    /// Resampling filter of the resize.
    pub interpolation: Filter,
    /// Per-channel mean (RGB, 0..1 scale) subtracted after scaling to 0..1.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB, 0..1 scale) divided by.
    pub std: [f32; 3],
}

impl Default for EvalTransform {
    fn default() -> Self {
        EvalTransform { size: 224, crop_pct: 0.875, interpolation: Filter::Bicubic, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }
}

impl EvalTransform {
    /// The shorter side after resizing: `floor(size / crop_pct)`, as timm's
    /// `math.floor(img_size / crop_pct)` in f64.
    pub fn scale_size(&self) -> usize {
        (self.size as f64 / self.crop_pct).floor() as usize
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key when `size` is 0, `crop_pct` is not
    /// a positive finite number or makes the resize size 0, or a `std` is 0
    /// or not finite.
    pub fn validate(&self) -> Result<()> {
        let bad = |key, msg: String| Err(Error::Config { key, msg });
        if self.size == 0 {
            return bad("size", "must be >= 1".into());
        }
        if !(self.crop_pct > 0.0 && self.crop_pct.is_finite()) {
            return bad("crop_pct", format!("{} must be a positive number", self.crop_pct));
        }
        if self.scale_size() == 0 {
            return bad("crop_pct", format!("{} makes the resize size floor({} / {0}) = 0", self.crop_pct, self.size));
        }
        if self.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return bad("std", format!("{:?} must be non-zero and finite", self.std));
        }
        Ok(())
    }
}

/// torchvision `Resize(short)` output size (h, w) for an `h × w` image: the
/// shorter side becomes `short`, the longer `int(short · long / short_in)`
/// (truncated, not rounded). A square image counts as portrait, as there.
pub fn shorter_side_size(h: usize, w: usize, short: usize) -> (usize, usize) {
    let (short_in, long_in) = if w <= h { (w, h) } else { (h, w) };
    // Python: int * int / int is a correctly rounded f64 division.
    let long = ((short * long_in) as f64 / short_in as f64) as usize;
    if w <= h {
        (long, short)
    } else {
        (short, long)
    }
}

/// torchvision `CenterCrop`'s offset of a `crop`-long window along a side of
/// length `len`, in that side's coordinates: `round((len - crop) / 2)`
/// (half to even) when the side is long enough, else minus the zero padding
/// put before it, `-((crop - len) // 2)`.
pub fn center_crop_offset(len: usize, crop: usize) -> isize {
    if crop > len {
        -(((crop - len) / 2) as isize)
    } else {
        ((len - crop) as f64 / 2.0).round_ties_even() as isize
    }
}

/// Steps 1 and 2 (see the module doc): the 8-bit S × S image timm feeds to
/// `ToTensor`. Only the pixels kept by the crop are resampled.
///
/// # Errors
/// [`Error::Config`] for invalid settings ([`EvalTransform::validate`]);
/// [`Error::ShapeMismatch`] for an image without pixels.
pub fn resize_and_crop(img: &RgbImage, cfg: &EvalTransform) -> Result<RgbImage> {
    cfg.validate()?;
    if img.height == 0 || img.width == 0 {
        return Err(Error::ShapeMismatch { what: "image", expected: "at least 1 x 1 pixels", found: vec![img.height, img.width] });
    }
    let s = cfg.size;
    let (h, w) = shorter_side_size(img.height, img.width, cfg.scale_size());
    let (oy, ox) = (center_crop_offset(h, s), center_crop_offset(w, s));
    // The crop window inside the resized image, and where it lands in the output.
    let clamp = |v: isize, len: usize| v.clamp(0, len as isize) as usize;
    let rows = clamp(oy, h)..clamp(oy + s as isize, h);
    let cols = clamp(ox, w)..clamp(ox + s as isize, w);
    let window = resize_window(img, h, w, rows.clone(), cols.clone(), cfg.interpolation);
    if (window.height, window.width) == (s, s) {
        return Ok(window);
    }
    let (top, left) = ((rows.start as isize - oy) as usize, (cols.start as isize - ox) as usize);
    let mut out = RgbImage { height: s, width: s, data: vec![0; s * s * 3] };
    for y in 0..window.height {
        let src = &window.data[y * window.width * 3..(y + 1) * window.width * 3];
        let at = ((top + y) * s + left) * 3;
        out.data[at..at + src.len()].copy_from_slice(src);
    }
    Ok(out)
}

/// timm's whole evaluation transform: (3, S, S) f32, ready to stack into a
/// batch ([`crate::loader::stack_chw`]).
///
/// # Errors
/// As [`resize_and_crop`].
pub fn eval_transform(img: &RgbImage, cfg: &EvalTransform) -> Result<Vec<f32>> {
    Ok(to_chw_normalized(&resize_and_crop(img, cfg)?, cfg.mean, cfg.std))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_long_side_is_truncated_and_squares_count_as_portrait() {
        assert_eq!(shorter_side_size(61, 29, 36), (75, 36)); // 75.72
        assert_eq!(shorter_side_size(29, 61, 36), (36, 75));
        assert_eq!(shorter_side_size(10, 10, 7), (7, 7));
        assert_eq!(shorter_side_size(3, 1000, 256), (256, 85333));
    }

    #[test]
    fn crop_offsets_round_half_to_even_and_pad_before() {
        assert_eq!(center_crop_offset(75, 32), 22); // 21.5
        assert_eq!(center_crop_offset(341, 224), 58); // 58.5
        assert_eq!(center_crop_offset(40, 40), 0);
        assert_eq!(center_crop_offset(13, 16), -1); // 1 zero column before, 2 after
    }

    #[test]
    fn settings_are_checked_naming_the_key() {
        assert_eq!(EvalTransform::default().scale_size(), 256);
        let img = RgbImage { height: 4, width: 4, data: vec![0; 48] };
        for (cfg, key) in [
            (EvalTransform { size: 0, ..EvalTransform::default() }, "size"),
            (EvalTransform { crop_pct: 0.0, ..EvalTransform::default() }, "crop_pct"),
            (EvalTransform { size: 1, crop_pct: 1.5, ..EvalTransform::default() }, "crop_pct"),
            (EvalTransform { std: [0.2, 0.0, 0.2], ..EvalTransform::default() }, "std"),
        ] {
            let err = eval_transform(&img, &cfg).unwrap_err();
            assert!(matches!(err, Error::Config { key: k, .. } if k == key), "{err}");
        }
        let empty = RgbImage { height: 0, width: 3, data: Vec::new() };
        assert!(matches!(eval_transform(&empty, &EvalTransform::default()), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn configs_read_from_toml_style_names_with_defaults() {
        let cfg: EvalTransform = serde_json::from_str(r#"{"size": 384, "interpolation": "bilinear"}"#).unwrap();
        assert_eq!(cfg, EvalTransform { size: 384, interpolation: Filter::Bilinear, ..EvalTransform::default() });
        assert!(serde_json::from_str::<EvalTransform>(r#"{"crop": 1.0}"#).is_err());
    }
}
