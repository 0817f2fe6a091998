//! Images for every task: decoding (upright, by EXIF orientation), listing
//! image folders, resizing exactly as Pillow does, timm's training and
//! evaluation transforms, the readers of the published classification
//! datasets ([`datasets`]), the `Dataset` trait and the deterministic
//! prefetching loader that detection, classification and pre-training share.

pub mod datasets;
pub mod decode;
mod error;
pub mod eval_transform;
pub mod list;
pub mod loader;
pub mod normalize;
pub mod resize;
pub mod rgb;
pub mod transforms;

pub use error::{Error, Result};
pub use rgb::RgbImage;
