//! The plain ViT shared by pre-training, detection and classification, with
//! timm/MAE parameter names so released checkpoints map 1:1.

mod error;

pub use error::{Error, Result};
