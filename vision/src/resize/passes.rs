//! The two separable passes of Pillow's resampling (`ImagingResampleHorizontal_8bpc`
//! and `ImagingResampleVertical_8bpc`) over a borrowed window of an image.
//!
//! Shapes: a [`View`] is `height` rows of `width` RGB pixels, `stride` bytes
//! apart in a larger buffer, so a crop is read in place. A [`TapTable`]
//! holds, per output index, the first input index and `k` fixed-point
//! weights (Pillow's `ksize`; shorter tap lists are padded with zero weights).
//!
//! Every output value is the integer `HALF + Σ pixel · weight`, shifted and
//! clamped as Pillow's `clip8`. Integer sums do not depend on the order of
//! their terms and a zero weight adds exactly 0, so the AVX2 kernels (four or
//! eight values per instruction, chosen at run time) give the bytes of the
//! scalar loops, which are the fallback elsewhere (and for the last rows of
//! the horizontal pass) and the kernels' reference in the tests below.

use super::PRECISION_BITS;
use crate::RgbImage;

/// Pillow's rounding constant that every fixed-point sum starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Pillow's `clip8` of a fixed-point sum.
#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A borrowed window of an RGB image: pixel `(x, y)` starts at byte
/// `offset + y · stride + 3x` of `data`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    data: &'a [u8],
    offset: usize,
    stride: usize,
    /// Rows in the window.
    pub height: usize,
    /// Columns in the window.
    pub width: usize,
}

impl<'a> View<'a> {
    /// The whole image.
    pub fn whole(img: &'a RgbImage) -> Self {
        View { data: &img.data, offset: 0, stride: img.width * 3, height: img.height, width: img.width }
    }

    /// Rows `rows` and columns `cols` of this window (both inside it).
    pub fn window(self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> Self {
        View { offset: self.offset + rows.start * self.stride + cols.start * 3, height: rows.len(), width: cols.len(), ..self }
    }

    /// Row `y`'s `3 · width` bytes.
    fn row(&self, y: usize) -> &'a [u8] {
        let start = self.offset + y * self.stride;
        &self.data[start..start + self.width * 3]
    }

        /// The window copied into an image of its own.
    pub fn to_image(self) -> RgbImage {
        let mut data = Vec::with_capacity(self.height * self.width * 3);
        for y in 0..self.height {
            data.extend_from_slice(self.row(y));
        }
        RgbImage { height: self.height, width: self.width, data }
    }
}

/// Fixed-point taps of a range of output indices, `k` weights each.
#[derive(Clone, Debug)]
pub(crate) struct TapTable {
    k: usize,
    first: Vec<usize>,
    weights: Vec<i32>,
}

impl TapTable {
    /// Pads the taps `(first input index, weights)` of each output index of
    /// a resize from `in_size` (>= 1) inputs to the longest list, with zero
    /// weights; a list that would then run past the input starts earlier
    /// instead, so every tap reads a pixel inside it.
    pub fn padded(in_size: usize, per_index: &[(usize, Vec<i32>)]) -> Self {
        let k = per_index.iter().map(|(_, w)| w.len()).max().unwrap_or(0).clamp(1, in_size.max(1));
        let mut first = Vec::with_capacity(per_index.len());
        let mut weights = Vec::with_capacity(per_index.len() * k);
        for (lo, w) in per_index {
            let start = (*lo).min(in_size.saturating_sub(k));
            let lead = lo - start;
            first.push(start);
            weights.extend(std::iter::repeat_n(0, lead));
            weights.extend_from_slice(w);
            weights.extend(std::iter::repeat_n(0, k - lead - w.len()));
        }
        TapTable { k, first, weights }
    }

    /// Number of output indices.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// First input index and weights of output index `i`.
    fn get(&self, i: usize) -> (usize, &[i32]) {
        (self.first[i], &self.weights[i * self.k..(i + 1) * self.k])
    }

    /// The input range `[first, last)` the taps read.
    pub fn span(&self) -> std::ops::Range<usize> {
        let lo = self.first.iter().copied().min().unwrap_or(0);
        let hi = self.first.iter().map(|f| f + self.k).max().unwrap_or(lo);
        lo..hi
    }

    /// The same taps with input indices counted from `by`.
    pub fn shifted(&self, by: usize) -> Self {
        TapTable { first: self.first.iter().map(|f| f - by).collect(), ..self.clone() }
    }
}

/// Whether this CPU runs the AVX2 kernels.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Pillow's horizontal pass: every row of `src` resampled to `taps.len()`
/// columns (tap indices count from `src`'s first column).
pub(crate) fn horizontal_pass(src: View<'_>, taps: &TapTable) -> RgbImage {
    horizontal_pass_with(src, taps, has_avx2())
}

