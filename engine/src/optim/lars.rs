//! LARS (layer-wise adaptive rate scaling) exactly as MAE's linear probe uses
//! it (`util/lars.py::LARS`, from MoCo-v3), per parameter:
//!
//! ```text
//! d = g
//! if p.ndim > 1:                          (weights; not biases or norms)
//!     d = d + wd * p                      (coupled weight decay)
//!     q = eta * ||p|| / ||d||             (trust ratio; 1 if either norm is 0)
//!     d = d * q
//! mu = mu * momentum + d                  (mu starts at zero)
//! p += -lr * mu
//! ```
//!
//! Parameters of rank <= 1 get neither weight decay nor the trust ratio,
//! whatever their group's `weight_decay`; `lr` is the group's
//! `lr * lr_scale`. MAE's probe trains only the head, so this optimizer
//! runs as composed tensor ops on every device (no fused CPU kernel: the
//! head is a few hundred thousand numbers). Verified against a reference
//! implementation in PyTorch in `tests/optim_reference.rs`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::{buffer_state, empty_per_param, grad_for, index_params, load_buffer_state, Optimizer, ParamGroup, PerParam};
use crate::{Error, Result};

/// The name of LARS's momentum buffer in the exported state (MAE's `mu`).
const MU: &str = "mu";

/// LARS hyper-parameters other than the learning rate and the (per-group)
/// weight decay. Defaults are MAE's `LARS.__init__`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LarsConfig {
    /// Momentum factor of the buffer `mu`.
    pub momentum: f64,
    /// `eta` of the trust ratio `eta * ||p|| / ||g + wd * p||`.
    pub trust_coefficient: f64,
}

impl Default for LarsConfig {
    /// MAE's linear probe: momentum 0.9, trust coefficient 0.001.
    fn default() -> Self {
        Self {
            momentum: 0.9,
            trust_coefficient: 0.001,
        }
    }
}

/// MAE's `LARS` over parameter groups.
#[derive(Debug)]
pub struct Lars {
    cfg: LarsConfig,
    groups: Vec<ParamGroup>,
    index: HashMap<String, (usize, usize)>,
    /// Momentum buffers, created on a parameter's first gradient.
    buffers: PerParam<Tensor>,
    steps: u64,
}

impl Lars {
    /// A LARS optimizer over `groups`.
    ///
    /// # Errors
    /// [`Error::Config`] for duplicate parameter names, a negative
    /// `lr_scale`/`weight_decay`, or a negative or non-finite momentum or
    /// trust coefficient.
    pub fn new(groups: Vec<ParamGroup>, cfg: LarsConfig) -> Result<Self> {
        for (key, v) in [
            ("optimizer.momentum", cfg.momentum),
            ("optimizer.trust_coefficient", cfg.trust_coefficient),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!("{key} must be >= 0, got {v}")));
            }
        }
        let index = index_params(&groups)?;
        let buffers = empty_per_param(&groups);
        Ok(Self {
            cfg,
            groups,
            index,
            buffers,
            steps: 0,
        })
    }
}

/// The Euclidean norm of `t`, accumulated in f64.
fn norm(t: &Tensor) -> Result<f64> {
    let sum = t.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    Ok(sum.sqrt())
}

/// The update direction before momentum: `g`, or for a weight (rank > 1)
/// `(g + wd * p) * q` with the trust ratio `q`.
fn scaled_update(p: &Tensor, g: Tensor, wd: f64, eta: f64) -> Result<Tensor> {
    if p.rank() <= 1 {
        return Ok(g);
    }
    let d = if wd == 0.0 { g } else { (g + (p * wd)?)? };
    let (param_norm, update_norm) = (norm(p)?, norm(&d)?);
    let q = if param_norm > 0.0 && update_norm > 0.0 {
        eta * param_norm / update_norm
    } else {
        1.0
    };
    Ok((d * q)?)
}

