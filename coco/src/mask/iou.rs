//! IoU matrices of masks and boxes with COCO's crowd rule, as `rleIou` and
//! `bbIou` of pycocotools `common/maskApi.c` (what `maskUtils.iou` computes in
//! `COCOeval.computeIoU`).
//!
//! Shape letters: D detections, G ground truths. Every matrix is **dt-major**:
//! `out[d * G + g]` is the IoU of detection d with ground truth g (the layout of
//! the D×G array pycocotools returns).
//!
//! Crowd rule (quirk E1): when `iscrowd[g]`, the denominator is the detection's
//! area instead of the union, so a detection lying inside a crowd region scores
//! one. Mask IoU first computes the IoU of the masks' [`Rle::to_bbox`] boxes and
//! walks the runs only where that is > 0 (quirk I1), which is exact (disjoint
//! boxes mean disjoint masks) and makes non-overlapping pairs cost a few float
//! compares. Boxes touching at an edge have IoU 0 (no +1 convention, quirk I4).
//!
//! Deviation: pycocotools writes -1 for a pair of masks of different sizes (if
//! their boxes overlap); here any size mismatch is [`Error::MaskSizeMismatch`].

use super::rle::{RunBox, Runs};
use super::Rle;
use crate::Error;

/// Fills `out` (dt-major, `dt.len() * gt.len()`) with the mask IoU of every
/// (detection, ground truth) pair, bit-identical to pycocotools
/// `maskUtils.iou(dt, gt, iscrowd)`.
///
/// Allocates only the two lists of per-mask facts (box, area, counts sum,
/// one pass per mask); each pair is a box test and, if the boxes overlap, one
/// walk over both masks' foreground runs.
///
/// # Errors
/// - [`Error::IouShape`] if `iscrowd.len() != gt.len()` or
///   `out.len() != dt.len() * gt.len()`;
/// - [`Error::MaskSizeMismatch`] if any mask's size differs from `gt[0]`'s (or
///   `dt[0]`'s when there is no ground truth);
/// - [`Error::RleCountsSum`] for an RLE whose counts do not sum to `h * w`.
pub fn iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool], out: &mut [f64]) -> Result<(), Error> {
    check_shapes(dt.len(), gt.len(), iscrowd.len(), out.len())?;
    let Some(reference) = gt.first().or(dt.first()) else {
        return Ok(());
    };
    let size = [reference.h, reference.w];
    let facts = |rles: &[Rle], what: &'static str| -> Result<Vec<MaskFacts>, Error> {
        rles.iter()
            .enumerate()
            .map(|(index, r)| {
                if [r.h, r.w] != size {
                    return Err(Error::MaskSizeMismatch { what, index, expected: size, found: [r.h, r.w] });
                }
                let facts = MaskFacts::of(r);
                if facts.sum != r.pixel_count() {
                    return Err(Error::RleCountsSum { h: r.h, w: r.w, sum: facts.sum });
                }
                Ok(facts)
            })
            .collect()
    };
    let dt_facts = facts(dt, "iou detection")?;
    let gt_facts = facts(gt, "iou ground truth")?;
    fill_mask_iou(dt, &dt_facts, gt, &gt_facts, iscrowd, out);
    Ok(())
}

/// What mask IoU needs of one mask, from one pass over its counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct MaskFacts {
    /// [`Rle::to_bbox`].
    pub bbox: [f64; 4],
    /// [`Rle::area`].
    pub area: u64,
    /// Sum of the counts ([`Rle::check_counts_sum`] wants `h * w`).
    pub sum: u64,
    /// No run after the first has length 0 (see [`interval_iou`]).
    pub no_inner_zero: bool,
}

impl MaskFacts {
    /// The facts of `rle`: `to_bbox`, `area`, the counts' sum and the
    /// zero-run test in one pass (the box with `to_bbox`'s wrapping `u32`
    /// arithmetic: only foreground runs update it, and every odd index is
    /// below `to_bbox`'s pair limit).
    pub(crate) fn of(rle: &Rle) -> MaskFacts {
        let mut bbox = RunBox::new(rle.h, rle.w);
        let (mut cc, mut sum, mut area, mut inner_zero) = (0u32, 0u64, 0u64, false);
        for (j, &c) in rle.counts.iter().enumerate() {
            sum += u64::from(c);
            let start = cc;
            cc = cc.wrapping_add(c);
            if c == 0 {
                inner_zero |= j > 0;
            } else if j % 2 == 1 {
                area += u64::from(c);
                if rle.h > 0 {
                    bbox.add_run(start, cc);
                }
            }
        }
        let bbox = if rle.counts.len() < 2 || rle.h == 0 { [0.0; 4] } else { bbox.xywh() };
        MaskFacts { bbox, area, sum, no_inner_zero: !inner_zero }
    }
}

