//! The mask head (detectron2 `MaskRCNNConvUpsampleHead`): 3x3 convs with
//! channels-first LayerNorm and ReLU over 14x14 pooled features, a 2x2
//! transposed conv with ReLU to 28x28, and a 1x1 predictor with one mask
//! logit map per class.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Conv2d, ConvNorm, Upsample2x};

/// The mask head.
#[derive(Debug, Clone)]
pub struct MaskHead {
    convs: Vec<ConvNorm>,
    deconv: Upsample2x,
    predictor: Conv2d,
}

impl MaskHead {
    /// `conv_dims` convs (`conv.{i}`), `deconv`, and `predictor` with
    /// `num_classes` outputs, over `channels`-channel pooled features.
    pub fn new(channels: usize, conv_dims: &[usize], num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let mut convs = Vec::new();
        let mut c = channels;
        for (i, &d) in conv_dims.iter().enumerate() {
            convs.push(ConvNorm::new(c, d, 3, true, vb.pp("conv").pp(i))?);
            c = d;
        }
        Ok(Self { convs, deconv: Upsample2x::new(c, c, vb.pp("deconv"))?, predictor: Conv2d::new(c, num_classes, 1, true, vb.pp("predictor"))? })
    }

    /// (R, C, P, P) -> mask logits (R, num_classes, 2P, 2P).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?;
        }
        self.predictor.forward(&self.deconv.forward(&x)?.relu()?)
    }
}

/// Each row's logit map of its own class: `logits` (R, K, M, M) and one
/// class per row -> (R, M, M). Differentiable (an `index_select` on the
/// flattened maps).
pub fn select_class_maps(logits: &Tensor, classes: &[usize]) -> Result<Tensor> {
    let (r, k, m, m2) = logits.dims4()?;
    if classes.len() != r {
        candle_core::bail!("select_class_maps: {} classes for {r} mask rows", classes.len());
    }
    let rows: Vec<u32> = classes.iter().enumerate().map(|(i, &c)| (i * k + c) as u32).collect();
    let index = Tensor::from_vec(rows, r, logits.device())?;
    logits.reshape((r * k, m, m2))?.index_select(&index, 0)
}
