//! vitdet's runtime: the op layer (every op with a verified backward), the
//! training runtime (optimizers, schedules, checkpoints, run directories,
//! progress) and device selection. Model crates build on this and never call
//! candle's fused ops directly, because several of them silently drop
//! gradients in candle 0.11.1.

mod error;

pub use error::{Error, Result};
