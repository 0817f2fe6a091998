//! Mask geometry of the mask head: training targets rasterised inside each
//! proposal box, and predicted masks pasted back into the image at test time.
//!
//! Shapes: N instances, M the mask side (28 for ViTDet), (H, W) the original
//! image. Masks are row-major `M × M` (`mask[y * M + x]`); pasted masks are
//! COCO RLEs (column-major, see `coco::mask`), ready for a results file.
//!
//! - [`rasterize_polygons_within_box`] is detectron2
//!   `structures/masks.py::rasterize_polygons_within_box`: shift by the box
//!   corner, scale by `M / max(w, 0.1)` and `M / max(h, 0.1)` (box sizes in
//!   f32, the comparison with 0.1 in f32 as numpy does it), then pycocotools
//!   `frPyObjects` + `merge` + `decode` at M × M (coco's rasteriser is
//!   bit-identical to pycocotools).
//! - [`paste_masks_in_image`] is detectron2 `layers/mask_ops.py::
//!   paste_masks_in_image` on the CPU path (`skip_empty=True`, one box at a
//!   time): only the pixels of `[floor(x0) - 1, ceil(x1) + 1) × [floor(y0) - 1,
//!   ceil(y1) + 1)` clipped to the image are sampled, by `grid_sample(bilinear,
//!   align_corners=False, padding zeros)` at pixel centres, in f32 with
//!   torch's CPU kernel's operation order; `>= threshold` is foreground.
//!
//! Both are pinned against the reference (torch 2.15, pycocotools 2.0.11) by
//! `tests/masks.rs` on fixtures from `tests/fixtures/make_data_fixtures.py`.

use coco::mask::Rle;

use crate::{Error, Result};

/// detectron2's floor on box sides before dividing (`max(w, 0.1)`).
const MIN_BOX_SIDE: f32 = 0.1;

/// The M × M target (row-major, 0 / 1) of an instance whose parts are
/// `polygons` (`[x0, y0, x1, y1, ...]`, input pixels), rasterised inside
/// `bbox` (`[x1, y1, x2, y2]`). No parts give an all-zero mask.
///
/// # Errors
/// [`Error::Coco`] if the first part has at most 4 coordinates (pycocotools
/// reads that as a box list and fails); the pipeline never produces such parts.
pub fn rasterize_polygons_within_box(polygons: &[Vec<f64>], bbox: [f32; 4], mask_size: usize) -> Result<Vec<f32>> {
    let m = mask_size;
    if polygons.is_empty() {
        return Ok(vec![0.0; m * m]);
    }
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    // Python's max(side, 0.1) with side an np.float32: the comparison is in f32,
    // and the result is either 0.1 (a Python float, f64 division) or the side
    // (f32 division).
    let ratio = |side: f32| -> f64 {
        if MIN_BOX_SIDE > side {
            m as f64 / 0.1
        } else {
            f64::from(m as f32 / side)
        }
    };
    let (ratio_w, ratio_h) = (ratio(w), ratio(h));
    let (x0, y0) = (f64::from(bbox[0]), f64::from(bbox[1]));
    let scaled: Vec<Vec<f64>> = polygons
        .iter()
        .map(|p| {
            let mut q = p.clone();
            for xy in q.chunks_exact_mut(2) {
                xy[0] = (xy[0] - x0) * ratio_w;
                xy[1] = (xy[1] - y0) * ratio_h;
            }
            q
        })
        .collect();
    let side = u32::try_from(m).map_err(|_| Error::Config { key: "mask_size", msg: format!("{m} is too large") })?;
    let rle = Rle::from_polygons(&scaled, side, side)?;
    Ok(rle.decode_row_major()?.into_iter().map(f32::from).collect())
}

/// Pastes N predicted `mask_size × mask_size` probability masks (row-major,
/// concatenated) into an image of `image_hw = (H, W)` at `boxes` (`[x1, y1,
/// x2, y2]` in original-image pixels) and thresholds them (`>= threshold`,
/// 0.5 in detectron2). Returns one column-major RLE of size H × W per mask.
///
/// # Errors
/// [`Error::LengthMismatch`] if `masks` is not `N · M · M` long;
/// [`Error::Config`] if H or W does not fit in `u32`.
pub fn paste_masks_in_image(
    masks: &[f32],
    mask_size: usize,
    boxes: &[[f32; 4]],
    image_hw: (usize, usize),
    threshold: f32,
) -> Result<Vec<Rle>> {
    let mm = mask_size * mask_size;
    if masks.len() != boxes.len() * mm {
        return Err(Error::LengthMismatch { what: "masks (N·M·M)", expected: boxes.len() * mm, found: masks.len() });
    }
    let (img_h, img_w) = image_hw;
    let too_big = |_| Error::Config { key: "image size", msg: format!("{img_h}x{img_w} does not fit in u32") };
    let (h32, w32) = (u32::try_from(img_h).map_err(too_big)?, u32::try_from(img_w).map_err(too_big)?);
    Ok(boxes
        .iter()
        .enumerate()
        .map(|(i, &bbox)| {
            let mask = &masks[i * mm..(i + 1) * mm];
            paste_one(mask, mask_size, bbox, img_h, img_w, threshold, h32, w32)
        })
        .collect())
}