/// [`iou`] for the masks of one evaluation cell, whose counts sums were
/// checked when they were decoded and whose facts are known: the same size
/// checks and errors, the same values.
///
/// # Errors
/// [`Error::IouShape`], [`Error::MaskSizeMismatch`] as [`iou`].
pub(crate) fn iou_with_facts(
    dt: &[Rle],
    dt_facts: &[MaskFacts],
    gt: &[Rle],
    gt_facts: &[MaskFacts],
    iscrowd: &[bool],
    out: &mut [f64],
) -> Result<(), Error> {
    check_shapes(dt.len(), gt.len(), iscrowd.len(), out.len())?;
    let Some(reference) = gt.first().or(dt.first()) else {
        return Ok(());
    };
    let size = [reference.h, reference.w];
    for (rles, what) in [(dt, "iou detection"), (gt, "iou ground truth")] {
        if let Some((index, r)) = rles.iter().enumerate().find(|(_, r)| [r.h, r.w] != size) {
            return Err(Error::MaskSizeMismatch { what, index, expected: size, found: [r.h, r.w] });
        }
    }
    if dt_facts.len() != dt.len() || gt_facts.len() != gt.len() {
        return Err(Error::IouShape { dt: dt_facts.len(), gt: gt_facts.len(), iscrowd: iscrowd.len(), out: out.len() });
    }
    fill_mask_iou(dt, dt_facts, gt, gt_facts, iscrowd, out);
    Ok(())
}

/// The IoU matrix from checked masks: a box test on the masks' boxes, then
/// the runs where the boxes overlap (quirk I1).
fn fill_mask_iou(dt: &[Rle], dt_facts: &[MaskFacts], gt: &[Rle], gt_facts: &[MaskFacts], iscrowd: &[bool], out: &mut [f64]) {
    for ((d, df), row) in dt.iter().zip(dt_facts).zip(out.chunks_exact_mut(gt.len().max(1))) {
        for (((g, gf), &crowd), cell) in gt.iter().zip(gt_facts).zip(iscrowd).zip(row.iter_mut()) {
            *cell = box_pair_iou(&df.bbox, &gf.bbox, crowd);
            if *cell > 0.0 {
                *cell = if df.no_inner_zero && gf.no_inner_zero {
                    interval_iou(&d.counts, &g.counts, crowd, df.area as u32, gf.area as u32)
                } else {
                    rle_pair_iou(d, g, crowd)
                };
            }
        }
    }
}

/// The next foreground run `[start, end)` of `counts` from the background run
/// at index `*j`, which starts at pixel `*pos`.
#[inline(always)]
fn next_foreground(counts: &[u32], j: &mut usize, pos: &mut u64) -> Option<(u64, u64)> {
    let background = u64::from(*counts.get(*j)?);
    let foreground = u64::from(*counts.get(*j + 1)?);
    let start = *pos + background;
    *pos = start + foreground;
    *j += 2;
    Some((start, *pos))
}

/// [`rle_pair_iou`] for masks without inner zero-length runs: the
/// intersection from the two lists of foreground intervals (half the steps of
/// the merge walk), the union as `area(dt) + area(gt) - intersection`; all in
/// `u32` wrapping arithmetic as maskApi.c, so the result is the same `f64`.
fn interval_iou(a: &[u32], b: &[u32], crowd: bool, dt_area: u32, gt_area: u32) -> f64 {
    let (mut ja, mut pa, mut jb, mut pb) = (0usize, 0u64, 0usize, 0u64);
    let mut run_a = next_foreground(a, &mut ja, &mut pa);
    let mut run_b = next_foreground(b, &mut jb, &mut pb);
    let mut inter = 0u64;
    while let (Some((sa, ea)), Some((sb, eb))) = (run_a, run_b) {
        let (lo, hi) = (sa.max(sb), ea.min(eb));
        if hi > lo {
            inter += hi - lo;
        }
        if ea <= eb {
            run_a = next_foreground(a, &mut ja, &mut pa);
        } else {
            run_b = next_foreground(b, &mut jb, &mut pb);
        }
    }
    let inter = inter as u32;
    if inter == 0 {
        return 0.0;
    }
    let denominator = if crowd { dt_area } else { dt_area.wrapping_add(gt_area).wrapping_sub(inter) };
    f64::from(inter) / f64::from(denominator)
}

