//! The device-generic reference versions of the ops, built from candle
//! primitives only: what runs on a GPU (and under `VITDET_KERNELS=composed`),
//! what the fused CPU kernels are tested against, and what `vitdet bench
//! convs --composed` times as the "before" of the fused kernels.

pub use super::detection::composed_conv::{conv2d, conv_transpose2d, max_pool2d};
