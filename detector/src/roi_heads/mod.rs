//! The ROI heads (detectron2 `StandardROIHeads`): proposals are matched to
//! the ground truth and sampled, pooled from P2..P5, classified and refined
//! by the box head and predictor, and the foreground ones get masks from the
//! mask head. At inference the refined, NMS-filtered detections get masks.

mod box_head;
mod mask_head;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use engine::ops::{softmax_last_dim, Linear};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use box_head::BoxHead;
pub use mask_head::{select_class_maps, MaskHead};

use crate::box_transform::BoxTransform;
use crate::losses::{bce_with_logits_sum, cross_entropy_mean, l1_sum};
use crate::masks::rasterize_polygons_within_box;
use crate::matcher::{MatchLabel, Matcher};
use crate::nms::batched_nms;
use crate::pooler::{PoolerType, RoiPooler};
use crate::rpn::Proposals;
use crate::sampling::subsample_labels;
use crate::structures::instances::{Detections, GroundTruth};
use crate::{Boxes, Result};

/// Boxes per mask-head pass at inference: 32 boxes' 28x28 maps of 256
/// channels (26 MB) stay under the allocator's 32 MiB mmap threshold
/// (`src/main.rs`), so their memory is reused from pass to pass.
const MASK_INFERENCE_CHUNK: usize = 32;

/// The ROI heads' settings. Defaults are ViTDet's (detectron2
/// `mask_rcnn_vitdet.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoiHeadsConfig {
    /// Proposals sampled per image for the box losses.
    pub batch_size_per_image: usize,
    /// Target fraction of foreground among them.
    pub positive_fraction: f64,
    /// Output side of the box pooler.
    pub box_pool: usize,
    /// Channels of the box head's 3x3 convs (one entry per conv).
    pub box_conv_dims: Vec<usize>,
    /// Widths of the box head's fully connected layers.
    pub box_fc_dims: Vec<usize>,
    /// Output side of the mask pooler; masks are twice as large.
    pub mask_pool: usize,
    /// Channels of the mask head's 3x3 convs.
    pub mask_conv_dims: Vec<usize>,
    /// Detections below this class probability are dropped at inference.
    pub score_thresh: f32,
    /// IoU threshold of the per-class NMS at inference.
    pub nms_thresh: f64,
    /// Detections kept per image at inference.
    pub detections_per_image: usize,
}

impl Default for RoiHeadsConfig {
    fn default() -> Self {
        Self {
            batch_size_per_image: 512,
            positive_fraction: 0.25,
            box_pool: 7,
            box_conv_dims: vec![256; 4],
            box_fc_dims: vec![1024],
            mask_pool: 14,
            mask_conv_dims: vec![256; 4],
            score_thresh: 0.05,
            nms_thresh: 0.5,
            detections_per_image: 100,
        }
    }
}

/// The ROI heads' three losses (detectron2 `loss_cls`, `loss_box_reg`, `loss_mask`).
#[derive(Debug, Clone)]
pub struct RoiLosses {
    /// Softmax cross-entropy over the sampled proposals (mean).
    pub classification: Tensor,
    /// L1 of the class-specific deltas of foreground proposals / sampled proposals.
    pub box_regression: Tensor,
    /// Mean BCE of the ground-truth class's 28x28 mask logits on foreground proposals.
    pub mask: Tensor,
}

/// Proposals of one image after matching and sampling.
struct SampledProposals {
    boxes: Boxes,
    /// Class index per proposal; `num_classes` for background.
    classes: Vec<usize>,
    /// Matched ground truth per proposal (meaningful for foreground only).
    matched: Vec<usize>,
    /// Number of leading foreground proposals.
    num_fg: usize,
}

