//! Per-(image, category) matching: pycocotools `COCOeval.computeIoU` and
//! `COCOeval.evaluateImg` (`cocoeval.py`), for every area range at once.
//!
//! Shape letters: T IoU thresholds, A area ranges, D detections of a cell
//! (score order, at most `maxDets[-1]`), G ground truths of a cell, N
//! detections of a category over all images.
//!
//! Reproduced exactly, quirk ids from vernier's pycocotools survey:
//! - A4: GT are stably sorted so ignored ones come last;
//! - B1: a detection matches at IoU == threshold (`iou < min(t, 1 - 1e-10)` skips);
//! - B2: on equal IoU the later GT (in sorted order) wins;
//! - B3: once a non-ignored GT is matched, the scan stops at the first ignored one;
//! - B4: a crowd GT can absorb any number of detections;
//! - B6, C7: a detection matched to an ignored GT is ignored (neither TP nor FP);
//! - B7: an unmatched detection outside the area range is ignored, a matched one is not;
//! - D1: a GT is ignored iff `iscrowd` or its area is outside the range (bounds inclusive, D6);
//! - the id-0 trap: `dtMatches` stores the GT's id and `0` means unmatched, so a
//!   detection matched to a GT with id 0 counts as unmatched (FP, and area-ignorable)
//!   while the GT is still taken (`gtMatches` holds the detection's id, >= 1).
//!
//! Each cell's IoU matrix is computed once (`self.ious[imgId, catId]`) with
//! [`crate::mask::bbox_iou`] or the mask IoU of [`crate::mask::iou()`] into a
//! per-thread buffer; for segm the cell's masks are decoded (detections) and
//! rasterised (GT) into per-thread buffers right there, so no mask outlives
//! its cell. Cells are evaluated in parallel by category. The greedy scan
//! visits only detections whose best IoU reaches a threshold, and an area
//! range whose GT ignore flags equal an earlier range's reuses its result
//! (the matching depends on the range only through them).

use rayon::prelude::*;

use super::params::{AreaRange, IouType, Params};
use super::prepare::Prepared;
use crate::mask;
use crate::types::{CategoryId, ImageId};
use crate::Error;

/// The result of matching: per category, every kept detection's flags for
/// every (area range, IoU threshold) — pycocotools' `evalImgs`, without `None`s.
#[derive(Debug, Clone)]
pub struct EvalGrid {
    /// Boxes or masks.
    pub iou_type: IouType,
    /// The parameters used.
    pub params: Params,
    /// Sorted GT image ids (`p.imgIds`).
    pub image_ids: Vec<ImageId>,
    /// Sorted GT category ids (`p.catIds`); `categories[k]` belongs to `category_ids[k]`.
    pub category_ids: Vec<CategoryId>,
    /// One entry per category.
    pub categories: Vec<CategoryEval>,
    /// Detections dropped because their category is not in the GT:
    /// (count, index in the results file of the first).
    pub dropped_detections: (usize, Option<usize>),
}

/// The matching results of one category over all images (see [`EvalGrid`]).
///
/// Detections are listed by image (sorted ids), then by descending score: the
/// order of pycocotools' `np.concatenate([e['dtScores'] for e in E])`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoryEval {
    /// Cells (images) with at least one GT or detection: the non-`None` `evalImgs`.
    pub n_cells: usize,
    /// Non-ignored GT per area range, summed over images (`npig`) \[A\].
    pub npig: Vec<u64>,
    /// Detection scores \[N\].
    pub dt_score: Vec<f64>,
    /// Position of each detection in its image's score order \[N\] (for the `maxDets` cut).
    pub dt_rank: Vec<u32>,
    /// Bit t set: matched at threshold t to a GT with non-zero id \[N × A\], index `n * A + a`.
    pub dt_matched: Vec<u32>,
    /// Bit t set: ignored at threshold t \[N × A\], index `n * A + a`.
    pub dt_ignored: Vec<u32>,
}

