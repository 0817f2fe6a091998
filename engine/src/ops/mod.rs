//! The op layer: every op a vitdet model uses, each with a backward that is
//! checked against central finite differences in f64.
//!
//! Why it exists: candle 0.11.1's fused `layer_norm`, `softmax_last_dim` and
//! `sdpa` are recorded without a backward, so training through them silently
//! leaves upstream variables without gradients (candle-notes.md §1). Model code
//! calls only the functions here. Each function is the single entry point for
//! its op: today it runs a composed implementation built from candle
//! primitives whose backward is correct. On the CPU in f32/f64 a fused kernel
//! (`cpu/`, candle `CustomOp`s with hand-written backwards) takes over inside
//! the function without any change to model code; each is tested against the
//! composed reference (kept in each file as `composed`, public in
//! [`reference`]), forward and backward. [`Kernels`] is the one switch
//! between the two ([`set_kernels`], `VITDET_KERNELS=composed`).
//!
//! [`Precision`] is the mixed-precision switch (a recipe's `precision =
//! "bf16"`, [`set_precision`]): the matrix products ([`linear`], both
//! products of [`attention`] and [`self_attention`], the detector's
//! convolutions) then take bf16 copies of their f32 operands and return
//! f32, as under `torch.autocast(dtype=torch.bfloat16)`; norms, softmax,
//! losses, weights and optimizer state stay in f32 (`precision.rs`).
//!
//! Shapes: B batch, H heads, N tokens, D channels, C channels of a map,
//! K classes.

mod attention;
mod batch_norm;
mod cpu;
mod cross_entropy;
pub mod detection;
mod drop_path;
mod gelu;
mod kernels;
mod layer_norm;
mod linear;
mod precision;
pub mod reference;
mod softmax;

pub use attention::{attention, self_attention, AttentionOutput};
pub use batch_norm::{batch_norm, batch_stats, is_buffer_name, BatchNorm1d, BatchNormConfig, BUFFER_NAMES};
pub use cross_entropy::{cross_entropy, log_softmax_last_dim, soft_target_cross_entropy};
pub use drop_path::drop_path;
pub use gelu::gelu;
pub use kernels::{fused_allowed, kernels, kernels_from_env, set_kernels, Kernels, ENV_VAR as KERNELS_ENV_VAR};
pub use layer_norm::{layer_norm, layer_norm_channels_first, LayerNorm};
pub use linear::{linear, Linear};
pub use precision::{precision, set_precision, with_precision, Precision, RECIPE_KEY as PRECISION_RECIPE_KEY};
pub use softmax::softmax_last_dim;
