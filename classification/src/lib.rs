//! Image classification on the shared ViT: fine-tuning and transfer (timm /
//! MAE-Lite recipes), linear probing, evaluation, and readers for the
//! datasets in their published on-disk layouts.

pub mod bench;
pub mod data;
pub mod datasets;
mod error;
pub mod evaluate;
pub mod finetune;
pub mod metrics;
pub mod mixup;
pub mod model;
pub mod plots;
pub mod recipe;
pub mod weights;

pub use error::{Error, Result};
pub use recipe::Recipe;
