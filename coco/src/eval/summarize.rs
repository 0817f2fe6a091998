//! The 12 summary numbers and per-category AP: pycocotools
//! `COCOeval.summarize` / `_summarize` (`cocoeval.py`).
//!
//! Each number is the mean of the table entries `> -1` (or -1 if there are
//! none), taken with numpy's pairwise summation so that it is bit-identical to
//! `np.mean(s[s > -1])` (quirk F8). Stat 0 uses the literal `maxDets=100` (the
//! `_summarize` default, quirk L9); the others use `maxDets[0..3]`; the area
//! label defaults to `"all"`.

use std::fmt;

use super::accumulate::Accumulated;
use super::params::IouType;
use crate::types::CategoryId;
use crate::Error;

/// One of the 12 lines: what is averaged and over which slice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatSpec {
    /// Average precision (true) or recall (false).
    pub ap: bool,
    /// A single IoU threshold, or all of them.
    pub iou_thr: Option<f64>,
    /// Area range label.
    pub area: &'static str,
    /// Max detections per image and category.
    pub max_dets: usize,
}

/// The 12 numbers of `summarize`, with the slices they were read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Boxes or masks.
    pub iou_type: IouType,
    /// `stats[0..12]` exactly as `COCOeval.stats`.
    pub stats: [f64; 12],
    /// What each stat averages.
    pub specs: [StatSpec; 12],
    /// First and last IoU threshold (for the `IoU=0.50:0.95` label).
    pub iou_range: (f64, f64),
}

/// AP of one category: mean of `precision[:, :, k, area 'all', last maxDets]`
/// over entries `> -1` (detectron2's per-category table), `None` if undefined.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryAp {
    /// The category.
    pub category_id: CategoryId,
    /// AP @[.50:.95], `None` when the category has no GT.
    pub ap: Option<f64>,
    /// AP @.50.
    pub ap50: Option<f64>,
    /// AP @.75.
    pub ap75: Option<f64>,
}

/// Computes the 12 stats of `COCOeval.summarize`.
///
/// # Errors
/// [`Error::Params`] if there are fewer than 3 max-dets values (pycocotools
/// indexes `maxDets[2]`).
pub fn summarize(acc: &Accumulated) -> Result<Summary, Error> {
    let p = &acc.params;
    let [d0, d1, d2] = match p.max_dets[..] {
        [a, b, c, ..] => [a, b, c],
        _ => return Err(Error::Params { reason: "summarize needs 3 maxDets values".into() }),
    };
    let spec = |ap, iou_thr, area, max_dets| StatSpec { ap, iou_thr, area, max_dets };
    let specs = [
        spec(true, None, "all", 100),
        spec(true, Some(0.5), "all", d2),
        spec(true, Some(0.75), "all", d2),
        spec(true, None, "small", d2),
        spec(true, None, "medium", d2),
        spec(true, None, "large", d2),
        spec(false, None, "all", d0),
        spec(false, None, "all", d1),
        spec(false, None, "all", d2),
        spec(false, None, "small", d2),
        spec(false, None, "medium", d2),
        spec(false, None, "large", d2),
    ];
    let stats = specs.map(|s| stat(acc, &s));
    let iou_range = (p.iou_thrs.first().copied().unwrap_or(0.0), p.iou_thrs.last().copied().unwrap_or(0.0));
    Ok(Summary { iou_type: acc.iou_type, stats, specs, iou_range })
}

/// `_summarize(ap, iouThr, areaRng, maxDets)`: the mean over the selected slice.
fn stat(acc: &Accumulated, s: &StatSpec) -> f64 {
    let p = &acc.params;
    let [nt, nr, nk, _, _] = acc.dims();
    let a = p.area_rngs.iter().position(|r| r.label == s.area);
    let m = p.max_dets.iter().position(|&d| d == s.max_dets);
    let (Some(a), Some(m)) = (a, m) else { return -1.0 };
    let thresholds: Vec<usize> = match s.iou_thr {
        Some(thr) => p.iou_thrs.iter().position(|&t| t == thr).into_iter().collect(),
        None => (0..nt).collect(),
    };
    let mut values = Vec::new();
    for &t in &thresholds {
        if s.ap {
            for r in 0..nr {
                values.extend((0..nk).map(|k| acc.precision[acc.precision_index(t, r, k, a, m)]).filter(|&v| v > -1.0));
            }
        } else {
            values.extend((0..nk).map(|k| acc.recall[acc.recall_index(t, k, a, m)]).filter(|&v| v > -1.0));
        }
    }
    mean_or_minus_one(&values)
}

