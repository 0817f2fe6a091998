//! ViTDet's simple feature pyramid (detectron2 `SimpleFeaturePyramid`): the
//! plain ViT's single stride-16 map becomes P2..P5 by transposed
//! convolutions (x4, x2), identity and a 2x2 max pool (x0.5); each level is
//! projected by a 1x1 and a 3x3 convolution, both followed by channels-first
//! LayerNorm and no activation; P6 subsamples P5 by 2 (`LastLevelMaxPool`).
//!
//! Parameter names, under the pyramid's prefix: `p{level}.up.{deconv1,norm,deconv2}`
//! for the scale-specific layers,
//! `p{level}.lateral.*` and `p{level}.output.*` for the projections.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use engine::ops::detection::{max_pool2d, max_pool2d_k1s2};
use engine::ops::gelu;
use serde::{Deserialize, Serialize};

use crate::layers::{ChannelNorm, ConvNorm, Upsample2x};

/// The pyramid's settings. Defaults are ViTDet's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PyramidConfig {
    /// Channels of every pyramid level.
    pub out_channels: usize,
}

impl Default for PyramidConfig {
    fn default() -> Self {
        Self { out_channels: 256 }
    }
}

/// Strides of the levels the pyramid returns: P2..P6.
pub const PYRAMID_STRIDES: [usize; 5] = [4, 8, 16, 32, 64];

/// How one level is made from the stride-16 map.
#[derive(Debug, Clone)]
enum Rescale {
    /// x4: transposed conv, LayerNorm, GELU, transposed conv.
    Up4(Upsample2x, ChannelNorm, Upsample2x),
    /// x2: one transposed conv.
    Up2(Upsample2x),
    /// x1.
    Identity,
    /// x0.5: 2x2 max pool.
    Down2,
}

impl Rescale {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Rescale::Up4(a, norm, b) => b.forward(&gelu(&norm.forward(&a.forward(x)?)?)?),
            Rescale::Up2(a) => a.forward(x),
            Rescale::Identity => Ok(x.clone()),
            Rescale::Down2 => max_pool2d(x, 2),
        }
    }
}

/// One pyramid level: rescale, then the 1x1 and 3x3 projections.
#[derive(Debug, Clone)]
struct Level {
    rescale: Rescale,
    lateral: ConvNorm,
    output: ConvNorm,
}

/// The simple feature pyramid.
#[derive(Debug, Clone)]
pub struct SimpleFeaturePyramid {
    levels: Vec<Level>,
}

impl SimpleFeaturePyramid {
    /// Builds the pyramid over a backbone of width `in_dim` under `vb`.
    pub fn new(cfg: &PyramidConfig, in_dim: usize, vb: VarBuilder) -> Result<Self> {
        let out = cfg.out_channels;
        let mut levels = Vec::new();
        for level in 2..=5 {
            let vb = vb.pp(format!("p{level}"));
            let up = vb.pp("up");
            let (rescale, dim) = match level {
                2 => (
                    Rescale::Up4(
                        Upsample2x::new(in_dim, in_dim / 2, up.pp("deconv1"))?,
                        ChannelNorm::new(in_dim / 2, up.pp("norm"))?,
                        Upsample2x::new(in_dim / 2, in_dim / 4, up.pp("deconv2"))?,
                    ),
                    in_dim / 4,
                ),
                3 => (Rescale::Up2(Upsample2x::new(in_dim, in_dim / 2, up.pp("deconv1"))?), in_dim / 2),
                4 => (Rescale::Identity, in_dim),
                _ => (Rescale::Down2, in_dim),
            };
            levels.push(Level { rescale, lateral: ConvNorm::new(dim, out, 1, false, vb.pp("lateral"))?, output: ConvNorm::new(out, out, 3, false, vb.pp("output"))? });
        }
        Ok(Self { levels })
    }

    /// (N, D, h, w) stride-16 map -> [P2, P3, P4, P5, P6], each (N, C, ., .).
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut maps = self
            .levels
            .iter()
            .map(|l| l.output.forward(&l.lateral.forward(&l.rescale.forward(x)?)?))
            .collect::<Result<Vec<_>>>()?;
        let p6 = max_pool2d_k1s2(&maps[3])?;
        maps.push(p6);
        Ok(maps)
    }
}
