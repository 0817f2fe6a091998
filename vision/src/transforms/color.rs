//! Pixel-wise colour operations exactly as Pillow computes them for RGB
//! images: the `L` conversion, `ImageEnhance` (Brightness, Contrast, Color,
//! Sharpness through [`blend`]), the HSV round trip of torchvision's
//! `adjust_hue`, and the `ImageOps` look-up-table operations timm's
//! RandAugment calls (autocontrast, equalize, invert, posterize, solarize,
//! solarize-add).
//!
//! Sources: Pillow `src/libImaging/Convert.c` (`L24`, `rgb2hsv_row`,
//! `hsv2rgb`), `Blend.c`, `src/PIL/ImageEnhance.py`, `ImageOps.py`,
//! `ImageStat.py`; torchvision `transforms/_functional_pil.py`; timm
//! `data/auto_augment.py` (`solarize_add`, `posterize`). The C code mixes
//! `float` and `double`; each function below keeps the same precision at
//! each step (`f32` where C has `float`), which is what makes the results
//! identical, not merely close. Pinned by `vision/tests/augment.rs`.

use super::filter::smooth;
use crate::RgbImage;

/// Pillow's `convert("L")` of one pixel: ITU-R 601-2 luma with 16-bit fixed
/// point weights (19595, 38470, 7471) and rounding (`+ 0x8000 >> 16`).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    let sum = u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000;
    (sum >> 16) as u8
}

/// The luma of every pixel, row-major (Pillow's `L` image).
fn luma_plane(img: &RgbImage) -> Vec<u8> {
    img.data.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect()
}

/// torchvision's `rgb_to_grayscale(img, num_output_channels=3)` on a PIL
/// image: `convert("L")`, the luma replicated to three channels.
pub fn to_grayscale(img: &RgbImage) -> RgbImage {
    let data = luma_plane(img).into_iter().flat_map(|l| [l, l, l]).collect();
    RgbImage { height: img.height, width: img.width, data }
}

/// Pillow's `Image.blend(degenerate, image, factor)`, the core of every
/// `ImageEnhance` class: `degenerate + factor * (image - degenerate)` in
/// single precision (`factor` is passed to C as a `float`), truncated to
/// 8 bits, clamped to 0..=255 when `factor` extrapolates (outside [0, 1]).
/// Both images must have the same size.
pub fn blend(degenerate: &RgbImage, image: &RgbImage, factor: f64) -> RgbImage {
    let alpha = factor as f32;
    let data = degenerate
        .data
        .iter()
        .zip(&image.data)
        .map(|(&d, &i)| {
            let value = f32::from(d) + alpha * f32::from(i16::from(i) - i16::from(d));
            // `as u8` truncates toward zero and saturates at 0 and 255, which
            // is both Blend.c branches: plain truncation inside [0, 1] (where
            // the value cannot leave 0..=255) and clip-then-truncate outside.
            value as u8
        })
        .collect();
    RgbImage { height: image.height, width: image.width, data }
}

/// An image of the given size filled with one grey level.
fn flat(img: &RgbImage, level: u8) -> RgbImage {
    RgbImage { height: img.height, width: img.width, data: vec![level; img.data.len()] }
}

/// `ImageEnhance.Brightness(img).enhance(factor)` (torchvision
/// `adjust_brightness`, timm `Brightness`): a blend with black.
pub fn adjust_brightness(img: &RgbImage, factor: f64) -> RgbImage {
    blend(&flat(img, 0), img, factor)
}

/// `ImageEnhance.Contrast(img).enhance(factor)` (torchvision
/// `adjust_contrast` on PIL images, timm `Contrast`): a blend with the flat
/// grey `int(mean(L) + 0.5)`, the mean of the luma image computed in double
/// precision as `ImageStat` does.
pub fn adjust_contrast(img: &RgbImage, factor: f64) -> RgbImage {
    let l = luma_plane(img);
    let mean = if l.is_empty() {
        0.0
    } else {
        let sum: f64 = l.iter().map(|&v| f64::from(v)).sum();
        sum / l.len() as f64
    };
    blend(&flat(img, (mean + 0.5) as u8), img, factor)
}

/// `ImageEnhance.Color(img).enhance(factor)` (torchvision
/// `adjust_saturation`, timm `Color`): a blend with the grayscale image.
pub fn adjust_saturation(img: &RgbImage, factor: f64) -> RgbImage {
    blend(&to_grayscale(img), img, factor)
}

/// `ImageEnhance.Sharpness(img).enhance(factor)` (timm `Sharpness`): a blend
/// with Pillow's 3×3 `SMOOTH` filter of the image.
pub fn adjust_sharpness(img: &RgbImage, factor: f64) -> RgbImage {
    blend(&smooth(img), img, factor)
}

