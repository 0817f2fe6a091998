//! Precision / recall tables: pycocotools `COCOeval.accumulate` (`cocoeval.py`).
//!
//! Shape letters: T IoU thresholds, R recall thresholds, K categories, A area
//! ranges, M max-dets values. `precision` and `scores` are \[T × R × K × A × M\]
//! and `recall` is \[T × K × A × M\], row-major as the numpy arrays.
//!
//! Reproduced exactly:
//! - cells with no images (all `evalImgs` `None`) or no non-ignored GT (`npig == 0`)
//!   stay **-1** and are excluded from means (quirk C5);
//! - detections are cut to `maxDet` per image *before* the category-wide sort,
//!   which is stable on `-score` (`argsort(kind='mergesort')`): the category's
//!   detections are sorted once, and the cut for each `maxDet` filters that order;
//! - `pr = tp / (tp + fp + np.spacing(1))` with `np.spacing(1) = f64::EPSILON` (C8);
//!   `rc = tp / npig`; recall is the last `rc`, not an integral (C4);
//! - the precision envelope runs right to left, then `np.searchsorted(rc, recThrs,
//!   side='left')` picks the first index with `rc >= r`; recall thresholds past
//!   the last index stay **0**, not -1 (the swallowed `IndexError`, C3), as does
//!   every entry of a cell with GT but no detections.

use rayon::prelude::*;

use super::evaluate::{CategoryEval, EvalGrid};
use super::params::{IouType, Params};
use super::prepare::packed_key;
use crate::types::CategoryId;

/// pycocotools' `np.spacing(1)`, added to `tp + fp` so that 0 / 0 never occurs.
const SPACING_1: f64 = f64::EPSILON;

/// Accumulated precision, recall and score tables (`COCOeval.eval`).
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulated {
    /// Boxes or masks.
    pub iou_type: IouType,
    /// The parameters used.
    pub params: Params,
    /// Category ids, in the K order of the tables.
    pub category_ids: Vec<CategoryId>,
    /// Interpolated precision \[T × R × K × A × M\]; -1 where undefined.
    pub precision: Vec<f64>,
    /// Final recall \[T × K × A × M\]; -1 where undefined.
    pub recall: Vec<f64>,
    /// Score of the detection at which each precision entry was read \[T × R × K × A × M\].
    pub scores: Vec<f64>,
}

impl Accumulated {
    /// `[T, R, K, A, M]`.
    pub fn dims(&self) -> [usize; 5] {
        let p = &self.params;
        [p.iou_thrs.len(), p.rec_thrs.len(), self.category_ids.len(), p.area_rngs.len(), p.max_dets.len()]
    }

    /// Flat index of `precision[t, r, k, a, m]` (also for `scores`).
    pub fn precision_index(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        let [_, nr, nk, na, nm] = self.dims();
        (((t * nr + r) * nk + k) * na + a) * nm + m
    }

    /// Flat index of `recall[t, k, a, m]`.
    pub fn recall_index(&self, t: usize, k: usize, a: usize, m: usize) -> usize {
        let [_, _, nk, na, nm] = self.dims();
        ((t * nk + k) * na + a) * nm + m
    }
}

/// One category's part of the tables, written in place: its \[A × M\] block
/// of every (t, r) row of `precision` and `scores` (in (t, r) order) and of
/// every t row of `recall`.
struct CategoryTables<'a> {
    precision: Vec<&'a mut [f64]>,
    recall: Vec<&'a mut [f64]>,
    scores: Vec<&'a mut [f64]>,
}

/// Splits a table whose rows are \[K × A × M\] into each category's blocks,
/// row by row: `blocks[k][row]` is category k's \[A × M\] block of that row.
fn category_blocks(table: &mut [f64], nk: usize, block: usize) -> Vec<Vec<&mut [f64]>> {
    let mut blocks: Vec<Vec<&mut [f64]>> = (0..nk).map(|_| Vec::new()).collect();
    if nk > 0 && block > 0 {
        for row in table.chunks_mut(nk * block) {
            for (k, b) in row.chunks_mut(block).enumerate() {
                blocks[k].push(b);
            }
        }
    }
    blocks
}

