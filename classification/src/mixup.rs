//! Mixup and CutMix over a batch, with label smoothing of the mixed targets:
//! timm `data/mixup.py::Mixup` in its `'batch'` mode (one λ and one box for
//! the whole batch), which MAE-Lite's fine-tuning uses
//! (`mae_lite/exps/timm_imagenet_exp.py`: improved recipe mixup 0.2,
//! cutmix 0, smoothing 0; MAE base recipe mixup 0.8, cutmix 1.0,
//! smoothing 0.1; switch probability 0.5).
//!
//! Every image is mixed with the image at the mirrored batch position
//! (the batch flipped, `x.flip(0)`):
//! * mixup: `λ x + (1 - λ) flip(x)`;
//! * cutmix: the box of `flip(x)` pasted into `x`, λ then recomputed as
//!   the uncovered fraction of the image (after the box is clipped to it);
//! * targets: `λ smooth(y) + (1 - λ) smooth(flip(y))`, where `smooth` is the
//!   one-hot with `1 - ε + ε/K` on the label and `ε/K` elsewhere.
//!
//! The arithmetic is timm's in f32 (λ and 1 - λ rounded to f32, each product
//! rounded, then the sum), so images and targets equal timm's bit for bit
//! for the same λ and box (`tests` compare with fixtures from
//! `engine/tests/fixtures/make_cls_fixtures.py`).
//!
//! The random draws come from the caller's `Rng` (timm uses numpy's global
//! generator): the same distributions, not the same numbers. The box
//! follows timm ≥ 0.9 (`cy + (cut_h + 1) // 2`, so an unclipped box is
//! exactly `cut_h` × `cut_w`; timm 0.4.12, pinned by MAE-Lite, used
//! `cy + cut_h // 2`, one pixel short for odd sizes, and the minmax corner
//! range `0..H - cut_h` instead of `0..=H - cut_h`). Not covered: timm's
//! `'pair'` and `'elem'` modes, multi-label targets and the box margin.
//!
//! Shapes: B batch (even), C channels, H × W pixels, K classes.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

/// Errors of the batch mixing: a bad setting, or a batch it cannot mix.
#[derive(Debug, thiserror::Error)]
pub enum MixupError {
    /// A setting is out of range (names the key, the value and the range).
    #[error("mixup config: {0}")]
    Config(String),
    /// The batch has the wrong shape, an odd size or a label out of range.
    #[error("mixup batch: {0}")]
    Batch(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Mixup / CutMix settings: timm `Mixup`'s arguments, `'batch'` mode. The
/// default is MAE-Lite's improved fine-tuning recipe (mixup 0.2, no
/// cutmix, no smoothing, 1000 classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixupConfig {
    /// Beta(α, α) parameter of the mixup λ; mixup is active when > 0.
    pub mixup_alpha: f64,
    /// Beta(α, α) parameter of the cutmix λ; cutmix is active when > 0.
    pub cutmix_alpha: f64,
    /// Cutmix box side range as fractions of the image side (timm's
    /// Darknet-style variant): the box's height and width are drawn
    /// uniformly from these bounds instead of from λ. Setting it turns
    /// cutmix on with `cutmix_alpha` forced to 1, as timm does.
    pub cutmix_minmax: Option<[f64; 2]>,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// Probability of cutmix rather than mixup when both are active.
    pub switch_prob: f64,
    /// Recompute the cutmix λ from the box after clipping it to the image
    /// (always done for the minmax box, as timm).
    pub correct_lam: bool,
    /// Label smoothing ε of the mixed targets.
    pub label_smoothing: f64,
    /// Number of classes K of the targets.
    pub num_classes: usize,
}

impl Default for MixupConfig {
    fn default() -> Self {
        Self {
            mixup_alpha: 0.2,
            cutmix_alpha: 0.0,
            cutmix_minmax: None,
            prob: 1.0,
            switch_prob: 0.5,
            correct_lam: true,
            label_smoothing: 0.0,
            num_classes: 1000,
        }
    }
}

/// A cutmix box in pixels, half-open: rows `y0..y1`, columns `x0..x1`
/// (timm's `yl:yh, xl:xh`). May be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutBox {
    /// First row.
    pub y0: usize,
    /// One past the last row.
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// One past the last column.
    pub x1: usize,
}

