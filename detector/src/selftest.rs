//! The detector's `vitdet selftest` case ([`engine::selftest`]): the five
//! Mask R-CNN losses of a small ViTDet (the paper's ViT-Tiny backbone at
//! 64 px with 2x2 windows, a 32-channel pyramid, narrow heads; 3 classes)
//! on two images with three objects, and their backward. This runs every
//! detector op on the device: the pyramid's convolutions and
//! deconvolutions, the RPN, RoIAlign for the box and mask heads, the losses.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use engine::testing::random_images;
use engine::selftest::{build_on, Case, CaseResult, CaseRun, SEED};
use rand::SeedableRng;

use backbone::WindowedConfig;

use crate::anchors::AnchorConfig;
use crate::model::{ModelConfig, ViTDet, BACKBONE_PREFIX};
use crate::roi_heads::RoiHeadsConfig;
use crate::rpn::RpnConfig;
use crate::sfp::PyramidConfig;
use crate::structures::instances::GroundTruth;
use crate::Boxes;

/// Object classes of the case.
const NUM_CLASSES: usize = 3;
/// Input side in pixels.
const SIZE: usize = 64;

/// The detector's case: `detector`.
pub fn cases() -> Vec<Case> {
    vec![Case { model: "detector", run: detector }]
}

/// The small ViTDet of the case (the model tests' configuration).
fn tiny_model() -> ModelConfig {
    ModelConfig {
        arch: "tiny".into(),
        backbone: WindowedConfig { img_size: SIZE, window_size: 2, ..WindowedConfig::default() },
        pyramid: PyramidConfig { out_channels: 32 },
        anchors: AnchorConfig { sizes: vec![vec![8.0], vec![16.0], vec![32.0], vec![64.0], vec![128.0]], ..AnchorConfig::default() },
        rpn: RpnConfig { batch_size_per_image: 32, ..RpnConfig::default() },
        roi_heads: RoiHeadsConfig { batch_size_per_image: 16, box_conv_dims: vec![16], box_fc_dims: vec![32], mask_conv_dims: vec![16], ..RoiHeadsConfig::default() },
    }
}

/// Three square objects on two images, each with its square as polygon.
fn targets() -> Vec<GroundTruth> {
    let square = |x0: f64, y0: f64, s: f64| vec![vec![x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]];
    vec![
        GroundTruth { boxes: Boxes::new(vec![[4.0, 4.0, 24.0, 24.0], [30.0, 10.0, 60.0, 40.0]]), classes: vec![0, 2], polygons: vec![square(4.0, 4.0, 20.0), square(30.0, 10.0, 30.0)] },
        GroundTruth { boxes: Boxes::new(vec![[10.0, 20.0, 50.0, 60.0]]), classes: vec![1], polygons: vec![square(10.0, 20.0, 40.0)] },
    ]
}

fn detector(device: &Device) -> CaseResult {
    let cfg = tiny_model();
    let vit = cfg.vit_config()?;
    let (varmap, model) = build_on(device, |vm, dev| {
        let model = ViTDet::new(&cfg, NUM_CLASSES, VarBuilder::from_varmap(vm, DType::F32, dev))?;
        backbone::init::init_weights_under(vm, BACKBONE_PREFIX, &vit, SEED)?;
        crate::init::init_heads(&engine::vars::named_vars(vm)?, BACKBONE_PREFIX, SEED)?;
        Ok(model)
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let images = random_images(2, SIZE, &mut rng, device)?;
    let losses = model.losses(&images, &[(SIZE, SIZE); 2], &targets(), &mut rng)?;
    let total = losses.total()?;
    let grads = total.backward()?;
    let mut outputs: Vec<(&str, candle_core::Tensor)> = losses.named().into_iter().map(|(n, t)| (n, t.clone())).collect();
    outputs.push(("loss", total));
    Ok(CaseRun::new(outputs, &[("", &varmap)], &grads)?)
}