/// Pillow's `rgb2hsv_row`: 8-bit hue, saturation and value.
pub fn rgb_to_hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let cr = f32::from(maxc - minc);
    let s = cr / f32::from(maxc);
    let rc = f32::from(maxc - r) / cr;
    let gc = f32::from(maxc - g) / cr;
    let bc = f32::from(maxc - b) / cr;
    // `2.0 + rc - bc` is evaluated in double (the literals are doubles) and
    // stored back into a float, as is the `fmod` below.
    let h: f32 = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + f64::from(rc) - f64::from(bc)) as f32
    } else {
        (4.0 + f64::from(gc) - f64::from(rc)) as f32
    };
    let h = ((f64::from(h) / 6.0 + 1.0) % 1.0) as f32;
    let to_byte = |v: f32| ((f64::from(v) * 255.0) as i32).clamp(0, 255) as u8;
    [to_byte(h), to_byte(s), maxc]
}

/// Pillow's `hsv2rgb` for one pixel.
pub fn hsv_to_rgb(h: u8, s: u8, v: u8) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let h6 = f64::from(h) * 6.0 / 255.0;
    let i = h6.floor() as i32;
    let f = (h6 - f64::from(i as f32)) as f32;
    let fs = (f64::from(s) / 255.0) as f32;
    let vf = f64::from(v);
    // C's round() rounds half away from zero, as Rust's f64::round does;
    // `fs * f` is a float product, the other factors are doubles.
    let clip = |x: f64| (x.round() as i32).clamp(0, 255) as u8;
    let p = clip(vf * (1.0 - f64::from(fs)));
    let q = clip(vf * (1.0 - f64::from(fs * f)));
    let t = clip(vf * (1.0 - f64::from(fs) * (1.0 - f64::from(f))));
    match i % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// torchvision's `adjust_hue` on a PIL image: convert to HSV, add
/// `int(hue_factor * 255)` to the hue byte with wrap-around (uint8
/// overflow), convert back. torchvision accepts `hue_factor` in
/// [-0.5, 0.5]; other values simply wrap further.
pub fn adjust_hue(img: &RgbImage, hue_factor: f64) -> RgbImage {
    // np.int32(hue_factor * 255) truncates toward zero; astype(uint8) wraps.
    let shift = (hue_factor * 255.0) as i32 as u8;
    let data = img
        .data
        .chunks_exact(3)
        .flat_map(|p| {
            let [h, s, v] = rgb_to_hsv(p[0], p[1], p[2]);
            hsv_to_rgb(h.wrapping_add(shift), s, v)
        })
        .collect();
    RgbImage { height: img.height, width: img.width, data }
}

/// A per-channel look-up table, as Pillow's `Image.point` with 768 entries.
type Lut = [[u8; 256]; 3];

/// Applies one table per channel.
fn apply_lut(img: &RgbImage, lut: &Lut) -> RgbImage {
    let data = img.data.iter().enumerate().map(|(k, &v)| lut[k % 3][usize::from(v)]).collect();
    RgbImage { height: img.height, width: img.width, data }
}

/// Applies the same table to the three channels.
fn apply_shared_lut(img: &RgbImage, lut: impl Fn(u8) -> u8) -> RgbImage {
    let table: [u8; 256] = std::array::from_fn(|i| lut(i as u8));
    apply_lut(img, &[table; 3])
}

/// The 256-bin histogram of each channel.
fn histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for (k, &v) in img.data.iter().enumerate() {
        h[k % 3][usize::from(v)] += 1;
    }
    h
}

/// The identity table.
fn identity_table() -> [u8; 256] {
    std::array::from_fn(|i| i as u8)
}

/// `ImageOps.autocontrast(img)` (cutoff 0, nothing ignored), timm
/// `AutoContrast`: per channel, stretch the occupied range `lo..=hi` to
/// 0..=255 with `int(ix * scale + offset)`; a channel with a single level is
/// left unchanged.
pub fn auto_contrast(img: &RgbImage) -> RgbImage {
    let hist = histograms(img);
    let lut: Lut = std::array::from_fn(|c| {
        let h = &hist[c];
        let lo = h.iter().position(|&n| n != 0);
        let hi = h.iter().rposition(|&n| n != 0);
        match (lo, hi) {
            (Some(lo), Some(hi)) if hi > lo => {
                let scale = 255.0 / (hi - lo) as f64;
                let offset = -(lo as f64) * scale;
                std::array::from_fn(|ix| ((ix as f64 * scale + offset) as i64).clamp(0, 255) as u8)
            }
            _ => identity_table(),
        }
    });
    apply_lut(img, &lut)
}