impl CutBox {
    /// Pixels covered.
    pub fn area(&self) -> usize {
        self.y1.saturating_sub(self.y0) * self.x1.saturating_sub(self.x0)
    }
}

/// How one batch is mixed: what [`Mixup::sample`] draws and
/// [`Mixup::apply`] carries out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixDecision {
    /// The batch is left as it is (targets are the smoothed one-hots).
    Unmixed,
    /// `λ x + (1 - λ) flip(x)`.
    Mixup {
        /// Weight of the batch itself, in [0, 1].
        lam: f64,
    },
    /// The box of `flip(x)` pasted into `x`.
    Cutmix {
        /// The pasted region.
        cut: CutBox,
        /// Fraction of each image left uncovered (after the λ correction).
        lam: f64,
    },
}

impl MixDecision {
    /// The weight λ of the un-flipped batch in the targets (1 when unmixed).
    pub fn lam(&self) -> f64 {
        match *self {
            MixDecision::Unmixed => 1.0,
            MixDecision::Mixup { lam } | MixDecision::Cutmix { lam, .. } => lam,
        }
    }
}

/// A mixed batch.
#[derive(Debug, Clone)]
pub struct MixedBatch {
    /// The mixed images, (B, C, H, W) like the input.
    pub images: Tensor,
    /// Soft targets, (B, K) f32, each row summing to 1.
    pub targets: Tensor,
    /// What was done.
    pub decision: MixDecision,
}

/// timm's `Mixup` in `'batch'` mode, with checked settings.
#[derive(Debug, Clone)]
pub struct Mixup {
    cfg: MixupConfig,
    mixup: Option<Beta<f64>>,
    cutmix: Option<Beta<f64>>,
}

