//! Geometric operations exactly as Pillow computes them: horizontal flip,
//! crop, `Image.transform(size, AFFINE, data, resample, fillcolor=...)` and
//! `Image.rotate(angle, resample, fillcolor=...)`, which back timm's
//! RandAugment ops Rotate, ShearX/Y and TranslateX/YRel.
//!
//! Sources: Pillow `src/libImaging/Geometry.c` (`ImagingTransformAffine`,
//! `ImagingScaleAffine`, `affine_fixed`, `ImagingGenericTransform`, the
//! `nearest`, `bilinear_filter32RGB` and `bicubic_filter32RGB` samplers) and
//! `src/PIL/Image.py` (`rotate`, `transform`). The affine matrix maps an
//! output pixel centre `(x + 0.5, y + 0.5)` to input coordinates:
//! `x_in = a0·x + a1·y + a2`, `y_in = a3·x + a4·y + a5`. Output pixels whose
//! sample falls outside the input keep the fill colour. Pinned bit for bit by
//! `vision/tests/augment.rs`.

use crate::RgbImage;

/// Pillow's resampling filters for `transform`/`rotate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// `Image.NEAREST`.
    Nearest,
    /// `Image.BILINEAR`: 2×2 linear interpolation, truncated to 8 bits.
    Bilinear,
    /// `Image.BICUBIC`: 4×4 cubic convolution with a = -1 (Pillow's
    /// `p1 + d(p2 + d(p3 + d p4))` form), clamped and truncated.
    Bicubic,
}

/// The six coefficients of an affine map from output to input coordinates,
/// in Pillow's order `(a, b, c, d, e, f)`.
pub type Affine = [f64; 6];

/// `F.hflip` / `Image.transpose(FLIP_LEFT_RIGHT)`.
pub fn hflip(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    hflip_in_place(&mut out);
    out
}

/// [`hflip`] without a copy: pixels swap places within each row.
pub fn hflip_in_place(img: &mut RgbImage) {
    let width = img.width;
    for row in img.data.chunks_exact_mut((width * 3).max(1)) {
        let (left, right) = row.split_at_mut(width / 2 * 3);
        let right = &mut right[width % 2 * 3..];
        for (a, b) in left.chunks_exact_mut(3).zip(right.rchunks_exact_mut(3)) {
            a.swap_with_slice(b);
        }
    }
}

/// `Image.crop((left, top, left + width, top + height))` for a box inside
/// the image (callers draw boxes inside it; the box is clamped otherwise).
pub fn crop(img: &RgbImage, top: usize, left: usize, height: usize, width: usize) -> RgbImage {
    let top = top.min(img.height);
    let left = left.min(img.width);
    let height = height.min(img.height - top);
    let width = width.min(img.width - left);
    let mut data = Vec::with_capacity(height * width * 3);
    for y in top..top + height {
        let start = (y * img.width + left) * 3;
        data.extend_from_slice(&img.data[start..start + width * 3]);
    }
    RgbImage { height, width, data }
}

/// Pillow's `COORD`: -1 for negative values, else truncation.
fn coord(v: f64) -> i64 {
    if v < 0.0 {
        -1
    } else {
        v as i64
    }
}

/// Pillow's `FLOOR` (`floor` for negatives, truncation otherwise).
fn floor_i(v: f64) -> i64 {
    v.floor() as i64
}

/// Copies pixel `(xi, yi)` of `src` to pixel `(x, y)` of `out` if it lies
/// inside `src`.
fn copy_pixel(src: &RgbImage, out: &mut RgbImage, x: usize, y: usize, xi: i64, yi: i64) {
    if xi >= 0 && (xi as usize) < src.width && yi >= 0 && (yi as usize) < src.height {
        let from = (yi as usize * src.width + xi as usize) * 3;
        let to = (y * out.width + x) * 3;
        out.data[to..to + 3].copy_from_slice(&src.data[from..from + 3]);
    }
}