/// Box and mask heads with their poolers and predictors.
#[derive(Debug, Clone)]
pub struct RoiHeads {
    cfg: RoiHeadsConfig,
    num_classes: usize,
    box_pooler: RoiPooler,
    box_head: BoxHead,
    cls_score: Linear,
    bbox_pred: Linear,
    mask_pooler: RoiPooler,
    mask_head: MaskHead,
    matcher: Matcher,
    transform: BoxTransform,
}

/// Pyramid scales the heads pool from: P2..P5.
const POOLER_SCALES: [f64; 4] = [0.25, 0.125, 0.0625, 0.03125];

impl RoiHeads {
    /// Builds the heads for `num_classes` classes over `channels`-channel
    /// levels under `vb` (`box_head`, `box_predictor.{cls_score,bbox_pred}`, `mask_head`).
    ///
    /// # Errors
    /// An invalid pooler size, or a parameter that cannot be created.
    pub fn new(cfg: &RoiHeadsConfig, num_classes: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        let box_pooler = RoiPooler::new((cfg.box_pool, cfg.box_pool), &POOLER_SCALES, 0, PoolerType::RoiAlignV2)?;
        let mask_pooler = RoiPooler::new((cfg.mask_pool, cfg.mask_pool), &POOLER_SCALES, 0, PoolerType::RoiAlignV2)?;
        let box_head = BoxHead::new(channels, cfg.box_pool, &cfg.box_conv_dims, &cfg.box_fc_dims, vb.pp("box_head"))?;
        let dim = box_head.out_dim();
        let pred = vb.pp("box_predictor");
        Ok(Self {
            cfg: cfg.clone(),
            num_classes,
            box_pooler,
            box_head,
            cls_score: Linear::new(dim, num_classes + 1, true, pred.pp("cls_score"))?,
            bbox_pred: Linear::new(dim, num_classes * 4, true, pred.pp("bbox_pred"))?,
            mask_pooler,
            mask_head: MaskHead::new(channels, &cfg.mask_conv_dims, num_classes, vb.pp("mask_head"))?,
            matcher: Matcher::roi_heads(),
            transform: BoxTransform::roi_heads(),
        })
    }

    /// Side of the predicted masks.
    pub fn mask_size(&self) -> usize {
        2 * self.cfg.mask_pool
    }

    /// The training losses for `proposals` (detached) and the ground truth
    /// of each image; `features` are P2..P5.
    ///
    /// # Errors
    /// A tensor error or inconsistent inputs.
    pub fn losses<R: Rng + ?Sized>(&self, features: &[Tensor], proposals: &[Proposals], gt: &[GroundTruth], rng: &mut R) -> Result<RoiLosses> {
        let sampled = proposals.iter().zip(gt).map(|(p, g)| self.label_and_sample(p, g, rng)).collect::<Result<Vec<_>>>()?;
        let boxes: Vec<Boxes> = sampled.iter().map(|s| s.boxes.clone()).collect();
        let pooled = self.box_pooler.forward(features, &boxes)?;
        let x = self.box_head.forward(&pooled)?;
        let scores = self.cls_score.forward(&x)?;
        let deltas = self.bbox_pred.forward(&x)?;
        let dev = scores.device().clone();
        let dtype = scores.dtype();
        let total: usize = sampled.iter().map(|s| s.boxes.len()).sum();

        let labels: Vec<u32> = sampled.iter().flat_map(|s| s.classes.iter().map(|&c| c as u32)).collect();
        let classification = cross_entropy_mean(&scores, &labels)?;

        // Class-specific deltas of foreground rows against their targets.
        let mut delta_index = Vec::new();
        let mut delta_target = Vec::new();
        let mut offset = 0;
        for (s, g) in sampled.iter().zip(gt) {
            let fg: Vec<usize> = (0..s.num_fg).collect();
            let targets = self.transform.get_deltas(&s.boxes.select(&fg)?, &g.boxes.select(&s.matched[..s.num_fg])?)?;
            for (row, t) in targets.iter().enumerate() {
                let c = s.classes[row];
                delta_index.extend((0..4).map(|j| (((offset + row) * self.num_classes + c) * 4 + j) as u32));
                delta_target.extend_from_slice(t);
            }
            offset += s.boxes.len();
        }
        let n = delta_index.len();
        let picked = deltas.flatten_all()?.index_select(&Tensor::from_vec(delta_index, n, &dev)?, 0)?;
        let box_regression = (l1_sum(&picked, &Tensor::from_vec(delta_target, n, &dev)?.to_dtype(dtype)?)? / total.max(1) as f64)?;

        let mask = self.mask_loss(features, &sampled, gt)?;
        Ok(RoiLosses { classification, box_regression, mask })
    }