/// Per-thread buffers, reused across cells so matching allocates nothing per cell.
#[derive(Debug, Default)]
struct Scratch {
    ious: Vec<f64>,
    gt_ignored: Vec<bool>,
    gt_order: Vec<u32>,
    gt_taken: Vec<bool>,
    matched: Vec<u32>,
    ignored: Vec<u32>,
    /// Best IoU of each detection over all GT of the cell (NaN read as +inf).
    row_max: Vec<f64>,
    /// Detections whose best IoU reaches the lowest threshold: the only ones
    /// the greedy scan has to visit.
    candidates: Vec<u32>,
    /// Per area range: the greedy result before the detection-area rule
    /// \[A × D\], so a range whose GT ignore flags equal an earlier range's
    /// reuses it.
    area_matched: Vec<u32>,
    area_ignored: Vec<u32>,
    area_valid: Vec<u32>,
    /// Segm: the cell's masks, decoded per cell into reused buffers.
    dt_masks: Vec<mask::Rle>,
    gt_masks: Vec<mask::Rle>,
    gt_facts: Vec<mask::iou::MaskFacts>,
    dt_facts: Vec<mask::iou::MaskFacts>,
    /// The cell's detection areas.
    dt_area: Vec<f64>,
}

/// One cell's inputs, GT in file order and detections in score order.
pub(crate) struct Cell<'a> {
    /// IoU matrix, dt-major \[D × G\].
    pub ious: &'a [f64],
    /// GT areas \[G\].
    pub gt_area: &'a [f64],
    /// GT crowd flags \[G\].
    pub gt_crowd: &'a [bool],
    /// GT ids are non-zero \[G\].
    pub gt_id_nonzero: &'a [bool],
    /// Detection areas \[D\].
    pub dt_area: &'a [f64],
}

/// Runs the matching over all cells.
///
/// # Errors
/// Mask errors of [`crate::mask::iou`] (masks of different sizes in one cell).
pub(crate) fn evaluate_prepared(prep: &Prepared, iou_type: IouType, params: &Params) -> Result<EvalGrid, Error> {
    let n_images = prep.n_images();
    let categories = (0..prep.category_ids.len())
        .into_par_iter()
        .map_init(Scratch::default, |scratch, k| evaluate_category(prep, iou_type, params, k * n_images, n_images, scratch))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EvalGrid {
        iou_type,
        params: params.clone(),
        image_ids: prep.image_ids.clone(),
        category_ids: prep.category_ids.clone(),
        categories,
        dropped_detections: prep.dropped,
    })
}

