//! timm's RandAugment (`timm/data/auto_augment.py`: `rand_augment_transform`,
//! `RandAugment`, `AugmentOp.__call__`): the config-string grammar and the
//! per-image random application.
//!
//! Grammar: `rand` followed by `-`-separated sections, each a key and a
//! number: `m` magnitude (int, default 10), `n` ops per image (int, 2),
//! `mstd` magnitude noise std (float, 0; above 100 means uniform in
//! `[0, m]`), `mmax` magnitude upper clip (int, 10), `inc` increasing-severity
//! op list (0/1), `p` probability of applying each chosen op (float, 0.5),
//! `w` op-choice weight set (only `w0`, timm 0.4.12's
//! `_RAND_CHOICE_WEIGHTS_0`). As in timm, a repeated `mstd`/`mmax` keeps its
//! first value, the other keys their last.
//!
//! Deliberate differences, each a silent behaviour of timm turned into an
//! error: a section without a number (timm skips it), a `t...` transform-set
//! section (timm >= 0.9 only), and `mmax0` is accepted but, as timm's
//! `magnitude_max or 10` does, means 10. `inc0` selects the plain list as in
//! timm 1.0 (timm 0.4.12 took any `inc` section as `inc1`; MAE-Lite only
//! uses `inc1`). Pinned against timm's parser in
//! `vision/tests/augment.rs::rand_augment_grammar_matches_timm`.
//!
//! Per image (`RandAugment.__call__`): `n` ops chosen uniformly *with*
//! replacement (weighted choice is *without* replacement, as numpy's
//! `choice(replace=False, p=...)`); each op then runs with probability `p`,
//! draws its magnitude `gauss(m, mstd)` (or uniform), clips it to
//! `[0, mmax]`, draws its sign, draws the affine filter when the pipeline's
//! interpolation is random, and applies.

use rand::Rng;

use super::augment_ops::{AugmentOp, OpContext, LEVEL_DENOM, RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS};
use super::geometry::Resample;
use super::random::{coin, gauss, uniform};
use super::TransformError;
use crate::RgbImage;

/// timm's `mstd > 100` rule: such a std means uniform sampling in `[0, m]`.
const UNIFORM_MSTD_THRESHOLD: f64 = 100.0;

/// timm 0.4.12's `_RAND_CHOICE_WEIGHTS_0`, in the order of
/// [`RAND_TRANSFORMS`] (and applied position-wise to the increasing list,
/// as 0.4.12 does).
const CHOICE_WEIGHTS_0: [f64; 15] = [0.025, 0.005, 0.0, 0.3, 0.0, 0.005, 0.005, 0.025, 0.005, 0.005, 0.025, 0.2, 0.2, 0.1, 0.1];

/// How the magnitude varies per op application.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MagnitudeNoise {
    /// Always the configured magnitude (`mstd0`, the default).
    Fixed,
    /// `random.gauss(m, std)` (`mstd` in (0, 100]).
    Gauss(f64),
    /// `random.uniform(0, m)` (`mstd` above 100).
    Uniform,
}

/// A parsed RandAugment config string (timm's `rand-m9-mstd0.5-inc1`).
#[derive(Clone, Debug, PartialEq)]
pub struct RandAugmentConfig {
    /// Ops applied per image (`n`).
    pub num_layers: usize,
    /// Magnitude on the 0..10 scale (`m`).
    pub magnitude: f64,
    /// Magnitude noise (`mstd`).
    pub noise: MagnitudeNoise,
    /// Upper clip of the magnitude (`mmax`; 10 when absent or 0).
    pub magnitude_max: f64,
    /// Probability of applying each chosen op (`p`).
    pub prob: f64,
    /// Whether the increasing-severity op list is used (`inc1`).
    pub increasing: bool,
    /// Weighted op choice (`w0`), without replacement.
    pub weighted: bool,
}

