//! Images for every task: decoding (upright, by EXIF orientation), resizing
//! exactly as Pillow does, timm's training and evaluation transforms, the
//! `Dataset` trait and the deterministic prefetching loader that detection,
//! classification and pre-training share.

pub mod resize;
pub mod transforms;

pub use resize::RgbImage;