    /// detectron2 `label_and_sample_proposals`: append the ground truth to
    /// the proposals, match at IoU 0.5, sample, foreground first.
    fn label_and_sample<R: Rng + ?Sized>(&self, proposals: &Proposals, gt: &GroundTruth, rng: &mut R) -> Result<SampledProposals> {
        let candidates = Boxes::cat(&[proposals.boxes.clone(), gt.boxes.clone()]);
        let matches = self.matcher.apply(&gt.boxes.pairwise_iou(&candidates))?;
        let bg = self.num_classes;
        let classes: Vec<usize> = matches
            .labels
            .iter()
            .zip(&matches.matched_gt)
            .map(|(l, m)| match (l, m) {
                (MatchLabel::Positive, Some(g)) => gt.classes[*g],
                _ => bg,
            })
            .collect();
        let labels: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        let picked = subsample_labels(&labels, self.cfg.batch_size_per_image, self.cfg.positive_fraction, bg as i64, rng)?;
        let order: Vec<usize> = picked.positive.iter().chain(&picked.negative).copied().collect();
        Ok(SampledProposals {
            boxes: candidates.select(&order)?,
            classes: order.iter().map(|&i| classes[i]).collect(),
            matched: order.iter().map(|&i| matches.matched_gt[i].unwrap_or(0)).collect(),
            num_fg: picked.positive.len(),
        })
    }

    /// Mask BCE on the foreground proposals, against the matched ground
    /// truth's polygons rasterised inside each proposal box.
    fn mask_loss(&self, features: &[Tensor], sampled: &[SampledProposals], gt: &[GroundTruth]) -> Result<Tensor> {
        let fg_boxes: Vec<Boxes> = sampled.iter().map(|s| s.boxes.select(&(0..s.num_fg).collect::<Vec<_>>())).collect::<Result<_>>()?;
        let num_fg: usize = fg_boxes.iter().map(Boxes::len).sum();
        let m = self.mask_size();
        let pooled = self.mask_pooler.forward(features, &fg_boxes)?;
        let logits = self.mask_head.forward(&pooled)?;
        if num_fg == 0 {
            // No foreground: a zero loss that still touches the head.
            return Ok(logits.sum_all()?.affine(0.0, 0.0)?);
        }
        let mut classes = Vec::with_capacity(num_fg);
        let mut targets = Vec::with_capacity(num_fg * m * m);
        for ((s, g), boxes) in sampled.iter().zip(gt).zip(&fg_boxes) {
            for (row, b) in boxes.as_slice().iter().enumerate() {
                classes.push(s.classes[row]);
                targets.extend(rasterize_polygons_within_box(&g.polygons[s.matched[row]], *b, m)?);
            }
        }
        let picked = select_class_maps(&logits, &classes)?;
        let targets = Tensor::from_vec(targets, (num_fg, m, m), logits.device())?.to_dtype(logits.dtype())?;
        Ok((bce_with_logits_sum(&picked, &targets)? / (num_fg * m * m) as f64)?)
    }

