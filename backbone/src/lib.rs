//! The plain ViT shared by pre-training, detection and classification, with
//! timm/MAE parameter names so released checkpoints map 1:1; its ViTDet form
//! (window attention, decomposed relative positions) is [`VitDetBackbone`].

pub mod config;
mod error;
pub mod features;
pub mod import;
pub mod init;
pub mod named;
pub mod preprocess;
pub mod pos_embed;
pub mod rel_pos;
pub mod selftest;
pub mod vit;
pub mod vitdet;
pub mod window;

pub use config::{Pool, PosEmbedKind, VitConfig, WindowedConfig};
pub use error::{Error, Result};
pub use vit::{ForwardOptions, Tap, TapVisitor, Vit, VitOutput};
pub use vitdet::{load_vitdet_backbone, BackboneWeights, VitDetBackbone};
