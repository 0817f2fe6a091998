//! SGD with momentum exactly as `torch.optim.SGD`
//! (`torch/optim/sgd.py::_single_tensor_sgd`, dampening 0), per parameter:
//!
//! ```text
//! d = g + wd * p                    (coupled weight decay, skipped if wd = 0)
//! if momentum != 0:
//!     buf = d                        on the parameter's first gradient
//!     buf = buf * momentum + d       afterwards
//!     d   = d + momentum * buf       if nesterov, else d = buf
//! p += -lr * d
//! ```
//!
//! MAE-Lite's transfer recipe uses momentum 0.9 with Nesterov
//! (`util/lr_decay.create_optimizer`). Verified against PyTorch in
//! `tests/optim_reference.rs`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::fused::{fusable, Elem, Fused2, Fused3, Kernel2, Kernel3};
use super::{buffer_state, empty_per_param, grad_for, index_params, load_buffer_state, Optimizer, ParamGroup, PerParam};
use crate::{Error, Result};

/// SGD hyper-parameters other than the learning rate and the (per-group)
/// weight decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdConfig {
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Nesterov momentum (requires `momentum > 0`).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    /// MAE-Lite's transfer recipe: momentum 0.9, Nesterov.
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: true,
        }
    }
}

/// `torch.optim.SGD` (dampening 0) over parameter groups.
#[derive(Debug)]
pub struct Sgd {
    cfg: SgdConfig,
    groups: Vec<ParamGroup>,
    index: HashMap<String, (usize, usize)>,
    /// Momentum buffers, created on a parameter's first gradient.
    buffers: PerParam<Tensor>,
    steps: u64,
    fused_cpu: bool,
}

