//! Ops of the detector (RoIAlign, pooling, upsampling), each with a backward
//! checked against finite differences.

pub(super) mod conv;
mod roi_align;
pub(super) mod roi_align_composed;
mod subsample;

pub use conv::{conv2d, conv_transpose2d, max_pool2d};
pub use roi_align::{roi_align, RoiAlign};
pub use subsample::max_pool2d_k1s2;
