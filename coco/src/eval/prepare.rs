//! Inputs of the evaluation laid out by (category, image) cell: pycocotools
//! `COCO.loadRes` (`coco.py`) and `COCOeval._prepare` / the first half of
//! `computeIoU` (`cocoeval.py`).
//!
//! Shape letters: I images (GT ids, sorted), K categories (GT ids, sorted),
//! cell `c = k * I + i`.
//!
//! What is reproduced:
//! - `loadRes` branches on the **first** entry (quirk J6): if it has a `bbox`,
//!   every detection's area is `w * h` of its box (even in a segm evaluation);
//!   otherwise every detection needs a `segmentation`, its area is the mask area
//!   and a missing `bbox` is `toBbox(mask)`. Detection ids are `index + 1` and
//!   `iscrowd` is 0 (quirks J1, E2); ids only matter as "non-zero" there.
//! - An empty detection list (only possible in memory: [`Results::load`]
//!   refuses a `[]` file, as `loadRes` fails on one) is scored as `COCOeval`
//!   scores a detection set with no annotation: precision and recall 0 where
//!   there is GT, -1 elsewhere.
//! - Detections on images outside the GT are an error (`loadRes` asserts);
//!   detections of categories outside the GT are dropped (`getAnnIds(catIds=...)`)
//!   and counted.
//! - Within a cell, GT keep file order; detections are sorted by descending
//!   score with ties in file order (`np.argsort(-scores, kind='mergesort')`,
//!   quirk A1) and cut to `maxDets[-1]` per (image, category), not per image.
//! - GT `area` is read verbatim, never recomputed (COCO's is the mask area).
//!
//! Deliberate deviations: masks are decoded only for detections that survive
//! the `maxDets` cut and GT in cells that have detections (pycocotools converts
//! all; a malformed mask nothing is compared with is not reported); a detection
//! mask whose size differs from its image's is an error (pycocotools scores it -1).

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;

use super::params::{IouType, Params};
use crate::dataset::Dataset;
use crate::mask::iou::MaskFacts;
use crate::mask::segmentation::decode_into;
use crate::mask::Rle;
use crate::results::Results;
use crate::types::{CategoryId, DetectionResult, ImageId, Segmentation};
use crate::Error;

/// Marks a detection whose category is not in the ground truth.
const NO_CELL: u32 = u32::MAX;

/// The evaluation's inputs in cell order (see the module doc).
#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    /// The ground truth (GT masks are rasterised per cell, from here).
    gt: &'a Dataset,
    /// The results file (names it in errors).
    results_path: &'a Path,
    /// The detections in file order.
    dets: &'a [DetectionResult],
    /// File index of each kept detection, cell order.
    dt_index: Vec<u32>,
    /// Segm of mask results: `dt_area` is empty and the areas come from
    /// [`Prepared::cell_dt_masks`] (the mask areas, as `loadRes` sets them).
    pub dt_area_in_cells: bool,
    /// Annotation index of each GT, cell order.
    gt_index: Vec<u32>,
    /// Sorted GT image ids (`p.imgIds`).
    pub image_ids: Vec<ImageId>,
    /// Sorted GT category ids (`p.catIds`).
    pub category_ids: Vec<CategoryId>,
    /// `gt_start[c]..gt_start[c + 1]` are cell c's GT in the `gt_*` arrays.
    pub gt_start: Vec<u32>,
    /// GT boxes `[x, y, w, h]`, cell order (file order within a cell).
    pub gt_bbox: Vec<[f64; 4]>,
    /// GT areas as written in the file.
    pub gt_area: Vec<f64>,
    /// GT crowd flags (also pycocotools' `ignore`, quirk D1).
    pub gt_crowd: Vec<bool>,
    /// False for GT with id 0, which pycocotools' `dtm` cannot tell from "unmatched".
    pub gt_id_nonzero: Vec<bool>,
    /// `dt_start[c]..dt_start[c + 1]` are cell c's kept detections in the `dt_*` arrays.
    pub dt_start: Vec<u32>,
    /// Detection scores, cell order, descending within a cell.
    pub dt_score: Vec<f64>,
    /// Detection boxes as `loadRes` leaves them (zeros for mask results
    /// without boxes in a segm evaluation, which does not read them).
    pub dt_bbox: Vec<[f64; 4]>,
    /// Detection areas as `loadRes` sets them (empty if `dt_area_in_cells`).
    pub dt_area: Vec<f64>,
    /// Detections dropped for an unknown category: (count, first file index).
    pub dropped: (usize, Option<usize>),
}

