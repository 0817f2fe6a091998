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

use super::rle::Runs;
use super::Rle;
use crate::Error;

/// Fills `out` (dt-major, `dt.len() * gt.len()`) with the mask IoU of every
/// (detection, ground truth) pair, bit-identical to pycocotools
/// `maskUtils.iou(dt, gt, iscrowd)`.
///
/// Allocates only the two box lists (once per call); each pair is a box test
/// and, if the boxes overlap, one merge-walk over both run lists.
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
    let boxes = |rles: &[Rle], what: &'static str| -> Result<Vec<[f64; 4]>, Error> {
        rles.iter()
            .enumerate()
            .map(|(index, r)| {
                if [r.h, r.w] != size {
                    return Err(Error::MaskSizeMismatch { what, index, expected: size, found: [r.h, r.w] });
                }
                r.check_counts_sum()?;
                Ok(r.to_bbox())
            })
            .collect()
    };
    let dt_boxes = boxes(dt, "iou detection")?;
    let gt_boxes = boxes(gt, "iou ground truth")?;
    bbox_iou(&dt_boxes, &gt_boxes, iscrowd, out)?;
    // Per GT: (no inner zero runs, area as maskApi.c's `uint`), once per call.
    let gt_simple: Vec<(bool, u32)> = gt.iter().map(|r| (no_inner_zero_runs(&r.counts), r.area() as u32)).collect();
    for (d, row) in out.chunks_exact_mut(gt.len().max(1)).enumerate() {
        let dt_simple = no_inner_zero_runs(&dt[d].counts);
        let mut dt_area = None;
        for (g, cell) in row.iter_mut().enumerate() {
            if *cell > 0.0 {
                let (gt_ok, gt_area) = gt_simple[g];
                *cell = if dt_simple && gt_ok {
                    let area = *dt_area.get_or_insert_with(|| dt[d].area() as u32);
                    interval_iou(&dt[d].counts, &gt[g].counts, iscrowd[g], area, gt_area)
                } else {
                    rle_pair_iou(&dt[d], &gt[g], iscrowd[g])
                };
            }
        }
    }
    Ok(())
}

/// True if no run after the first has length 0. The merge walk of `rleIou`
/// stops early when both masks reach a zero-length run at the same point; with
/// no such runs it walks both lists to the end, and [`interval_iou`] is exact.
fn no_inner_zero_runs(counts: &[u32]) -> bool {
    counts.get(1..).is_none_or(|rest| !rest.contains(&0))
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
        let da = d[2] * d[3];
        for ((g, &crowd), cell) in gt.iter().zip(iscrowd).zip(row.iter_mut()) {
            *cell = 0.0;
            let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
            if w <= 0.0 {
                continue;
            }
            let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
            if h <= 0.0 {
                continue;
            }
            let i = w * h;
            let u = if crowd { da } else { da + g[2] * g[3] - i };
            *cell = i / u;
        }
    }
    Ok(())
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

    #[test]
    fn empty_sides_leave_empty_matrix() {
        iou(&[], &[strip(0, 1)], &[false], &mut []).unwrap();
        iou(&[strip(0, 1)], &[], &[], &mut []).unwrap();
    }
}