fn horizontal_pass_with(src: View<'_>, taps: &TapTable, avx2: bool) -> RgbImage {
    let out_w = taps.len();
    let row_bytes = out_w * 3;
    let mut data = vec![0u8; src.height * row_bytes];
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the CPU has AVX2.
        done = unsafe { x86::horizontal_strips(src, taps, &mut data) };
    }
    let _ = avx2;
    for y in done..src.height {
        horizontal_row(src.row(y), taps, &mut data[y * row_bytes..(y + 1) * row_bytes]);
    }
    RgbImage { height: src.height, width: out_w, data }
}

/// The scalar horizontal pass of one row into `out` (`taps.len()` pixels).
fn horizontal_row(row: &[u8], taps: &TapTable, out: &mut [u8]) {
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        let (first, weights) = taps.get(i);
        let mut acc = [HALF; 3];
        for (p, &w) in row[first * 3..].chunks_exact(3).zip(weights) {
            acc[0] += i32::from(p[0]) * w;
            acc[1] += i32::from(p[1]) * w;
            acc[2] += i32::from(p[2]) * w;
        }
        px.copy_from_slice(&acc.map(clip8));
    }
}

/// Pillow's vertical pass: every column of `src` resampled to `taps.len()`
/// rows (tap indices count from `src`'s first row). Each output row sums
/// whole input rows, which vectorises.
pub(crate) fn vertical_pass(src: View<'_>, taps: &TapTable) -> RgbImage {
    vertical_pass_with(src, taps, has_avx2())
}

fn vertical_pass_with(src: View<'_>, taps: &TapTable, avx2: bool) -> RgbImage {
    let stride = src.width * 3;
    let mut data = vec![0u8; taps.len() * stride];
    let mut rows: Vec<(&[u8], i32)> = Vec::with_capacity(taps.k);
    let mut acc = Vec::new();
    for (i, out) in data.chunks_exact_mut(stride.max(1)).enumerate() {
        let (first, weights) = taps.get(i);
        rows.clear();
        // A zero weight adds nothing (Pillow adds its 0 products).
        rows.extend(weights.iter().enumerate().filter(|(_, w)| **w != 0).map(|(k, &w)| (src.row(first + k), w)));
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `avx2` is true only when the CPU has AVX2.
            unsafe { x86::vertical_row(&rows, out) };
            continue;
        }
        let _ = avx2;
        vertical_row(&rows, &mut acc, out);
    }
    RgbImage { height: taps.len(), width: src.width, data }
}