/// `ImagingScaleAffine`: nearest neighbour when `a1 == a3 == 0`, with the
/// column table and row position accumulated by repeated addition.
fn scale_affine_nearest(src: &RgbImage, out: &mut RgbImage, a: &Affine) {
    let mut table: Vec<Option<i64>> = Vec::with_capacity(out.width);
    let mut xo = a[2] + a[0] * 0.5;
    for _ in 0..out.width {
        let xi = coord(xo);
        table.push((xi >= 0 && (xi as usize) < src.width).then_some(xi));
        xo += a[0];
    }
    let mut yo = a[5] + a[4] * 0.5;
    for y in 0..out.height {
        let yi = coord(yo);
        for (x, xi) in table.iter().enumerate() {
            if let Some(xi) = *xi {
                copy_pixel(src, out, x, y, xi, yi);
            }
        }
        yo += a[4];
    }
}

/// `check_fixed`: whether a corner maps inside the 16.16 fixed-point range.
fn fits_fixed_point(a: &Affine, x: f64, y: f64) -> bool {
    (x * a[0] + y * a[1] + a[2]).abs() < 32768.0 && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
}

/// `affine_fixed`: nearest neighbour in 16.16 fixed point.
fn affine_nearest_fixed(src: &RgbImage, out: &mut RgbImage, a: &Affine) {
    let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i32;
    let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
    let mut row_x = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
    let mut row_y = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
    for y in 0..out.height {
        let (mut xx, mut yy) = (row_x, row_y);
        for x in 0..out.width {
            copy_pixel(src, out, x, y, i64::from(xx >> 16), i64::from(yy >> 16));
            xx = xx.wrapping_add(a0);
            yy = yy.wrapping_add(a3);
        }
        row_x = row_x.wrapping_add(a1);
        row_y = row_y.wrapping_add(a4);
    }
}

/// The floating-point nearest-neighbour loop of `ImagingTransformAffine`,
/// used when a corner falls outside the fixed-point range.
fn affine_nearest_float(src: &RgbImage, out: &mut RgbImage, a: &Affine) {
    let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
    let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for y in 0..out.height {
        let (mut xx, mut yy) = (xo, yo);
        for x in 0..out.width {
            copy_pixel(src, out, x, y, coord(xx), coord(yy));
            xx += a[0];
            yy += a[3];
        }
        xo += a[1];
        yo += a[4];
    }
}

/// Pillow's `XCLIP`/`YCLIP`: clamps an index into `0..size`.
fn clip(i: i64, size: usize) -> usize {
    i.clamp(0, size as i64 - 1) as usize
}

/// `bilinear_filter32RGB` at input position `(xin, yin)`; `None` outside.
fn sample_bilinear(src: &RgbImage, xin: f64, yin: f64) -> Option<[u8; 3]> {
    if xin < 0.0 || xin >= src.width as f64 || yin < 0.0 || yin >= src.height as f64 {
        return None;
    }
    let (xin, yin) = (xin - 0.5, yin - 0.5);
    let (x, y) = (floor_i(xin), floor_i(yin));
    let (dx, dy) = (xin - x as f64, yin - y as f64);
    let (x0, x1) = (clip(x, src.width), clip(x + 1, src.width));
    let at = |row: usize, col: usize, c: usize| f64::from(src.data[(row * src.width + col) * 3 + c]);
    let lerp = |a: f64, b: f64, d: f64| a + (b - a) * d;
    Some(std::array::from_fn(|c| {
        let row0 = clip(y, src.height);
        let v1 = lerp(at(row0, x0, c), at(row0, x1, c), dx);
        let v2 = if y + 1 >= 0 && y + 1 < src.height as i64 {
            let row1 = (y + 1) as usize;
            lerp(at(row1, x0, c), at(row1, x1, c), dx)
        } else {
            v1
        };
        lerp(v1, v2, dy) as u8
    }))
}