impl Optimizer for Lars {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let LarsConfig {
            momentum,
            trust_coefficient,
        } = self.cfg;
        for (gi, group) in self.groups.iter().enumerate() {
            let neg_lr = -(lr * group.lr_scale);
            for (pi, (name, var)) in group.params.iter().enumerate() {
                let Some(g) = grad_for(grads, name, var)? else {
                    continue;
                };
                let p = var.as_tensor();
                let d = scaled_update(p, g, group.weight_decay, trust_coefficient)?;
                let slot = &mut self.buffers[gi][pi];
                // A zero buffer times the momentum plus d is d: the first step copies.
                let mu = match slot.take() {
                    None => d.copy()?,
                    Some(mu) => ((mu * momentum)? + d)?,
                };
                var.set(&(p + (&mu * neg_lr)?)?)?;
                *slot = Some(mu);
            }
        }
        Ok(())
    }

    fn step_count(&self) -> u64 {
        self.steps
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        buffer_state(&self.groups, &self.buffers, MU)
    }

    fn load_state(&mut self, state: &[(String, Tensor)], step_count: u64) -> Result<()> {
        self.buffers = load_buffer_state(state, &self.groups, &self.index, MU)?;
        self.steps = step_count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::{Device, Var};

    fn one_param(p: &Var, wd: f64, cfg: LarsConfig) -> Lars {
        let groups = vec![ParamGroup {
            params: vec![("p".into(), p.clone())],
            lr_scale: 1.0,
            weight_decay: wd,
        }];
        Lars::new(groups, cfg).unwrap()
    }

    fn step_with(p: &Var, opt: &mut Lars, g: &Tensor, lr: f64) {
        let grads = (p.as_tensor() * g).unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&grads, lr).unwrap();
    }

    /// Hand-worked: p = [[3, 4]] (norm 5), g = [[0, 1]], wd = 1, eta = 0.5,
    /// momentum 0.5, lr 0.1.
    /// step 1: d = [[3, 5]] (norm sqrt 34); q = 2.5 / sqrt 34; mu = d q;
    ///         p = p - 0.1 mu.
    #[test]
    fn weight_gets_decay_and_trust_ratio_by_hand() {
        let p = Var::new(&[[3.0f64, 4.0]], &Device::Cpu).unwrap();
        let cfg = LarsConfig {
            momentum: 0.5,
            trust_coefficient: 0.5,
        };
        let mut opt = one_param(&p, 1.0, cfg);
        let g = Tensor::new(&[[0.0f64, 1.0]], &Device::Cpu).unwrap();
        step_with(&p, &mut opt, &g, 0.1);
        let q = 2.5 / 34f64.sqrt();
        let mu1 = [3.0 * q, 5.0 * q];
        let p1 = [3.0 - 0.1 * mu1[0], 4.0 - 0.1 * mu1[1]];
        let got = p.as_tensor().to_vec2::<f64>().unwrap()[0].clone();
        assert!((got[0] - p1[0]).abs() < 1e-14 && (got[1] - p1[1]).abs() < 1e-14, "{got:?} vs {p1:?}");
        // step 2: the buffer carries the first direction at half weight.
        step_with(&p, &mut opt, &g, 0.1);
        let d2 = [p1[0], p1[1] + 1.0];
        let q2 = 0.5 * (p1[0].hypot(p1[1])) / d2[0].hypot(d2[1]);
        let mu2 = [0.5 * mu1[0] + d2[0] * q2, 0.5 * mu1[1] + d2[1] * q2];
        let p2 = [p1[0] - 0.1 * mu2[0], p1[1] - 0.1 * mu2[1]];
        let got = p.as_tensor().to_vec2::<f64>().unwrap()[0].clone();
        assert!((got[0] - p2[0]).abs() < 1e-14 && (got[1] - p2[1]).abs() < 1e-14, "{got:?} vs {p2:?}");
    }

    /// Rank <= 1: plain momentum SGD, the group's weight decay ignored.
    #[test]
    fn bias_gets_neither_decay_nor_trust_ratio() {
        let p = Var::new(&[3.0f64, 4.0], &Device::Cpu).unwrap();
        let mut opt = one_param(&p, 1.0, LarsConfig::default());
        let g = Tensor::new(&[0.0f64, 1.0], &Device::Cpu).unwrap();
        step_with(&p, &mut opt, &g, 0.1);
        step_with(&p, &mut opt, &g, 0.1);
        // mu = 1, then 1.9; p = 4 - 0.1 - 0.19.
        assert_eq!(p.as_tensor().to_vec1::<f64>().unwrap(), vec![3.0, 4.0 - 0.1 - 0.19]);
    }

    /// A zero weight (or a zero update) keeps q = 1, as MAE's `torch.where`.
    #[test]
    fn zero_weight_uses_a_trust_ratio_of_one() {
        let p = Var::new(&[[0.0f64, 0.0]], &Device::Cpu).unwrap();
        let mut opt = one_param(&p, 0.0, LarsConfig::default());
        let g = Tensor::new(&[[2.0f64, -1.0]], &Device::Cpu).unwrap();
        step_with(&p, &mut opt, &g, 0.5);
        assert_eq!(p.as_tensor().to_vec2::<f64>().unwrap(), vec![vec![-1.0, 0.5]]);
    }

    #[test]
    fn negative_trust_coefficient_is_rejected() {
        let cfg = LarsConfig {
            momentum: 0.9,
            trust_coefficient: -1.0,
        };
        let e = Lars::new(vec![], cfg).unwrap_err().to_string();
        assert!(e.contains("optimizer.trust_coefficient"), "{e}");
    }
}
