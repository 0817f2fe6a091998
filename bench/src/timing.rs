//! What every benchmark shares: the timed loop, a device sync, and the peak
//! resident memory of the process (random images as stand-in data come from
//! `engine::testing::random_images`).

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Tensor};

/// Runs `step` once untimed, then `iters` (at least 1) times; returns the
/// timed seconds. Generic over the error so that any step's error type
/// passes through unchanged.
///
/// # Errors
/// The first error `step` returns.
pub fn time_iters<E>(iters: usize, mut step: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    step()?;
    let start = Instant::now();
    for _ in 0..iters.max(1) {
        step()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Waits for the device by reading one value back.
pub fn sync(t: &Tensor) -> Result<()> {
    t.flatten_all()?.get(0)?.to_dtype(DType::F32)?.to_vec0::<f32>()?;
    Ok(())
}

/// Resets the kernel's peak-RSS counter (Linux: "5" to /proc/self/clear_refs).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}