/// Pillow's cubic `BICUBIC(v1..v4, d)` with its exact evaluation order.
#[inline(always)]
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// `bicubic_filter32RGB` at input position `(xin, yin)`; `None` outside.
/// Columns are clamped at the border; rows below the first one that leave
/// the image repeat the previous row's value, as Pillow does. The three
/// channels go through the same f64 operations as Pillow's per-channel
/// loop, in the same order (four row cubics, then one column cubic), so
/// results are bit-identical; they are only computed side by side, with one
/// row slice per tap row instead of an index computation per value.
#[inline]
fn sample_bicubic(src: &RgbImage, xin: f64, yin: f64) -> Option<[u8; 3]> {
    if xin < 0.0 || xin >= src.width as f64 || yin < 0.0 || yin >= src.height as f64 {
        return None;
    }
    let (xin, yin) = (xin - 0.5, yin - 0.5);
    let (x, y) = (floor_i(xin), floor_i(yin));
    let (dx, dy) = (xin - x as f64, yin - y as f64);
    let (x, y) = (x - 1, y - 1);
    let cols = [clip(x, src.width) * 3, clip(x + 1, src.width) * 3, clip(x + 2, src.width) * 3, clip(x + 3, src.width) * 3];
    let stride = src.width * 3;
    let row_cubics = |row: usize| bicubic_row(&src.data[row * stride..(row + 1) * stride], &cols, dx);
    let r0 = row_cubics(clip(y, src.height));
    let inside = |row: i64| row >= 0 && row < src.height as i64;
    let r1 = if inside(y + 1) { row_cubics((y + 1) as usize) } else { r0 };
    let r2 = if inside(y + 2) { row_cubics((y + 2) as usize) } else { r1 };
    let r3 = if inside(y + 3) { row_cubics((y + 3) as usize) } else { r2 };
    // clamp then truncate (`as u8` saturates exactly like that)
    Some([
        cubic(r0[0], r1[0], r2[0], r3[0], dy) as u8,
        cubic(r0[1], r1[1], r2[1], r3[1], dy) as u8,
        cubic(r0[2], r1[2], r2[2], r3[2], dy) as u8,
    ])
}

/// The three channels' cubics along one row (RGB8 `line`) at the byte
/// offsets `cols` of the four taps.
#[inline(always)]
fn bicubic_row(line: &[u8], cols: &[usize; 4], dx: f64) -> [f64; 3] {
    let at = |k: usize, c: usize| f64::from(line[cols[k] + c]);
    [
        cubic(at(0, 0), at(1, 0), at(2, 0), at(3, 0), dx),
        cubic(at(0, 1), at(1, 1), at(2, 1), at(3, 1), dx),
        cubic(at(0, 2), at(1, 2), at(2, 2), at(3, 2), dx),
    ]
}

/// `ImagingGenericTransform` with the affine map: one filter call per
/// output pixel at `(a0 (x + ½) + a1 (y + ½) + a2, a3 (x + ½) + a4 (y + ½) + a5)`.
fn affine_filtered(src: &RgbImage, out: &mut RgbImage, a: &Affine, sample: impl Fn(&RgbImage, f64, f64) -> Option<[u8; 3]>) {
    for y in 0..out.height {
        let yc = y as f64 + 0.5;
        for x in 0..out.width {
            let xc = x as f64 + 0.5;
            let xin = a[0] * xc + a[1] * yc + a[2];
            let yin = a[3] * xc + a[4] * yc + a[5];
            if let Some(px) = sample(src, xin, yin) {
                let to = (y * out.width + x) * 3;
                out.data[to..to + 3].copy_from_slice(&px);
            }
        }
    }
}

/// `img.transform(img.size, Image.AFFINE, a, resample, fillcolor=fill)`:
/// the output has the input's size; pixels sampled from outside the input
/// keep `fill`.
pub fn affine(img: &RgbImage, a: &Affine, resample: Resample, fill: [u8; 3]) -> RgbImage {
    let mut out = RgbImage { height: img.height, width: img.width, data: fill.repeat(img.height * img.width) };
    if img.height == 0 || img.width == 0 {
        return out;
    }
    match resample {
        Resample::Nearest => {
            let (w, h) = (img.width as f64, img.height as f64);
            if a[1] == 0.0 && a[3] == 0.0 {
                scale_affine_nearest(img, &mut out, a);
            } else if [(0.0, 0.0), (w, h), (0.0, h), (w, 0.0)].iter().all(|&(x, y)| fits_fixed_point(a, x, y)) {
                affine_nearest_fixed(img, &mut out, a);
            } else {
                affine_nearest_float(img, &mut out, a);
            }
        }
        Resample::Bilinear => affine_filtered(img, &mut out, a, sample_bilinear),
        Resample::Bicubic => affine_bicubic(img, &mut out, a),
    }
    out
}

