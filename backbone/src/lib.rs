//! The plain ViT shared by pre-training, detection and classification, with
//! timm/MAE parameter names so released checkpoints map 1:1.

pub mod bench;
pub mod config;
mod error;
pub mod features;
pub mod import;
pub mod init;
pub mod named;
pub mod preprocess;
pub mod pos_embed;
pub mod vit;

pub use config::{Pool, PosEmbedKind, VitConfig};
pub use error::{Error, Result};
pub use vit::{ForwardOptions, Vit, VitOutput};
