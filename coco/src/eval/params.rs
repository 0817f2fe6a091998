//! Evaluation parameters, as pycocotools `Params.setDetParams` (`cocoeval.py`).
//!
//! Thresholds are built like `np.linspace`: `start + i * step` with
//! `step = (stop - start) / (n - 1)` and the last value forced to `stop`
//! (quirks L1, L2), so that `0.75` is found by exact comparison as in
//! `summarize` and every IoU comparison sees the same f64 as pycocotools.

use crate::Error;

/// Lower area bound of "small" (inclusive), in pixels²: 32².
pub const AREA_SMALL_MAX: f64 = 32.0 * 32.0;
/// Upper area bound of "medium" (inclusive), in pixels²: 96².
pub const AREA_MEDIUM_MAX: f64 = 96.0 * 96.0;
/// pycocotools' "infinity" for area ranges: `1e5 ** 2`.
pub const AREA_MAX: f64 = 1e10;
/// The evaluator packs per-threshold match flags in a `u32`.
pub const MAX_IOU_THRESHOLDS: usize = 32;

/// What the IoU of a detection and a ground truth is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IouType {
    /// Boxes `[x, y, w, h]` (`iouType="bbox"`).
    Bbox,
    /// Masks (`iouType="segm"`).
    Segm,
}

impl IouType {
    /// The pycocotools name: `"bbox"` or `"segm"`.
    pub fn name(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
        }
    }
}

/// An inclusive area range `[lo, hi]` in pixels², with its summary label.
#[derive(Debug, Clone, PartialEq)]
pub struct AreaRange {
    /// Label printed by `summarize` (`"all"`, `"small"`, ...).
    pub label: &'static str,
    /// Inclusive lower bound.
    pub lo: f64,
    /// Inclusive upper bound.
    pub hi: f64,
}

impl AreaRange {
    /// pycocotools' test for "outside": `area < lo or area > hi`, so both
    /// bounds belong to the range (quirk D6: area 32² is small *and* medium).
    pub fn excludes(&self, area: f64) -> bool {
        area < self.lo || area > self.hi
    }
}

/// The evaluation parameters. [`Params::default`] is `setDetParams`.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// IoU thresholds T (`iouThrs`): 0.50, 0.55, ..., 0.95.
    pub iou_thrs: Vec<f64>,
    /// Recall thresholds R (`recThrs`): 0.00, 0.01, ..., 1.00.
    pub rec_thrs: Vec<f64>,
    /// Detections kept per (image, category) M (`maxDets`), ascending: 1, 10, 100.
    pub max_dets: Vec<usize>,
    /// Area ranges A (`areaRng`): all, small, medium, large.
    pub area_rngs: Vec<AreaRange>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            iou_thrs: linspace(0.5, 0.95, 10),
            rec_thrs: linspace(0.0, 1.0, 101),
            max_dets: vec![1, 10, 100],
            area_rngs: vec![
                AreaRange { label: "all", lo: 0.0, hi: AREA_MAX },
                AreaRange { label: "small", lo: 0.0, hi: AREA_SMALL_MAX },
                AreaRange { label: "medium", lo: AREA_SMALL_MAX, hi: AREA_MEDIUM_MAX },
                AreaRange { label: "large", lo: AREA_MEDIUM_MAX, hi: AREA_MAX },
            ],
        }
    }
}

impl Params {
    /// Checks what the evaluator relies on: non-empty lists, at most
    /// [`MAX_IOU_THRESHOLDS`] IoU thresholds, ascending recall thresholds and
    /// ascending, non-zero max-dets (pycocotools sorts `maxDets`, quirk A2).
    ///
    /// # Errors
    /// [`Error::Params`] naming the broken rule.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |reason: &str| Err(Error::Params { reason: reason.to_owned() });
        if self.iou_thrs.is_empty() || self.iou_thrs.len() > MAX_IOU_THRESHOLDS {
            return fail("between 1 and 32 IoU thresholds are supported");
        }
        if self.rec_thrs.is_empty() || self.rec_thrs.windows(2).any(|w| w[0] > w[1]) {
            return fail("recall thresholds must be non-empty and ascending");
        }
        if self.max_dets.is_empty() || self.max_dets.contains(&0) || self.max_dets.windows(2).any(|w| w[0] > w[1]) {
            return fail("maxDets must be non-empty, ascending and > 0");
        }
        if self.area_rngs.is_empty() {
            return fail("at least one area range is needed");
        }
        Ok(())
    }

    /// The largest max-dets: detections per (image, category) that are matched.
    pub fn max_det(&self) -> usize {
        self.max_dets.last().copied().unwrap_or(0)
    }
}

/// `np.linspace(start, stop, n)`: `start + i * step`, last value exactly `stop`.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_linspace_matches_numpy_bits() {
        // Values printed by numpy 2.4: np.linspace(.5, .95, 10) and np.linspace(0, 1, 101).
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[8], 0.8999999999999999);
        assert_eq!(t[9], 0.95);
        let r = linspace(0.0, 1.0, 101);
        assert_eq!(r[3], 0.03);
        assert_eq!(r[57], 0.5700000000000001);
        assert_eq!(r[100], 1.0);
    }

    #[test]
    fn d6_area_bounds_are_inclusive() {
        let p = Params::default();
        assert!(!p.area_rngs[1].excludes(1024.0));
        assert!(!p.area_rngs[2].excludes(1024.0));
        assert!(!p.area_rngs[2].excludes(9216.0));
        assert!(!p.area_rngs[3].excludes(9216.0));
        assert!(p.area_rngs[1].excludes(1024.0 + 1e-9));
    }

    #[test]
    fn validate_rejects_unsorted_max_dets() {
        let p = Params { max_dets: vec![10, 1], ..Params::default() };
        assert!(matches!(p.validate(), Err(Error::Params { .. })));
        assert!(Params::default().validate().is_ok());
    }
}