impl Sgd {
    /// An SGD optimizer over `groups`.
    ///
    /// # Errors
    /// [`Error::Config`] for duplicate parameter names, a negative
    /// `lr_scale`/`weight_decay` or momentum, or Nesterov without momentum
    /// (PyTorch refuses it too).
    pub fn new(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Self> {
        if !(cfg.momentum.is_finite() && cfg.momentum >= 0.0) {
            return Err(Error::Config(format!(
                "optimizer.momentum must be >= 0, got {}",
                cfg.momentum
            )));
        }
        if cfg.nesterov && cfg.momentum == 0.0 {
            return Err(Error::Config(
                "optimizer.nesterov requires optimizer.momentum > 0".into(),
            ));
        }
        let index = index_params(&groups)?;
        let buffers = empty_per_param(&groups);
        Ok(Self {
            cfg,
            groups,
            index,
            buffers,
            steps: 0,
            fused_cpu: true,
        })
    }

    /// Chooses whether contiguous f32/f64 CPU parameters use the fused
    /// in-place kernels (the default) or the composed tensor-op path every
    /// other device uses; the switch exists so tests can check both on CPU.
    pub fn set_fused_cpu(&mut self, on: bool) {
        self.fused_cpu = on;
    }
}

/// `d = g + wd * p`, PyTorch's `grad.add(param, alpha=wd)`.
fn decayed<T: Elem>(g: T, p: T, wd: f64) -> T {
    if wd == 0.0 {
        g
    } else {
        g + T::of(wd) * p
    }
}

/// Updates the momentum buffer in place: `buf = (first ? 0 : buf * mom) + d`.
struct Buffer {
    momentum: f64,
    wd: f64,
    first: bool,
}

impl Kernel3 for Buffer {
    const NAME: &'static str = "sgd-momentum-buffer";
    fn elem<T: Elem>(&self, buf: T, g: T, p: T) -> T {
        let d = decayed(g, p, self.wd);
        if self.first {
            d
        } else {
            buf * T::of(self.momentum) + d
        }
    }
}

/// Parameter update with a momentum buffer.
struct MomentumUpdate {
    momentum: f64,
    wd: f64,
    neg_lr: f64,
    nesterov: bool,
}

impl Kernel3 for MomentumUpdate {
    const NAME: &'static str = "sgd-momentum-update";
    fn elem<T: Elem>(&self, p: T, g: T, buf: T) -> T {
        let d = if self.nesterov {
            decayed(g, p, self.wd) + T::of(self.momentum) * buf
        } else {
            buf
        };
        p + T::of(self.neg_lr) * d
    }
}

/// Parameter update without momentum.
struct PlainUpdate {
    wd: f64,
    neg_lr: f64,
}

impl Kernel2 for PlainUpdate {
    const NAME: &'static str = "sgd-update";
    fn elem<T: Elem>(&self, p: T, g: T) -> T {
        p + T::of(self.neg_lr) * decayed(g, p, self.wd)
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let SgdConfig { momentum, nesterov } = self.cfg;
        for (gi, group) in self.groups.iter().enumerate() {
            let neg_lr = -(lr * group.lr_scale);
            let wd = group.weight_decay;
            for (pi, (name, var)) in group.params.iter().enumerate() {
                let Some(g) = grad_for(grads, name, var)? else {
                    continue;
                };
                let p = var.as_tensor();
                let slot = &mut self.buffers[gi][pi];
                let fused = self.fused_cpu
                    && fusable(p)
                    && g.device().is_cpu()
                    && slot.as_ref().is_none_or(fusable);
                if fused {
                    let g = g.contiguous()?;
                    if momentum == 0.0 {
                        p.inplace_op2(&g, &Fused2(PlainUpdate { wd, neg_lr }))?;
                        continue;
                    }
                    let first = slot.is_none();
                    let buf = match slot {
                        Some(b) => b,
                        empty => {
                            empty.insert(Tensor::zeros(var.shape(), var.dtype(), var.device())?)
                        }
                    };
                    buf.inplace_op3(
                        &g,
                        p,
                        &Fused3(Buffer {
                            momentum,
                            wd,
                            first,
                        }),
                    )?;
                    p.inplace_op3(
                        &g,
                        buf,
                        &Fused3(MomentumUpdate {
                            momentum,
                            wd,
                            neg_lr,
                            nesterov,
                        }),
                    )?;
                } else {
                    let d = if wd == 0.0 { g } else { (g + (p * wd)?)? };
                    let d = if momentum == 0.0 {
                        d
                    } else {
                        let buf = match slot.take() {
                            None => d.copy()?,
                            Some(b) => ((b * momentum)? + &d)?,
                        };
                        let d = if nesterov {
                            (d + (&buf * momentum)?)?
                        } else {
                            buf.clone()
                        };
                        *slot = Some(buf);
                        d
                    };
                    var.set(&(p + (d * neg_lr)?)?)?;
                }
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
        buffer_state(&self.groups, &self.buffers, "momentum_buffer")
    }

    fn load_state(&mut self, state: &[(String, Tensor)], step_count: u64) -> Result<()> {
        self.buffers = load_buffer_state(state, &self.groups, &self.index, "momentum_buffer")?;
        self.steps = step_count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::{Device, Var};

    /// Hand-worked: p = 1, g = 2 every step, wd = 0.5, momentum 0.5, lr 0.1.
    /// step 1: d = 2 + 0.5*1 = 2.5; buf = 2.5; nesterov d = 2.5 + 1.25 = 3.75;
    ///         p = 1 - 0.375 = 0.625
    /// step 2: d = 2 + 0.3125 = 2.3125; buf = 1.25 + 2.3125 = 3.5625;
    ///         nesterov d = 2.3125 + 1.78125 = 4.09375; p = 0.625 - 0.409375
    #[test]
    fn nesterov_two_steps_by_hand() {
        for fused in [true, false] {
            let p = Var::new(&[1.0f64], &Device::Cpu).unwrap();
            let groups = vec![ParamGroup {
                params: vec![("p".into(), p.clone())],
                lr_scale: 1.0,
                weight_decay: 0.5,
            }];
            let mut opt = Sgd::new(
                groups,
                SgdConfig {
                    momentum: 0.5,
                    nesterov: true,
                },
            )
            .unwrap();
            opt.set_fused_cpu(fused);
            for _ in 0..2 {
                let grads = (p.as_tensor() * 2.0)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                opt.step(&grads, 0.1).unwrap();
            }
            let got = p.as_tensor().to_vec1::<f64>().unwrap()[0];
            assert!(
                (got - (0.625 - 0.409375)).abs() < 1e-15,
                "fused={fused}: {got}"
            );
            let st = opt.state().unwrap();
            assert_eq!(st[0].0, "p.momentum_buffer");
            assert!((st[0].1.to_vec1::<f64>().unwrap()[0] - 3.5625).abs() < 1e-15);
        }
    }

    #[test]
    fn nesterov_without_momentum_is_rejected() {
        let e = Sgd::new(
            vec![],
            SgdConfig {
                momentum: 0.0,
                nesterov: true,
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::Config(_)));
    }

    #[test]
    fn state_round_trip_into_a_fresh_optimizer_continues_identically() {
        let make = || {
            let p = Var::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
            let groups = vec![ParamGroup {
                params: vec![("p".into(), p.clone())],
                lr_scale: 0.5,
                weight_decay: 0.1,
            }];
            (p, Sgd::new(groups, SgdConfig::default()).unwrap())
        };
        let g = Tensor::new(&[0.5f32, 1.0, -1.5], &Device::Cpu).unwrap();
        let step = |p: &Var, opt: &mut Sgd| {
            let grads = (p.as_tensor() * &g)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads, 0.1).unwrap();
        };
        let (pa, mut a) = make();
        step(&pa, &mut a);
        let (pb, mut b) = make();
        pb.set(pa.as_tensor()).unwrap();
        b.load_state(&a.state().unwrap(), a.step_count()).unwrap();
        step(&pa, &mut a);
        step(&pb, &mut b);
        assert_eq!(
            pa.as_tensor().to_vec1::<f32>().unwrap(),
            pb.as_tensor().to_vec1::<f32>().unwrap()
        );
        assert_eq!(b.step_count(), 2);
    }
}
