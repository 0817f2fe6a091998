//! The box head (detectron2 `FastRCNNConvFCHead`, ViTDet's "4conv1fc"):
//! 3x3 convs with channels-first LayerNorm and ReLU over the pooled
//! features, then fully connected layers with ReLU.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use engine::ops::Linear;

use crate::layers::ConvNorm;

/// The conv/fc stack over (R, C, P, P) pooled features.
#[derive(Debug, Clone)]
pub struct BoxHead {
    convs: Vec<ConvNorm>,
    fcs: Vec<Linear>,
    out_dim: usize,
}

impl BoxHead {
    /// `conv_dims` 3x3 convs (`conv.{i}`) then `fc_dims` linear layers
    /// (`fc.{i}`) over `channels` x `pool` x `pool` inputs.
    pub fn new(channels: usize, pool: usize, conv_dims: &[usize], fc_dims: &[usize], vb: VarBuilder) -> Result<Self> {
        let mut convs = Vec::new();
        let mut c = channels;
        for (i, &d) in conv_dims.iter().enumerate() {
            convs.push(ConvNorm::new(c, d, 3, true, vb.pp("conv").pp(i))?);
            c = d;
        }
        let mut fcs = Vec::new();
        let mut dim = c * pool * pool;
        for (i, &d) in fc_dims.iter().enumerate() {
            fcs.push(Linear::new(dim, d, true, vb.pp("fc").pp(i))?);
            dim = d;
        }
        Ok(Self { convs, fcs, out_dim: dim })
    }

    /// Width of the head's output.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// (R, C, P, P) -> (R, out_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?;
        }
        let mut x = x.flatten_from(1)?;
        for fc in &self.fcs {
            x = fc.forward(&x)?.relu()?;
        }
        Ok(x)
    }
}
