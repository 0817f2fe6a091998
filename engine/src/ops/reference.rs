//! The composed versions of the ops, as named public references: each is
//! built from candle primitives only, so it runs on every candle device and
//! float dtype, and it is what the op itself runs wherever no fused kernel
//! does (CUDA, bf16, `VITDET_KERNELS=composed`; see [`super::Kernels`]).
//! The fused kernels are tested against these, forward and backward, and
//! benchmarks (`vitdet bench convs --composed`) time them as the baseline.
//!
//! Ops without a fused kernel are their own reference and are not repeated
//! here: [`super::log_softmax_last_dim`], [`super::cross_entropy`],
//! [`super::soft_target_cross_entropy`], [`super::batch_norm`],
//! [`super::drop_path`], [`super::detection::max_pool2d_k1s2`]. The
//! optimizers' composed updates are chosen by the same switch inside each
//! optimizer (`engine::optim`).

pub use super::attention::{composed as attention, self_attention_composed as self_attention};
pub use super::detection::conv::composed::{conv2d, conv_transpose2d, max_pool2d};
pub use super::detection::roi_align_composed::reference as roi_align;
pub use super::gelu::composed as gelu;
pub use super::layer_norm::{channels_first_composed as layer_norm_channels_first, composed as layer_norm};
pub use super::linear::composed as linear;
pub use super::softmax::composed as softmax_last_dim;
