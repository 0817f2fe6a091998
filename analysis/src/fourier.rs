//! Relative log amplitude of the token maps' Fourier spectra, per layer
//! (the paper's Fig. 3), after Park & Kim, "How do vision transformers
//! work?" (xxxnell/how-do-vits-work `fourier_analysis.ipynb`); MAE-Lite
//! released no Fourier code. For each token map (cls dropped, patches on
//! their (h, w) grid) and each channel: `f = ln(|FFT2(x)| + 1e-6)`, averaged
//! over channels and images (the mean of log amplitudes, not the log of the
//! mean amplitude). Along the diagonal kx = ky of the centred spectrum, from
//! frequency 0 up to π, the profile is `f(k, k)` for k = 0..=min(h, w)/2,
//! and `Δ log amplitude` = f at the highest frequency minus f at frequency 0.
//!
//! Deviation, by choice: for even grids the diagonal ends at π itself (the
//! Nyquist row/column, index 0 after fftshift), where the notebook's
//! half-diagonal `[h/2:]` of the rolled map stops one step short (6π/7 on a
//! 14x14 grid); [`FourierProfile::delta_park_kim`] keeps the notebook's end
//! point too. A checkerboard puts all of its energy at (π, π): Δ > 0 here, 0
//! in the notebook's reading (see `tests`).
//!
//! Shapes: B images, N = 1 + h*w tokens, D channels.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::Serialize;

use crate::{Error, Result};

/// Added to the amplitude before the log (Park & Kim's 1e-6), so a zero
/// amplitude gives ln(1e-6) instead of -inf.
pub const AMPLITUDE_EPS: f64 = 1e-6;

/// The 2-D FFT of one (h, w) grid: row transforms of length w, then column
/// transforms of length h.
#[derive(Clone)]
pub struct GridFft {
    h: usize,
    w: usize,
    rows: Arc<dyn Fft<f64>>,
    cols: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for GridFft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridFft").field("h", &self.h).field("w", &self.w).finish()
    }
}

impl GridFft {
    /// Plans the transforms of an (h, w) grid.
    pub fn new(h: usize, w: usize) -> Self {
        let mut planner = FftPlanner::new();
        Self { h, w, rows: planner.plan_fft_forward(w), cols: planner.plan_fft_forward(h) }
    }

    /// Points on the diagonal from frequency 0 to the highest: min(h, w)/2 + 1.
    pub fn diagonal_len(&self) -> usize {
        self.h.min(self.w) / 2 + 1
    }

    /// Adds `ln(|F(k, k)| + 1e-6)` for k = 0..[`GridFft::diagonal_len`] of
    /// the 2-D DFT F of `map` (h*w, row-major) to `out`. `work` is scratch space.
    pub fn add_diagonal_log_amplitude(&self, map: &[f64], work: &mut FftWork, out: &mut [f64]) {
        let (h, w) = (self.h, self.w);
        work.rows.clear();
        work.rows.extend(map.iter().map(|&v| Complex::new(v, 0.0)));
        work.scratch.resize(self.rows.get_inplace_scratch_len().max(self.cols.get_inplace_scratch_len()), Complex::new(0.0, 0.0));
        // Every row at once (the buffer is h rows of w).
        self.rows.process_with_scratch(&mut work.rows, &mut work.scratch);
        // Only the columns on the diagonal are needed: column k, output row k.
        work.col.resize(h, Complex::new(0.0, 0.0));
        for (k, o) in out.iter_mut().enumerate().take(self.diagonal_len()) {
            for (y, c) in work.col.iter_mut().enumerate() {
                *c = work.rows[y * w + k];
            }
            self.cols.process_with_scratch(&mut work.col, &mut work.scratch);
            *o += (work.col[k].norm() + AMPLITUDE_EPS).ln();
        }
    }
}

