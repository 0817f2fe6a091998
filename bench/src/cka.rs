//! Timing of the CKA estimator alone on features already in memory (`vitdet
//! bench cka`; `bench/cka_vs_numpy.sh` runs it beside the NumPy estimator of
//! `bench/cka_numpy.py` on the same file). It isolates the estimator: Gram
//! matrices in f64 plus the unbiased HSIC of every pair of layers, the work
//! `vitdet analyze cka` adds to the forward passes.

use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use analysis::cka::minibatch_cka;
use analysis::Result;

/// One timing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CkaTiming {
    /// Images in the features.
    pub images: usize,
    /// Features per image and layer.
    pub features: usize,
    /// Layers compared with each other (an L x L matrix).
    pub layers: usize,
    /// Images per minibatch.
    pub batch: usize,
    /// Minibatches averaged.
    pub minibatches: usize,
    /// Wall-clock seconds of each round.
    pub seconds: Vec<f64>,
    /// Their median.
    pub median_seconds: f64,
    /// CKA of the first and last layer (a checksum to compare with the peer).
    pub cka_first_last: f64,
}

/// Times `rounds` computations of the L x L minibatch CKA matrix of `layers`
/// (each (N, P), same images) with itself.
///
/// # Errors
/// As [`minibatch_cka`].
pub fn time_cka(layers: &[Tensor], batch: usize, rounds: usize) -> Result<CkaTiming> {
    let mut seconds = Vec::with_capacity(rounds.max(1));
    let mut result = (Vec::new(), 0);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        result = minibatch_cka(layers, layers, batch)?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let (matrix, minibatches) = result;
    let first = layers.first().map_or(Ok((0, 0)), |t| t.flatten_from(1).and_then(|f| f.dims2()))?;
    Ok(CkaTiming {
        images: first.0,
        features: first.1,
        layers: layers.len(),
        batch,
        minibatches,
        median_seconds: sorted[sorted.len() / 2],
        seconds,
        cka_first_last: matrix.first().and_then(|r| r.last()).copied().unwrap_or(f64::NAN),
    })
}
