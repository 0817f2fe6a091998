//! COCO data and its evaluation, standing alone (of the workspace it uses
//! only the leaf `atomic_write`):
//!
//! - the instances format ([`types`], [`dataset`]) and results files
//!   ([`results`]), read with errors that name the file and position;
//! - masks ([`mask`]): RLE, polygons and mask IoU, bit-identical to
//!   pycocotools' `maskUtils`;
//! - a pycocotools-exact evaluator ([`eval`]): evaluate, accumulate, summarise;
//! - polygon geometry for transforms ([`geometry`]) and evaluation plots ([`plots`]);
//! - the synthetic shapes dataset and its folder layout ([`shapes`]).

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
pub mod split;
pub mod types;

pub use error::Error;
pub use split::Split;