/// Scratch buffers of [`GridFft::add_diagonal_log_amplitude`] (one per thread).
#[derive(Debug, Default, Clone)]
pub struct FftWork {
    rows: Vec<Complex<f64>>,
    col: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

/// Sums of the diagonal log amplitudes of one layer's token maps (B, N, D),
/// cls first, over images and channels; returns the sums and the number of
/// maps (B x D) they cover.
///
/// # Errors
/// [`Error::ShapeMismatch`] when N ≠ 1 + h*w.
pub fn diagonal_sums(tokens: &Tensor, fft: &GridFft) -> Result<(Vec<f64>, usize)> {
    let (b, n, d) = tokens.dims3()?;
    let m = fft.h * fft.w;
    if n != 1 + m {
        return Err(Error::ShapeMismatch { what: "token map".into(), expected: format!("{} tokens ({}x{} grid plus cls)", 1 + m, fft.h, fft.w), found: format!("{n} tokens") });
    }
    let values = tokens.narrow(1, 1, m)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let len = fft.diagonal_len();
    let sums = values
        .par_chunks(m * d)
        .map(|image| {
            let (mut work, mut sums, mut map) = (FftWork::default(), vec![0.0; len], vec![0.0; m]);
            for c in 0..d {
                for (p, v) in map.iter_mut().enumerate() {
                    *v = f64::from(image[p * d + c]);
                }
                fft.add_diagonal_log_amplitude(&map, &mut work, &mut sums);
            }
            sums
        })
        .reduce(|| vec![0.0; len], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect());
    Ok((sums, b * d))
}

/// One layer's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FourierProfile {
    /// Mean log amplitude along the diagonal, frequency 0 first.
    pub diagonal: Vec<f64>,
    /// The diagonal's frequencies in units of π (k / (h/2) for a square grid).
    pub frequency_pi: Vec<f64>,
    /// Highest frequency minus frequency 0 (the paper's Δ log amplitude).
    pub delta: f64,
    /// The notebook's reading: the last point of the rolled half-diagonal
    /// (h/2 - 1 for even h) minus frequency 0.
    pub delta_park_kim: f64,
}

/// Running diagonal sums of several layers.
#[derive(Debug, Clone, PartialEq)]
pub struct FourierSums {
    sums: Vec<Vec<f64>>,
    maps: usize,
    h: usize,
    w: usize,
}

impl FourierSums {
    /// Empty sums for `layers` layers on an (h, w) grid.
    pub fn new(layers: usize, h: usize, w: usize) -> Self {
        Self { sums: vec![vec![0.0; h.min(w) / 2 + 1]; layers], maps: 0, h, w }
    }

    /// Adds layer `layer`'s [`diagonal_sums`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for a layer out of range or another length.
    pub fn add_layer(&mut self, layer: usize, sums: &[f64]) -> Result<()> {
        let n = self.sums.len();
        let row = self.sums.get_mut(layer).ok_or_else(|| Error::ShapeMismatch { what: "Fourier layer".into(), expected: format!("< {n}"), found: layer.to_string() })?;
        if row.len() != sums.len() {
            return Err(Error::ShapeMismatch { what: "Fourier diagonal".into(), expected: row.len().to_string(), found: sums.len().to_string() });
        }
        row.iter_mut().zip(sums).for_each(|(s, v)| *s += v);
        Ok(())
    }

    /// Counts `maps` more (image, channel) maps per layer.
    pub fn count(&mut self, maps: usize) {
        self.maps += maps;
    }

    /// Each layer's profile.
    pub fn profiles(&self) -> Vec<FourierProfile> {
        let n = self.maps.max(1) as f64;
        let half = (self.h.min(self.w) as f64) / 2.0;
        self.sums
            .iter()
            .map(|s| {
                let diagonal: Vec<f64> = s.iter().map(|v| v / n).collect();
                let first = diagonal.first().copied().unwrap_or(0.0);
                let last = diagonal.last().copied().unwrap_or(0.0);
                // The rolled map's half-diagonal [h/2:] ends at (h-1)/2 for odd h and h/2 - 1 for even h.
                let pk_end = (self.h.min(self.w) - 1) / 2;
                let pk = diagonal.get(pk_end).copied().unwrap_or(last);
                let frequency_pi = (0..diagonal.len()).map(|k| k as f64 / half).collect();
                FourierProfile { delta: last - first, delta_park_kim: pk - first, frequency_pi, diagonal }
            })
            .collect()
    }
}
