//! Self-supervised pre-training of the shared ViT (MAE-Lite, Section 5):
//! MAE (masked autoencoding with per-patch normalised pixel targets),
//! MoCo-v3 and MAE with attention distillation, each a task of the shared
//! training loop on the shared loader.
//!
//! [`masking`] and [`encoder`] are the pieces every masked objective shares
//! (the distillation student and teacher run [`encoder::encode_visible`]
//! with one [`masking::Masking`]); [`mae`] is the autoencoder and its loss;
//! [`task::pretrain_mae`] trains it. [`distill`] adds a frozen teacher's
//! attention to the MAE loss (the paper's method). [`mocov3`] is the
//! contrastive objective; [`mocov3::task::pretrain_mocov3`] trains it.
//! [`knn`] is the optional k-NN monitor every method's run can log.

pub mod data;
pub mod distill;
pub mod encoder;
mod error;
pub mod init;
pub mod knn;
pub mod mae;
pub mod masking;
pub mod mocov3;
pub mod recipe;
pub mod selftest;
pub mod task;
pub mod visualize;
pub mod weights;

pub use error::{Error, Result};
pub use recipe::Recipe;
