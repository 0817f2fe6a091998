//! The pre-training step benchmarks (`vitdet bench mae`, `mocov3`,
//! `distill`: [`mae`], [`mocov3`], [`distill`]) and what they share: their
//! settings, their JSON line, and the timed loop around one method's
//! training step.
//!
//! Memory is the process's peak resident set size (Linux `VmHWM`, read
//! after the last step, never reset), runtime included, as a user of the
//! command sees it; the PyTorch scripts in `bench/` read their own the same
//! way, and `bench/ratios.py` divides the two lines of each round.

pub mod distill;
pub mod mae;
pub mod mocov3;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::timing::{peak_rss_mb, sync, time_iters};

/// The learning rate of the timed steps: constant, as its size does not
/// change the work of a step.
pub const LR: f64 = 1e-4;

/// The settings every step benchmark takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepBenchOptions {
    /// Images per step.
    pub batch: usize,
    /// Timed steps (at least 1), after one untimed warm-up step.
    pub iters: usize,
    /// Square input side in pixels (a multiple of the patch size 16).
    pub input_size: usize,
}

impl Default for StepBenchOptions {
    /// The benchmark: batch 64 at 224 px, 3 timed steps.
    fn default() -> Self {
        Self { batch: 64, iters: 3, input_size: 224 }
    }
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct StepBenchResult {
    /// What ran.
    pub model: String,
    /// Device used.
    pub device: String,
    /// Compute threads.
    pub threads: usize,
    /// Images per step.
    pub batch: usize,
    /// Input side in pixels.
    pub input_size: usize,
    /// Timed steps.
    pub iters: usize,
    /// Images (not views) per second over the timed steps.
    pub train_img_s: f64,
    /// The process's peak resident memory, MiB (Linux only; 0 if unknown).
    pub peak_rss_mb: f64,
}

/// Runs `step` (one full training step returning its loss) once untimed,
/// then `opts.iters` times, waiting for the device after each, and reports
/// the images per second of the timed steps and the process's peak memory.
/// `model` names what ran.
///
/// # Errors
/// The first error `step` returns.
pub fn time_train_steps(opts: &StepBenchOptions, model: String, device: &Device, mut step: impl FnMut() -> Result<Tensor>) -> Result<StepBenchResult> {
    let iters = opts.iters.max(1);
    let seconds = time_iters(iters, || -> Result<()> { sync(&step()?) })?;
    Ok(StepBenchResult {
        model,
        device: format!("{device:?}"),
        threads: candle_core::utils::get_num_threads(),
        batch: opts.batch,
        input_size: opts.input_size,
        iters,
        train_img_s: (opts.batch * iters) as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
    })
}
