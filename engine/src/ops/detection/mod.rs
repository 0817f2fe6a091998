//! Ops of the detector (RoIAlign, pooling, upsampling), each with a backward
//! checked against finite differences.

mod roi_align;

pub use roi_align::{roi_align, RoiAlign};