/// Matches every image of one category (cells `first_cell..first_cell + n_images`).
fn evaluate_category(
    prep: &Prepared,
    iou_type: IouType,
    params: &Params,
    first_cell: usize,
    n_images: usize,
    scratch: &mut Scratch,
) -> Result<CategoryEval, Error> {
    let n_areas = params.area_rngs.len();
    let (d0, d1) = (prep.dt_start[first_cell] as usize, prep.dt_start[first_cell + n_images] as usize);
    let n = d1 - d0;
    let mut out = CategoryEval {
        n_cells: 0,
        npig: vec![0; n_areas],
        dt_score: prep.dt_score[d0..d1].to_vec(),
        dt_rank: Vec::with_capacity(n),
        dt_matched: vec![0; n * n_areas],
        dt_ignored: vec![0; n * n_areas],
    };
    for c in first_cell..first_cell + n_images {
        let gt = prep.gt_start[c] as usize..prep.gt_start[c + 1] as usize;
        let dt = prep.dt_start[c] as usize..prep.dt_start[c + 1] as usize;
        if gt.is_empty() && dt.is_empty() {
            continue;
        }
        out.n_cells += 1;
        out.dt_rank.extend(0..dt.len() as u32);
        let (n_dt, n_gt) = (dt.len(), gt.len());
        scratch.ious.clear();
        scratch.ious.resize(n_dt * n_gt, 0.0);
        if iou_type == IouType::Segm && n_dt > 0 {
            // Every kept detection's mask is decoded and checked, also in
            // cells without GT (its area is needed there).
            prep.cell_dt_masks(dt.clone(), &mut scratch.dt_masks, &mut scratch.dt_facts)?;
        }
        if n_dt > 0 && n_gt > 0 {
            match iou_type {
                IouType::Bbox => {
                    mask::bbox_iou(&prep.dt_bbox[dt.clone()], &prep.gt_bbox[gt.clone()], &prep.gt_crowd[gt.clone()], &mut scratch.ious)?
                }
                IouType::Segm => {
                    prep.cell_gt_masks(gt.clone(), &mut scratch.gt_masks, &mut scratch.gt_facts)?;
                    mask::iou::iou_with_facts(
                        &scratch.dt_masks[..n_dt],
                        &scratch.dt_facts,
                        &scratch.gt_masks[..n_gt],
                        &scratch.gt_facts,
                        &prep.gt_crowd[gt.clone()],
                        &mut scratch.ious,
                    )?
                }
            }
        }
        let ious = std::mem::take(&mut scratch.ious);
        let mut dt_area = std::mem::take(&mut scratch.dt_area);
        dt_area.clear();
        if prep.dt_area_in_cells {
            dt_area.extend(scratch.dt_facts.iter().take(n_dt).map(|f| f.area as f64));
        } else {
            dt_area.extend_from_slice(&prep.dt_area[dt.clone()]);
        }
        let cell = Cell {
            ious: &ious,
            gt_area: &prep.gt_area[gt.clone()],
            gt_crowd: &prep.gt_crowd[gt.clone()],
            gt_id_nonzero: &prep.gt_id_nonzero[gt.clone()],
            dt_area: &dt_area,
        };
        let base = dt.start - d0;
        find_candidates(&cell, &params.iou_thrs, scratch);
        scratch.area_matched.clear();
        scratch.area_matched.resize(n_areas * n_dt, 0);
        scratch.area_ignored.clear();
        scratch.area_ignored.resize(n_areas * n_dt, 0);
        scratch.area_valid.clear();
        for (a, area) in params.area_rngs.iter().enumerate() {
            // The greedy matching depends on the area range only through the GT
            // ignore flags: reuse an earlier range's result when they agree.
            let same = (0..a).find(|&b| same_gt_ignored(&cell, area, &params.area_rngs[b]));
            let n_valid = match same {
                Some(b) => {
                    scratch.area_matched.copy_within(b * n_dt..(b + 1) * n_dt, a * n_dt);
                    scratch.area_ignored.copy_within(b * n_dt..(b + 1) * n_dt, a * n_dt);
                    scratch.area_valid[b]
                }
                None => {
                    let n_valid = greedy_match(&cell, area, &params.iou_thrs, scratch);
                    scratch.area_matched[a * n_dt..(a + 1) * n_dt].copy_from_slice(&scratch.matched);
                    scratch.area_ignored[a * n_dt..(a + 1) * n_dt].copy_from_slice(&scratch.ignored);
                    n_valid
                }
            };
            scratch.area_valid.push(n_valid);
            out.npig[a] += u64::from(n_valid);
            let all_bits = threshold_bits(params.iou_thrs.len());
            for d in 0..n_dt {
                let matched = scratch.area_matched[a * n_dt + d];
                let mut ignored = scratch.area_ignored[a * n_dt + d];
                if area.excludes(cell.dt_area[d]) {
                    // Unmatched (dtm == 0) and outside the range: ignored.
                    ignored |= all_bits & !matched;
                }
                out.dt_matched[(base + d) * n_areas + a] = matched;
                out.dt_ignored[(base + d) * n_areas + a] = ignored;
            }
        }
        scratch.ious = ious;
        scratch.dt_area = dt_area;
    }
    Ok(out)
}