/// Fills `out` (dt-major) with the IoU of `[x, y, w, h]` boxes, as pycocotools
/// `bbIou` (`maskUtils.iou` on boxes, the `iouType="bbox"` path).
///
/// # Errors
/// [`Error::IouShape`] if `iscrowd.len() != gt.len()` or
/// `out.len() != dt.len() * gt.len()`.
pub fn bbox_iou(dt: &[[f64; 4]], gt: &[[f64; 4]], iscrowd: &[bool], out: &mut [f64]) -> Result<(), Error> {
    check_shapes(dt.len(), gt.len(), iscrowd.len(), out.len())?;
    if gt.is_empty() {
        return Ok(());
    }
    for (d, row) in dt.iter().zip(out.chunks_exact_mut(gt.len())) {
        for ((g, &crowd), cell) in gt.iter().zip(iscrowd).zip(row.iter_mut()) {
            *cell = box_pair_iou(d, g, crowd);
        }
    }
    Ok(())
}

/// `bbIou` of one pair: 0 unless the boxes overlap with positive width and
/// height; the denominator is the detection's area for a crowd GT.
#[inline(always)]
fn box_pair_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// Intersection over union (or over the detection's area for a crowd ground
/// truth) of two same-size masks, by one walk over both run lists. Returns 0
/// when they do not intersect.
fn rle_pair_iou(dt: &Rle, gt: &Rle, crowd: bool) -> f64 {
    let mut a = Runs::new(&dt.counts);
    let mut b = Runs::new(&gt.counts);
    let (mut inter, mut union, mut ct) = (0u32, 0u32, 1u32);
    while ct > 0 {
        let c = a.left.min(b.left);
        if a.value || b.value {
            union = union.wrapping_add(c);
            if a.value && b.value {
                inter = inter.wrapping_add(c);
            }
        }
        ct = a.consume(c).wrapping_add(b.consume(c));
    }
    if inter == 0 {
        return 0.0;
    }
    let denominator = if crowd { dt.area() as u32 } else { union };
    f64::from(inter) / f64::from(denominator)
}