impl Mixup {
    /// Checks `cfg` and builds the mixer (a `cutmix_minmax` forces
    /// `cutmix_alpha` to 1, as timm).
    ///
    /// # Errors
    /// [`MixupError::Config`] for a negative or non-finite α, no active
    /// mode, a probability or ε outside [0, 1], no classes, or minmax
    /// bounds not satisfying `0 ≤ min < max ≤ 1`.
    pub fn new(mut cfg: MixupConfig) -> Result<Self, MixupError> {
        if let Some([lo, hi]) = cfg.cutmix_minmax {
            if !(0.0 <= lo && lo < hi && hi <= 1.0) {
                return Err(MixupError::Config(format!("cutmix_minmax must satisfy 0 <= min < max <= 1, got [{lo}, {hi}]")));
            }
            cfg.cutmix_alpha = 1.0;
        }
        for (key, alpha) in [("mixup_alpha", cfg.mixup_alpha), ("cutmix_alpha", cfg.cutmix_alpha)] {
            if !(alpha >= 0.0 && alpha.is_finite()) {
                return Err(MixupError::Config(format!("{key} must be >= 0, got {alpha}")));
            }
        }
        if cfg.mixup_alpha == 0.0 && cfg.cutmix_alpha == 0.0 {
            return Err(MixupError::Config("one of mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax must be set".into()));
        }
        for (key, p) in [("prob", cfg.prob), ("switch_prob", cfg.switch_prob), ("label_smoothing", cfg.label_smoothing)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(MixupError::Config(format!("{key} must be in [0, 1], got {p}")));
            }
        }
        if cfg.num_classes == 0 {
            return Err(MixupError::Config("num_classes must be > 0".into()));
        }
        let beta = |alpha: f64| -> Result<Option<Beta<f64>>, MixupError> {
            if alpha == 0.0 {
                return Ok(None);
            }
            Beta::new(alpha, alpha).map(Some).map_err(|e| MixupError::Config(format!("Beta({alpha}, {alpha}): {e}")))
        };
        Ok(Self { mixup: beta(cfg.mixup_alpha)?, cutmix: beta(cfg.cutmix_alpha)?, cfg })
    }

    /// The checked settings.
    pub fn config(&self) -> &MixupConfig {
        &self.cfg
    }

    /// Draws how to mix a batch of H × W images (timm
    /// `_params_per_batch`, then `cutmix_bbox_and_lam` for cutmix): mix
    /// with probability `prob`; when both modes are active, cutmix with
    /// probability `switch_prob`; λ ~ Beta(α, α) of the chosen mode.
    ///
    /// # Errors
    /// [`MixupError::Batch`] when the minmax box range is empty for this
    /// image size.
    pub fn sample<R: Rng + ?Sized>(&self, height: usize, width: usize, rng: &mut R) -> Result<MixDecision, MixupError> {
        if rng.gen::<f64>() >= self.cfg.prob {
            return Ok(MixDecision::Unmixed);
        }
        let (use_cutmix, beta) = match (&self.mixup, &self.cutmix) {
            (Some(m), Some(c)) => {
                if rng.gen::<f64>() < self.cfg.switch_prob {
                    (true, c)
                } else {
                    (false, m)
                }
            }
            (Some(m), None) => (false, m),
            (None, Some(c)) => (true, c),
            (None, None) => return Err(MixupError::Config("no active mode".into())),
        };
        let lam = beta.sample(rng);
        if lam == 1.0 {
            return Ok(MixDecision::Unmixed);
        }
        if !use_cutmix {
            return Ok(MixDecision::Mixup { lam });
        }
        let (cut, lam) = cutmix_bbox_and_lam(height, width, lam, self.cfg.cutmix_minmax, self.cfg.correct_lam, rng)?;
        Ok(MixDecision::Cutmix { cut, lam })
    }

    /// Mixes `images` (B, C, H, W; B even) and their class `labels` (B) as
    /// `decision` says, returning the images and the (B, K) f32 targets.
    ///
    /// # Errors
    /// [`MixupError::Batch`] for input that is not 4-D, an odd B (timm
    /// refuses it too), a label count other than B, a label ≥ K, or a box
    /// outside the image.
    pub fn apply(&self, images: &Tensor, labels: &[u32], decision: &MixDecision) -> Result<MixedBatch, MixupError> {
        let (batch, _, height, width) = images
            .dims4()
            .map_err(|_| MixupError::Batch(format!("images must be (B, C, H, W), got {:?}", images.dims())))?;
        if batch % 2 != 0 {
            return Err(MixupError::Batch(format!("batch size must be even, got {batch}")));
        }
        if labels.len() != batch {
            return Err(MixupError::Batch(format!("{} labels for {batch} images", labels.len())));
        }
        let mixed = match *decision {
            MixDecision::Unmixed => images.clone(),
            MixDecision::Mixup { lam } => (images.affine(lam, 0.0)? + flip_batch(images)?.affine(1.0 - lam, 0.0)?)?,
            MixDecision::Cutmix { cut, .. } => {
                if cut.y1 > height || cut.x1 > width || cut.y0 > cut.y1 || cut.x0 > cut.x1 {
                    return Err(MixupError::Batch(format!("cutmix box {cut:?} is not inside the {height} x {width} images")));
                }
                if cut.area() == 0 {
                    images.clone()
                } else {
                    let channels = images.dim(1)?;
                    let ranges = [0..batch, 0..channels, cut.y0..cut.y1, cut.x0..cut.x1];
                    let patch = flip_batch(images)?.narrow(2, cut.y0, cut.y1 - cut.y0)?.narrow(3, cut.x0, cut.x1 - cut.x0)?;
                    images.slice_assign(&ranges, &patch)?
                }
            }
        };
        let targets = mixup_target(labels, self.cfg.num_classes, decision.lam(), self.cfg.label_smoothing, images.device())?;
        Ok(MixedBatch { images: mixed, targets, decision: *decision })
    }

    /// [`Mixup::sample`] then [`Mixup::apply`]: timm's `Mixup.__call__`.
    ///
    /// # Errors
    /// As those two.
    pub fn mix<R: Rng + ?Sized>(&self, images: &Tensor, labels: &[u32], rng: &mut R) -> Result<MixedBatch, MixupError> {
        let (_, _, height, width) = images
            .dims4()
            .map_err(|_| MixupError::Batch(format!("images must be (B, C, H, W), got {:?}", images.dims())))?;
        let decision = self.sample(height, width, rng)?;
        self.apply(images, labels, &decision)
    }
}