/// The `loadRes` branch, chosen by the first entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    /// Boxes: area = w * h.
    Box,
    /// Masks: area = mask area, bbox = given or toBbox(mask).
    Mask,
}

/// id -> position lookup: a dense table when ids are compact, else a hash map.
struct IdIndex {
    min: i64,
    dense: Vec<u32>,
    sparse: HashMap<i64, u32>,
}

impl IdIndex {
    /// Indexes `sorted_ids` (ascending, unique) by their position.
    fn new(sorted_ids: &[i64]) -> Self {
        let (min, max) = match (sorted_ids.first(), sorted_ids.last()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => return IdIndex { min: 0, dense: Vec::new(), sparse: HashMap::new() },
        };
        let span = max.abs_diff(min);
        if span < 4 * sorted_ids.len() as u64 + 1024 {
            let mut dense = vec![NO_CELL; span as usize + 1];
            for (pos, &id) in sorted_ids.iter().enumerate() {
                if let Some(slot) = dense.get_mut(id.abs_diff(min) as usize) {
                    *slot = pos as u32;
                }
            }
            IdIndex { min, dense, sparse: HashMap::new() }
        } else {
            let sparse = sorted_ids.iter().enumerate().map(|(pos, &id)| (id, pos as u32)).collect();
            IdIndex { min, dense: Vec::new(), sparse }
        }
    }

    /// Position of `id`, if indexed.
    fn get(&self, id: i64) -> Option<u32> {
        if self.dense.is_empty() {
            return self.sparse.get(&id).copied();
        }
        if id < self.min {
            return None;
        }
        self.dense.get(id.abs_diff(self.min) as usize).copied().filter(|&p| p != NO_CELL)
    }
}

/// Counting sort of items into cells: returns (`start`, order) where
/// `order[start[c]..start[c+1]]` are the items of cell c in input order.
fn bucket(cells: &[u32], n_cells: usize) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; n_cells + 1];
    for &c in cells {
        if let Some(s) = start.get_mut(c as usize + 1) {
            *s += 1;
        }
    }
    for c in 0..n_cells {
        start[c + 1] += start[c];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; start[n_cells] as usize];
    for (item, &c) in cells.iter().enumerate() {
        if let Some(slot) = next.get_mut(c as usize) {
            order[*slot as usize] = item as u32;
            *slot += 1;
        }
    }
    (start, order)
}

impl<'a> Prepared<'a> {
    /// Lays out GT and detections by cell, applying `loadRes` and `_prepare`.
    ///
    /// # Errors
    /// [`Error::ResultUnknownImage`], [`Error::ResultMissingField`],
    /// [`Error::ResultsWithoutMasks`]; for a bbox evaluation of mask results
    /// also [`Error::ResultMask`] and [`Error::ResultMaskSize`] (a segm
    /// evaluation reports mask errors from [`Prepared::cell_dt_masks`] and
    /// [`Prepared::cell_gt_masks`]; see the module doc).
    pub fn new(gt: &'a Dataset, results: &'a Results, iou_type: IouType, params: &Params) -> Result<Prepared<'a>, Error> {
        let path = results.path.as_path();
        let dets = &results.detections;
        let branch = match dets.first() {
            // A model that detected nothing: scored as COCOeval scores a
            // detection set without annotations (AP 0 where there is GT).
            None if iou_type == IouType::Bbox => Branch::Box,
            None => Branch::Mask,
            Some(first) if first.bbox.is_some() => Branch::Box,
            Some(first) if first.segmentation.is_some() => Branch::Mask,
            Some(_) => {
                return Err(Error::ResultMissingField {
                    path: path.to_path_buf(),
                    index: 0,
                    field: "bbox",
                    why: "a detection needs a bbox or a segmentation",
                })
            }
        };
        if iou_type == IouType::Segm && branch == Branch::Box && !results.has_masks() {
            return Err(Error::ResultsWithoutMasks { path: path.to_path_buf() });
        }

