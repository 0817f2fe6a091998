//! Image + annotation transforms of ViTDet: large-scale jitter (LSJ) for
//! training and the long-side resize for testing, then normalisation and
//! padding to a square S × S input.
//!
//! Mirrors detectron2 (`projects/ViTDet/configs/common/coco_loader_lsj.py`,
//! `data/transforms/augmentation_impl.py`, `modeling/meta_arch/rcnn.py:
//! preprocess_image`, `structures/image_list.py`):
//! 1. `RandomFlip(horizontal, p = 0.5)`: `x → w - x`;
//! 2. `ResizeScale(min, max, S, S)`: `s ~ U(min, max)`,
//!    `scale = min(S·s/h, S·s/w)`, `new = round_half_even((h, w)·scale)`
//!    (`np.round`), Pillow bilinear; coordinates scale by `new_w / w`, `new_h / h`;
//! 3. `FixedSizeCrop(S, pad=False)`: `offset = round_half_even(max(new - S, 0)·u)`
//!    with one `u ~ U(0, 1)` for both axes; polygons are clipped to the window
//!    `[ox, oy, ox + S, oy + S]` (shapely in detectron2, `coco::geometry`
//!    here) and shifted by `-offset`;
//! 4. boxes are recomputed from the clipped polygons (`recompute_boxes=True`,
//!    `PolygonMasks.get_bounding_boxes`: f32, the max starts at 0) and
//!    instances are dropped unless they still have a polygon and a box with
//!    width and height > 1e-5 (`filter_empty_instances`, `Boxes.nonempty`);
//! 5. `(pixel - mean) / std` on RGB in 0..255 units, then zero padding at the
//!    bottom and right to S × S (zero is the mean colour after normalising).
//!
//! The test transform is `ResizeShortestEdge(S, max_size=S)` (its
//! `get_output_shape`, so the long side becomes S, rounded with
//! `int(x + 0.5)`), normalise, pad. Random draws are made in detectron2's
//! order (flip, scale, crop) from a caller-supplied RNG.
//!
//! As in detectron2's `Boxes.nonempty`, the 1e-5 threshold applies to the
//! width and to the height of a box, not to its area.

use coco::geometry::clip_polygon;
use rand::Rng;

use super::dataset::{ImageRecord, Instance};
use vision::resize::{resize, resize_window, Filter, RgbImage};

/// ImageNet mean of the RGB channels in 0..255 units (detectron2 `pixel_mean`).
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet standard deviation of the RGB channels in 0..255 units (`pixel_std`).
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// `Boxes.nonempty` threshold of `filter_empty_instances` (`box_threshold=1e-5`).
const BOX_NONEMPTY_THRESHOLD: f32 = 1e-5;

/// One image ready for the network: normalised CHW pixels padded to (S, S), and its targets.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionSample {
    /// COCO image id.
    pub image_id: u64,
    /// (3, S, S) row-major, normalised, zero-padded.
    pub pixels: Vec<f32>,
    /// (S, S): the padded tensor size.
    pub input_hw: (usize, usize),
    /// Size of the image content inside the padded tensor (top-left corner).
    pub valid_hw: (usize, usize),
    /// Size of the original file.
    pub original_hw: (usize, usize),
    /// Original → input scale: the resize scale of LSJ (training) or of the
    /// long-side resize (testing). Per-axis factors for mapping predictions
    /// back are [`DetectionSample::input_to_original`].
    pub scale: f64,
    /// Boxes `[x1, y1, x2, y2]` in input pixels.
    pub boxes: Vec<[f32; 4]>,
    /// Contiguous class indices.
    pub classes: Vec<usize>,
    /// Per instance, its parts `[x0, y0, x1, y1, ...]` in input pixels.
    pub polygons: Vec<Vec<Vec<f64>>>,
}

impl DetectionSample {
    /// Factors `(fx, fy)` that map input pixels back to the original image for
    /// a test sample: `original_w / valid_w`, `original_h / valid_h`, as
    /// detectron2 `detector_postprocess` rescales (`output_width / image_size[1]`).
    pub fn input_to_original(&self) -> (f64, f64) {
        let (vh, vw) = self.valid_hw;
        let (oh, ow) = self.original_hw;
        (ow as f64 / vw.max(1) as f64, oh as f64 / vh.max(1) as f64)
    }
}

/// LSJ settings (detectron2 `coco_loader_lsj.py` values by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LsjConfig {
    /// Output side S of the square crop and of the padded input.
    pub image_size: usize,
    /// Smallest scale jitter `s` (0.1).
    pub min_scale: f64,
    /// Largest scale jitter `s` (2.0).
    pub max_scale: f64,
    /// Probability of a horizontal flip (0.5).
    pub flip_prob: f64,
}