impl RandAugmentConfig {
    /// The ops the config chooses from, in timm's order.
    pub fn ops(&self) -> &'static [AugmentOp; 15] {
        if self.increasing {
            &RAND_INCREASING_TRANSFORMS
        } else {
            &RAND_TRANSFORMS
        }
    }

    /// Parses a timm RandAugment config string.
    ///
    /// # Errors
    /// [`TransformError::RandAugment`] naming the offending section: a first
    /// section other than `rand`, an unknown key, a missing or malformed
    /// number, `p` outside [0, 1], a weight set other than 0, or more ops per
    /// image than `w0` has non-zero weights.
    pub fn parse(config: &str) -> Result<Self, TransformError> {
        let err = |token: &str, reason: String| TransformError::RandAugment { config: config.to_string(), token: token.to_string(), reason };
        let mut sections = config.split('-');
        let head = sections.next().unwrap_or_default();
        if head != "rand" {
            return Err(err(head, "the first section must be `rand` (only RandAugment is supported)".into()));
        }
        let mut parsed = Self { num_layers: 2, magnitude: LEVEL_DENOM, noise: MagnitudeNoise::Fixed, magnitude_max: LEVEL_DENOM, prob: 0.5, increasing: false, weighted: false };
        let (mut noise_seen, mut max_seen) = (false, false);
        for section in sections {
            if section.starts_with('t') {
                return Err(err(section, "transform-set sections (`t...`, timm >= 0.9) are not supported".into()));
            }
            let Some(split) = section.find(|c: char| c.is_ascii_digit()) else {
                return Err(err(section, "expected a key followed by a number, e.g. `m9`".into()));
            };
            let (key, value) = section.split_at(split);
            let int = || value.parse::<usize>().map_err(|_| err(section, format!("`{key}` takes a whole number, got `{value}`")));
            let float = || {
                value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| err(section, format!("`{key}` takes a number, got `{value}`")))
            };
            match key {
                "m" => parsed.magnitude = int()? as f64,
                "n" => parsed.num_layers = int()?,
                "inc" => parsed.increasing = int()? != 0,
                "p" => {
                    let p = float()?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(err(section, format!("`p` is a probability in [0, 1], got {p}")));
                    }
                    parsed.prob = p;
                }
                "mstd" if !noise_seen => {
                    noise_seen = true;
                    let std = float()?;
                    parsed.noise = if std > UNIFORM_MSTD_THRESHOLD {
                        MagnitudeNoise::Uniform
                    } else if std > 0.0 {
                        MagnitudeNoise::Gauss(std)
                    } else {
                        MagnitudeNoise::Fixed
                    };
                }
                "mmax" if !max_seen => {
                    max_seen = true;
                    let max = int()?;
                    parsed.magnitude_max = if max == 0 { LEVEL_DENOM } else { max as f64 };
                }
                "mstd" => {
                    float()?;
                }
                "mmax" => {
                    int()?;
                }
                "w" => {
                    if int()? != 0 {
                        return Err(err(section, "only weight set `w0` exists".into()));
                    }
                    parsed.weighted = true;
                }
                _ => return Err(err(section, format!("unknown key `{key}` (expected m, n, mstd, mmax, inc, p or w)"))),
            }
        }
        let choosable = CHOICE_WEIGHTS_0.iter().filter(|&&w| w > 0.0).count();
        if parsed.weighted && parsed.num_layers > choosable {
            return Err(err("w0", format!("weighted choice is without replacement: at most {choosable} ops per image, got n{}", parsed.num_layers)));
        }
        Ok(parsed)
    }
}

impl std::str::FromStr for RandAugmentConfig {
    type Err = TransformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// RandAugment as timm's `transforms_imagenet_train` builds it.
#[derive(Clone, Debug, PartialEq)]
pub struct RandAugment {
    /// The parsed config.
    pub config: RandAugmentConfig,
    /// Fill colour of the affine ops (`img_mean`: `round(255 * mean)`).
    pub fill: [u8; 3],
    /// The affine ops' filter; `None` draws bilinear or bicubic per op, as
    /// timm does when the train interpolation is `random`.
    pub resample: Option<Resample>,
    /// Maximum relative shift of TranslateX/YRel (timm's default 0.45).
    pub translate_pct: f64,
}

/// timm's default `translate_pct` for TranslateX/YRel.
pub const TRANSLATE_PCT: f64 = 0.45;

impl RandAugment {
    /// The ops chosen for one image (`np.random.choice`).
    pub fn choose_ops(&self, rng: &mut impl Rng) -> Vec<AugmentOp> {
        let ops = self.config.ops();
        if !self.config.weighted {
            return (0..self.config.num_layers).map(|_| ops[rng.gen_range(0..ops.len())]).collect();
        }
        // Successive weighted draws among the ops not chosen yet.
        let mut weights = CHOICE_WEIGHTS_0;
        let mut chosen = Vec::with_capacity(self.config.num_layers);
        for _ in 0..self.config.num_layers {
            let total: f64 = weights.iter().sum();
            let mut u = rng.gen::<f64>() * total;
            let mut pick = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
            for (k, &w) in weights.iter().enumerate() {
                if w > 0.0 && u < w {
                    pick = k;
                    break;
                }
                u -= w;
            }
            weights[pick] = 0.0;
            chosen.push(ops[pick]);
        }
        chosen
    }