/// [`affine_filtered`] with [`sample_bicubic`], or its AVX2 twin where the
/// CPU has it (same f64 operations, see [`x86::affine_bicubic`]).
fn affine_bicubic(src: &RgbImage, out: &mut RgbImage, a: &Affine) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { x86::affine_bicubic(src, out, a) };
        return;
    }
    affine_filtered(src, out, a, sample_bicubic);
}

/// The bicubic affine sampler with the three channels of a pixel in the
/// lanes of one f64x4 vector (the fourth lane is discarded). Lane-wise
/// IEEE `+`, `-`, `×` and negation are the scalar operations, applied in
/// the same order as [`cubic`] (no fused multiply-add), and the
/// coordinates, floors, clamps and row repetition are [`sample_bicubic`]'s
/// scalar code; cubics at an offset of exactly 0 are skipped, which is exact
/// (see the comment there). So every byte is the scalar sampler's (pinned by
/// `tests::simd_bicubic_affine_is_the_scalar_one` and the Pillow fixtures).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{clip, floor_i, Affine};
    use crate::RgbImage;

    /// The RGB bytes at `at` (and one byte more) as f64 lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_px(bytes: &[u8], at: usize) -> __m256d {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[at..at + 4]);
        _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(i32::from_le_bytes(word))))
    }

    /// [`super::cubic`] lane by lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn cubic(v1: __m256d, v2: __m256d, v3: __m256d, v4: __m256d, d: __m256d) -> __m256d {
        let neg = |v| _mm256_xor_pd(v, _mm256_set1_pd(-0.0));
        let p1 = v2;
        let p2 = _mm256_add_pd(neg(v1), v3);
        let p3 = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(2.0), _mm256_sub_pd(v1, v2)), v3), v4);
        let p4 = _mm256_add_pd(_mm256_sub_pd(_mm256_add_pd(neg(v1), v2), v3), v4);
        let inner = _mm256_add_pd(p3, _mm256_mul_pd(d, p4));
        _mm256_add_pd(p1, _mm256_mul_pd(d, _mm256_add_pd(p2, _mm256_mul_pd(d, inner))))
    }

    /// `super::affine_filtered(src, out, a, sample_bicubic)`, vectorised
    /// over channels.
    #[target_feature(enable = "avx2")]
    pub(super) fn affine_bicubic(src: &RgbImage, out: &mut RgbImage, a: &Affine) {
        // One spare byte so every pixel loads as 4 bytes.
        let mut data = Vec::with_capacity(src.data.len() + 1);
        data.extend_from_slice(&src.data);
        data.push(0);
        let (w, h) = (src.width as f64, src.height as f64);
        let stride = src.width * 3;
        for y in 0..out.height {
            let yc = y as f64 + 0.5;
            for x in 0..out.width {
                let xc = x as f64 + 0.5;
                let xin = a[0] * xc + a[1] * yc + a[2];
                let yin = a[3] * xc + a[4] * yc + a[5];
                if xin < 0.0 || xin >= w || yin < 0.0 || yin >= h {
                    continue;
                }
                let (xin, yin) = (xin - 0.5, yin - 0.5);
                let (xi, yi) = (floor_i(xin), floor_i(yin));
                let (dx, dy) = (xin - xi as f64, yin - yi as f64);
                let (xi, yi) = (xi - 1, yi - 1);
                let cols = [clip(xi, src.width) * 3, clip(xi + 1, src.width) * 3, clip(xi + 2, src.width) * 3, clip(xi + 3, src.width) * 3];
                // A cubic at d = 0 is its second value plus 0 · (finite) = ±0:
                // the same number (a zero's sign aside, which no byte sees).
                // Shears and translations along x have dy = 0 everywhere,
                // along y dx = 0, so they need one row or one column of taps.
                let row_cubic = |row: usize| {
                    let line = &data[row * stride..];
                    if dx == 0.0 {
                        load_px(line, cols[1])
                    } else {
                        cubic(load_px(line, cols[0]), load_px(line, cols[1]), load_px(line, cols[2]), load_px(line, cols[3]), _mm256_set1_pd(dx))
                    }
                };
                let inside = |row: i64| row >= 0 && row < src.height as i64;
                let value = if dy == 0.0 {
                    // yi + 1 = floor(yin) is inside the image.
                    row_cubic((yi + 1) as usize)
                } else {
                    let r0 = row_cubic(clip(yi, src.height));
                    let r1 = if inside(yi + 1) { row_cubic((yi + 1) as usize) } else { r0 };
                    let r2 = if inside(yi + 2) { row_cubic((yi + 2) as usize) } else { r1 };
                    let r3 = if inside(yi + 3) { row_cubic((yi + 3) as usize) } else { r2 };
                    cubic(r0, r1, r2, r3, _mm256_set1_pd(dy))
                };
                // Truncate, then clamp to 0..255 (`as u8` clamps then
                // truncates: the same byte for every finite value).
                let v = _mm256_cvttpd_epi32(value);
                let v = _mm_min_epi32(_mm_max_epi32(v, _mm_setzero_si128()), _mm_set1_epi32(255));
                let v = _mm_packus_epi16(_mm_packus_epi32(v, v), v);
                let px = _mm_cvtsi128_si32(v).to_le_bytes();
                let to = (y * out.width + x) * 3;
                out.data[to..to + 3].copy_from_slice(&px[..3]);
            }
        }
    }
}

