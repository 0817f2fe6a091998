//! The region proposal network (detectron2 `RPN` + `StandardRPNHead`): a
//! small conv head shared across P2..P6 scores every anchor and regresses
//! its box; training labels anchors with the [`Matcher`] and samples them;
//! proposals are the top-scoring decoded anchors of each level after NMS.

use candle_core::{Result as CandleResult, Tensor};
use candle_nn::VarBuilder;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::anchors::AnchorGenerator;
use crate::box_transform::BoxTransform;
use crate::layers::Conv2d;
use crate::losses::{bce_with_logits_sum, l1_sum};
use crate::matcher::{MatchLabel, Matcher};
use crate::nms::batched_nms;
use crate::sampling::subsample_labels;
use crate::{Boxes, Result};

/// A value that differs between training and inference (detectron2 keeps
/// such pairs keyed by `self.training`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopK {
    /// The value while training.
    pub train: usize,
    /// The value at inference.
    pub test: usize,
}

impl TopK {
    /// The value for `train` (true) or inference (false).
    pub fn get(self, train: bool) -> usize {
        if train {
            self.train
        } else {
            self.test
        }
    }
}

/// The RPN's settings. Defaults are ViTDet's (detectron2 `mask_rcnn_fpn.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpnConfig {
    /// Number of shared 3x3 conv + ReLU layers before the predictors.
    pub num_convs: usize,
    /// Anchors sampled per image for the losses.
    pub batch_size_per_image: usize,
    /// Target fraction of positives among the sampled anchors.
    pub positive_fraction: f64,
    /// Top-scoring anchors kept per level and image before NMS.
    pub pre_nms_topk: TopK,
    /// Proposals kept per image after NMS.
    pub post_nms_topk: TopK,
    /// IoU threshold of the per-level NMS.
    pub nms_thresh: f64,
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            num_convs: 2,
            batch_size_per_image: 256,
            positive_fraction: 0.5,
            pre_nms_topk: TopK { train: 2000, test: 1000 },
            post_nms_topk: TopK { train: 1000, test: 1000 },
            nms_thresh: 0.7,
        }
    }
}

/// Proposals of one image, sorted by decreasing objectness.
#[derive(Debug, Clone, Default)]
pub struct Proposals {
    /// Boxes in input pixels, clipped to the image.
    pub boxes: Boxes,
    /// Objectness logits.
    pub logits: Vec<f32>,
}

/// The RPN's two losses, already normalised (detectron2 `loss_rpn_cls`,
/// `loss_rpn_loc`).
#[derive(Debug, Clone)]
pub struct RpnLosses {
    /// Objectness BCE over the sampled anchors / (samples per image x images).
    pub objectness: Tensor,
    /// L1 box loss over the sampled positives, same normaliser.
    pub localization: Tensor,
}

/// The RPN: head, anchors, matching, sampling and proposal selection.
#[derive(Debug, Clone)]
pub struct Rpn {
    cfg: RpnConfig,
    convs: Vec<Conv2d>,
    objectness: Conv2d,
    deltas: Conv2d,
    anchors: AnchorGenerator,
    matcher: Matcher,
    transform: BoxTransform,
}

/// Per-image flat predictions of every level: logits (N, T) and deltas (N, T, 4).
struct HeadOutputs {
    logits: Tensor,
    deltas: Tensor,
    /// Anchors of each level (the same for every image).
    anchors: Vec<Boxes>,
}