/// A mask with bit t set for each of `n` thresholds.
fn threshold_bits(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// True if every GT of the cell is ignored under range `a` exactly when it is
/// under range `b` (then the greedy matching is the same for both).
fn same_gt_ignored(cell: &Cell<'_>, a: &AreaRange, b: &AreaRange) -> bool {
    cell.gt_crowd.iter().zip(cell.gt_area).all(|(&crowd, &area)| crowd || a.excludes(area) == b.excludes(area))
}

/// Fills `scratch.row_max` (each detection's best IoU, NaN as +inf since
/// `row[g] < best` is false for NaN) and `scratch.candidates` (detections
/// whose best IoU reaches the lowest effective threshold). A detection whose
/// best IoU is below a threshold's `min(t, 1 - 1e-10)` passes no GT in the
/// greedy scan at that threshold, so skipping it changes nothing.
fn find_candidates(cell: &Cell<'_>, iou_thrs: &[f64], scratch: &mut Scratch) {
    let (n_gt, n_dt) = (cell.gt_area.len(), cell.dt_area.len());
    let lowest = iou_thrs.iter().map(|&t| t.min(1.0 - 1e-10)).fold(f64::INFINITY, f64::min);
    scratch.row_max.clear();
    scratch.candidates.clear();
    if n_gt == 0 {
        scratch.row_max.resize(n_dt, f64::NEG_INFINITY);
        return;
    }
    for (d, row) in cell.ious.chunks_exact(n_gt).enumerate().take(n_dt) {
        let best = row.iter().fold(f64::NEG_INFINITY, |m, &v| if v.is_nan() { f64::INFINITY } else { m.max(v) });
        scratch.row_max.push(best);
        // Neither side is NaN (NaN IoUs read as +inf; `f64::min` skips NaN thresholds).
        if best >= lowest {
            scratch.candidates.push(d as u32);
        }
    }
}

/// `evaluateImg` for one cell and one area range: fills `scratch.matched[d]`
/// and `scratch.ignored[d]` (bit t per threshold) and returns the number of
/// non-ignored GT.
#[cfg(test)]
fn match_cell(cell: &Cell<'_>, area: &AreaRange, iou_thrs: &[f64], scratch: &mut Scratch) -> u32 {
    find_candidates(cell, iou_thrs, scratch);
    let n_valid = greedy_match(cell, area, iou_thrs, scratch);
    let all_bits = threshold_bits(iou_thrs.len());
    for d in 0..cell.dt_area.len() {
        if area.excludes(cell.dt_area[d]) {
            scratch.ignored[d] |= all_bits & !scratch.matched[d];
        }
    }
    n_valid
}

/// The greedy matching of `evaluateImg` for one cell and one area range,
/// before the detection-area rule: fills `scratch.matched[d]` and
/// `scratch.ignored[d]` (bit t per threshold) and returns the number of
/// non-ignored GT. Needs [`find_candidates`] first.
fn greedy_match(cell: &Cell<'_>, area: &AreaRange, iou_thrs: &[f64], scratch: &mut Scratch) -> u32 {
    let (n_gt, n_dt) = (cell.gt_area.len(), cell.dt_area.len());
    scratch.gt_ignored.clear();
    scratch.gt_ignored.extend(cell.gt_crowd.iter().zip(cell.gt_area).map(|(&crowd, &a)| crowd || area.excludes(a)));
    // Stable sort by the ignore flag: non-ignored GT first, file order kept.
    scratch.gt_order.clear();
    scratch.gt_order.extend((0..n_gt as u32).filter(|&g| !scratch.gt_ignored[g as usize]));
    let n_valid = scratch.gt_order.len();
    scratch.gt_order.extend((0..n_gt as u32).filter(|&g| scratch.gt_ignored[g as usize]));
    scratch.matched.clear();
    scratch.matched.resize(n_dt, 0);
    scratch.ignored.clear();
    scratch.ignored.resize(n_dt, 0);
    if n_gt > 0 && n_dt > 0 && !scratch.candidates.is_empty() {
        for (t, &thr) in iou_thrs.iter().enumerate() {
            let bit = 1u32 << t;
            let floor = thr.min(1.0 - 1e-10);
            scratch.gt_taken.clear();
            scratch.gt_taken.resize(n_gt, false);
            for &d in &scratch.candidates {
                let d = d as usize;
                if scratch.row_max[d] < floor {
                    continue;
                }
                let row = &cell.ious[d * n_gt..(d + 1) * n_gt];
                let mut best = floor;
                let mut m: Option<usize> = None;
                for (j, &g) in scratch.gt_order.iter().enumerate() {
                    let g = g as usize;
                    if scratch.gt_taken[j] && !cell.gt_crowd[g] {
                        continue;
                    }
                    // Matched a non-ignored GT and reached the ignored ones: stop.
                    if m.is_some_and(|mj| mj < n_valid) && j >= n_valid {
                        break;
                    }
                    if row[g] < best {
                        continue;
                    }
                    best = row[g];
                    m = Some(j);
                }
                if let Some(mj) = m {
                    let g = scratch.gt_order[mj] as usize;
                    if mj >= n_valid {
                        scratch.ignored[d] |= bit;
                    }
                    if cell.gt_id_nonzero[g] {
                        scratch.matched[d] |= bit;
                    }
                    scratch.gt_taken[mj] = true;
                }
            }
        }
    }
    n_valid as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: AreaRange = AreaRange { label: "all", lo: 0.0, hi: 1e10 };

    fn run(ious: &[f64], gt_area: &[f64], crowd: &[bool], nonzero: &[bool], dt_area: &[f64], thr: &[f64], area: &AreaRange) -> (Vec<u32>, Vec<u32>, u32) {
        let cell = Cell { ious, gt_area, gt_crowd: crowd, gt_id_nonzero: nonzero, dt_area };
        let mut s = Scratch::default();
        let npig = match_cell(&cell, area, thr, &mut s);
        (s.matched, s.ignored, npig)
    }

    #[test]
    fn b1_iou_exactly_at_threshold_matches() {
        let (m, ig, npig) = run(&[0.5], &[100.0], &[false], &[true], &[100.0], &[0.5, 0.55], &ALL);
        assert_eq!((m, ig, npig), (vec![0b01], vec![0], 1));
    }

    #[test]
    fn b1_iou_one_matches_at_threshold_one() {
        // min(t, 1 - 1e-10): a perfect match still matches at t = 1.0.
        let (m, _, _) = run(&[1.0], &[100.0], &[false], &[true], &[100.0], &[1.0], &ALL);
        assert_eq!(m, vec![1]);
    }

    #[test]
    fn b2_later_gt_wins_equal_iou() {
        // Two GT with equal IoU: the second takes detection 0, the first detection 1.
        let (m, _, _) = run(&[0.6, 0.6, 0.6, 0.6], &[1.0, 1.0], &[false, false], &[false, true], &[1.0, 1.0], &[0.5], &ALL);
        // Detection 0 matched GT 1 (id non-zero), detection 1 matched GT 0 (id 0: looks unmatched).
        assert_eq!(m, vec![1, 0]);
    }

    #[test]
    fn b3_ignored_gt_not_considered_after_a_valid_match() {
        // GT 0 crowd (ignored, sorted last) with IoU 0.9; GT 1 valid with IoU 0.6.
        let (m, ig, npig) = run(&[0.9, 0.6], &[1.0, 1.0], &[true, false], &[true, true], &[1.0], &[0.5], &ALL);
        assert_eq!((m, ig, npig), (vec![1], vec![0], 1));
    }

    #[test]
    fn b4_crowd_gt_absorbs_many_detections_which_are_ignored() {
        let (m, ig, npig) = run(&[0.7, 0.8, 0.9], &[1.0], &[true], &[true], &[1.0, 1.0, 1.0], &[0.5], &ALL);
        assert_eq!((m, ig, npig), (vec![1, 1, 1], vec![1, 1, 1], 0));
    }

    #[test]
    fn b7_matched_detection_outside_area_range_stays_a_true_positive() {
        let small = AreaRange { label: "small", lo: 0.0, hi: 1024.0 };
        // GT area 1024 (in range, inclusive); dt 0 matched with area 5000; dt 1 unmatched, area 5000.
        let (m, ig, npig) = run(&[0.8, 0.1], &[1024.0], &[false], &[true], &[5000.0, 5000.0], &[0.5], &small);
        assert_eq!((m, ig, npig), (vec![1, 0], vec![0, 1], 1));
    }

    #[test]
    fn id_zero_gt_match_counts_as_unmatched_but_takes_the_gt() {
        // GT id 0 matched by dt 0: dt 0 looks unmatched; dt 1 cannot take the GT.
        let small = AreaRange { label: "small", lo: 0.0, hi: 10.0 };
        let (m, ig, _) = run(&[0.9, 0.9], &[5.0], &[false], &[false], &[50.0, 50.0], &[0.5], &small);
        // Both unmatched in dtm and outside the range: both area-ignored.
        assert_eq!((m, ig), (vec![0, 0], vec![1, 1]));
    }

    #[test]
    fn d6_gt_on_area_boundary_belongs_to_both_ranges() {
        let medium = AreaRange { label: "medium", lo: 1024.0, hi: 9216.0 };
        let small = AreaRange { label: "small", lo: 0.0, hi: 1024.0 };
        assert_eq!(run(&[], &[1024.0], &[false], &[true], &[], &[0.5], &medium).2, 1);
        assert_eq!(run(&[], &[1024.0], &[false], &[true], &[], &[0.5], &small).2, 1);
    }
}