    /// Detections of each image from its proposals: class-specific boxes,
    /// score threshold, per-class NMS, top detections, then masks.
    /// `image_hw` is each image's content size (boxes are clipped to it).
    ///
    /// # Errors
    /// A tensor error or inconsistent inputs.
    pub fn inference(&self, features: &[Tensor], proposals: &[Proposals], image_hw: &[(usize, usize)]) -> Result<Vec<Detections>> {
        let boxes: Vec<Boxes> = proposals.iter().map(|p| p.boxes.clone()).collect();
        let x = self.box_head.forward(&self.box_pooler.forward(features, &boxes)?)?;
        let probs = softmax_last_dim(&self.cls_score.forward(&x)?)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let deltas = self.bbox_pred.forward(&x)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut out = Vec::with_capacity(proposals.len());
        let mut start = 0;
        for (b, &hw) in boxes.iter().zip(image_hw) {
            let rows = start..start + b.len();
            start += b.len();
            let d: Vec<f32> = deltas[rows.clone()].iter().flatten().copied().collect();
            let decoded = self.transform.apply_deltas(&d, b)?;
            out.push(self.select_detections(&probs[rows], &decoded, hw)?);
        }
        self.predict_masks(features, &mut out)?;
        Ok(out)
    }

    /// detectron2 `fast_rcnn_inference_single_image` for one image.
    fn select_detections(&self, probs: &[Vec<f32>], decoded: &[f32], hw: (usize, usize)) -> Result<Detections> {
        let k = self.num_classes;
        let mut candidates = Vec::new();
        let mut scores = Vec::new();
        let mut classes = Vec::new();
        for (r, row) in probs.iter().enumerate() {
            let finite = row.iter().all(|v| v.is_finite()) && decoded[r * k * 4..(r + 1) * k * 4].iter().all(|v| v.is_finite());
            if !finite {
                continue;
            }
            for (c, &p) in row[..k].iter().enumerate() {
                if p > self.cfg.score_thresh {
                    let o = (r * k + c) * 4;
                    candidates.push([decoded[o], decoded[o + 1], decoded[o + 2], decoded[o + 3]]);
                    scores.push(p);
                    classes.push(c);
                }
            }
        }
        let mut candidates = Boxes::new(candidates);
        candidates.clip(hw);
        let mut keep = batched_nms(&candidates, &scores, &classes, self.cfg.nms_thresh)?;
        keep.truncate(self.cfg.detections_per_image);
        Ok(Detections {
            boxes: candidates.select(&keep)?,
            scores: keep.iter().map(|&i| scores[i]).collect(),
            classes: keep.iter().map(|&i| classes[i]).collect(),
            masks: Vec::new(),
            mask_size: self.mask_size(),
        })
    }

    /// Runs the mask head on each image's final boxes and stores the
    /// sigmoid of the predicted class's map.
    fn predict_masks(&self, features: &[Tensor], detections: &mut [Detections]) -> Result<()> {
        let boxes: Vec<Boxes> = detections.iter().map(|d| d.boxes.clone()).collect();
        let total: usize = boxes.iter().map(Boxes::len).sum();
        if total == 0 {
            return Ok(());
        }
        let pooled = self.mask_pooler.forward(features, &boxes)?;
        let classes: Vec<usize> = detections.iter().flat_map(|d| d.classes.iter().copied()).collect();
        // The head runs on chunks of boxes: its 28x28 maps of 100 boxes an
        // image would otherwise take hundreds of MB, fresh pages every batch.
        let m = self.mask_size() * self.mask_size();
        let mut probs = Vec::with_capacity(total * m);
        for start in (0..total).step_by(MASK_INFERENCE_CHUNK) {
            let len = MASK_INFERENCE_CHUNK.min(total - start);
            let logits = self.mask_head.forward(&pooled.narrow(0, start, len)?)?;
            let picked = select_class_maps(&logits, &classes[start..start + len])?;
            probs.extend(candle_nn::ops::sigmoid(&picked)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let mut start = 0;
        for d in detections.iter_mut() {
            d.masks = probs[start * m..(start + d.len()) * m].to_vec();
            start += d.len();
        }
        Ok(())
    }
}