/// The batch in reverse order (`x.flip(0)`).
fn flip_batch(x: &Tensor) -> candle_core::Result<Tensor> {
    let b = x.dim(0)?;
    let reversed: Vec<u32> = (0..b as u32).rev().collect();
    x.index_select(&Tensor::from_vec(reversed, b, x.device())?, 0)
}

/// Mixed smoothed one-hot targets (timm `mixup_target`):
/// `λ smooth(y) + (1 - λ) smooth(flip(y))`, with `ε/K` off the label and
/// `1 - ε + ε/K` on it, computed in f32 as timm. Returns (B, K) f32.
///
/// # Errors
/// [`MixupError::Batch`] for a label ≥ `num_classes`.
pub fn mixup_target(labels: &[u32], num_classes: usize, lam: f64, smoothing: f64, device: &Device) -> Result<Tensor, MixupError> {
    if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &c)| c as usize >= num_classes) {
        return Err(MixupError::Batch(format!("label {label} of image {i} is not below num_classes {num_classes}")));
    }
    let off_value = smoothing / num_classes as f64;
    let (on, off) = ((1.0 - smoothing + off_value) as f32, off_value as f32);
    let (lam_f, rest_f) = (lam as f32, (1.0 - lam) as f32);
    let smooth = |label: u32, k: usize| if k == label as usize { on } else { off };
    let b = labels.len();
    let mut data = Vec::with_capacity(b * num_classes);
    for (i, &y1) in labels.iter().enumerate() {
        let y2 = labels[b - 1 - i];
        data.extend((0..num_classes).map(|k| smooth(y1, k) * lam_f + smooth(y2, k) * rest_f));
    }
    Ok(Tensor::from_vec(data, (b, num_classes), device)?)
}

/// The box of timm's `rand_bbox` around a given centre (`cy`, `cx`): side
/// `int(H sqrt(1 - λ))` × `int(W sqrt(1 - λ))`, clipped to the image.
pub fn bbox_around(height: usize, width: usize, lam: f64, cy: usize, cx: usize) -> CutBox {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    // `as usize` truncates towards zero, as Python's int() for these
    // non-negative values.
    let (cut_h, cut_w) = ((height as f64 * ratio) as usize, (width as f64 * ratio) as usize);
    CutBox {
        y0: cy.saturating_sub(cut_h / 2),
        y1: (cy + cut_h.div_ceil(2)).min(height),
        x0: cx.saturating_sub(cut_w / 2),
        x1: (cx + cut_w.div_ceil(2)).min(width),
    }
}

/// timm `rand_bbox`: a box of side `sqrt(1 - λ)` times the image's, its
/// centre uniform over the pixels, clipped to the image.
pub fn rand_bbox<R: Rng + ?Sized>(height: usize, width: usize, lam: f64, rng: &mut R) -> CutBox {
    let cy = rng.gen_range(0..height.max(1));
    let cx = rng.gen_range(0..width.max(1));
    bbox_around(height, width, lam, cy, cx)
}

/// The side lengths timm's `rand_bbox_minmax` draws from for an image side
/// `size`: `int(size * min)..int(size * max)` (upper end excluded).
///
/// # Errors
/// [`MixupError::Batch`] when that range is empty (image too small for
/// the bounds).
pub fn minmax_side_range(size: usize, minmax: [f64; 2]) -> Result<std::ops::Range<usize>, MixupError> {
    let range = (size as f64 * minmax[0]) as usize..(size as f64 * minmax[1]) as usize;
    if range.is_empty() {
        return Err(MixupError::Batch(format!("cutmix_minmax {minmax:?} leaves no box side for an image side of {size}")));
    }
    Ok(range)
}