/// The scalar vertical pass of one output row from its weighted input rows.
fn vertical_row(rows: &[(&[u8], i32)], acc: &mut Vec<i32>, out: &mut [u8]) {
    acc.clear();
    acc.resize(out.len(), HALF);
    for &(row, w) in rows {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += i32::from(v) * w;
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}

/// The AVX2 kernels: the scalar loops' integer sums, several values at a time.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{clip8, TapTable, View, HALF, PRECISION_BITS};

    /// Eight bytes at `at` as the low 64 bits of a vector.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load8(bytes: &[u8], at: usize) -> __m128i {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        _mm_cvtsi64_si128(i64::from_le_bytes(word))
    }

    /// Rows resampled together by [`horizontal_strips`].
    const STRIP: usize = 8;

    /// `clip8` of eight sums, as the low 8 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn clip8x8(acc: __m256i) -> [u8; 8] {
        let v = _mm256_min_epi32(_mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(acc), _mm256_set1_epi32(255));
        let v = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        _mm_cvtsi128_si64(_mm_packus_epi16(v, v)).to_le_bytes()
    }

    /// The horizontal pass over strips of [`STRIP`] rows: a strip is
    /// transposed so that one column's 8 pixels (24 bytes) are contiguous,
    /// then each output column is 24 sums of whole strip columns, as the
    /// vertical pass sums whole rows. Writes rows `0..done` of `out`
    /// (`taps.len()` pixels each) and returns `done`, a multiple of [`STRIP`].
    #[target_feature(enable = "avx2")]
    pub(super) fn horizontal_strips(src: View<'_>, taps: &TapTable, out: &mut [u8]) -> usize {
        const LANES: usize = STRIP * 3;
        let row_bytes = taps.len() * 3;
        let mut strip = vec![0u8; src.width * LANES];
        let strips = src.height / STRIP;
        for s in 0..strips {
            for r in 0..STRIP {
                let row = src.row(s * STRIP + r);
                for (column, px) in strip.chunks_exact_mut(LANES).zip(row.chunks_exact(3)) {
                    column[r * 3..r * 3 + 3].copy_from_slice(px);
                }
            }
            for i in 0..taps.len() {
                let (first, weights) = taps.get(i);
                let mut acc = [_mm256_set1_epi32(HALF); 3];
                for (column, &w) in strip[first * LANES..].chunks_exact(LANES).zip(weights) {
                    let w = _mm256_set1_epi32(w);
                    for (a, part) in acc.iter_mut().zip(column.chunks_exact(8)) {
                        let v = _mm256_cvtepu8_epi32(load8(part, 0));
                        *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(v, w));
                    }
                }
                let mut bytes = [0u8; LANES];
                for (chunk, a) in bytes.chunks_exact_mut(8).zip(acc) {
                    chunk.copy_from_slice(&clip8x8(a));
                }
                for (r, px) in bytes.chunks_exact(3).enumerate() {
                    let at = (s * STRIP + r) * row_bytes + i * 3;
                    out[at..at + 3].copy_from_slice(px);
                }
            }
        }
        strips * STRIP
    }

    /// The vertical pass of one output row, eight values at a time.
    #[target_feature(enable = "avx2")]
    pub(super) fn vertical_row(rows: &[(&[u8], i32)], out: &mut [u8]) {
        let n = out.len();
        let mut x = 0;
        while x + 8 <= n {
            let mut acc = _mm256_set1_epi32(HALF);
            for &(row, w) in rows {
                let v = _mm256_cvtepu8_epi32(load8(row, x));
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(v, _mm256_set1_epi32(w)));
            }
            out[x..x + 8].copy_from_slice(&clip8x8(acc));
            x += 8;
        }
        for (o, xi) in out[x..].iter_mut().zip(x..) {
            let sum = rows.iter().fold(HALF, |acc, &(row, w)| acc + i32::from(row[xi]) * w);
            *o = clip8(sum);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A noisy image from a fixed-seed xorshift, so the kernels see every byte value.
    fn noise(height: usize, width: usize, seed: u64) -> RgbImage {
        let mut s = seed | 1;
        let data = (0..height * width * 3)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect();
        RgbImage { height, width, data }
    }

    /// Taps with positive and negative weights large enough for sums to clip
    /// at both ends (but not overflow: the absolute weights sum below 2^23).
    fn wild_taps(in_size: usize, out: usize, k: usize) -> TapTable {
        let per_index: Vec<(usize, Vec<i32>)> = (0..out)
            .map(|i| {
                let lo = (i * 7) % in_size;
                let avail = in_size - lo;
                let len = if i % 2 == 0 { k.min(avail) } else { k.saturating_sub(1).max(1).min(avail) };
                let w = (0..len).map(|j| (((i * 31 + j * 17) % 13) as i32 - 4) * (HALF / (3 * k as i32))).collect();
                (lo, w)
            })
            .collect();
        TapTable::padded(in_size, &per_index)
    }

    #[test]
    fn padding_keeps_every_tap_inside_the_input() {
        let t = TapTable::padded(5, &[(0, vec![1, 2]), (3, vec![4, 5]), (4, vec![6]), (1, vec![7, 8, 9])]);
        assert_eq!(t.k, 3);
        assert_eq!(t.get(0), (0, &[1, 2, 0][..]));
        assert_eq!(t.get(1), (2, &[0, 4, 5][..]), "would run past the input: starts earlier");
        assert_eq!(t.get(2), (2, &[0, 0, 6][..]));
        assert_eq!(t.get(3), (1, &[7, 8, 9][..]));
        assert_eq!(t.span(), 0..5);
    }

    #[test]
    fn simd_kernels_give_the_scalar_bytes() {
        if !has_avx2() {
            return; // nothing to compare on this CPU
        }
        for (h, w, k, seed) in [(5, 9, 3, 1), (17, 31, 6, 2), (3, 2, 2, 3), (40, 13, 9, 4), (1, 1, 1, 5)] {
            let img = noise(h, w, seed);
            for (rows, cols) in [(0..h, 0..w), (h / 3..h, w / 2..w)] {
                let view = View::whole(&img).window(rows, cols);
                let h_taps = wild_taps(view.width, 11, k);
                assert_eq!(horizontal_pass_with(view, &h_taps, true), horizontal_pass_with(view, &h_taps, false), "horizontal {h}x{w} k {k}");
                let v_taps = wild_taps(view.height, 7, k);
                assert_eq!(vertical_pass_with(view, &v_taps, true), vertical_pass_with(view, &v_taps, false), "vertical {h}x{w} k {k}");
            }
        }
    }
}