/// Python's `round(x, 15)`: the nearest double to `x` rounded to 15 decimal
/// places (Rust's fixed-precision formatting is exact, like CPython's).
fn round15(x: f64) -> f64 {
    format!("{x:.15}").parse().unwrap_or(x)
}

/// Rotates a square image by a quarter turn: counter-clockwise (Pillow's
/// `ROTATE_90`) or clockwise (`ROTATE_270`).
fn quarter_turn(img: &RgbImage, counter_clockwise: bool) -> RgbImage {
    let (h, w) = (img.height, img.width);
    let mut data = Vec::with_capacity(img.data.len());
    for y in 0..w {
        for x in 0..h {
            let (sx, sy) = if counter_clockwise { (w - 1 - y, x) } else { (y, h - 1 - x) };
            let from = (sy * w + sx) * 3;
            data.extend_from_slice(&img.data[from..from + 3]);
        }
    }
    RgbImage { height: w, width: h, data }
}

/// `img.rotate(degrees, resample, fillcolor=fill)`: counter-clockwise about
/// the image centre, same size. As in Pillow, angles equal to 0 or 180
/// (mod 360), and 90 or 270 on square images, are exact transposes;
/// otherwise the matrix is built with `round(cos, 15)`/`round(sin, 15)` and
/// sampled by [`affine`].
pub fn rotate(img: &RgbImage, degrees: f64, resample: Resample, fill: [u8; 3]) -> RgbImage {
    // Python's float modulo takes the divisor's sign.
    let mut angle = degrees % 360.0;
    if angle != 0.0 && angle < 0.0 {
        angle += 360.0;
    }
    if angle == 0.0 {
        return img.clone();
    }
    if angle == 180.0 {
        let mut data: Vec<u8> = Vec::with_capacity(img.data.len());
        for px in img.data.chunks_exact(3).rev() {
            data.extend_from_slice(px);
        }
        return RgbImage { height: img.height, width: img.width, data };
    }
    if (angle == 90.0 || angle == 270.0) && img.width == img.height {
        return quarter_turn(img, angle == 90.0);
    }
    let (cx, cy) = (img.width as f64 / 2.0, img.height as f64 / 2.0);
    let theta = -angle.to_radians();
    let (a, b) = (round15(theta.cos()), round15(theta.sin()));
    let (d, e) = (round15(-theta.sin()), round15(theta.cos()));
    let c = a * -cx + b * -cy + 0.0 + cx;
    let f = d * -cx + e * -cy + 0.0 + cy;
    affine(img, &[a, b, c, d, e, f], resample, fill)
}

