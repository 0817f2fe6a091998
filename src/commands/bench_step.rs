//! The flags every pre-training step benchmark (`vitdet bench mae`,
//! `mocov3`, `distill`) takes, checked once.

use bench::pretrain::StepBenchOptions;

/// Batch, timed steps, input side and device of a step benchmark.
#[derive(clap::Args, Debug)]
pub struct StepBenchArgs {
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps, after one warm-up step.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Input side in pixels (a multiple of the patch size 16).
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl StepBenchArgs {
    /// The checked settings and device; `min_batch` is the smallest batch
    /// the method can take.
    ///
    /// # Errors
    /// A user error (exit code 2) naming the flag: a batch below
    /// `min_batch`, no timed step, an input side that is not a positive
    /// multiple of 16, or an unknown device.
    pub fn options(&self, min_batch: usize) -> anyhow::Result<(StepBenchOptions, candle_core::Device)> {
        if self.batch < min_batch || self.iters == 0 {
            return Err(crate::exit::user(format!("--batch must be at least {min_batch} and --iters at least 1, got {} and {}", self.batch, self.iters)));
        }
        if self.input_size == 0 || !self.input_size.is_multiple_of(16) {
            return Err(crate::exit::user(format!("--input-size {} must be a positive multiple of the patch size 16", self.input_size)));
        }
        let device = engine::device::parse_device(&self.device)?;
        Ok((StepBenchOptions { batch: self.batch, iters: self.iters, input_size: self.input_size }, device))
    }
}
