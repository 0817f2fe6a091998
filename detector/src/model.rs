//! ViTDet's Mask R-CNN: the windowed plain ViT, the simple feature pyramid,
//! the RPN and the ROI heads, assembled from one [`ModelConfig`].

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use backbone::config::WindowedConfig;
use backbone::vitdet::VitDetBackbone;
use backbone::VitConfig;

use crate::anchors::{AnchorConfig, AnchorGenerator};
use crate::data::{pixels_to_tensor, DetectionSample};
use crate::roi_heads::{RoiHeads, RoiHeadsConfig};
use crate::rpn::{Rpn, RpnConfig};
use crate::sfp::{PyramidConfig, SimpleFeaturePyramid};
use crate::structures::instances::{Detections, GroundTruth};
use crate::{Boxes, Error, Result};

/// Everything that defines the network. Defaults are the paper's ViTDet-Tiny
/// (maelite-recipes.md §7): 640 px input, windowed ViT-Tiny with 12 heads,
/// 256-channel pyramid, 4conv1fc box head, 4-conv mask head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Backbone size: `tiny` (the paper's), `tiny3`, `small` or `base`.
    pub arch: String,
    /// Window attention, relative positions and the input side (`img_size`:
    /// the square network input in pixels, a multiple of 64) of the backbone.
    pub backbone: WindowedConfig,
    /// The simple feature pyramid.
    pub pyramid: PyramidConfig,
    /// Anchors of P2..P6.
    pub anchors: AnchorConfig,
    /// The region proposal network.
    pub rpn: RpnConfig,
    /// Box and mask heads.
    pub roi_heads: RoiHeadsConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: "tiny".into(),
            backbone: WindowedConfig::default(),
            pyramid: PyramidConfig::default(),
            anchors: AnchorConfig::default(),
            rpn: RpnConfig::default(),
            roi_heads: RoiHeadsConfig::default(),
        }
    }
}

impl ModelConfig {
    /// The backbone's ViT configuration for `arch`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown arch.
    pub fn vit_config(&self) -> Result<VitConfig> {
        VitConfig::by_name(&self.arch).map_err(|e| Error::Config { key: "model.arch", msg: e.to_string() })
    }

    /// Side of the square network input in pixels.
    pub fn input_size(&self) -> usize {
        self.backbone.img_size
    }

    /// Checks the cross-field rules once, at load time.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that breaks a rule.
    pub fn validate(&self) -> Result<()> {
        let vit = self.vit_config()?;
        self.backbone.validate(&vit).map_err(|e| Error::Config { key: "model.backbone", msg: e.to_string() })?;
        if !self.input_size().is_multiple_of(64) {
            return Err(Error::Config { key: "model.backbone.img_size", msg: format!("{} must be a multiple of 64 (P6 has stride 64)", self.input_size()) });
        }
        self.anchors.validate()
    }
}

/// The five training losses, already weighted and normalised.
#[derive(Debug, Clone)]
pub struct Losses {
    /// RPN objectness.
    pub rpn_cls: Tensor,
    /// RPN box regression.
    pub rpn_loc: Tensor,
    /// ROI classification.
    pub cls: Tensor,
    /// ROI box regression.
    pub box_reg: Tensor,
    /// Mask BCE.
    pub mask: Tensor,
}

impl Losses {
    /// Their sum, the scalar a training step differentiates.
    ///
    /// # Errors
    /// A tensor error.
    pub fn total(&self) -> Result<Tensor> {
        Ok((((&self.rpn_cls + &self.rpn_loc)? + &self.cls)? + (&self.box_reg + &self.mask)?)?)
    }