impl LsjConfig {
    /// ViTDet's LSJ at side `image_size`: scales 0.1..2.0, flip probability 0.5.
    pub fn vitdet(image_size: usize) -> Self {
        LsjConfig { image_size, min_scale: 0.1, max_scale: 2.0, flip_prob: 0.5 }
    }
}

/// The random choices of one LSJ draw, kept so they can be logged or replayed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LsjParams {
    /// Horizontal flip applied first.
    pub flip: bool,
    /// Resized size (h, w) before cropping.
    pub resized_hw: (usize, usize),
    /// The resize factor `min(S·s/h, S·s/w)`.
    pub scale: f64,
    /// Crop offset (y, x) in resized pixels.
    pub offset_yx: (usize, usize),
}

/// `ResizeScale` output size for input (h, w), target side `target`, jitter
/// `s`: returns (scale, (new_h, new_w)) with numpy's `round` (half to even).
pub fn resize_scale_size(h: usize, w: usize, target: usize, s: f64) -> (f64, (usize, usize)) {
    let target_scaled = target as f64 * s;
    let scale = (target_scaled / h as f64).min(target_scaled / w as f64);
    let round = |v: usize| (v as f64 * scale).round_ties_even().max(0.0) as usize;
    (scale, (round(h), round(w)))
}

/// `FixedSizeCrop` offset (y, x) of an S × S crop from a (h, w) image for the
/// uniform draw `u`: `round_half_even(max(size - S, 0) · u)` per axis.
pub fn crop_offset(h: usize, w: usize, crop: usize, u: f64) -> (usize, usize) {
    let offset = |v: usize| (v.saturating_sub(crop) as f64 * u).round_ties_even() as usize;
    (offset(h), offset(w))
}

/// `ResizeShortestEdge(S, max_size=S).get_output_shape`: the long side becomes
/// `side`. Returns (scale, (new_h, new_w)), rounding with `int(x + 0.5)` in
/// detectron2's order of f64 operations.
pub fn test_resize_size(h: usize, w: usize, side: usize) -> (f64, (usize, usize)) {
    let (hf, wf) = (h as f64, w as f64);
    let size = side as f64;
    let mut scale = size / hf.min(wf);
    let (mut new_h, mut new_w) = if h < w { (size, scale * wf) } else { (scale * hf, size) };
    if new_h.max(new_w) > size {
        let shrink = size / new_h.max(new_w);
        new_h *= shrink;
        new_w *= shrink;
        scale *= shrink;
    }
    (scale, ((new_h + 0.5) as usize, (new_w + 0.5) as usize))
}

/// Draws LSJ's random choices for an (h, w) image, in detectron2's order
/// (flip, scale, crop), from `rng`.
pub fn draw_lsj(h: usize, w: usize, cfg: &LsjConfig, rng: &mut impl Rng) -> LsjParams {
    let flip = rng.gen::<f64>() < cfg.flip_prob;
    let s = cfg.min_scale + (cfg.max_scale - cfg.min_scale) * rng.gen::<f64>();
    let (scale, resized_hw) = resize_scale_size(h, w, cfg.image_size, s);
    let u = rng.gen::<f64>();
    let offset_yx = crop_offset(resized_hw.0, resized_hw.1, cfg.image_size, u);
    LsjParams { flip, resized_hw, scale, offset_yx }
}

/// Mirrors an RGB image left-right.
fn flip_image(img: &RgbImage) -> RgbImage {
    let mut data = Vec::with_capacity(img.data.len());
    for y in 0..img.height {
        let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
        for px in row.chunks_exact(3).rev() {
            data.extend_from_slice(px);
        }
    }
    RgbImage { height: img.height, width: img.width, data }
}