/// Per-category AP @[.50:.95], @.50 and @.75 (area "all", the last max-dets).
pub fn per_category_ap(acc: &Accumulated) -> Vec<CategoryAp> {
    let p = &acc.params;
    let [nt, nr, nk, _, nm] = acc.dims();
    let a = p.area_rngs.iter().position(|r| r.label == "all").unwrap_or(0);
    let m = nm.saturating_sub(1);
    let ap = |k: usize, ts: &[usize]| -> Option<f64> {
        let values: Vec<f64> = ts
            .iter()
            .flat_map(|&t| (0..nr).map(move |r| (t, r)))
            .map(|(t, r)| acc.precision[acc.precision_index(t, r, k, a, m)])
            .filter(|&v| v > -1.0)
            .collect();
        (!values.is_empty()).then(|| mean_or_minus_one(&values))
    };
    let at = |thr: f64| p.iou_thrs.iter().position(|&t| t == thr).into_iter().collect::<Vec<_>>();
    let all: Vec<usize> = (0..nt).collect();
    (0..nk)
        .map(|k| CategoryAp {
            category_id: acc.category_ids[k],
            ap: ap(k, &all),
            ap50: ap(k, &at(0.5)),
            ap75: ap(k, &at(0.75)),
        })
        .collect()
}

/// `np.mean(values)` bit for bit (pairwise summation), or -1 for no values.
fn mean_or_minus_one(values: &[f64]) -> f64 {
    if values.is_empty() {
        return -1.0;
    }
    pairwise_sum(values) / values.len() as f64
}

/// numpy's `pairwise_sum` for f64 (`loops_utils.h.src`): 8 accumulators for
/// blocks of up to 128, recursive halving (at multiples of 8) above.
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |acc, &x| acc + x);
    }
    if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for chunk in a[8..full].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        return res;
    }
    let mut n2 = n / 2;
    n2 -= n2 % 8;
    pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
}

impl fmt::Display for Summary {
    /// The 12 lines `COCOeval.summarize` prints, e.g.
    /// ` Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (spec, value) in self.specs.iter().zip(self.stats) {
            let (title, kind) = if spec.ap { ("Average Precision", "(AP)") } else { ("Average Recall", "(AR)") };
            let iou = match spec.iou_thr {
                Some(t) => format!("{t:0.2}"),
                None => format!("{:0.2}:{:0.2}", self.iou_range.0, self.iou_range.1),
            };
            writeln!(
                f,
                " {title:<18} {kind} @[ IoU={iou:<9} | area={:>6} | maxDets={:>3} ] = {}",
                spec.area,
                spec.max_dets,
                format_3(value)
            )?;
        }
        Ok(())
    }
}

/// Python's `'{:0.3f}'.format(v)`: correctly rounded, ties to even on the exact
/// binary value (e.g. 0.5625 -> "0.562").
pub fn format_3(v: f64) -> String {
    // Rust's `{:.3}` rounds the exact decimal expansion half to even as well;
    // pinned by `format_matches_python_on_exact_ties`.
    format!("{v:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f8_pairwise_sum_matches_numpy_bits() {
        // v = [((i * 7919) % 1000) / 997 for i in range(n)]; np.mean(v) printed by
        // numpy 2.4 differs from a left-to-right sum in the last bits.
        let v = |n: u32| -> Vec<f64> { (0..n).map(|i| f64::from((i * 7919) % 1000) / 997.0).collect() };
        assert_eq!(mean_or_minus_one(&v(300)), 0.5020060180541625);
        assert_eq!(mean_or_minus_one(&v(1000)), 0.5010030090270813);
        assert_eq!(mean_or_minus_one(&v(1010)), 0.5013605171951498);
        let naive = v(300).iter().sum::<f64>() / 300.0;
        assert_eq!(naive, 0.5020060180541632);
        assert_eq!(mean_or_minus_one(&[]), -1.0);
    }

    #[test]
    fn format_matches_python_on_exact_ties() {
        // '{:0.3f}'.format(x) in Python 3: 0.562, 0.062, 0.188, -1.000.
        assert_eq!(format_3(0.5625), "0.562");
        assert_eq!(format_3(0.0625), "0.062");
        assert_eq!(format_3(0.1875), "0.188");
        assert_eq!(format_3(-1.0), "-1.000");
    }
}