    /// Each loss with its detectron2 name, in the order of [`Losses::total`].
    pub fn named(&self) -> [(&'static str, &Tensor); 5] {
        [("loss_rpn_cls", &self.rpn_cls), ("loss_rpn_loc", &self.rpn_loc), ("loss_cls", &self.cls), ("loss_box_reg", &self.box_reg), ("loss_mask", &self.mask)]
    }

    /// `(name, value)` of each loss, read back to the host (for logging).
    ///
    /// # Errors
    /// A tensor error.
    pub fn values(&self) -> Result<Vec<(&'static str, f64)>> {
        self.named().into_iter().map(|(name, t)| Ok((name, t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?))).collect()
    }
}

/// A batch as the network takes it.
#[derive(Debug, Clone)]
pub struct ModelInputs {
    /// Normalised, padded pixels (N, 3, S, S).
    pub images: Tensor,
    /// Each image's content size inside the padding.
    pub image_hw: Vec<(usize, usize)>,
    /// Each image's ground truth (empty for unannotated images).
    pub targets: Vec<GroundTruth>,
}

impl ModelInputs {
    /// Stacks the loader's samples onto `device`.
    ///
    /// # Errors
    /// Samples of different sizes, or a tensor error.
    pub fn from_samples(samples: &[DetectionSample], device: &Device) -> Result<Self> {
        Ok(Self {
            images: pixels_to_tensor(samples, device)?,
            image_hw: samples.iter().map(|s| s.valid_hw).collect(),
            targets: samples
                .iter()
                .map(|s| GroundTruth { boxes: Boxes::new(s.boxes.clone()), classes: s.classes.clone(), polygons: s.polygons.clone() })
                .collect(),
        })
    }
}

/// Prefix of the backbone's parameters inside the detector.
pub const BACKBONE_PREFIX: &str = "backbone";

/// The detector.
#[derive(Debug, Clone)]
pub struct ViTDet {
    backbone: VitDetBackbone,
    pyramid: SimpleFeaturePyramid,
    rpn: Rpn,
    roi_heads: RoiHeads,
    num_classes: usize,
}

impl ViTDet {
    /// Builds the detector for `num_classes` classes under `vb`
    /// (`backbone.*`, `pyramid.*`, `rpn.*`, `roi_heads.*`).
    ///
    /// # Errors
    /// An invalid configuration or a parameter that cannot be created.
    pub fn new(cfg: &ModelConfig, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let backbone = VitDetBackbone::new(&cfg.vit_config()?, &cfg.backbone, vb.pp(BACKBONE_PREFIX))?;
        Self::with_backbone(cfg, backbone, num_classes, vb)
    }

    /// Builds the detector around an existing backbone (e.g. one loaded from
    /// a pre-trained checkpoint into the same variable map under `backbone`).
    ///
    /// # Errors
    /// An invalid configuration or a parameter that cannot be created.
    pub fn with_backbone(cfg: &ModelConfig, backbone: VitDetBackbone, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vit = cfg.vit_config()?;
        let channels = cfg.pyramid.out_channels;
        Ok(Self {
            backbone,
            pyramid: SimpleFeaturePyramid::new(&cfg.pyramid, vit.embed_dim, vb.pp("pyramid"))?,
            rpn: Rpn::new(&cfg.rpn, AnchorGenerator::new(&cfg.anchors)?, channels, vb.pp("rpn"))?,
            roi_heads: RoiHeads::new(&cfg.roi_heads, num_classes, channels, vb.pp("roi_heads"))?,
            num_classes,
        })
    }

    /// Number of object classes (background excluded).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Side of the predicted masks.
    pub fn mask_size(&self) -> usize {
        self.roi_heads.mask_size()
    }

    /// P2..P6 of a batch of normalised images (N, 3, S, S).
    fn features(&self, images: &Tensor, train: bool, rng: &mut dyn RngCore) -> Result<Vec<Tensor>> {
        let x = self.backbone.forward(images, train, rng)?;
        self.pyramid.forward(&x).map_err(Error::from)
    }

    /// The training losses of a batch: `images` (N, 3, S, S), each image's
    /// content size and ground truth.
    ///
    /// # Errors
    /// A tensor error or inconsistent inputs.
    pub fn losses(&self, images: &Tensor, image_hw: &[(usize, usize)], gt: &[GroundTruth], rng: &mut dyn RngCore) -> Result<Losses> {
        let features = self.features(images, true, rng)?;
        let gt_boxes: Vec<Boxes> = gt.iter().map(|g| g.boxes.clone()).collect();
        let (proposals, rpn) = self.rpn.forward(&features, image_hw, Some(&gt_boxes), true, rng)?;
        let rpn = rpn.ok_or(Error::Config { key: "rpn", msg: "no losses computed".into() })?;
        let roi = self.roi_heads.losses(&features[..4], &proposals, gt, rng)?;
        Ok(Losses { rpn_cls: rpn.objectness, rpn_loc: rpn.localization, cls: roi.classification, box_reg: roi.box_regression, mask: roi.mask })
    }

    /// Detections of a batch of normalised images, in input pixels.
    ///
    /// # Errors
    /// A tensor error or inconsistent inputs.
    pub fn predict(&self, images: &Tensor, image_hw: &[(usize, usize)]) -> Result<Vec<Detections>> {
        let mut no_rng = rand::rngs::mock::StepRng::new(0, 0);
        let features = self.features(&images.detach(), false, &mut no_rng)?;
        let (proposals, _) = self.rpn.forward(&features, image_hw, None, false, &mut no_rng)?;
        self.roi_heads.inference(&features[..4], &proposals, image_hw)
    }
}

/// Whether a parameter belongs to the backbone.
pub fn is_backbone_param(name: &str) -> bool {
    name.starts_with(BACKBONE_PREFIX) && name[BACKBONE_PREFIX.len()..].starts_with('.')
}
