//! vitdet's runtime: the op layer (every op with a verified backward), the
//! training runtime (the training loop every task shares, optimizers,
//! schedules, checkpoints, run directories, progress) and device selection.
//! Model crates build on this and never call candle's fused ops directly,
//! because several of them silently drop gradients in candle 0.11.1.

pub mod checkpoint;
pub mod device;
pub mod ema;
pub mod limits;
mod error;
pub mod ops;
pub mod optim;
pub mod progress;
pub mod recipe_file;
pub mod rng;
pub mod run_dir;
pub mod schedule;
pub mod selftest;
pub mod testing;
pub mod toml_errors;
pub mod trainer;
pub mod vars;

pub use error::{Error, Result};
