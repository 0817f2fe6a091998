//! Per-iteration learning-rate schedules.
//!
//! * [`Schedule::WarmupCosine`] is MAE-Lite's `warmcos` / `warmcos_scale`
//!   (`mae_lite/utils/lr_scheduler.py::warm_cos_lr`, YOLOX lineage) with the
//!   `min_lr` floor: linear from `warmup_lr_start` to `base_lr` over
//!   `warmup_iters`, then `min_lr + 0.5 (base_lr - min_lr) (1 + cos(pi t / T))`.
//! * [`Schedule::WarmupMultiStep`] is detectron2's ViTDet schedule,
//!   `LRMultiplier(WarmupParamScheduler(MultiStepParamScheduler(...)))`
//!   (`detectron2/solver/lr_scheduler.py`, fvcore's `CompositeParamScheduler`).
//!
//! Both return the *base* learning rate; each parameter group multiplies it
//! by its own `lr_scale` (see [`crate::optim::ParamGroup`]), which is what
//! MAE-Lite's `warmcos_scale` does.
//!
//! Deviations, both deliberate:
//! * warm_cos_lr keeps evaluating the cosine past `total_iters` (the lr rises
//!   again); here `t` is clamped at `T`, so the lr stays at `min_lr`.
//! * fvcore's multi-step scheduler finds the milestone from
//!   `int((iter / max_iter + 1e-6) * max_iter)`, which is `iter` for any
//!   `max_iter` below 10^6; here it is `iter` exactly.
//!
//! Verified against the Python formulas in
//! `tests/fixtures/make_optim_fixtures.py` (`schedule_values.json`) by
//! `tests/optim_reference.rs::schedules_match_python`.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn default_warmup_factor() -> f64 {
    0.001
}

fn default_gamma() -> f64 {
    0.1
}

/// A learning-rate schedule, evaluated per iteration (0-based).
///
/// In a TOML recipe:
/// ```toml
/// [schedule]
/// kind = "warmup_cosine"
/// base_lr = 2.4e-3       # 1.5e-4 / 256 * batch 4096
/// total_iters = 125_200  # 400 epochs of 313 iterations
/// warmup_iters = 12_520  # 40 epochs
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The same learning rate at every iteration.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// Linear warmup, then cosine decay to `min_lr` (MAE-Lite `warmcos`).
    WarmupCosine {
        /// Peak learning rate, reached at `warmup_iters`.
        base_lr: f64,
        /// Length of the whole run in iterations; the cosine reaches
        /// `min_lr` here.
        total_iters: usize,
        /// Length of the linear warmup in iterations (0: none).
        warmup_iters: usize,
        /// Learning rate at iteration 0 (MAE: 0; MoCo-v3: 1e-6).
        #[serde(default)]
        warmup_lr_start: f64,
        /// Floor of the cosine (fine-tuning: 1e-6).
        #[serde(default)]
        min_lr: f64,
    },
    /// Linear warmup factor, then a step decay by `gamma` at each milestone
    /// (detectron2 `WarmupParamScheduler` + `MultiStepParamScheduler`).
    WarmupMultiStep {
        /// Learning rate between the warmup and the first milestone.
        base_lr: f64,
        /// Length of the linear warmup in iterations (0: none).
        warmup_iters: usize,
        /// Multiplier at iteration 0; it rises linearly to 1 at
        /// `warmup_iters` (ViTDet: 0.001).
        #[serde(default = "default_warmup_factor")]
        warmup_factor: f64,
        /// Iterations at which the learning rate is multiplied by `gamma`
        /// (from that iteration on), ascending.
        milestones: Vec<usize>,
        /// Decay per milestone.
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
}

