//! MoCo-v3's networks on the shared ViT: the encoder (ViT + projector, the
//! released `base_encoder` / `momentum_encoder`) and the BatchNorm MLPs used
//! as projector and predictor (moco-v3 `moco/builder.py`, `MoCo_ViT` and
//! `_build_mlp`; MAE-Lite `projects/mocov3/mocov3.py` is the same code).
//!
//! Parameter names are the released checkpoint's after its
//! `module.base_encoder.` / `module.predictor.` prefix: the ViT under timm's
//! names at the root, the projector as `head.{0,1,3,4,6,7}.*` (the
//! `nn.Sequential` indices of Linear, BatchNorm, ReLU, ...), the predictor
//! as `predictor.{0,1,3,4}.*`.
//!
//! Shapes: B batch (per view), D encoder width, H hidden MLP width, E
//! output width.

use backbone::{ForwardOptions, Vit};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use engine::ops::{BatchNorm1d, BatchNormConfig, Linear};
use rand::RngCore;

use super::{MocoV3Config, Result};

/// Layers of the projector (`_build_mlp(3, D, H, E)`).
pub const PROJECTOR_LAYERS: usize = 3;
/// Layers of the predictor (`_build_mlp(2, E, H, E)`).
pub const PREDICTOR_LAYERS: usize = 2;
/// `nn.Sequential` slots per MLP layer: Linear, BatchNorm, ReLU.
const SLOTS_PER_LAYER: usize = 3;

/// One layer of a [`BnMlp`]: Linear (no bias), BatchNorm, and a ReLU on
/// hidden layers.
#[derive(Debug, Clone)]
struct BnMlpLayer {
    linear: Linear,
    bn: BatchNorm1d,
    relu: bool,
}

/// moco-v3's `_build_mlp(num_layers, in, hidden, out)` with `last_bn=True`:
/// `num_layers` bias-free linear layers, each followed by BatchNorm1d
/// (PyTorch defaults: eps 1e-5, momentum 0.1); hidden layers add a ReLU,
/// and the last BatchNorm has no affine parameters (SimCLR's design
/// without γ).
#[derive(Debug, Clone)]
pub struct BnMlp {
    layers: Vec<BnMlpLayer>,
}

impl BnMlp {
    /// Builds the MLP under `vb` with `nn.Sequential` names: layer l's
    /// linear at index 3l, its BatchNorm at 3l + 1.
    ///
    /// # Errors
    /// `num_layers` is 0, or `vb` holds a tensor of the wrong shape.
    pub fn new(num_layers: usize, input_dim: usize, mlp_dim: usize, output_dim: usize, vb: VarBuilder) -> Result<Self> {
        if num_layers == 0 {
            return Err(super::Error::Config(format!("{}: an MLP needs at least one layer", vb.prefix())));
        }
        let layers = (0..num_layers)
            .map(|l| {
                let last = l + 1 == num_layers;
                let in_dim = if l == 0 { input_dim } else { mlp_dim };
                let out_dim = if last { output_dim } else { mlp_dim };
                let slot = SLOTS_PER_LAYER * l;
                let bn_cfg = BatchNormConfig { affine: !last, ..BatchNormConfig::default() };
                Ok(BnMlpLayer {
                    linear: Linear::new(in_dim, out_dim, false, vb.pp(slot))?,
                    bn: BatchNorm1d::new(out_dim, bn_cfg, vb.pp(slot + 1))?,
                    relu: !last,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// (B, in) -> (B, out). In training (`train`) every BatchNorm normalises
    /// with the batch's statistics and updates its running statistics, so
    /// the batch is one view (moco-v3 runs each view through separately).
    ///
    /// # Errors
    /// A wrong input width, or `train` with B = 1.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.bn.forward_t(&layer.linear.forward(&x)?, train)?;
            if layer.relu {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// The ViT and its projector: `base_encoder` (online) or `momentum_encoder`.
#[derive(Debug, Clone)]
pub struct Encoder {
    vit: Vit,
    projector: BnMlp,
}

impl Encoder {
    /// Builds the ViT at the root of `vb` (timm names) and the projector
    /// under `head`.
    ///
    /// # Errors
    /// An invalid ViT config, or `vb` holding a tensor of the wrong shape.
    pub fn new(cfg: &MocoV3Config, vb: VarBuilder) -> Result<Self> {
        let vit = Vit::new(&cfg.vit, vb.clone())?;
        let projector = BnMlp::new(PROJECTOR_LAYERS, cfg.vit.embed_dim, cfg.mlp_dim, cfg.dim, vb.pp("head"))?;
        Ok(Self { vit, projector })
    }

    /// The ViT.
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// Projections (B, E) of both views' pixels (B, 3, S, S), normalised.
    ///
    /// Equal-shaped views share one ViT pass over their concatenation (the
    /// ViT treats every image on its own, so this equals two passes); the
    /// projector sees each view on its own, view 1 first, as moco-v3's two
    /// `base_encoder` calls do, so the BatchNorm statistics are per view.
    ///
    /// # Errors
    /// Wrong input shapes, or `train` with a batch of one.
    pub fn forward_views(&self, x1: &Tensor, x2: &Tensor, train: bool, rng: &mut dyn RngCore) -> Result<(Tensor, Tensor)> {
        let opts = ForwardOptions { train, ..ForwardOptions::default() };
        let (f1, f2) = if x1.dims() == x2.dims() {
            let b = x1.dim(0)?;
            let pooled = self.vit.forward(&Tensor::cat(&[x1, x2], 0)?, &opts, rng)?.pooled;
            (pooled.narrow(0, 0, b)?, pooled.narrow(0, b, b)?)
        } else {
            (self.vit.forward(x1, &opts, rng)?.pooled, self.vit.forward(x2, &opts, rng)?.pooled)
        };
        Ok((self.projector.forward_t(&f1, train)?, self.projector.forward_t(&f2, train)?))
    }
}
