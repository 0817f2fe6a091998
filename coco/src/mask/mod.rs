//! Binary masks as COCO run-length encoding, bit-identical to pycocotools
//! 2.0.11 (`common/maskApi.c`, `_mask.pyx`, `coco.py: annToRLE`).
//!
//! **For the evaluator** — the two entry points of `COCOeval.computeIoU` (segm):
//! - [`segmentation_to_rle`]`(seg, image_h, image_w) -> Result<Rle>` is
//!   `annToRLE`: polygons (merged by union), uncompressed or compressed RLE →
//!   one [`Rle`]. Call it once per GT and per DT and keep the result.
//! - [`iou`]`(dt, gt, iscrowd, out) -> Result<()>` is `maskUtils.iou`: fills the
//!   caller-owned, **dt-major** `out[d * gt.len() + g]` with the crowd rule and
//!   a box prefilter. [`bbox_iou`] is the same for `[x, y, w, h]` boxes
//!   (`iouType="bbox"`). DT area and box for segm results are [`Rle::area`] and
//!   [`Rle::to_bbox`] (`loadRes`).
//!
//! Layout: column-major — pixel (x, y) (column x, row y) is at flat index
//! `y + h * x`; counts alternate background / foreground and start with a
//! (possibly empty) background run. Exactness against pycocotools is proven by
//! `coco/tests/masks.rs` on fixtures from `coco/tests/fixtures/make_mask_cases.py`.
//!
//! Files: [`rle`] (encode, decode, area, bbox, merge), [`string`] (compressed
//! counts), [`polygon`] (`rleFrPoly`, `rleFrBbox`), [`iou`](mod@iou),
//! [`segmentation`] (`frPyObjects` / `annToRLE`).

pub mod iou;
pub mod polygon;
pub mod rle;
pub mod segmentation;
pub mod string;

pub use iou::{bbox_iou, iou};
pub use rle::{MergeOp, Rle};
pub use segmentation::{segmentation_to_rle, segmentation_to_rle_into};