impl Rpn {
    /// Builds the head over `channels`-channel pyramid levels under `vb`
    /// (`conv.{i}`, `objectness_logits`, `anchor_deltas`).
    pub fn new(cfg: &RpnConfig, anchors: AnchorGenerator, channels: usize, vb: VarBuilder) -> CandleResult<Self> {
        let a = anchors.num_anchors_per_location();
        let convs = (0..cfg.num_convs).map(|i| Conv2d::new(channels, channels, 3, true, vb.pp("conv").pp(i))).collect::<CandleResult<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            convs,
            objectness: Conv2d::new(channels, a, 1, true, vb.pp("objectness_logits"))?,
            deltas: Conv2d::new(channels, 4 * a, 1, true, vb.pp("anchor_deltas"))?,
            anchors,
            matcher: Matcher::rpn(),
            transform: BoxTransform::rpn(),
        })
    }

    /// Runs the head over `features` (P2..P6, each (N, C, H, W)) and returns
    /// each image's proposals; with `gt` (one box list per image) also the
    /// losses. `image_hw` is each image's content size in input pixels
    /// (proposals are clipped to it).
    ///
    /// # Errors
    /// A tensor error, or inputs of inconsistent lengths.
    pub fn forward<R: Rng + ?Sized>(&self, features: &[Tensor], image_hw: &[(usize, usize)], gt: Option<&[Boxes]>, train: bool, rng: &mut R) -> Result<(Vec<Proposals>, Option<RpnLosses>)> {
        let out = self.head(features)?;
        let losses = match gt {
            Some(gt) => Some(self.losses(&out, gt, rng)?),
            None => None,
        };
        let proposals = self.proposals(&out, image_hw, train)?;
        Ok((proposals, losses))
    }

    fn head(&self, features: &[Tensor]) -> Result<HeadOutputs> {
        let mut logits = Vec::new();
        let mut deltas = Vec::new();
        let mut grids = Vec::new();
        let a = self.anchors.num_anchors_per_location();
        for f in features {
            let (n, _, h, w) = f.dims4()?;
            let mut x = f.clone();
            for conv in &self.convs {
                x = conv.forward(&x)?.relu()?;
            }
            // (N, A, H, W) -> (N, H*W*A): location-major, anchors innermost.
            logits.push(self.objectness.forward(&x)?.permute((0, 2, 3, 1))?.reshape((n, h * w * a))?);
            // (N, A*4, H, W) -> (N, A, 4, H, W) -> (N, H, W, A, 4) -> (N, H*W*A, 4).
            deltas.push(self.deltas.forward(&x)?.reshape((n, a, 4, h, w))?.permute((0, 3, 4, 1, 2))?.reshape((n, h * w * a, 4))?);
            grids.push((h, w));
        }
        Ok(HeadOutputs { logits: Tensor::cat(&logits, 1)?, deltas: Tensor::cat(&deltas, 1)?, anchors: self.anchors.grid_anchors(&grids)? })
    }

    fn losses<R: Rng + ?Sized>(&self, out: &HeadOutputs, gt: &[Boxes], rng: &mut R) -> Result<RpnLosses> {
        let anchors = Boxes::cat(&out.anchors);
        let total = anchors.len();
        let mut sampled_index = Vec::new(); // flat (image, anchor) indices into (N*T)
        let mut sampled_target = Vec::new();
        let mut delta_index = Vec::new(); // flat indices into (N*T*4)
        let mut delta_target: Vec<f32> = Vec::new();
        for (i, gt_boxes) in gt.iter().enumerate() {
            let matches = self.matcher.apply(&gt_boxes.pairwise_iou(&anchors))?;
            let labels: Vec<i64> = matches.labels.iter().map(|l| l.code()).collect();
            let sampled = subsample_labels(&labels, self.cfg.batch_size_per_image, self.cfg.positive_fraction, MatchLabel::Negative.code(), rng)?;
            let positives: Vec<usize> = sampled.positive.clone();
            for (&a, target) in sampled.positive.iter().map(|a| (a, 1.0f32)).chain(sampled.negative.iter().map(|a| (a, 0.0f32))) {
                sampled_index.push((i * total + a) as u32);
                sampled_target.push(target);
            }
            if positives.is_empty() {
                continue;
            }
            let matched: Vec<usize> = positives.iter().map(|&a| matches.matched_gt[a].unwrap_or(0)).collect();
            let targets = self.transform.get_deltas(&anchors.select(&positives)?, &gt_boxes.select(&matched)?)?;
            for (&a, t) in positives.iter().zip(&targets) {
                delta_index.extend((0..4).map(|j| ((i * total + a) * 4 + j) as u32));
                delta_target.extend_from_slice(t);
            }
        }
        let dev = out.logits.device();
        let normalizer = (self.cfg.batch_size_per_image * gt.len()).max(1) as f64;
        let gather = |t: &Tensor, index: Vec<u32>| -> CandleResult<Tensor> {
            let n = index.len();
            t.flatten_all()?.index_select(&Tensor::from_vec(index, n, dev)?, 0)
        };
        let to_tensor = |v: Vec<f32>| -> CandleResult<Tensor> {
            let n = v.len();
            Tensor::from_vec(v, n, dev)?.to_dtype(out.logits.dtype())
        };
        let objectness = (bce_with_logits_sum(&gather(&out.logits, sampled_index)?, &to_tensor(sampled_target)?)? / normalizer)?;
        let localization = (l1_sum(&gather(&out.deltas, delta_index)?, &to_tensor(delta_target)?)? / normalizer)?;
        Ok(RpnLosses { objectness, localization })
    }

    fn proposals(&self, out: &HeadOutputs, image_hw: &[(usize, usize)], train: bool) -> Result<Vec<Proposals>> {
        let logits = out.logits.detach().to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let deltas = out.deltas.detach().to_dtype(candle_core::DType::F32)?.flatten_from(1)?.to_vec2::<f32>()?;
        let pre_k = self.cfg.pre_nms_topk.get(train);
        let post_k = self.cfg.post_nms_topk.get(train);
        logits
            .iter()
            .zip(&deltas)
            .zip(image_hw)
            .map(|((logits, deltas), &hw)| {
                let mut boxes = Vec::new();
                let mut scores = Vec::new();
                let mut levels = Vec::new();
                let mut start = 0;
                for (level, anchors) in out.anchors.iter().enumerate() {
                    let n = anchors.len();
                    let top = top_k(&logits[start..start + n], pre_k);
                    let picked = anchors.select(&top)?;
                    let d: Vec<f32> = top.iter().flat_map(|&j| deltas[(start + j) * 4..(start + j) * 4 + 4].iter().copied()).collect();
                    let decoded = self.transform.apply_deltas(&d, &picked)?;
                    boxes.extend(decoded.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
                    scores.extend(top.iter().map(|&j| logits[start + j]));
                    levels.extend(std::iter::repeat_n(level, top.len()));
                    start += n;
                }
                select_proposals(boxes, scores, levels, hw, self.cfg.nms_thresh, post_k)
            })
            .collect()
    }
}

