//! Textured, muted backgrounds and saturated shape colours.
//!
//! The two colour families are disjoint by construction, measured by a pixel's
//! channel spread `max(r, g, b) - min(r, g, b)`: every background pixel has a
//! spread of at most [`BACKGROUND_MAX_SPREAD`] and every shape colour at least
//! [`SHAPE_MIN_SPREAD`]. Tests use this to check, from the PNG alone, that the
//! annotations cover exactly the shape pixels.

use image::{Rgb, RgbImage};
use rand::Rng;

/// Largest channel spread of a background pixel: a muted colour has a tint of
/// at most ±[`TINT`] per channel (spread ≤ 40), mixing two of them keeps that
/// bound, and per-pixel noise of ±[`NOISE`] adds at most 20.
pub const BACKGROUND_MAX_SPREAD: u8 = 60;

/// Smallest channel spread of a shape colour (HSV with S, V ≥ 0.65 gives
/// spread ≈ 255·S·V ≥ 107; colours under 100 after rounding are re-drawn).
pub const SHAPE_MIN_SPREAD: u8 = 100;

/// Per-channel tint of a muted colour around its grey level.
const TINT: i32 = 20;
/// Per-pixel, per-channel uniform noise amplitude.
const NOISE: i32 = 10;

/// Channel spread `max - min` of a colour.
pub fn spread(c: [u8; 3]) -> u8 {
    let max = c[0].max(c[1]).max(c[2]);
    let min = c[0].min(c[1]).min(c[2]);
    max - min
}

/// A muted colour: grey level 70..=200 plus a tint of ±20 per channel.
fn muted(rng: &mut impl Rng) -> [f64; 3] {
    let grey = rng.gen_range(70..=200);
    [0, 1, 2].map(|_| f64::from(grey + rng.gen_range(-TINT..=TINT)))
}

/// A saturated, bright colour (channel spread ≥ [`SHAPE_MIN_SPREAD`]).
pub(crate) fn shape_colour(rng: &mut impl Rng) -> [u8; 3] {
    loop {
        let (h, s, v) = (rng.gen_range(0.0..6.0), rng.gen_range(0.65..1.0), rng.gen_range(0.65..1.0));
        let c = hsv_to_rgb(h, s, v);
        if spread(c) >= SHAPE_MIN_SPREAD {
            return c;
        }
    }
}

/// HSV (hue in sextants 0..6, saturation and value in 0..1) to 8-bit RGB.
fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [u8; 3] {
    let sector = h.floor();
    let f = h - sector;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let rgb = match sector as i64 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    };
    rgb.map(|c| (c * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// The background textures.
#[derive(Clone, Copy, Debug)]
enum Texture {
    /// Smooth value noise: a coarse grid of muted colours, smoothly interpolated.
    Noise,
    /// A linear gradient between two muted colours at a random angle.
    Gradient,
    /// Soft sinusoidal stripes of two muted colours at a random angle.
    Stripes,
    /// An axis-aligned checkerboard of two muted colours.
    Checker,
}

/// Paints a `size × size` textured background.
pub(crate) fn background(rng: &mut impl Rng, size: u32) -> RgbImage {
    let texture = [Texture::Noise, Texture::Gradient, Texture::Stripes, Texture::Checker][rng.gen_range(0..4)];
    let (a, b) = (muted(rng), muted(rng));
    let s = f64::from(size);
    // Mixing weight of `b` at each pixel, in 0..=1.
    let weight: Box<dyn Fn(f64, f64) -> f64> = match texture {
        Texture::Noise => return value_noise(rng, size),
        Texture::Gradient => {
            let angle: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
            let (c, si) = (angle.cos(), angle.sin());
            Box::new(move |x, y| (((x - s / 2.0) * c + (y - s / 2.0) * si) / s + 0.5).clamp(0.0, 1.0))
        }
        Texture::Stripes => {
            let angle: f64 = rng.gen_range(0.0..std::f64::consts::PI);
            let period = rng.gen_range(8.0..40.0) * s / 256.0;
            let (c, si) = (angle.cos(), angle.sin());
            Box::new(move |x, y| 0.5 + 0.5 * ((x * c + y * si) * std::f64::consts::TAU / period).sin())
        }
        Texture::Checker => {
            let cell = (rng.gen_range(10.0..48.0) * s / 256.0).max(2.0);
            Box::new(move |x, y| f64::from(((x / cell).floor() + (y / cell).floor()).rem_euclid(2.0) as u8))
        }
    };
    let mut img = RgbImage::new(size, size);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let t = weight(f64::from(x), f64::from(y));
        *px = noisy(rng, [0, 1, 2].map(|i| a[i] * (1.0 - t) + b[i] * t));
    }
    img
}

/// Smooth value noise over a grid of 3..=8 cells per side.
fn value_noise(rng: &mut impl Rng, size: u32) -> RgbImage {
    let cells = rng.gen_range(3..=8usize);
    let grid: Vec<[f64; 3]> = (0..(cells + 1) * (cells + 1)).map(|_| muted(rng)).collect();
    let at = |i: usize, j: usize| grid.get(j * (cells + 1) + i).copied().unwrap_or([128.0; 3]);
    let scale = cells as f64 / f64::from(size);
    let mut img = RgbImage::new(size, size);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (gx, gy) = (f64::from(x) * scale, f64::from(y) * scale);
        let (i, j) = (gx.floor() as usize, gy.floor() as usize);
        let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
        let (fx, fy) = (smooth(gx - gx.floor()), smooth(gy - gy.floor()));
        let (c00, c10, c01, c11) = (at(i, j), at(i + 1, j), at(i, j + 1), at(i + 1, j + 1));
        let mix = [0, 1, 2].map(|k| {
            let top = c00[k] * (1.0 - fx) + c10[k] * fx;
            let bottom = c01[k] * (1.0 - fx) + c11[k] * fx;
            top * (1.0 - fy) + bottom * fy
        });
        *px = noisy(rng, mix);
    }
    img
}

/// Adds ±[`NOISE`] per channel and rounds.
fn noisy(rng: &mut impl Rng, c: [f64; 3]) -> Rgb<u8> {
    Rgb(c.map(|v| (v.round() as i32 + rng.gen_range(-NOISE..=NOISE)).clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn background_and_shape_colours_are_separated_by_spread() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..12 {
            let img = background(&mut rng, 64);
            let worst = img.pixels().map(|p| spread(p.0)).max().unwrap();
            assert!(worst <= BACKGROUND_MAX_SPREAD, "background spread {worst}");
        }
        for _ in 0..1000 {
            assert!(spread(shape_colour(&mut rng)) >= SHAPE_MIN_SPREAD);
        }
    }

    #[test]
    fn hsv_primaries() {
        assert_eq!(hsv_to_rgb(0.0, 1.0, 1.0), [255, 0, 0]);
        assert_eq!(hsv_to_rgb(2.0, 1.0, 1.0), [0, 255, 0]);
        assert_eq!(hsv_to_rgb(4.0, 1.0, 0.5), [0, 0, 128]);
    }
}