/// Per-thread buffers.
#[derive(Default)]
struct Scratch {
    keys: Vec<u128>,
    order: Vec<u32>,
    /// The category's detections in score order: per-image rank, score, and
    /// (matched, ignored) flags \[N × A\], gathered once so that the passes
    /// below read memory in order.
    rank: Vec<u32>,
    score: Vec<f64>,
    flags: Vec<(u32, u32)>,
    /// Positions (in score order) of the detections within the current maxDet.
    selected: Vec<u32>,
    /// Per threshold: for the k-th true positive (tp = k + 1), the false
    /// positives before it and its position in `selected`.
    events: Vec<Vec<(u32, u32)>>,
    /// Envelope values at the events of one threshold.
    env: Vec<f64>,
}

/// `COCOeval.accumulate`: turns matching results into precision / recall tables.
pub fn accumulate(grid: &EvalGrid) -> Accumulated {
    let p = &grid.params;
    let (nt, nr, nk, na, nm) =
        (p.iou_thrs.len(), p.rec_thrs.len(), grid.categories.len(), p.area_rngs.len(), p.max_dets.len());
    let mut precision = vec![-1.0; nt * nr * nk * na * nm];
    let mut scores = vec![-1.0; nt * nr * nk * na * nm];
    let mut recall = vec![-1.0; nt * nk * na * nm];
    // Each category fills its own blocks of the final tables (no per-category
    // tables to allocate and copy).
    let tables = category_blocks(&mut precision, nk, na * nm)
        .into_iter()
        .zip(category_blocks(&mut recall, nk, na * nm))
        .zip(category_blocks(&mut scores, nk, na * nm))
        .map(|((precision, recall), scores)| CategoryTables { precision, recall, scores });
    grid.categories
        .par_iter()
        .zip(tables.collect::<Vec<_>>())
        .for_each_init(Scratch::default, |s, (cat, mut out)| category_tables(cat, p, s, &mut out));
    Accumulated {
        iou_type: grid.iou_type,
        params: p.clone(),
        category_ids: grid.category_ids.clone(),
        precision,
        recall,
        scores,
    }
}

/// Fills the tables of one category (left at -1 if it has no evaluated image).
fn category_tables(cat: &CategoryEval, p: &Params, s: &mut Scratch, out: &mut CategoryTables<'_>) {
    let (nt, na) = (p.iou_thrs.len(), p.area_rngs.len());
    if cat.n_cells == 0 {
        return;
    }
    // Stable descending sort: ties keep concatenation order (the key's low bits).
    s.keys.clear();
    s.keys.extend(cat.dt_score.iter().enumerate().map(|(n, &score)| packed_key(score, n as u32)));
    s.keys.sort_unstable();
    s.order.clear();
    s.order.extend(s.keys.iter().map(|&k| k as u32));
    s.rank.clear();
    s.rank.extend(s.order.iter().map(|&n| cat.dt_rank[n as usize]));
    s.score.clear();
    s.score.extend(s.order.iter().map(|&n| cat.dt_score[n as usize]));
    s.flags.clear();
    for &n in &s.order {
        let i = n as usize * na;
        s.flags.extend(cat.dt_matched[i..i + na].iter().copied().zip(cat.dt_ignored[i..i + na].iter().copied()));
    }
    let all_bits = if nt >= 32 { u32::MAX } else { (1u32 << nt) - 1 };
    s.events.resize_with(nt, Vec::new);
    for (m, &max_det) in p.max_dets.iter().enumerate() {
        s.selected.clear();
        s.selected.extend((0..s.rank.len() as u32).filter(|&p| (s.rank[p as usize] as usize) < max_det));
        let nd = s.selected.len();
        for a in 0..na {
            let npig = cat.npig[a];
            if npig == 0 {
                continue;
            }
            // One pass for all thresholds, recording each TP event with the
            // FPs before it. Every detection is, per threshold, ignored, a TP
            // or an FP, so fp = seen - ignored - tp; the counters change only
            // at set bits, and a detection ignored at every threshold (most
            // area-ignored ones) touches one counter.
            let (mut seen, mut ignored_all) = (0u32, 0u32);
            let mut ignored = [0u32; 32];
            let mut tp = [0u32; 32];
            s.events.iter_mut().for_each(Vec::clear);
            // (tp, fp) after the first detection, for `searchsorted` of r = 0.
            let mut first = [(0u32, 0u32); 32];
            for (pos, &n) in s.selected.iter().enumerate() {
                let (matched_bits, ignored_bits) = s.flags[n as usize * na + a];
                let ignored_bits = ignored_bits & all_bits;
                seen += 1;
                if ignored_bits == all_bits {
                    ignored_all += 1;
                } else {
                    let mut bits = ignored_bits;
                    while bits != 0 {
                        ignored[bits.trailing_zeros() as usize] += 1;
                        bits &= bits - 1;
                    }
                    let mut bits = !ignored_bits & matched_bits & all_bits;
                    while bits != 0 {
                        let t = bits.trailing_zeros() as usize;
                        tp[t] += 1;
                        s.events[t].push((seen - ignored_all - ignored[t] - tp[t], pos as u32));
                        bits &= bits - 1;
                    }
                }
                if pos == 0 {
                    for (t, slot) in first.iter_mut().enumerate().take(nt) {
                        *slot = (tp[t], seen - ignored_all - ignored[t] - tp[t]);
                    }
                }
            }
            for (t, &first_t) in first.iter().enumerate().take(nt) {
                fill_threshold(p, s, t, m, a, npig, nd, first_t, out);
            }
        }
    }
}

