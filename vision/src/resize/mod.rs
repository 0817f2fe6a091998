//! Resizing of 8-bit RGB images exactly as Pillow's
//! `Image.resize(size, resample)` with `BILINEAR` or `BICUBIC` ([`Filter`]):
//! bilinear is what detectron2's `ResizeTransform.apply_image` calls for uint8
//! images (LSJ `ResizeScale` and the test-time `ResizeShortestEdge`); bicubic
//! is timm's default interpolation of its evaluation transform.
//!
//! Pillow (`src/libImaging/Resample.c`) resamples separably with a filter
//! whose support grows with the downscale factor (so shrinking averages,
//! unlike `torch`'s `interpolate`):
//! - per output index `i`: `scale = in / out`, `fs = max(scale, 1)`,
//!   `support = filter_support · fs` (bilinear 1, bicubic 2),
//!   `centre = (i + 0.5) · scale`, taps
//!   `j ∈ [(int)(centre - support + 0.5) ∨ 0, (int)(centre + support + 0.5) ∧ in)`
//!   with weight `k((j - centre + 0.5) / fs)`, normalised to sum 1, where `k`
//!   is the triangle or Keys' cubic convolution kernel with `a = -0.5`;
//! - weights become fixed point with 22 fraction bits (round half away from 0);
//! - each pass sums `pixel · weight` from `1 << 21` in i32 and keeps bits
//!   22.. clamped to 0..255 (bicubic's negative lobes overshoot both ends),
//!   so the intermediate image is 8-bit too;
//! - a pass whose size does not change is skipped;
//! - the horizontal pass runs first, except when the height shrinks much more
//!   than the width (Pillow >= 13, see `vertical_first`); the order matters
//!   because the intermediate image is rounded to 8 bits.
//!
//! [`resize_window`] computes only an output window (the crop of LSJ's
//! `FixedSizeCrop`) with the very same arithmetic, so cropping after resizing
//! costs only the pixels kept. Bit-exactness is pinned against Pillow by
//! `vision/tests/resize.rs` (fixtures from `tests/fixtures/make_resize_fixtures.py`).

use serde::{Deserialize, Serialize};

mod passes;

use passes::{horizontal_pass, vertical_pass, TapTable, View};

/// The image type of every signature here; re-exported so
/// `vision::resize::{resize, Filter, RgbImage}` is one import.
pub use crate::rgb::RgbImage;

/// Fraction bits of Pillow's fixed-point weights for 8-bit images
/// (`PRECISION_BITS = 32 - 8 - 2`).
pub(crate) const PRECISION_BITS: u32 = 22;

/// Pillow's resampling filter (`Image.Resampling`), the two this crate needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// `Image.BILINEAR`: the triangle filter, support 1 (detectron2's resizes).
    Bilinear,
    /// `Image.BICUBIC`: Keys' cubic convolution with `a = -0.5`, support 2
    /// (timm's default evaluation interpolation).
    Bicubic,
}

impl Filter {
    /// Half-width of the kernel in input pixels before scaling by the
    /// downscale factor (Pillow's `struct filter.support`).
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// The kernel at `x` (Pillow's `bilinear_filter` / `bicubic_filter`).
    fn kernel(self, x: f64) -> f64 {
        /// Pillow's (and Keys') cubic-convolution parameter.
        const A: f64 = -0.5;
        let x = x.abs();
        match self {
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bicubic if x < 1.0 => ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0,
            Filter::Bicubic if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * A,
            _ => 0.0,
        }
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for output indices
/// `range` of a resize from `in_size` to `out_size` with `filter`, as a
/// [`TapTable`] (each index's weights zero-padded to a common count).
fn taps(in_size: usize, out_size: usize, range: std::ops::Range<usize>, filter: Filter) -> TapTable {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inv = 1.0 / filter_scale;
    let per_index: Vec<(usize, Vec<i32>)> = range
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; both values are > -1 here
            // only for the lower bound, which is then clamped to 0.
            let lo = ((centre - support + 0.5) as i64).max(0) as usize;
            let hi = ((centre + support + 0.5) as i64).min(in_size as i64).max(lo as i64) as usize;
            let raw: Vec<f64> = (lo..hi).map(|j| filter.kernel((j as f64 - centre + 0.5) * inv)).collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    if w < 0.0 {
                        (-0.5 + fixed) as i32
                    } else {
                        (0.5 + fixed) as i32
                    }
                })
                .collect();
            (lo, weights)
        })
        .collect();
    TapTable::padded(in_size, &per_index)
}