/// Sampling position of one output pixel along one axis: the top-left input
/// index and the fractional offset, or `None` if not finite.
#[derive(Clone, Copy)]
struct Tap {
    index: i64,
    frac: f32,
}

/// `_do_paste_mask` coordinates for pixels `lo..hi` of an axis where the box
/// spans `[b0, b1]` and the mask has `m` cells: unnormalised grid_sample
/// coordinates split into floor and fraction.
fn axis_taps(lo: i64, hi: i64, b0: f32, b1: f32, m: usize) -> Vec<Option<Tap>> {
    let half = m as f32 / 2.0;
    let extent = b1 - b0;
    (lo..hi)
        .map(|i| {
            let g = ((i as f32 + 0.5) - b0) / extent * 2.0 - 1.0;
            let at = (g + 1.0) * half - 0.5;
            let floor = at.floor();
            floor.is_finite().then_some(Tap { index: floor as i64, frac: at - floor })
        })
        .collect()
}

/// One mask pasted and thresholded (see [`paste_masks_in_image`]).
#[allow(clippy::too_many_arguments)]
fn paste_one(mask: &[f32], m: usize, bbox: [f32; 4], img_h: usize, img_w: usize, threshold: f32, h32: u32, w32: u32) -> Rle {
    let [x0, y0, x1, y1] = bbox;
    // torch: clamp(floor(min corner) - 1, min=0), clamp(ceil(max corner) + 1, max=size), int32.
    let lo = |v: f32| (v.floor() - 1.0).max(0.0) as i64;
    let hi = |v: f32, size: usize| (v.ceil() + 1.0).min(size as f32) as i64;
    // A start past the image leaves nothing to sample (torch: an empty arange).
    let (cx0, cy0) = (lo(x0).min(img_w as i64), lo(y0).min(img_h as i64));
    let (cx1, cy1) = (hi(x1, img_w).max(cx0), hi(y1, img_h).max(cy0));
    let xs = axis_taps(cx0, cx1, x0, x1, m);
    let ys = axis_taps(cy0, cy1, y0, y1, m);

    let value = |yy: i64, xx: i64| -> f32 {
        if (0..m as i64).contains(&yy) && (0..m as i64).contains(&xx) {
            mask[yy as usize * m + xx as usize]
        } else {
            0.0
        }
    };
    let mut runs = RunBuilder::new();
    let h = img_h as u64;
    runs.push(false, cx0 as u64 * h);
    for tx in &xs {
        runs.push(false, cy0 as u64);
        for ty in &ys {
            let on = match (tx, ty) {
                (Some(tx), Some(ty)) => {
                    let (w, n) = (tx.frac, ty.frac);
                    let (e, s) = (1.0 - w, 1.0 - n);
                    let (ix, iy) = (tx.index, ty.index);
                    let v = value(iy, ix) * (s * e)
                        + value(iy, ix + 1) * (s * w)
                        + value(iy + 1, ix) * (n * e)
                        + value(iy + 1, ix + 1) * (n * w);
                    v >= threshold
                }
                _ => false,
            };
            runs.push(on, 1);
        }
        runs.push(false, h - cy1 as u64);
    }
    runs.push(false, (img_w as u64 - cx1 as u64) * h);
    Rle { h: h32, w: w32, counts: runs.finish() }
}

/// Builds COCO counts (background first) from runs of pixels in column-major order.
struct RunBuilder {
    counts: Vec<u32>,
    current: bool,
    len: u64,
}

impl RunBuilder {
    fn new() -> Self {
        RunBuilder { counts: Vec::new(), current: false, len: 0 }
    }

    fn push(&mut self, on: bool, len: u64) {
        if len == 0 {
            return;
        }
        if on != self.current {
            self.counts.push(self.len as u32);
            self.current = on;
            self.len = 0;
        }
        self.len += len;
    }

    fn finish(mut self) -> Vec<u32> {
        self.counts.push(self.len as u32);
        self.counts
    }
}