/// `ImageOps.equalize(img)`, timm `Equalize`: per channel, the histogram
/// equalisation table with Pillow's integer steps
/// (`step = (n - count of the last occupied level) // 255`).
pub fn equalize(img: &RgbImage) -> RgbImage {
    let hist = histograms(img);
    let lut: Lut = std::array::from_fn(|c| {
        let h = &hist[c];
        let occupied: Vec<u64> = h.iter().copied().filter(|&n| n != 0).collect();
        let Some(&last) = occupied.last() else { return identity_table() };
        if occupied.len() <= 1 {
            return identity_table();
        }
        let step = (occupied.iter().sum::<u64>() - last) / 255;
        if step == 0 {
            return identity_table();
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let value = (n / step).min(255) as u8;
            n += h[i];
            value
        })
    });
    apply_lut(img, &lut)
}

/// `ImageOps.invert`, timm `Invert`: `255 - v`.
pub fn invert(img: &RgbImage) -> RgbImage {
    apply_shared_lut(img, |v| 255 - v)
}

/// timm's `posterize(img, bits)`: keep the `bits` most significant bits
/// (`v & ~(2**(8 - bits) - 1)`); 8 or more keeps the image. `bits == 0`
/// blacks the image out, as the Pillow of MAE-Lite's environment did (timm's
/// PosterizeIncreasing reaches 0 bits at magnitude 10; Pillow >= 13 raises
/// instead).
pub fn posterize(img: &RgbImage, bits: u32) -> RgbImage {
    if bits >= 8 {
        return img.clone();
    }
    let mask = !((1u32 << (8 - bits)) - 1) as u8;
    apply_shared_lut(img, |v| v & mask)
}

/// `ImageOps.solarize(img, threshold)`: invert the levels at or above
/// `threshold` (MoCo-v3/BYOL use 128; timm's Solarize passes 0..=256).
pub fn solarize(img: &RgbImage, threshold: u32) -> RgbImage {
    apply_shared_lut(img, |v| if u32::from(v) < threshold { v } else { 255 - v })
}

/// timm's `solarize_add(img, add, thresh=128)`: add `add` (saturating) to
/// the levels below 128.
pub fn solarize_add(img: &RgbImage, add: u32) -> RgbImage {
    const THRESHOLD: u32 = 128;
    apply_shared_lut(img, |v| if u32::from(v) < THRESHOLD { (u32::from(v) + add).min(255) as u8 } else { v })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn image(data: Vec<u8>, width: usize) -> RgbImage {
        RgbImage { height: data.len() / 3 / width, width, data }
    }

    #[test]
    fn luma_of_primaries_and_extremes() {
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 255, 255), 255);
        // 255 * 19595 / 65536 = 76.24 -> 76; 255 * 38470 / 65536 = 149.69 -> 150
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
    }

    #[test]
    fn hsv_round_trip_of_pure_hues() {
        assert_eq!(rgb_to_hsv(255, 0, 0), [0, 255, 255]);
        assert_eq!(hsv_to_rgb(0, 255, 255), [255, 0, 0]);
        // green: h = fmod(2/6 + 1, 1) rounds up to 0.33333334 in float, so
        // int(h * 255) = 85 (Pillow agrees)
        assert_eq!(rgb_to_hsv(0, 255, 0), [85, 255, 255]);
        assert_eq!(rgb_to_hsv(7, 7, 7), [0, 0, 7]);
    }

    #[test]
    fn blend_extrapolation_clamps() {
        let a = image(vec![100, 0, 255], 1);
        let b = image(vec![200, 10, 0], 1);
        // 100 + 2 * 100 = 300 -> 255; 0 + 2 * 10 = 20; 255 + 2 * -255 -> 0
        assert_eq!(blend(&a, &b, 2.0).data, vec![255, 20, 0]);
        assert_eq!(blend(&a, &b, 0.5).data, vec![150, 5, 127]);
    }

    #[test]
    fn autocontrast_and_equalize_keep_single_level_channels() {
        let img = image(vec![10, 50, 7, 20, 50, 7], 2);
        let out = auto_contrast(&img);
        assert_eq!(out.data, vec![0, 50, 7, 255, 50, 7]);
        assert_eq!(equalize(&img).data[1], 50);
    }

    #[test]
    fn posterize_zero_bits_is_black_and_eight_is_identity() {
        let img = image(vec![255, 128, 3], 1);
        assert_eq!(posterize(&img, 0).data, vec![0, 0, 0]);
        assert_eq!(posterize(&img, 1).data, vec![128, 128, 0]);
        assert_eq!(posterize(&img, 8), img);
    }
}