        // Sorted and unique, as COCOeval's `params.imgIds` / `np.unique(catIds)`.
        let mut image_ids: Vec<ImageId> = gt.images().iter().map(|im| im.id).collect();
        image_ids.sort_unstable();
        image_ids.dedup();
        let mut category_ids: Vec<CategoryId> = gt.categories().iter().map(|c| c.id).collect();
        category_ids.sort_unstable();
        category_ids.dedup();
        let image_index = IdIndex::new(&image_ids.iter().map(|i| i.0).collect::<Vec<_>>());
        let category_index = IdIndex::new(&category_ids.iter().map(|c| c.0).collect::<Vec<_>>());
        let n_images = image_ids.len();
        let n_cells = n_images * category_ids.len();
        let cell_of = |image: ImageId, category: CategoryId| -> Option<u32> {
            let i = image_index.get(image.0)?;
            let k = category_index.get(category.0)?;
            Some(k * n_images as u32 + i)
        };

        // Ground truth: annotations on undeclared images or categories fall in no cell.
        let anns = gt.annotations();
        let cell_of_ann = |a: &crate::types::Annotation| cell_of(a.image_id, a.category_id).unwrap_or(NO_CELL);
        let (gt_start, gt_order) = if gt.has_duplicate_annotation_ids() {
            // pycocotools lists the annotations of each evaluated image (in id
            // order, file order within an image) and of an evaluated category,
            // then `loadAnns` replaces each by the last one with its id, which
            // lands in that one's own (image, category) cell.
            let mut listed: Vec<u32> = (0..anns.len() as u32).filter(|&j| cell_of_ann(&anns[j as usize]) != NO_CELL).collect();
            listed.sort_by_key(|&j| image_index.get(anns[j as usize].image_id.0));
            let evaluated: Vec<u32> = listed.iter().map(|&j| gt.evaluated_annotation(j as usize) as u32).collect();
            if iou_type == IouType::Segm {
                if let Some(a) = evaluated.iter().map(|&j| &anns[j as usize]).find(|a| gt.image(a.image_id).is_none()) {
                    return Err(Error::EvaluatedAnnotationOnUnknownImage { path: gt.path().to_path_buf(), ann_id: a.id, image_id: a.image_id });
                }
            }
            let cells: Vec<u32> = evaluated.iter().map(|&j| cell_of_ann(&anns[j as usize])).collect();
            let (start, order) = bucket(&cells, n_cells);
            (start, order.iter().map(|&slot| evaluated[slot as usize]).collect())
        } else {
            let cells: Vec<u32> = anns.iter().map(cell_of_ann).collect();
            bucket(&cells, n_cells)
        };
        let gt_ann = |j: &u32| &anns[*j as usize];

