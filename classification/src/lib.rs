//! Image classification on the shared ViT: fine-tuning and transfer (timm /
//! MAE-Lite recipes), linear probing and evaluation, on the datasets that
//! `vision::datasets` reads in their published on-disk layouts.

pub mod data;
mod error;
pub mod evaluate;
pub mod finetune;
pub mod metrics;
pub mod mixup;
pub mod model;
pub mod plots;
pub mod recipe;
pub mod selftest;
pub mod weights;

pub use error::{Error, Result};
pub use recipe::Recipe;