/// Precision, scores and recall of one (threshold, area, max-dets) cell from
/// its TP events. Equal to pycocotools' full arrays because `rc` only rises at
/// a TP, so `searchsorted(rc, r, 'left')` for r > 0 lands on a TP, and between
/// TPs `pr` only falls, so the right-to-left envelope's value at a TP is the
/// maximum of `pr` over the TPs from there on. r = 0 reads position 0.
#[allow(clippy::too_many_arguments)]
fn fill_threshold(
    p: &Params,
    s: &mut Scratch,
    t: usize,
    m: usize,
    a: usize,
    npig: u64,
    nd: usize,
    first: (u32, u32),
    out: &mut CategoryTables<'_>,
) {
    let (nr, nm) = (p.rec_thrs.len(), p.max_dets.len());
    let npig_f = npig as f64;
    let events = &s.events[t];
    let pr = |tp: u32, fp: u32| f64::from(tp) / (f64::from(fp) + f64::from(tp) + SPACING_1);
    s.env.clear();
    s.env.extend(events.iter().enumerate().map(|(k, &(fp, _))| pr(k as u32 + 1, fp)));
    for k in (1..s.env.len()).rev() {
        if s.env[k] > s.env[k - 1] {
            s.env[k - 1] = s.env[k];
        }
    }
    out.recall[t][a * nm + m] = if nd == 0 { 0.0 } else { events.len() as f64 / npig_f };
    let mut k = 0;
    for (r, &thr) in p.rec_thrs.iter().enumerate() {
        let (row, cell) = (t * nr + r, a * nm + m);
        let (precision, score) = if nd > 0 && 0.0 >= thr {
            // rc[0] >= r: the envelope at position 0.
            let at0 = pr(first.0, first.1);
            let best = s.env.first().map_or(at0, |&e| if e > at0 { e } else { at0 });
            (best, s.score[s.selected[0] as usize])
        } else {
            while k < events.len() && ((k + 1) as f64 / npig_f) < thr {
                k += 1;
            }
            match events.get(k) {
                Some(&(_, pos)) => (s.env[k], s.score[s.selected[pos as usize] as usize]),
                None => (0.0, 0.0),
            }
        };
        out.precision[row][cell] = precision;
        out.scores[row][cell] = score;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::params::AreaRange;

    fn params() -> Params {
        Params {
            iou_thrs: vec![0.5],
            rec_thrs: vec![0.0, 0.5, 1.0],
            max_dets: vec![1, 100],
            area_rngs: vec![AreaRange { label: "all", lo: 0.0, hi: 1e10 }],
        }
    }

    fn grid(cat: CategoryEval) -> EvalGrid {
        EvalGrid {
            iou_type: IouType::Bbox,
            params: params(),
            image_ids: vec![],
            category_ids: vec![CategoryId(1)],
            categories: vec![cat],
            dropped_detections: (0, None),
        }
    }

    #[test]
    fn c3_recall_thresholds_past_max_recall_are_zero_not_minus_one() {
        // 2 GT, detections: TP (0.9), FP (0.8). Recall reaches 0.5 only.
        let acc = accumulate(&grid(CategoryEval {
            n_cells: 1,
            npig: vec![2],
            dt_score: vec![0.9, 0.8],
            dt_rank: vec![0, 1],
            dt_matched: vec![1, 0],
            dt_ignored: vec![0, 0],
        }));
        let m = 1;
        let at = |r| acc.precision[acc.precision_index(0, r, 0, 0, m)];
        assert_eq!([at(0), at(1), at(2)], [1.0 / (1.0 + f64::EPSILON), 1.0 / (1.0 + f64::EPSILON), 0.0]);
        assert_eq!(acc.recall[acc.recall_index(0, 0, 0, m)], 0.5);
        assert_eq!(acc.scores[acc.precision_index(0, 1, 0, 0, m)], 0.9);
    }

    #[test]
    fn c5_category_without_gt_stays_minus_one() {
        let acc = accumulate(&grid(CategoryEval {
            n_cells: 1,
            npig: vec![0],
            dt_score: vec![0.9],
            dt_rank: vec![0],
            dt_matched: vec![0],
            dt_ignored: vec![0],
        }));
        assert!(acc.precision.iter().all(|&v| v == -1.0));
        assert!(acc.recall.iter().all(|&v| v == -1.0));
    }

    #[test]
    fn gt_without_detections_gives_zero_precision_and_recall() {
        let acc = accumulate(&grid(CategoryEval { n_cells: 1, npig: vec![3], ..CategoryEval::default() }));
        assert!(acc.precision.iter().all(|&v| v == 0.0));
        assert!(acc.recall.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn max_dets_cut_is_per_image_before_the_sort_and_ties_keep_image_order() {
        // Image A: scores 0.9 (FP), 0.5 (TP). Image B: 0.9 (TP). maxDet 1 keeps A0 and B0.
        let acc = accumulate(&grid(CategoryEval {
            n_cells: 2,
            npig: vec![2],
            dt_score: vec![0.9, 0.5, 0.9],
            dt_rank: vec![0, 1, 0],
            dt_matched: vec![0, 1, 1],
            dt_ignored: vec![0, 0, 0],
        }));
        // maxDet 1: order A0 (FP), B0 (TP): rc [0, .5], pr [0, .5] -> envelope [.5, .5].
        assert_eq!(acc.recall[acc.recall_index(0, 0, 0, 0)], 0.5);
        let half = 1.0 / (2.0 + f64::EPSILON);
        assert_eq!(acc.precision[acc.precision_index(0, 0, 0, 0, 0)], half);
        // maxDet 100: A0 FP, B0 TP, A1 TP: recall 1.
        assert_eq!(acc.recall[acc.recall_index(0, 0, 0, 1)], 1.0);
    }

    #[test]
    fn envelope_makes_precision_monotone() {
        // FP, TP, TP with 2 GT: pr = [0, .5, .667]; envelope -> [.667, .667, .667].
        let acc = accumulate(&grid(CategoryEval {
            n_cells: 1,
            npig: vec![2],
            dt_score: vec![0.9, 0.8, 0.7],
            dt_rank: vec![0, 1, 2],
            dt_matched: vec![0, 1, 1],
            dt_ignored: vec![0, 0, 0],
        }));
        let two_thirds = 2.0 / (3.0 + f64::EPSILON);
        for r in 0..3 {
            assert_eq!(acc.precision[acc.precision_index(0, r, 0, 0, 1)], two_thirds);
        }
    }
}
