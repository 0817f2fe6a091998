//! The assembled ViTDet on a small configuration: every parameter gets a
//! gradient from the five losses, the losses start where a fresh Mask R-CNN
//! starts, and inference returns well-formed detections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use detector::model::{ModelConfig, ViTDet, BACKBONE_PREFIX};
use detector::structures::instances::GroundTruth;
use detector::Boxes;
use rand::SeedableRng;

fn small_config() -> ModelConfig {
    let text = r#"
        arch = "tiny"
        [backbone]
        img_size = 64
        window_size = 2
        window_block_indexes = [0, 1, 3, 4, 6, 7, 9, 10]
        [pyramid]
        out_channels = 32
        [anchors]
        sizes = [[8.0], [16.0], [32.0], [64.0], [128.0]]
        [rpn]
        batch_size_per_image = 32
        [roi_heads]
        batch_size_per_image = 16
        box_conv_dims = [16]
        box_fc_dims = [32]
        mask_conv_dims = [16]
    "#;
    toml::from_str(text).unwrap()
}

fn targets() -> Vec<GroundTruth> {
    let square = |x0: f64, y0: f64, s: f64| vec![vec![x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]];
    vec![
        GroundTruth { boxes: Boxes::new(vec![[4.0, 4.0, 24.0, 24.0], [30.0, 10.0, 60.0, 40.0]]), classes: vec![0, 2], polygons: vec![square(4.0, 4.0, 20.0), square(30.0, 10.0, 30.0)] },
        GroundTruth { boxes: Boxes::new(vec![[10.0, 20.0, 50.0, 60.0]]), classes: vec![1], polygons: vec![square(10.0, 20.0, 40.0)] },
    ]
}

fn build() -> (VarMap, ViTDet) {
    let varmap = VarMap::new();
    let model = ViTDet::new(&small_config(), 3, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let named = engine::vars::named_vars(&varmap).unwrap();
    detector::init::init_heads(&named, BACKBONE_PREFIX, 1).unwrap();
    (varmap, model)
}

fn images() -> Tensor {
    engine::testing::random_tensor(&[2, 3, 64, 64], 7).to_dtype(DType::F32).unwrap()
}

#[test]
fn every_parameter_gets_a_gradient() {
    let (varmap, model) = build();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let losses = model.losses(&images(), &[(64, 64), (64, 64)], &targets(), &mut rng).unwrap();
    let grads = losses.total().unwrap().backward().unwrap();
    engine::testing::assert_all_vars_have_grad(&varmap, &grads).unwrap();
    // The mask predictor's gradient is not zero (its loss reaches it).
    let named = engine::vars::named_vars(&varmap).unwrap();
    let (_, predictor) = named.iter().find(|(n, _)| n == "roi_heads.mask_head.predictor.weight").unwrap();
    let g = grads.get(predictor).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(g > 0.0, "mask predictor gradient is zero");
}

#[test]
fn fresh_losses_are_those_of_an_untrained_mask_rcnn() {
    let (_, model) = build();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let values = model.losses(&images(), &[(64, 64), (64, 64)], &targets(), &mut rng).unwrap().values().unwrap();
    let get = |k: &str| values.iter().find(|(n, _)| *n == k).unwrap().1;
    // Objectness and mask logits start near 0: BCE near ln 2. Four-way softmax near ln 4.
    assert!((get("loss_rpn_cls") - std::f64::consts::LN_2).abs() < 0.05, "{values:?}");
    assert!((get("loss_mask") - std::f64::consts::LN_2).abs() < 0.05, "{values:?}");
    assert!((get("loss_cls") - 4f64.ln()).abs() < 0.2, "{values:?}");
    // The regression losses are sums of absolute values, so only a strictly
    // positive value says something: positives were sampled (the ground truths
    // are matched), their targets are not the near-zero fresh predictions
    // (predictor std 0.01 / 0.001), and the loss reaches the total.
    for key in ["loss_box_reg", "loss_rpn_loc"] {
        assert!(get(key) > 1e-3 && get(key).is_finite(), "{key}: {values:?}");
    }
}

#[test]
fn inference_returns_sorted_in_image_detections() {
    let (_, model) = build();
    let dets = model.predict(&images(), &[(64, 64), (48, 40)]).unwrap();
    assert_eq!(dets.len(), 2);
    for (d, (h, w)) in dets.iter().zip([(64.0f32, 64.0f32), (48.0, 40.0)]) {
        // A fresh classifier scores each of the 3 classes near 1/4, above the
        // 0.05 threshold, so every image has detections to check (at most
        // detections_per_image = 100).
        assert!(!d.is_empty() && d.len() <= 100, "{} detections", d.len());
        assert!(d.scores.windows(2).all(|p| p[0] >= p[1]), "scores not sorted");
        assert!(d.scores.iter().all(|&s| s > 0.05));
        assert!(d.boxes.as_slice().iter().all(|b| b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w && b[3] <= h));
        assert_eq!(d.masks.len(), d.len() * d.mask_size * d.mask_size);
        assert!(d.masks.iter().all(|p| (0.0..=1.0).contains(p)));
    }
}