        // Detections: check images, bucket by cell, sort by score, cut at maxDets[-1].
        let mut unknown_image = (0usize, None);
        let mut dropped = (0usize, None);
        // Scores in a compact array: the per-cell sorts below gather them in
        // cell order, which is far from file order.
        let scores: Vec<f64> = dets.iter().map(|d| d.score).collect();
        let dt_cells: Vec<u32> = dets
            .iter()
            .enumerate()
            .map(|(index, d)| {
                if image_index.get(d.image_id.0).is_none() {
                    unknown_image.0 += 1;
                    unknown_image.1.get_or_insert((index, d.image_id));
                    return NO_CELL;
                }
                cell_of(d.image_id, d.category_id).unwrap_or_else(|| {
                    dropped.0 += 1;
                    dropped.1.get_or_insert(index);
                    NO_CELL
                })
            })
            .collect();
        if let (count, Some((index, image_id))) = unknown_image {
            return Err(Error::ResultUnknownImage { path: path.to_path_buf(), count, index, image_id });
        }
        if branch == Branch::Box {
            if let Some(index) = dets.iter().position(|d| d.bbox.is_none()) {
                return Err(Error::ResultMissingField {
                    path: path.to_path_buf(),
                    index,
                    field: "bbox",
                    why: "the first entry has one, so loadRes reads every entry as a box result",
                });
            }
        }
        let (all_start, all_order) = bucket(&dt_cells, n_cells);
        let max_det = params.max_det();
        // Per category (in parallel): sort each image's detections, keep maxDets[-1].
        let per_category: Vec<(Vec<u32>, Vec<u32>)> = (0..category_ids.len())
            .into_par_iter()
            .map(|k| {
                let mut kept = Vec::new();
                let mut ends = Vec::with_capacity(n_images);
                let mut keys: Vec<u128> = Vec::new();
                for c in k * n_images..(k + 1) * n_images {
                    let cell = &all_order[all_start[c] as usize..all_start[c + 1] as usize];
                    // Ties keep file order: the key's low bits are the file index.
                    keys.clear();
                    keys.extend(cell.iter().map(|&j| packed_key(scores[j as usize], j)));
                    keys.sort_unstable();
                    kept.extend(keys.iter().take(max_det).map(|&key| key as u32));
                    ends.push(kept.len() as u32);
                }
                (kept, ends)
            })
            .collect();
        let mut dt_start = Vec::with_capacity(n_cells + 1);
        dt_start.push(0u32);
        let mut kept: Vec<u32> = Vec::with_capacity(per_category.iter().map(|(k, _)| k.len()).sum());
        for (cat_kept, ends) in &per_category {
            let base = kept.len() as u32;
            dt_start.extend(ends.iter().map(|&e| base + e));
            kept.extend_from_slice(cat_kept);
        }
        drop(per_category);
        // A bbox evaluation of mask results decodes and checks every kept
        // detection's mask here, into a per-job buffer, for its box and area
        // (`loadRes`). A segm evaluation does that in the detection's cell
        // (`cell_dt_masks`), where it needs the mask anyway: the masks are
        // decoded once and never all held in memory.
        let dt_area_in_cells = iou_type == IouType::Segm && branch == Branch::Mask;
        let dt_mask_facts: Vec<MaskFacts> = if iou_type == IouType::Bbox && branch == Branch::Mask {
            kept.par_iter()
                .map_init(Rle::default, |mask, &j| {
                    detection_mask_into(gt, path, j as usize, &dets[j as usize], mask)
                })
                .collect::<Result<_, Error>>()?
        } else {
            Vec::new()
        };
        let dt_score: Vec<f64> = kept.iter().map(|&j| scores[j as usize]).collect();
        drop(scores);
        let dt_bbox: Vec<[f64; 4]> = kept
            .iter()
            .enumerate()
            .map(|(pos, &j)| match (dets[j as usize].bbox, dt_mask_facts.get(pos)) {
                (Some(b), _) => b,
                (None, Some(facts)) => facts.bbox,
                (None, None) => [0.0; 4], // unreachable: checked above / masks decoded
            })
            .collect();
        let dt_area: Vec<f64> = match branch {
            Branch::Box => dt_bbox.iter().map(|b| b[2] * b[3]).collect(),
            // Masks are decoded for every kept detection in this branch.
            Branch::Mask if dt_area_in_cells => Vec::new(),
            Branch::Mask => dt_mask_facts.iter().map(|facts| facts.area as f64).collect(),
        };

