//! The detector's parameterised layers: convolutions, transposed
//! convolutions and the "conv -> channels-first LayerNorm -> activation"
//! unit that the pyramid and the ROI heads stack.
//!
//! Parameters are created through a `VarBuilder` with detectron2's names
//! (`weight`, `bias`, `norm.weight`, ...); their initial values come from
//! [`crate::init`], which re-initialises the whole model from a seed.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use engine::ops::detection::{conv2d, conv_transpose2d};
use engine::ops::layer_norm_channels_first;

/// detectron2's LayerNorm epsilon for convolutional features.
pub const CONV_LN_EPS: f64 = 1e-6;

/// A stride-1 convolution with "same" padding: `k` x `k` kernel, padding `k / 2`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
}

impl Conv2d {
    /// Creates `weight` (out, in, k, k) and, with `bias`, `bias` (out) under `vb`.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let bias = if bias { Some(vb.get(out_channels, "bias")?) } else { None };
        Ok(Self { weight, bias, padding: kernel / 2 })
    }

    /// (N, in, H, W) -> (N, out, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), self.padding)
    }
}

/// A 2x2 stride-2 transposed convolution: doubles the resolution.
#[derive(Debug, Clone)]
pub struct Upsample2x {
    weight: Tensor,
    bias: Tensor,
}

impl Upsample2x {
    /// Creates `weight` (in, out, 2, 2) and `bias` (out) under `vb`.
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get((in_channels, out_channels, 2, 2), "weight")?, bias: vb.get(out_channels, "bias")? })
    }

    /// (N, in, H, W) -> (N, out, 2H, 2W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv_transpose2d(x, &self.weight, Some(&self.bias), 2)
    }
}

/// Channels-first layer norm with `weight` and `bias` (detectron2 `LayerNorm`).
#[derive(Debug, Clone)]
pub struct ChannelNorm {
    weight: Tensor,
    bias: Tensor,
}

impl ChannelNorm {
    /// Creates `weight` and `bias` (channels) under `vb`.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get(channels, "weight")?, bias: vb.get(channels, "bias")? })
    }

    /// Normalises the channels of an (N, C, H, W) map at every pixel.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm_channels_first(x, &self.weight, &self.bias, CONV_LN_EPS)
    }
}

/// A bias-free convolution followed by a channels-first LayerNorm and an
/// optional ReLU: detectron2's `Conv2d(..., bias=False, norm=LayerNorm,
/// activation=relu)`. Parameters: `weight`, `norm.weight`, `norm.bias`.
#[derive(Debug, Clone)]
pub struct ConvNorm {
    conv: Conv2d,
    norm: ChannelNorm,
    relu: bool,
}

impl ConvNorm {
    /// A `kernel` x `kernel` conv from `in_channels` to `out_channels`, its
    /// norm, and a ReLU when `relu`.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, relu: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: Conv2d::new(in_channels, out_channels, kernel, false, vb.clone())?, norm: ChannelNorm::new(out_channels, vb.pp("norm"))?, relu })
    }

    /// (N, in, H, W) -> (N, out, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.norm.forward(&self.conv.forward(x)?)?;
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}