/// timm's `shear_x(img, factor)`: `transform(AFFINE, (1, factor, 0, 0, 1, 0))`.
pub fn shear_x(img: &RgbImage, factor: f64, resample: Resample, fill: [u8; 3]) -> RgbImage {
    affine(img, &[1.0, factor, 0.0, 0.0, 1.0, 0.0], resample, fill)
}

/// timm's `shear_y(img, factor)`: `transform(AFFINE, (1, 0, 0, factor, 1, 0))`.
pub fn shear_y(img: &RgbImage, factor: f64, resample: Resample, fill: [u8; 3]) -> RgbImage {
    affine(img, &[1.0, 0.0, 0.0, factor, 1.0, 0.0], resample, fill)
}

/// timm's `translate_x_rel(img, pct)`: shift by `pct * width` pixels (the
/// content moves left for positive `pct`, as the map adds to `x_in`).
pub fn translate_x_rel(img: &RgbImage, pct: f64, resample: Resample, fill: [u8; 3]) -> RgbImage {
    let pixels = pct * img.width as f64;
    affine(img, &[1.0, 0.0, pixels, 0.0, 1.0, 0.0], resample, fill)
}

/// timm's `translate_y_rel(img, pct)`: shift by `pct * height` pixels.
pub fn translate_y_rel(img: &RgbImage, pct: f64, resample: Resample, fill: [u8; 3]) -> RgbImage {
    let pixels = pct * img.height as f64;
    affine(img, &[1.0, 0.0, 0.0, 0.0, 1.0, pixels], resample, fill)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ramp(h: usize, w: usize) -> RgbImage {
        RgbImage { height: h, width: w, data: (0..h * w * 3).map(|i| (i * 7 % 256) as u8).collect() }
    }

    #[test]
    fn identity_affine_is_exact_for_every_filter() {
        let img = ramp(5, 6);
        for r in [Resample::Nearest, Resample::Bilinear, Resample::Bicubic] {
            assert_eq!(affine(&img, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], r, [1, 2, 3]), img, "{r:?}");
        }
    }

    #[test]
    fn whole_image_translation_leaves_only_fill() {
        let img = ramp(4, 4);
        let out = translate_x_rel(&img, 1.0, Resample::Bilinear, [9, 8, 7]);
        assert_eq!(out.data, [9, 8, 7].repeat(16));
    }

    #[test]
    fn quarter_turns_compose_to_identity() {
        let img = ramp(3, 3);
        let ccw = rotate(&img, 90.0, Resample::Nearest, [0; 3]);
        assert_eq!(rotate(&ccw, -90.0, Resample::Nearest, [0; 3]), img);
        assert_eq!(hflip(&hflip(&img)), img);
    }

    #[test]
    fn simd_bicubic_affine_is_the_scalar_one() {
        let mut s = 7u64;
        let img = RgbImage {
            height: 23,
            width: 19,
            data: (0..23 * 19 * 3)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 24) as u8
                })
                .collect(),
        };
        for a in [[0.93, 0.31, -2.4, -0.29, 0.97, 3.3], [1.0, 0.3, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, -7.2, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, -0.27, 1.0, 5.5], [1.0, 0.0, 3.0, 0.0, 1.0, -2.0]] {
            let mut scalar = RgbImage { height: 23, width: 19, data: vec![7; 23 * 19 * 3] };
            let mut simd = scalar.clone();
            affine_filtered(&img, &mut scalar, &a, sample_bicubic);
            affine_bicubic(&img, &mut simd, &a);
            assert_eq!(simd, scalar, "{a:?}");
        }
    }

    #[test]
    fn round15_rounds_like_python() {
        // round(math.cos(math.radians(90)), 15) == 0.0 in Python
        assert_eq!(round15(std::f64::consts::FRAC_PI_2.cos()), 0.0);
        assert_eq!(round15(0.123_456_789_012_345_68), 0.123_456_789_012_346);
    }
}