        Ok(Prepared {
            gt,
            results_path: path,
            dets,
            image_ids,
            category_ids,
            gt_bbox: gt_order.iter().map(|j| gt_ann(j).bbox).collect(),
            gt_area: gt_order.iter().map(|j| gt_ann(j).area).collect(),
            gt_crowd: gt_order.iter().map(|j| gt_ann(j).iscrowd).collect(),
            gt_id_nonzero: gt_order.iter().map(|j| gt_ann(j).id.0 != 0).collect(),
            gt_index: gt_order,
            gt_start,
            dt_start,
            dt_score,
            dt_bbox,
            dt_area,
            dt_index: kept,
            dt_area_in_cells,
            dropped,
        })
    }

    /// Decodes and checks the masks of the detections `dt` (a range of the
    /// cell-order arrays) into the first slots of `masks`, which grows as
    /// needed and keeps its buffers across cells, and sets `facts` to theirs.
    ///
    /// # Errors
    /// [`Error::ResultMissingField`], [`Error::ResultMask`] and
    /// [`Error::ResultMaskSize`], as in `loadRes` (see [`Prepared::new`]).
    pub fn cell_dt_masks(&self, dt: std::ops::Range<usize>, masks: &mut Vec<Rle>, facts: &mut Vec<MaskFacts>) -> Result<(), Error> {
        if masks.len() < dt.len() {
            masks.resize_with(dt.len(), Rle::default);
        }
        facts.clear();
        for (slot, &j) in masks.iter_mut().zip(&self.dt_index[dt]) {
            facts.push(detection_mask_into(self.gt, self.results_path, j as usize, &self.dets[j as usize], slot)?);
        }
        Ok(())
    }

    /// [`Prepared::cell_dt_masks`] for the GT `gt`.
    ///
    /// # Errors
    /// [`Error::MissingSegmentation`], [`Error::AnnotationMask`].
    pub fn cell_gt_masks(&self, gt: std::ops::Range<usize>, masks: &mut Vec<Rle>, facts: &mut Vec<MaskFacts>) -> Result<(), Error> {
        if masks.len() < gt.len() {
            masks.resize_with(gt.len(), Rle::default);
        }
        facts.clear();
        let anns = self.gt.annotations();
        for (slot, &j) in masks.iter_mut().zip(&self.gt_index[gt]) {
            facts.push(annotation_mask_into(self.gt, &anns[j as usize], slot)?);
        }
        Ok(())
    }

    /// Number of images I.
    pub fn n_images(&self) -> usize {
        self.image_ids.len()
    }
}

/// A `u64` whose ascending order is numpy's order of `-score`
/// (`argsort(-scores)`): descending score, `-0.0` equal to `0.0`, NaN last.
/// Ties are broken by position by the callers (mergesort's stability), so a
/// sort on `(score_key, position)` reproduces `kind='mergesort'`.
pub(crate) fn score_key(score: f64) -> u64 {
    if score.is_nan() {
        return u64::MAX;
    }
    let bits = if score == 0.0 { 0u64 } else { score.to_bits() };
    // Ascending order of the float as an unsigned integer, then reversed.
    let ascending = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    !ascending
}

/// Sort key `(score_key, position)` packed in one integer.
pub(crate) fn packed_key(score: f64, position: u32) -> u128 {
    (u128::from(score_key(score)) << 32) | u128::from(position)
}

/// Decodes the mask of detection `index` (file order) into `out`, without the
/// checks [`detection_mask_into`] makes (for a mask it already checked).
fn detection_decode(gt: &Dataset, path: &Path, index: usize, d: &DetectionResult, out: &mut Rle) -> Result<bool, Error> {
    let seg = d.segmentation.as_ref().ok_or_else(|| Error::ResultMissingField {
        path: path.to_path_buf(),
        index,
        field: "segmentation",
        why: "segm evaluation, or a results file whose first entry is a mask",
    })?;
    let (h, w) = gt.image(d.image_id).map_or((0, 0), |im| (im.height, im.width));
    decode_into(seg, h, w, out).map_err(|e| Error::ResultMask { path: path.to_path_buf(), index, source: Box::new(e) })
}