/// Indices of the `k` largest values, largest first (ties by index, as a
/// stable sort); every index when `k >= values.len()`.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let by_value = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < order.len() {
        order.select_nth_unstable_by(k, by_value);
        order.truncate(k);
    }
    order.sort_by(by_value);
    order
}

/// detectron2 `find_top_rpn_proposals` after the top-k: drop non-finite
/// boxes, clip to the image, drop empty boxes, NMS per level, keep `post_k`.
fn select_proposals(boxes: Vec<[f32; 4]>, scores: Vec<f32>, levels: Vec<usize>, hw: (usize, usize), nms_thresh: f64, post_k: usize) -> Result<Proposals> {
    let finite: Vec<usize> = (0..boxes.len()).filter(|&i| scores[i].is_finite() && boxes[i].iter().all(|v| v.is_finite())).collect();
    let mut kept = Boxes::new(finite.iter().map(|&i| boxes[i]).collect());
    kept.clip(hw);
    let nonempty = kept.nonempty(0.0);
    let keep: Vec<usize> = (0..kept.len()).filter(|&i| nonempty[i]).collect();
    let kept = kept.select(&keep)?;
    let scores: Vec<f32> = keep.iter().map(|&i| scores[finite[i]]).collect();
    let levels: Vec<usize> = keep.iter().map(|&i| levels[finite[i]]).collect();
    let mut order = batched_nms(&kept, &scores, &levels, nms_thresh)?;
    order.truncate(post_k);
    Ok(Proposals { boxes: kept.select(&order)?, logits: order.iter().map(|&i| scores[i]).collect() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn top_k_is_sorted_and_stable() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[0.1, 0.9], 5), vec![1, 0]);
    }

    #[test]
    fn proposals_are_clipped_nonempty_and_nms_per_level() {
        let boxes = vec![[-5.0, -5.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 50.0, 60.0], [f32::NAN, 0.0, 1.0, 1.0]];
        let scores = vec![0.9, 0.8, 0.7, 0.6, 0.5];
        let levels = vec![0, 0, 1, 0, 0];
        let p = select_proposals(boxes, scores, levels, (40, 40), 0.7, 10).unwrap();
        // Box 1 is suppressed by box 0 (same level, clipped to the same box);
        // box 2 survives on another level; box 3 is empty; box 4 not finite.
        assert_eq!(p.boxes.as_slice(), &[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]);
        assert_eq!(p.logits, vec![0.9, 0.7]);
    }
}
