//! Pillow's neighbourhood filters on RGB images: the 3×3 `SMOOTH` kernel
//! (the degenerate image of `ImageEnhance.Sharpness`) and
//! `ImageFilter.GaussianBlur(radius)`, the blur of MoCo-v3/BYOL/MAE-Lite's
//! `GaussianBlur` augmentation.
//!
//! Pillow does not convolve with a Gaussian: `ImagingGaussianBlur`
//! (`src/libImaging/BoxBlur.c`) runs three *extended box blurs* (Gwosdek et
//! al., SSVM 2011) horizontally, then three vertically, with a fractional box
//! radius derived from sigma, 8.24 fixed-point weights and edge pixels
//! repeated beyond the border. Every step is reproduced here, including the
//! `float`/`double` mix of `_gaussian_blur_radius` and the unsigned 32-bit
//! accumulators, so the output is bit-identical (pinned by
//! `vision/tests/augment.rs`).

use crate::RgbImage;

/// Number of box-blur passes per direction in `ImagingGaussianBlur`.
const GAUSSIAN_PASSES: u32 = 3;

/// Pillow's `SMOOTH` filter (kernel 1 1 1 / 1 5 1 / 1 1 1, scale 13):
/// single-precision sums starting from 0.5 and truncated, the one-pixel
/// border copied unfiltered, and the whole image copied when it is smaller
/// than 3×3 (`ImagingFilter3x3`, `src/libImaging/Filter.c`).
pub fn smooth(img: &RgbImage) -> RgbImage {
    let (h, w) = (img.height, img.width);
    if h < 3 || w < 3 {
        return img.clone();
    }
    // The kernel is divided by the scale in float, as `_filter` does.
    let side = 1.0f32 / 13.0f32;
    let centre = 5.0f32 / 13.0f32;
    let kernel = [side, side, side, side, centre, side, side, side, side];
    let at = |y: usize, x: usize, c: usize| f32::from(img.data[(y * w + x) * 3 + c]);
    let mut out = img.clone();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                // Rows are taken bottom-up against the kernel (`in1` pairs
                // with kernel[0..3]), each row summed left to right.
                let row = |yy: usize, k: &[f32]| at(yy, x - 1, c) * k[0] + at(yy, x, c) * k[1] + at(yy, x + 1, c) * k[2];
                let mut ss = 0.5f32;
                ss += row(y + 1, &kernel[0..3]);
                ss += row(y, &kernel[3..6]);
                ss += row(y - 1, &kernel[6..9]);
                out.data[(y * w + x) * 3 + c] = ss.clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Pillow's `_gaussian_blur_radius`: the fractional box radius whose
/// `passes`-fold box blur has standard deviation `sigma`. `float` steps stay
/// `f32`; the `12.0 * sigma2 + 1.0`, `sqrt` and `floor` steps are `double`.
fn box_radius(sigma: f32, passes: u32) -> f32 {
    let sigma2 = sigma * sigma / passes as f32;
    let big_l = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// The 8.24 fixed-point weights of one extended box of radius `radius`:
/// `(integer radius, inner weight ww, fractional edge weight fw)`.
fn box_weights(radius: f32) -> (usize, u32, u32) {
    let whole = radius as u32;
    let ww = ((1u32 << 24) as f32 / (radius * 2.0 + 1.0)) as u32;
    let fw = ((1u32 << 24) - (whole * 2 + 1) * ww) / 2;
    (whole as usize, ww, fw)
}

/// `ImagingLineBoxBlur8`: one extended box blur of `line` into `out`, edge
/// pixels repeated, in wrapping unsigned 32-bit arithmetic as in C.
fn box_blur_line(line: &[u8], out: &mut [u8], radius: usize, ww: u32, fw: u32) {
    let len = line.len();
    if len == 0 {
        return;
    }
    let last = len - 1;
    let px = |i: usize| u32::from(line[i]);
    let edge_a = (radius + 1).min(len);
    let edge_b = len.saturating_sub(radius + 1);
    // The window sum for pixel -1: the first pixel radius + 1 times, then
    // pixels 0..edge_a - 1, then the last pixel for the part beyond the line.
    let mut acc = px(0).wrapping_mul(radius as u32 + 1);
    for x in 0..edge_a - 1 {
        acc = acc.wrapping_add(px(x));
    }
    acc = acc.wrapping_add(px(last).wrapping_mul((radius + 1 - edge_a) as u32));
    let mut emit = |x: usize, acc: u32, left: u32, right: u32| {
        let bulk = acc.wrapping_mul(ww).wrapping_add(left.wrapping_add(right).wrapping_mul(fw));
        out[x] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
    };
    let step = |acc: &mut u32, sub: usize, add: usize| {
        *acc = acc.wrapping_add(px(add)).wrapping_sub(px(sub));
    };
    if edge_a <= edge_b {
        for x in 0..edge_a {
            step(&mut acc, 0, x + radius);
            emit(x, acc, px(0), px(x + radius + 1));
        }
        for x in edge_a..edge_b {
            step(&mut acc, x - radius - 1, x + radius);
            emit(x, acc, px(x - radius - 1), px(x + radius + 1));
        }
        for x in edge_b..=last {
            step(&mut acc, x - radius - 1, last);
            emit(x, acc, px(x - radius - 1), px(last));
        }
    } else {
        for x in 0..edge_b {
            step(&mut acc, 0, x + radius);
            emit(x, acc, px(0), px(x + radius + 1));
        }
        for x in edge_b..edge_a {
            step(&mut acc, 0, last);
            emit(x, acc, px(0), px(last));
        }
        for x in edge_a..=last {
            step(&mut acc, x - radius - 1, last);
            emit(x, acc, px(x - radius - 1), px(last));
        }
    }
}

/// Runs `passes` box blurs along every line of one channel of `img`
/// (rows when `along_rows`, else columns), in place.
fn blur_lines(img: &mut RgbImage, along_rows: bool, radius: f32, passes: u32) {
    let (whole, ww, fw) = box_weights(radius);
    let (lines, len) = if along_rows { (img.height, img.width) } else { (img.width, img.height) };
    let index = |line: usize, k: usize, c: usize| {
        if along_rows {
            (line * img.width + k) * 3 + c
        } else {
            (k * img.width + line) * 3 + c
        }
    };
    let mut src = vec![0u8; len];
    let mut dst = vec![0u8; len];
    for line in 0..lines {
        for c in 0..3 {
            for (k, v) in src.iter_mut().enumerate() {
                *v = img.data[index(line, k, c)];
            }
            for _ in 0..passes {
                box_blur_line(&src, &mut dst, whole, ww, fw);
                std::mem::swap(&mut src, &mut dst);
            }
            for (k, &v) in src.iter().enumerate() {
                img.data[index(line, k, c)] = v;
            }
        }
    }
}

/// `img.filter(PIL.ImageFilter.GaussianBlur(radius=sigma))`: Pillow's
/// three-pass extended box blur approximating a Gaussian of standard
/// deviation `sigma` pixels (passed to C as a `float`). `sigma == 0` returns
/// the image unchanged; negative sigmas are treated as their magnitude
/// (Pillow rejects them).
pub fn gaussian_blur(img: &RgbImage, sigma: f64) -> RgbImage {
    let sigma = (sigma as f32).abs();
    let mut out = img.clone();
    if sigma == 0.0 || img.height == 0 || img.width == 0 {
        return out;
    }
    let radius = box_radius(sigma, GAUSSIAN_PASSES);
    blur_lines(&mut out, true, radius, GAUSSIAN_PASSES);
    blur_lines(&mut out, false, radius, GAUSSIAN_PASSES);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn box_weights_sum_to_one_in_fixed_point() {
        for sigma in [0.1f32, 0.5, 1.0, 2.0, 7.3] {
            let (whole, ww, fw) = box_weights(box_radius(sigma, GAUSSIAN_PASSES));
            let total = (whole as u32 * 2 + 1) * ww + 2 * fw;
            assert!((1 << 24) - total <= 1, "sigma {sigma}: {total}");
        }
    }

    #[test]
    fn blur_keeps_a_flat_image_flat() {
        let img = RgbImage { height: 5, width: 7, data: vec![77; 105] };
        assert_eq!(gaussian_blur(&img, 1.3), img);
        assert_eq!(smooth(&img), img);
    }
}
