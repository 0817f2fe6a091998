//! COCO detection evaluation (bbox and segm), bit-compatible with pycocotools
//! 2.0.x `COCOeval` (`PythonAPI/pycocotools/cocoeval.py`, `coco.py: loadRes`).
//!
//! A value pipeline instead of `COCOeval`'s mutable fields:
//!
//! ```text
//! evaluate(&gt, &results, iou_type, &params) -> EvalGrid      // _prepare + computeIoU + evaluateImg
//! accumulate(&grid)                          -> Accumulated   // accumulate
//! summarize(&acc)                            -> Summary       // summarize (the 12 stats)
//! per_category_ap(&acc)                      -> Vec<CategoryAp>
//! ```
//!
//! | piece | mirrors | file |
//! |---|---|---|
//! | [`Params`] | `Params.setDetParams` | [`params`] |
//! | layout by (category, image), `loadRes` rules | `COCO.loadRes`, `COCOeval._prepare` | `prepare` |
//! | IoU per cell, greedy matching | `computeIoU`, `evaluateImg` | [`evaluate`](mod@evaluate) |
//! | precision / recall tables | `accumulate` | [`accumulate`](mod@accumulate) |
//! | 12 stats, per-category AP | `summarize`, `_summarize` | [`summarize`](mod@summarize) |
//!
//! Each module lists the pycocotools quirks it reproduces, by the ids of
//! vernier's survey (`docs/engineering/pycocotools-quirks.md`), and the tests
//! that pin them are named after them (`b1_iou_exactly_at_threshold_matches`,
//! `c3_...`). End-to-end equality with pycocotools (all 12 stats and sampled
//! precision entries within 1e-12) is checked by `coco/tests/eval_cases.rs` on
//! cases written by `coco/tests/fixtures/make_eval_cases.py`.
//!
//! Only `useCats = 1` (per-category matching) is implemented, as in every COCO
//! detection benchmark. [`synthetic_case`] generates realistic GT and results
//! files of any size (at COCO-val scale, the workload `vitdet bench coco` and
//! `coco/bench/peers.py` time).
//!
//! Deliberate deviations, all on input pycocotools mishandles: a results file
//! whose entries lack the field the first entry chose (`bbox` / `segmentation`)
//! is an error instead of a `KeyError`; a segm evaluation of box-only results is
//! an error instead of scoring the box rectangles as masks; a mask whose size
//! differs from its image's is an error instead of IoU -1 (see `prepare`).

pub mod accumulate;
pub mod evaluate;
pub mod params;
mod prepare;
pub mod summarize;
pub mod synthetic_case;

pub use accumulate::{accumulate, Accumulated};
pub use evaluate::{CategoryEval, EvalGrid};
pub use params::{AreaRange, IouType, Params};
pub use summarize::{per_category_ap, summarize, CategoryAp, Summary};

use crate::dataset::Dataset;
use crate::results::Results;
use crate::Error;

/// Matches `results` against `gt` for every (image, category) cell and area
/// range: pycocotools `COCOeval(gt, gt.loadRes(results), iou_type).evaluate()`.
///
/// # Errors
/// [`Error::Params`] for invalid parameters; the `loadRes` errors of a results
/// file that pycocotools would reject (detections on unknown images, a missing
/// `bbox` or `segmentation`); mask errors of a segm evaluation (a GT or
/// detection mask that cannot be decoded, results without masks).
pub fn evaluate(gt: &Dataset, results: &Results, iou_type: IouType, params: &Params) -> Result<EvalGrid, Error> {
    params.validate()?;
    let prepared = prepare::Prepared::new(gt, results, iou_type, params)?;
    evaluate::evaluate_prepared(&prepared, iou_type, params)
}