    /// One op's magnitude: the configured one, with noise when `mstd` is
    /// set, clipped to `[0, mmax]`.
    pub fn draw_magnitude(&self, rng: &mut impl Rng) -> f64 {
        let cfg = &self.config;
        let magnitude = match cfg.noise {
            MagnitudeNoise::Fixed => cfg.magnitude,
            MagnitudeNoise::Gauss(std) => gauss(rng, cfg.magnitude, std),
            MagnitudeNoise::Uniform => uniform(rng, 0.0, cfg.magnitude),
        };
        magnitude.min(cfg.magnitude_max).max(0.0)
    }

    /// One op application (`AugmentOp.__call__`): the probability check,
    /// magnitude noise and clip, sign, filter, then the op.
    pub fn apply_op(&self, op: AugmentOp, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        match self.draw_op(op, rng) {
            Some((arg, ctx)) => op.apply(img, arg, &ctx),
            None => img.clone(),
        }
    }

    /// The draws of [`RandAugment::apply_op`] in its order: `None` when the
    /// probability check skips the op, else its argument and context.
    fn draw_op(&self, op: AugmentOp, rng: &mut impl Rng) -> Option<(f64, OpContext)> {
        let cfg = &self.config;
        if cfg.prob < 1.0 && !coin(rng, cfg.prob) {
            return None;
        }
        let magnitude = self.draw_magnitude(rng);
        let negate = op.random_sign() && rng.gen_bool(0.5);
        let arg = op.level_to_arg(magnitude, negate, self.translate_pct).unwrap_or(0.0);
        let resample = match (self.resample, op.is_affine()) {
            (Some(r), _) => r,
            (None, true) if rng.gen_bool(0.5) => Resample::Bilinear,
            (None, _) => Resample::Bicubic,
        };
        Some((arg, OpContext { fill: self.fill, resample, translate_pct: self.translate_pct }))
    }

    /// Chooses the ops and applies them in turn.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        self.apply_owned(img.clone(), rng)
    }

    /// [`RandAugment::apply`] on an image the caller gives up, so skipped
    /// ops cost no copy.
    pub fn apply_owned(&self, img: RgbImage, rng: &mut impl Rng) -> RgbImage {
        let mut out = img;
        for op in self.choose_ops(rng) {
            if let Some((arg, ctx)) = self.draw_op(op, rng) {
                out = op.apply(&out, arg, &ctx);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_paper_config_parses() {
        let c = RandAugmentConfig::parse("rand-m9-mstd0.5-inc1").unwrap();
        assert_eq!(c.magnitude, 9.0);
        assert_eq!(c.noise, MagnitudeNoise::Gauss(0.5));
        assert!(c.increasing);
        assert_eq!((c.num_layers, c.prob, c.magnitude_max), (2, 0.5, 10.0));
    }

    #[test]
    fn errors_name_the_bad_section() {
        for (config, token) in [("rand-m9-foo", "foo"), ("rand-m9-x3", "x3"), ("rand-m9.5", "m9.5"), ("augmix-m5", "augmix"), ("rand-p1.5", "p1.5"), ("rand-w1", "w1"), ("rand-tweights", "tweights"), ("rand-m9--n2", "")] {
            let e = RandAugmentConfig::parse(config).unwrap_err().to_string();
            assert!(e.contains(&format!("`{token}`")) && e.contains(config), "{config}: {e}");
        }
    }

    #[test]
    fn repeated_noise_keeps_the_first_like_timm_setdefault() {
        let c = RandAugmentConfig::parse("rand-mstd0.5-mstd2-m3-m4-mmax12-mmax15").unwrap();
        assert_eq!((c.noise, c.magnitude, c.magnitude_max), (MagnitudeNoise::Gauss(0.5), 4.0, 12.0));
        assert_eq!(RandAugmentConfig::parse("rand-mmax0").unwrap().magnitude_max, 10.0);
    }

    #[test]
    fn weighted_choice_is_without_replacement_and_skips_zero_weights() {
        use rand::SeedableRng;
        let ra = RandAugment {
            config: RandAugmentConfig::parse("rand-w0-n13").unwrap(),
            fill: [0; 3],
            resample: None,
            translate_pct: TRANSLATE_PCT,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            let mut names: Vec<_> = ra.choose_ops(&mut rng).iter().map(|o| o.name()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), 13);
            assert!(!names.contains(&"Invert") && !names.contains(&"Posterize"));
        }
        assert!(RandAugmentConfig::parse("rand-w0-n14").is_err());
    }
}