/// Applies drawn LSJ choices to an image and its instances; `image` is the
/// decoded file of `record` (same size). The result is normalised and padded
/// to S × S.
pub fn apply_lsj(record: &ImageRecord, image: &RgbImage, params: &LsjParams, side: usize) -> DetectionSample {
    let (h, w) = (image.height, image.width);
    let flipped;
    let source = if params.flip {
        flipped = flip_image(image);
        &flipped
    } else {
        image
    };
    let (new_h, new_w) = params.resized_hw;
    let (oy, ox) = params.offset_yx;
    let crop = resize_window(source, new_h, new_w, oy..oy + side, ox..ox + side, Filter::Bilinear);

    // Geometry: flip (x → w - x), resize per axis, clip to the crop window, shift.
    let (sx, sy) = (new_w as f64 / w as f64, new_h as f64 / h as f64);
    let window = [ox as f64, oy as f64, (ox + side) as f64, (oy + side) as f64];
    let wf = w as f64;
    let instances = record.instances.iter().map(|inst| {
        let parts = inst
            .polygons
            .iter()
            .flat_map(|poly| {
                let moved: Vec<f64> = poly
                    .chunks_exact(2)
                    .flat_map(|p| {
                        let x = if params.flip { wf - p[0] } else { p[0] };
                        [x * sx, p[1] * sy]
                    })
                    .collect();
                clip_polygon(&moved, window)
            })
            .map(|part| {
                part.chunks_exact(2).flat_map(|p| [p[0] - window[0], p[1] - window[1]]).collect::<Vec<f64>>()
            })
            .collect();
        (inst.class, parts)
    });
    let mut sample = finish(record, &crop, (h, w), params.scale, side);
    push_nonempty(&mut sample, instances);
    sample
}

/// The test transform: long side to S (Pillow bilinear), normalise, pad.
/// Instances are scaled along (boxes from their polygons, no filtering beyond
/// dropping empty ones).
pub fn apply_test(record: &ImageRecord, image: &RgbImage, side: usize) -> DetectionSample {
    let (h, w) = (image.height, image.width);
    let (scale, (new_h, new_w)) = test_resize_size(h, w, side);
    let resized = resize(image, new_h, new_w, Filter::Bilinear);
    let (sx, sy) = (new_w as f64 / w as f64, new_h as f64 / h as f64);
    let instances = record.instances.iter().map(|inst: &Instance| {
        let parts = inst
            .polygons
            .iter()
            .map(|poly| poly.chunks_exact(2).flat_map(|p| [p[0] * sx, p[1] * sy]).collect())
            .collect();
        (inst.class, parts)
    });
    let mut sample = finish(record, &resized, (h, w), scale, side);
    push_nonempty(&mut sample, instances);
    sample
}

/// Normalises and pads `content` into a sample with no instances yet.
fn finish(record: &ImageRecord, content: &RgbImage, original_hw: (usize, usize), scale: f64, side: usize) -> DetectionSample {
    DetectionSample {
        image_id: record.image_id,
        pixels: normalize_and_pad(content, side),
        input_hw: (side, side),
        valid_hw: (content.height.min(side), content.width.min(side)),
        original_hw,
        scale,
        boxes: Vec::new(),
        classes: Vec::new(),
        polygons: Vec::new(),
    }
}

/// Adds the instances that survive `filter_empty_instances`, with boxes
/// recomputed from their polygons.
fn push_nonempty(sample: &mut DetectionSample, instances: impl Iterator<Item = (usize, Vec<Vec<f64>>)>) {
    for (class, parts) in instances {
        let Some(bbox) = polygons_box(&parts) else { continue };
        let nonempty = bbox[2] - bbox[0] > BOX_NONEMPTY_THRESHOLD && bbox[3] - bbox[1] > BOX_NONEMPTY_THRESHOLD;
        if nonempty {
            sample.boxes.push(bbox);
            sample.classes.push(class);
            sample.polygons.push(parts);
        }
    }
}

/// detectron2 `PolygonMasks.get_bounding_boxes` for one instance: min and max
/// of the f32 vertex coordinates, the max starting at 0; `None` without parts.
pub fn polygons_box(parts: &[Vec<f64>]) -> Option<[f32; 4]> {
    if parts.is_empty() {
        return None;
    }
    let mut b = [f32::INFINITY, f32::INFINITY, 0.0f32, 0.0f32];
    for p in parts.iter().flat_map(|part| part.chunks_exact(2)) {
        let (x, y) = (p[0] as f32, p[1] as f32);
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    Some(b)
}

/// `(pixel - mean) / std` per RGB channel into a (3, side, side) buffer, the
/// content at the top-left and zeros (the mean colour) elsewhere. Content
/// beyond `side` is cut (never happens for the transforms above).
pub fn normalize_and_pad(content: &RgbImage, side: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; 3 * side * side];
    let (h, w) = (content.height.min(side), content.width.min(side));
    for c in 0..3 {
        let plane = &mut out[c * side * side..(c + 1) * side * side];
        for y in 0..h {
            let src = &content.data[y * content.width * 3..];
            for (x, dst) in plane[y * side..y * side + w].iter_mut().enumerate() {
                *dst = (f32::from(src[x * 3 + c]) - PIXEL_MEAN[c]) / PIXEL_STD[c];
            }
        }
    }
    out
}
