//! COCO data, masks and evaluation (filled in by the COCO toolkit issue).

pub mod error;
pub mod geometry;
pub mod mask;
pub mod types;

pub use error::Error;
