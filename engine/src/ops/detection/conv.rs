//! Convolutions and pooling of the detector's pyramid and heads: 3x3/1x1
//! convolutions, the stride-2 transposed convolutions of the simple feature
//! pyramid and the mask head, and the 2x2 max pool of the pyramid's P5.
//!
//! Each is the single entry point for its op; today they are candle's
//! primitives, whose backwards are correct for these cases (stride-1
//! convolutions; transposed convolutions with kernel = stride; pooling with
//! kernel = stride; candle-notes.md §1).
//!
//! Shapes: (N, C, H, W) maps; conv weights (C_out, C_in, k, k), transposed
//! conv weights (C_in, C_out, k, k) as PyTorch stores them.

use candle_core::{Result, Tensor};

/// `F.conv2d(x, weight, bias, stride=1, padding=padding)`.
///
/// # Errors
/// Shapes that do not fit together.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    let y = x.conv2d(weight, padding, 1, 1, 1)?;
    add_channel_bias(y, bias)
}

/// `F.conv_transpose2d(x, weight, bias, stride=s)` with kernel size = stride
/// `s` (no overlap, no padding): each input pixel paints one s x s block.
///
/// # Errors
/// Shapes that do not fit together, or a kernel that is not s x s.
pub fn conv_transpose2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: usize) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    if kh != stride || kw != stride {
        candle_core::bail!("conv_transpose2d: kernel {kh}x{kw} must equal the stride {stride}");
    }
    let y = x.conv_transpose2d(weight, 0, 0, stride, 1)?;
    add_channel_bias(y, bias)
}

/// `F.max_pool2d(x, kernel_size=k, stride=k)` (non-overlapping windows).
///
/// # Errors
/// `x` not rank 4 or smaller than one window.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    x.max_pool2d_with_stride(k, k)
}

fn add_channel_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}