/// The positions timm's `rand_bbox_minmax` draws a box corner from along
/// an image side `size` for a box side `side`: `0..size - side + 1`, every
/// position where the box fits.
pub fn minmax_corner_range(size: usize, side: usize) -> std::ops::Range<usize> {
    0..(size + 1).saturating_sub(side)
}

/// timm `rand_bbox_minmax`: height and width drawn from
/// [`minmax_side_range`], then the corner from [`minmax_corner_range`].
///
/// # Errors
/// As [`minmax_side_range`].
pub fn rand_bbox_minmax<R: Rng + ?Sized>(height: usize, width: usize, minmax: [f64; 2], rng: &mut R) -> Result<CutBox, MixupError> {
    let cut_h = rng.gen_range(minmax_side_range(height, minmax)?);
    let cut_w = rng.gen_range(minmax_side_range(width, minmax)?);
    let y0 = rng.gen_range(minmax_corner_range(height, cut_h));
    let x0 = rng.gen_range(minmax_corner_range(width, cut_w));
    Ok(CutBox { y0, y1: y0 + cut_h, x0, x1: x0 + cut_w })
}

/// The uncovered fraction of an H × W image once `cut` is pasted in
/// (timm's λ correction).
pub fn lam_from_box(height: usize, width: usize, cut: &CutBox) -> f64 {
    1.0 - cut.area() as f64 / (height * width) as f64
}