/// Whether Pillow runs the vertical pass first: since Pillow 13
/// (python-pillow/Pillow#9549, "if height is scaled down significantly more
/// than width, resize vertically first") it does so when the height shrinks
/// and by more than twice as many pixels as the width shrinks. The exact
/// condition was inferred from Pillow 13.0.0's output over 671 random sizes
/// where the two orders differ, is pinned by the fixtures, and held for both
/// filters over 3000 further random sizes up to 300 px.
fn vertical_first(in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> bool {
    let (in_h, in_w, out_h, out_w) = (in_h as i64, in_w as i64, out_h as i64, out_w as i64);
    out_h < in_h && in_h - out_h > 2 * (in_w - out_w)
}

/// Resizes `src` to `out_h × out_w` as Pillow's `resize` with `filter` and
/// returns only the window of rows `rows` and columns `cols` of the result
/// (the whole result for `0..out_h`, `0..out_w`). Windows are clamped to the
/// output; an empty source or window gives an empty (or zero) image.
pub fn resize_window(
    src: &RgbImage,
    out_h: usize,
    out_w: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    filter: Filter,
) -> RgbImage {
    resize_view(View::whole(src), out_h, out_w, rows, cols, filter)
}

/// Pillow's `img.crop(box).resize((out_w, out_h), filter)` without copying
/// the crop: the box `rows × cols` of `src` (clamped to the image) is read in
/// place, with the very same arithmetic as [`resize`] on the cropped image.
pub fn resize_region(
    src: &RgbImage,
    region: (std::ops::Range<usize>, std::ops::Range<usize>),
    out_h: usize,
    out_w: usize,
    filter: Filter,
) -> RgbImage {
    let (rows, cols) = region;
    let rows = rows.start.min(src.height)..rows.end.min(src.height);
    let cols = cols.start.min(src.width)..cols.end.min(src.width);
    resize_view(View::whole(src).window(rows, cols), out_h, out_w, 0..out_h, 0..out_w, filter)
}

/// [`resize_window`] over a borrowed view.
fn resize_view(
    src: View<'_>,
    out_h: usize,
    out_w: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    filter: Filter,
) -> RgbImage {
    let rows = rows.start.min(out_h)..rows.end.min(out_h);
    let cols = cols.start.min(out_w)..cols.end.min(out_w);
    if rows.is_empty() || cols.is_empty() || src.height == 0 || src.width == 0 {
        return RgbImage { height: rows.len(), width: cols.len(), data: vec![0; rows.len() * cols.len() * 3] };
    }
    let need_horizontal = out_w != src.width;
    let need_vertical = out_h != src.height;
    match (need_horizontal, need_vertical) {
        (false, false) => src.window(rows, cols).to_image(),
        (true, false) => horizontal_pass(src.window(rows, 0..src.width), &taps(src.width, out_w, cols, filter)),
        (false, true) => vertical_pass(src.window(0..src.height, cols), &taps(src.height, out_h, rows, filter)),
        (true, true) => {
            let h_taps = taps(src.width, out_w, cols, filter);
            let v_taps = taps(src.height, out_h, rows, filter);
            if vertical_first(src.height, src.width, out_h, out_w) {
                let used = h_taps.span();
                let mid = vertical_pass(src.window(0..src.height, used.clone()), &v_taps);
                horizontal_pass(View::whole(&mid), &h_taps.shifted(used.start))
            } else {
                let used = v_taps.span();
                let mid = horizontal_pass(src.window(used.clone(), 0..src.width), &h_taps);
                vertical_pass(View::whole(&mid), &v_taps.shifted(used.start))
            }
        }
    }
}

/// Resizes the whole image to `out_h × out_w` as Pillow's `resize` with `filter`.
pub fn resize(src: &RgbImage, out_h: usize, out_w: usize, filter: Filter) -> RgbImage {
    resize_window(src, out_h, out_w, 0..out_h, 0..out_w, filter)
}