/// The mask of detection `index` (file order) into `out`, checked (counts
/// sum, then size against its image's), and its facts.
fn detection_mask_into(gt: &Dataset, path: &Path, index: usize, d: &DetectionResult, out: &mut Rle) -> Result<MaskFacts, Error> {
    let check_sum = detection_decode(gt, path, index, d, out)?;
    let facts = MaskFacts::of(out);
    if check_sum && facts.sum != out.pixel_count() {
        let source = Box::new(Error::RleCountsSum { h: out.h, w: out.w, sum: facts.sum });
        return Err(Error::ResultMask { path: path.to_path_buf(), index, source });
    }
    let (h, w) = gt.image(d.image_id).map_or((0, 0), |im| (im.height, im.width));
    if [out.h, out.w] != [h, w] {
        return Err(Error::ResultMaskSize {
            path: path.to_path_buf(),
            index,
            image_id: d.image_id,
            expected: [h, w],
            found: [out.h, out.w],
        });
    }
    Ok(facts)
}

/// The mask of a GT annotation (`annToRLE`) into `out`, and its facts.
fn annotation_mask_into(gt: &Dataset, a: &crate::types::Annotation, out: &mut Rle) -> Result<MaskFacts, Error> {
    let seg: &Segmentation =
        a.segmentation.as_ref().ok_or_else(|| Error::MissingSegmentation { path: gt.path().to_path_buf(), ann_id: a.id })?;
    let (h, w) = gt.image(a.image_id).map_or((0, 0), |im| (im.height, im.width));
    let fail = |source: Error| Error::AnnotationMask { path: gt.path().to_path_buf(), ann_id: a.id, source: Box::new(source) };
    let check_sum = decode_into(seg, h, w, out).map_err(fail)?;
    let facts = MaskFacts::of(out);
    if check_sum && facts.sum != out.pixel_count() {
        return Err(fail(Error::RleCountsSum { h: out.h, w: out.w, sum: facts.sum }));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1_score_key_orders_like_numpy_argsort_of_minus_score() {
        // np.argsort(-np.array(s), kind='mergesort') for these scores: [4, 1, 2, 5, 0, 6, 3, 7].
        let s = [0.1, 0.9, 0.5, -0.2, 1.0, 0.5, -0.0, f64::NAN];
        let mut idx: Vec<u32> = (0..s.len() as u32).collect();
        idx.sort_by_key(|&i| packed_key(s[i as usize], i));
        // -0.0 ties with nothing here but sorts with 0.0's value, below 0.1.
        assert_eq!(idx, vec![4, 1, 2, 5, 0, 6, 3, 7]);
        assert_eq!(score_key(0.0), score_key(-0.0));
        assert!(score_key(f64::INFINITY) < score_key(1e308));
        assert!(score_key(f64::NEG_INFINITY) < score_key(f64::NAN));
    }

    #[test]
    fn bucket_keeps_input_order_within_cells() {
        let (start, order) = bucket(&[2, 0, 2, NO_CELL, 0, 1], 3);
        assert_eq!(start, vec![0, 2, 3, 5]);
        assert_eq!(order, vec![1, 4, 5, 0, 2]);
    }

    #[test]
    fn id_index_dense_and_sparse_agree() {
        let dense = IdIndex::new(&[3, 5, 9]);
        let sparse = IdIndex::new(&[3, 5, 9_000_000_000]);
        assert_eq!((dense.get(5), dense.get(4), dense.get(-1), dense.get(10)), (Some(1), None, None, None));
        assert_eq!((sparse.get(9_000_000_000), sparse.get(4)), (Some(2), None));
    }
}