impl Schedule {
    /// The learning rate for iteration `iter` (0-based: the value used by
    /// the optimizer step of that iteration).
    pub fn lr_at(&self, iter: usize) -> f64 {
        match self {
            Schedule::Constant { lr } => *lr,
            Schedule::WarmupCosine {
                base_lr,
                total_iters,
                warmup_iters,
                warmup_lr_start,
                min_lr,
            } => warm_cos(
                *base_lr,
                *total_iters,
                *warmup_iters,
                *warmup_lr_start,
                *min_lr,
                iter,
            ),
            Schedule::WarmupMultiStep {
                base_lr,
                warmup_iters,
                warmup_factor,
                milestones,
                gamma,
            } => {
                let step =
                    |i: usize| gamma.powi(milestones.iter().filter(|&&m| i >= m).count() as i32);
                if iter < *warmup_iters {
                    // fvcore LinearParamScheduler from warmup_factor * m(0) to m(warmup_iters).
                    let alpha = iter as f64 / *warmup_iters as f64;
                    let start = warmup_factor * step(0);
                    let end = step(*warmup_iters);
                    base_lr * (end * alpha + start * (1.0 - alpha))
                } else {
                    base_lr * step(iter)
                }
            }
        }
    }

    /// Checks the schedule once, at load time.
    ///
    /// # Errors
    /// [`Error::Config`] for a negative or non-finite learning rate,
    /// `warmup_iters > total_iters`, unsorted milestones, or a non-positive
    /// `gamma` / `warmup_factor`.
    pub fn validate(&self) -> Result<()> {
        let finite_nonneg = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "schedule.{name} must be a finite number >= 0, got {v}"
                )))
            }
        };
        match self {
            Schedule::Constant { lr } => finite_nonneg("lr", *lr),
            Schedule::WarmupCosine {
                base_lr,
                total_iters,
                warmup_iters,
                warmup_lr_start,
                min_lr,
            } => {
                finite_nonneg("base_lr", *base_lr)?;
                finite_nonneg("warmup_lr_start", *warmup_lr_start)?;
                finite_nonneg("min_lr", *min_lr)?;
                if warmup_iters > total_iters {
                    return Err(Error::Config(format!(
                        "schedule.warmup_iters ({warmup_iters}) must not exceed schedule.total_iters ({total_iters})"
                    )));
                }
                Ok(())
            }
            Schedule::WarmupMultiStep {
                base_lr,
                warmup_factor,
                milestones,
                gamma,
                ..
            } => {
                finite_nonneg("base_lr", *base_lr)?;
                if !(warmup_factor.is_finite() && *warmup_factor > 0.0) {
                    return Err(Error::Config(format!(
                        "schedule.warmup_factor must be > 0, got {warmup_factor}"
                    )));
                }
                if !(gamma.is_finite() && *gamma > 0.0) {
                    return Err(Error::Config(format!(
                        "schedule.gamma must be > 0, got {gamma}"
                    )));
                }
                if milestones.windows(2).any(|w| w[0] > w[1]) {
                    return Err(Error::Config(format!(
                        "schedule.milestones must be ascending, got {milestones:?}"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// MAE-Lite's `warm_cos_lr` with a `min_lr` floor; the operation order
/// follows the Python so results agree to the last bit where libm does.
fn warm_cos(base: f64, total: usize, warmup: usize, start: f64, min_lr: f64, iter: usize) -> f64 {
    if warmup > 0 && iter <= warmup {
        (base - start) * iter as f64 / warmup as f64 + start
    } else if total <= warmup {
        // No cosine phase at all: stay at the peak.
        base
    } else {
        let t = iter.min(total) - warmup;
        let span = total - warmup;
        min_lr
            + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * t as f64 / span as f64).cos())
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 * b.abs().max(1e-12)
    }

    #[test]
    fn warmup_cosine_hand_worked_points() {
        let s = Schedule::WarmupCosine {
            base_lr: 1.0,
            total_iters: 110,
            warmup_iters: 10,
            warmup_lr_start: 0.0,
            min_lr: 0.1,
        };
        assert_eq!(s.lr_at(0), 0.0);
        assert!(close(s.lr_at(5), 0.5));
        assert_eq!(s.lr_at(10), 1.0); // end of warmup: the peak
                                      // Half-way through the cosine (t = 50 of 100): min + (base - min) / 2.
        assert!(close(s.lr_at(60), 0.55));
        assert!(close(s.lr_at(110), 0.1)); // last iteration: min_lr
        assert!(close(s.lr_at(500), 0.1)); // clamped past the end
    }

    #[test]
    fn warmup_cosine_without_warmup_starts_at_peak() {
        let s = Schedule::WarmupCosine {
            base_lr: 2.0,
            total_iters: 4,
            warmup_iters: 0,
            warmup_lr_start: 0.0,
            min_lr: 0.0,
        };
        assert_eq!(s.lr_at(0), 2.0);
        assert!(close(s.lr_at(2), 1.0));
        assert!(s.lr_at(4).abs() < 1e-15);
    }

    #[test]
    fn warmup_multistep_hand_worked_points() {
        let s = Schedule::WarmupMultiStep {
            base_lr: 1e-4,
            warmup_iters: 250,
            warmup_factor: 0.001,
            milestones: vec![163_889, 177_546],
            gamma: 0.1,
        };
        assert!(close(s.lr_at(0), 1e-7)); // base * warmup_factor
                                          // alpha = 0.5: 0.001 * 0.5 + 0.5 = 0.5005
        assert!(close(s.lr_at(125), 1e-4 * 0.5005));
        assert!(close(s.lr_at(250), 1e-4));
        assert!(close(s.lr_at(163_888), 1e-4));
        assert!(close(s.lr_at(163_889), 1e-5)); // the milestone itself already decays
        assert!(close(s.lr_at(177_546), 1e-6));
        assert!(close(s.lr_at(184_374), 1e-6)); // last iteration
    }

    #[test]
    fn toml_round_trip_and_defaults() {
        let s: Schedule = toml::from_str(
            "kind = \"warmup_multi_step\"\nbase_lr = 1e-4\nwarmup_iters = 250\nmilestones = [10, 20]\n",
        )
        .unwrap();
        assert_eq!(
            s,
            Schedule::WarmupMultiStep {
                base_lr: 1e-4,
                warmup_iters: 250,
                warmup_factor: 0.001,
                milestones: vec![10, 20],
                gamma: 0.1
            }
        );
        let text = toml::to_string(&s).unwrap();
        assert!(text.contains("kind = \"warmup_multi_step\""), "{text}");
        assert_eq!(toml::from_str::<Schedule>(&text).unwrap(), s);
    }

    #[test]
    fn unknown_field_and_unknown_kind_are_errors_naming_them() {
        let e = toml::from_str::<Schedule>(
            "kind = \"warmup_cosine\"\nbase_lr = 1.0\ntotal_iters = 10\nwarmup_iters = 1\nmin_l = 0.1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("min_l"), "{e}");
        let e = toml::from_str::<Schedule>("kind = \"cosine\"\nlr = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cosine"), "{e}");
    }

    #[test]
    fn validate_rejects_bad_values() {
        let bad = [
            Schedule::Constant { lr: f64::NAN },
            Schedule::WarmupCosine {
                base_lr: 1.0,
                total_iters: 5,
                warmup_iters: 6,
                warmup_lr_start: 0.0,
                min_lr: 0.0,
            },
            Schedule::WarmupMultiStep {
                base_lr: 1.0,
                warmup_iters: 0,
                warmup_factor: 0.001,
                milestones: vec![20, 10],
                gamma: 0.1,
            },
            Schedule::WarmupMultiStep {
                base_lr: 1.0,
                warmup_iters: 0,
                warmup_factor: 0.001,
                milestones: vec![],
                gamma: 0.0,
            },
        ];
        for s in bad {
            let e = s.validate().unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{s:?}: {e}");
            assert!(e.is_user_error());
        }
        assert!(Schedule::Constant { lr: 0.1 }.validate().is_ok());
    }
}
