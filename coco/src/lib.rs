//! COCO data, masks and evaluation (filled in by the COCO toolkit issue).

pub mod dataset;
pub mod error;
pub mod eval;
pub mod geometry;
mod input;
mod instances_json;
pub mod mask;
pub mod plots;
pub mod results;
pub mod shapes;
pub mod types;

pub use error::Error;