/// timm `cutmix_bbox_and_lam`: the box (minmax variant when `minmax` is
/// set) and λ, corrected to the clipped box's area when `correct_lam` or
/// with a minmax box.
///
/// # Errors
/// As [`minmax_side_range`].
pub fn cutmix_bbox_and_lam<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    lam: f64,
    minmax: Option<[f64; 2]>,
    correct_lam: bool,
    rng: &mut R,
) -> Result<(CutBox, f64), MixupError> {
    let cut = match minmax {
        Some(mm) => rand_bbox_minmax(height, width, mm, rng)?,
        None => rand_bbox(height, width, lam, rng),
    };
    let lam = if correct_lam || minmax.is_some() { lam_from_box(height, width, &cut) } else { lam };
    Ok((cut, lam))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rand::SeedableRng;
    use serde::Deserialize;

    /// Fixtures from `engine/tests/fixtures/make_cls_fixtures.py` (timm's
    /// own functions on fixed λ, centres and boxes).
    const FIXTURE: &str = include_str!("../../engine/tests/fixtures/mixup_reference.json");

    #[derive(Deserialize)]
    struct BoxCase {
        height: usize,
        width: usize,
        lam: f64,
        cy: usize,
        cx: usize,
        cut: [usize; 4],
        lam_corrected: f64,
    }

    #[derive(Deserialize)]
    struct MinmaxCase {
        height: usize,
        width: usize,
        minmax: [f64; 2],
        /// What numpy's `randint` was patched to return, in call order:
        /// cut_h, cut_w, yl, xl.
        draws: [usize; 4],
        /// The `(low, high)` (high excluded) of those four calls.
        randint_ranges: [[usize; 2]; 4],
        /// timm's box and λ for those draws.
        cut: [usize; 4],
        lam: f64,
    }

    #[derive(Deserialize)]
    struct BatchCase {
        name: String,
        shape: [usize; 4],
        images: Vec<f32>,
        labels: Vec<u32>,
        num_classes: usize,
        smoothing: f64,
        /// "mixup", "cutmix" or "none".
        kind: String,
        lam: f64,
        cut: Option<[usize; 4]>,
        mixed: Vec<f32>,
        targets: Vec<f32>,
        lam_out: f64,
    }

    #[derive(Deserialize)]
    struct Fixture {
        boxes: Vec<BoxCase>,
        minmax: Vec<MinmaxCase>,
        batches: Vec<BatchCase>,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(FIXTURE).unwrap()
    }

    fn cut_box(c: [usize; 4]) -> CutBox {
        CutBox { y0: c[0], y1: c[1], x0: c[2], x1: c[3] }
    }

    #[test]
    fn boxes_and_corrected_lambdas_equal_timm() {
        let f = fixture();
        assert!(f.boxes.len() >= 10);
        for c in &f.boxes {
            let cut = bbox_around(c.height, c.width, c.lam, c.cy, c.cx);
            assert_eq!(cut, cut_box(c.cut), "{}x{} lam {} at ({}, {})", c.height, c.width, c.lam, c.cy, c.cx);
            assert_eq!(lam_from_box(c.height, c.width, &cut), c.lam_corrected);
        }
    }

    /// timm draws the centre with `randint(0, H)`; ours must cover the same
    /// range, every value reachable.
    #[test]
    fn box_centres_cover_every_pixel() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (mut seen_y, mut seen_x) = (vec![false; 7], vec![false; 5]);
        for _ in 0..500 {
            // lam = 1: an empty box at the centre itself.
            let b = rand_bbox(7, 5, 1.0, &mut rng);
            assert_eq!((b.y0, b.x0), (b.y1, b.x1));
            seen_y[b.y0] = true;
            seen_x[b.x0] = true;
        }
        assert!(seen_y.iter().all(|s| *s) && seen_x.iter().all(|s| *s));
    }

    #[test]
    fn minmax_boxes_draw_from_timms_ranges() {
        let f = fixture();
        assert!(f.minmax.len() >= 3);
        for c in &f.minmax {
            let [cut_h, cut_w, y0, x0] = c.draws;
            let range = |r: [usize; 2]| r[0]..r[1];
            assert_eq!(minmax_side_range(c.height, c.minmax).unwrap(), range(c.randint_ranges[0]));
            assert_eq!(minmax_side_range(c.width, c.minmax).unwrap(), range(c.randint_ranges[1]));
            assert_eq!(minmax_corner_range(c.height, cut_h), range(c.randint_ranges[2]));
            assert_eq!(minmax_corner_range(c.width, cut_w), range(c.randint_ranges[3]));
            let cut = CutBox { y0, y1: y0 + cut_h, x0, x1: x0 + cut_w };
            assert_eq!(cut, cut_box(c.cut));
            assert_eq!(lam_from_box(c.height, c.width, &cut), c.lam);
        }
        // Drawn boxes stay inside those ranges.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let b = rand_bbox_minmax(20, 30, [0.2, 0.8], &mut rng).unwrap();
            assert!((4..16).contains(&(b.y1 - b.y0)) && (6..24).contains(&(b.x1 - b.x0)) && b.y1 <= 20 && b.x1 <= 30);
        }
        assert!(minmax_side_range(4, [0.1, 0.2]).is_err(), "int(0.4)..int(0.8) is empty");
    }

    #[test]
    fn mixed_batches_and_targets_equal_timm_bit_for_bit() {
        let f = fixture();
        assert!(f.batches.len() >= 4);
        for c in &f.batches {
            let mixup = Mixup::new(MixupConfig { num_classes: c.num_classes, label_smoothing: c.smoothing, ..MixupConfig::default() }).unwrap();
            let images = Tensor::from_vec(c.images.clone(), c.shape.to_vec(), &Device::Cpu).unwrap();
            let decision = match c.kind.as_str() {
                "mixup" => MixDecision::Mixup { lam: c.lam },
                "cutmix" => {
                    let cut = cut_box(c.cut.unwrap());
                    MixDecision::Cutmix { cut, lam: lam_from_box(c.shape[2], c.shape[3], &cut) }
                }
                "none" => MixDecision::Unmixed,
                other => panic!("unknown kind {other}"),
            };
            assert_eq!(decision.lam(), c.lam_out, "{}", c.name);
            let out = mixup.apply(&images, &c.labels, &decision).unwrap();
            assert_eq!(out.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(), c.mixed, "{}: images", c.name);
            let targets = out.targets.to_vec2::<f32>().unwrap();
            assert_eq!(targets.concat(), c.targets, "{}: targets", c.name);
            for row in &targets {
                let sum: f64 = row.iter().map(|v| *v as f64).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{}: row sums to {sum}", c.name);
            }
        }
    }

    #[test]
    fn lambdas_follow_beta_and_modes_follow_their_probabilities() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let cfg = MixupConfig { mixup_alpha: 0.8, cutmix_alpha: 1.0, prob: 0.6, switch_prob: 0.5, ..MixupConfig::default() };
        let mixup = Mixup::new(cfg).unwrap();
        let n = 20_000;
        let (mut unmixed, mut mixups, mut cutmixes, mut lam_sum, mut lam_sq) = (0, 0, 0, 0.0, 0.0);
        for _ in 0..n {
            match mixup.sample(32, 32, &mut rng).unwrap() {
                MixDecision::Unmixed => unmixed += 1,
                MixDecision::Mixup { lam } => {
                    mixups += 1;
                    lam_sum += lam;
                    lam_sq += lam * lam;
                }
                MixDecision::Cutmix { cut, lam } => {
                    cutmixes += 1;
                    assert_eq!(lam, lam_from_box(32, 32, &cut));
                }
            }
        }
        let frac = |k: i32| k as f64 / n as f64;
        // Binomial standard deviations are below 0.004 here; 4 sigma.
        assert!((frac(unmixed) - 0.4).abs() < 0.016, "{unmixed}");
        assert!((frac(mixups) - 0.3).abs() < 0.016 && (frac(cutmixes) - 0.3).abs() < 0.016);
        // Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2α + 1)) = 0.0962.
        let mean = lam_sum / mixups as f64;
        let var = lam_sq / mixups as f64 - mean * mean;
        assert!((mean - 0.5).abs() < 0.015 && (var - 1.0 / (4.0 * 2.6)).abs() < 0.01, "mean {mean} var {var}");
    }

    #[test]
    fn minmax_forces_cutmix_and_settings_are_checked() {
        let m = Mixup::new(MixupConfig { mixup_alpha: 0.0, cutmix_minmax: Some([0.2, 0.8]), ..MixupConfig::default() }).unwrap();
        assert_eq!(m.config().cutmix_alpha, 1.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert!(matches!(m.sample(20, 30, &mut rng).unwrap(), MixDecision::Cutmix { .. }));
        let bad = |cfg: MixupConfig| Mixup::new(cfg).unwrap_err().to_string();
        assert!(bad(MixupConfig { mixup_alpha: 0.0, ..MixupConfig::default() }).contains("one of"));
        assert!(bad(MixupConfig { prob: 1.5, ..MixupConfig::default() }).contains("prob"));
        assert!(bad(MixupConfig { cutmix_minmax: Some([0.5, 0.4]), ..MixupConfig::default() }).contains("cutmix_minmax"));
        assert!(bad(MixupConfig { mixup_alpha: -1.0, ..MixupConfig::default() }).contains("mixup_alpha"));
        assert!(bad(MixupConfig { num_classes: 0, ..MixupConfig::default() }).contains("num_classes"));
    }

    #[test]
    fn bad_batches_are_errors_naming_the_problem() {
        let m = Mixup::new(MixupConfig { num_classes: 3, ..MixupConfig::default() }).unwrap();
        let d = MixDecision::Mixup { lam: 0.5 };
        let x = Tensor::zeros((3, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(m.apply(&x, &[0, 1, 2], &d).unwrap_err().to_string().contains("even"));
        let x = Tensor::zeros((2, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(m.apply(&x, &[0], &d).unwrap_err().to_string().contains("1 labels for 2"));
        assert!(m.apply(&x, &[0, 3], &d).unwrap_err().to_string().contains("label 3"));
        let outside = MixDecision::Cutmix { cut: CutBox { y0: 0, y1: 3, x0: 0, x1: 1 }, lam: 0.5 };
        assert!(m.apply(&x, &[0, 1], &outside).unwrap_err().to_string().contains("not inside"));
        let flat = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(m.apply(&flat, &[0, 1], &d).unwrap_err().to_string().contains("(B, C, H, W)"));
    }
}