/// Checks the lengths of `iscrowd` and `out` against D and G.
fn check_shapes(d: usize, g: usize, crowd: usize, out: usize) -> Result<(), Error> {
    if crowd != g || out != d * g {
        return Err(Error::IouShape { dt: d, gt: g, iscrowd: crowd, out });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A 1×8 strip with foreground pixels `lo..hi`.
    fn strip(lo: u32, hi: u32) -> Rle {
        Rle { h: 1, w: 8, counts: vec![lo, hi - lo, 8 - hi] }
    }

    #[test]
    fn hand_worked_matrix_is_dt_major() {
        // dt0 = 0..4, dt1 = 2..6; gt0 = 2..4, gt1 = 6..8 (crowd).
        let dt = [strip(0, 4), strip(2, 6)];
        let gt = [strip(2, 4), strip(6, 8)];
        let mut out = [f64::NAN; 4];
        iou(&dt, &gt, &[false, true], &mut out).unwrap();
        // dt0·gt0: 2/4. dt0·gt1: disjoint. dt1·gt0: 2/4. dt1·gt1: boxes touch at
        // x = 6 only (w = 0), so 0 even though crowd.
        assert_eq!(out, [0.5, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn crowd_divides_by_detection_area() {
        let dt = [strip(1, 5)];
        let gt = [strip(3, 8)];
        let mut out = [0.0; 1];
        iou(&dt, &gt, &[true], &mut out).unwrap();
        assert_eq!(out[0], 2.0 / 4.0);
        iou(&dt, &gt, &[false], &mut out).unwrap();
        assert_eq!(out[0], 2.0 / 7.0);
    }

    #[test]
    fn bbox_iou_crowd_and_touching() {
        let dt = [[0.0, 0.0, 2.0, 2.0]];
        let gt = [[1.0, 1.0, 2.0, 2.0], [2.0, 0.0, 1.0, 1.0]];
        let mut out = [f64::NAN; 2];
        bbox_iou(&dt, &gt, &[false, false], &mut out).unwrap();
        assert_eq!(out, [1.0 / 7.0, 0.0]);
        bbox_iou(&dt, &gt, &[true, false], &mut out).unwrap();
        assert_eq!(out, [1.0 / 4.0, 0.0]);
    }

    #[test]
    fn shape_and_size_errors_are_typed() {
        let mut out = [0.0; 2];
        let err = iou(&[strip(0, 1)], &[strip(0, 1)], &[false], &mut out).unwrap_err();
        assert!(matches!(err, Error::IouShape { out: 2, .. }), "{err}");
        let err = iou(&[strip(0, 1)], &[strip(0, 1)], &[], &mut out[..1]).unwrap_err();
        assert!(matches!(err, Error::IouShape { iscrowd: 0, .. }), "{err}");
        let other = Rle { h: 2, w: 4, counts: vec![8] };
        let err = iou(&[other], &[strip(0, 1)], &[false], &mut out[..1]).unwrap_err();
        assert!(matches!(err, Error::MaskSizeMismatch { index: 0, .. }), "{err}");
    }

    /// Random masks of random small sizes: runs of random lengths, in a
    /// quarter of the masks some of them zero (inner zero runs send a pair to
    /// the merge walk); some masks start with a zero run.
    fn random_masks(seed: u64, n: usize) -> Vec<Rle> {
        let mut state = seed;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        (0..n)
            .map(|_| {
                let (h, w) = (1 + next(12) as u32, 1 + next(12) as u32);
                let total = h * w;
                let mut counts = Vec::new();
                let mut left = total;
                let zeros = next(4) == 0;
                while left > 0 {
                    let run = if zeros && next(6) == 0 { 0 } else { (1 + next(u64::from(left.min(9)))) as u32 };
                    counts.push(run);
                    left -= run;
                }
                if counts.is_empty() || next(5) == 0 {
                    counts.insert(0, 0);
                }
                Rle { h, w, counts }
            })
            .collect()
    }

    #[test]
    fn mask_facts_equal_the_separate_passes() {
        for r in random_masks(7, 3000) {
            let f = MaskFacts::of(&r);
            assert_eq!(f.bbox, r.to_bbox(), "{r:?}");
            assert_eq!(f.area, r.area(), "{r:?}");
            assert_eq!(f.sum, r.pixel_count(), "{r:?}");
            assert_eq!(f.no_inner_zero, !r.counts[1..].contains(&0), "{r:?}");
        }
        let zero = Rle { h: 0, w: 3, counts: vec![0] };
        assert_eq!(MaskFacts::of(&zero).bbox, zero.to_bbox());
    }

    #[test]
    fn interval_iou_equals_the_merge_walk() {
        let masks = random_masks(11, 4000);
        let mut compared = 0;
        for pair in masks.chunks_exact(2) {
            // Only pairs of one size are comparable.
            let (a, b) = (&pair[0], &pair[1]);
            if (a.h, a.w) != (b.h, b.w) {
                continue;
            }
            let (fa, fb) = (MaskFacts::of(a), MaskFacts::of(b));
            for crowd in [false, true] {
                let walk = rle_pair_iou(a, b, crowd);
                if fa.no_inner_zero && fb.no_inner_zero {
                    let fast = interval_iou(&a.counts, &b.counts, crowd, fa.area as u32, fb.area as u32);
                    assert_eq!(fast.to_bits(), walk.to_bits(), "{a:?} {b:?} {crowd}");
                    compared += 1;
                }
            }
        }
        assert!(compared > 20, "{compared}");
    }

    #[test]
    fn interval_iou_equals_the_merge_walk_on_one_canvas() {
        // Many pairs on one 9x7 canvas, so that overlaps of every kind occur.
        let masks: Vec<Rle> = random_masks(5, 20_000).into_iter().filter(|r| (r.h, r.w) == (9, 7)).collect();
        let mut compared = 0;
        for a in masks.iter().take(60) {
            for b in masks.iter().take(60) {
                let (fa, fb) = (MaskFacts::of(a), MaskFacts::of(b));
                if fa.no_inner_zero && fb.no_inner_zero {
                    for crowd in [false, true] {
                        let fast = interval_iou(&a.counts, &b.counts, crowd, fa.area as u32, fb.area as u32);
                        assert_eq!(fast.to_bits(), rle_pair_iou(a, b, crowd).to_bits(), "{a:?} {b:?}");
                    }
                    compared += 1;
                }
            }
        }
        assert!(compared > 300, "{compared}");
        let mut out = vec![0.0; 60 * 60];
        let crowd: Vec<bool> = (0..60).map(|g| g % 3 == 0).collect();
        iou(&masks[..60], &masks[..60], &crowd, &mut out).unwrap();
        for (d, row) in out.chunks_exact(60).enumerate() {
            for (g, &v) in row.iter().enumerate() {
                let expected = if box_pair_iou(&masks[d].to_bbox(), &masks[g].to_bbox(), crowd[g]) > 0.0 {
                    rle_pair_iou(&masks[d], &masks[g], crowd[g])
                } else {
                    0.0
                };
                assert_eq!(v.to_bits(), expected.to_bits());
            }
        }
    }

    #[test]
    fn empty_sides_leave_empty_matrix() {
        // pycocotools returns [] for an empty side: the matrix has no cells, so
        // only an empty buffer fits it, and a buffer with a cell is refused.
        for (dt, gt, crowd) in [(vec![], vec![strip(0, 1)], vec![false]), (vec![strip(0, 1)], vec![], vec![])] {
            let mut empty: [f64; 0] = [];
            assert!(iou(&dt, &gt, &crowd, &mut empty).is_ok());
            let mut one_cell = [7.0];
            assert!(matches!(iou(&dt, &gt, &crowd, &mut one_cell), Err(Error::IouShape { .. })));
            assert_eq!(one_cell, [7.0], "a refused buffer is left untouched");
        }
    }
}
