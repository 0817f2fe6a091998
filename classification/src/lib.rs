//! Image classification on the shared ViT: fine-tuning and transfer (timm /
//! MAE-Lite recipes), linear probing, evaluation, and readers for the
//! datasets in their published on-disk layouts.

pub mod datasets;
mod error;
pub mod metrics;
pub mod mixup;
pub mod plots;
pub mod recipe;

pub use error::{Error, Result};
pub use recipe::Recipe;
