//! AdamW exactly as `torch.optim.AdamW` (`torch/optim/adam.py::_single_tensor_adam`
//! with `decoupled_weight_decay=True`, no amsgrad), per parameter:
//!
//! ```text
//! step += 1
//! p  *= 1 - lr * wd                          (decoupled decay, first)
//! m   = m.lerp(g, 1 - beta1)
//! v   = v * beta2 + (1 - beta2) * g * g
//! denom = sqrt(v) / sqrt(1 - beta2^step) + eps
//! p  += -(lr / (1 - beta1^step)) * m / denom
//! ```
//!
//! `lr` is the group's `lr * lr_scale`; the step count is per parameter, as
//! in PyTorch, so a parameter that missed a gradient keeps its own bias
//! correction. Verified against PyTorch in `tests/optim_reference.rs`.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::fused::{fusable, Elem, Fused2, Fused3, Kernel2, Kernel3};
use super::{empty_per_param, grad_for, index_params, parse_state, read_step, Optimizer, ParamGroup, PerParam};
use crate::{Error, Result};

/// AdamW hyper-parameters other than the learning rate and the (per-group)
/// weight decay. Defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// `(beta1, beta2)`: decay of the first and second moment estimates
    /// (MAE pre-training: `[0.9, 0.95]`).
    pub betas: [f64; 2],
    /// Added to the bias-corrected root of the second moment.
    pub eps: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            betas: [0.9, 0.999],
            eps: 1e-8,
        }
    }
}

/// Per-parameter state, created on the parameter's first gradient.
#[derive(Debug)]
struct Slot {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// `torch.optim.AdamW` over parameter groups.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    groups: Vec<ParamGroup>,
    index: std::collections::HashMap<String, (usize, usize)>,
    slots: PerParam<Slot>,
    steps: u64,
    fused_cpu: bool,
}

impl AdamW {
    /// An AdamW optimizer over `groups`.
    ///
    /// # Errors
    /// [`Error::Config`] for duplicate parameter names, a negative
    /// `lr_scale`/`weight_decay`, betas outside `[0, 1)` or a negative eps.
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamWConfig) -> Result<Self> {
        let [b1, b2] = cfg.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return Err(Error::Config(format!(
                "optimizer.betas must lie in [0, 1), got {:?}",
                cfg.betas
            )));
        }
        if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
            return Err(Error::Config(format!(
                "optimizer.eps must be >= 0, got {}",
                cfg.eps
            )));
        }
        let index = index_params(&groups)?;
        let slots = empty_per_param(&groups);
        Ok(Self {
            cfg,
            groups,
            index,
            slots,
            steps: 0,
            fused_cpu: true,
        })
    }

    /// Chooses whether contiguous f32/f64 CPU parameters use the fused
    /// in-place kernel (the default) or the composed tensor-op path every
    /// other device uses. Both follow PyTorch's arithmetic; the switch exists
    /// so tests can check the composed path on CPU.
    pub fn set_fused_cpu(&mut self, on: bool) {
        self.fused_cpu = on;
    }
}

/// `m = m.lerp(g, w)` with PyTorch's two-sided lerp formula.
struct Moment1 {
    weight: f64,
}

impl Kernel2 for Moment1 {
    const NAME: &'static str = "adamw-exp-avg";
    fn elem<T: Elem>(&self, m: T, g: T) -> T {
        let w = T::of(self.weight);
        if self.weight < 0.5 {
            m + w * (g - m)
        } else {
            g - (g - m) * T::of(1.0 - self.weight)
        }
    }
}

/// `v = v * beta2 + (1 - beta2) * g * g` (`mul_` then `addcmul_`).
struct Moment2 {
    beta2: f64,
}

impl Kernel2 for Moment2 {
    const NAME: &'static str = "adamw-exp-avg-sq";
    fn elem<T: Elem>(&self, v: T, g: T) -> T {
        v * T::of(self.beta2) + T::of(1.0 - self.beta2) * g * g
    }
}

/// `p = p * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps)`.
struct Update {
    decay: f64,
    neg_step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
}

impl Kernel3 for Update {
    const NAME: &'static str = "adamw-update";
    fn elem<T: Elem>(&self, p: T, m: T, v: T) -> T {
        let p = p * T::of(self.decay);
        let denom = v.sqrt() / T::of(self.bc2_sqrt) + T::of(self.eps);
        p + T::of(self.neg_step_size) * (m / denom)
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let [beta1, beta2] = self.cfg.betas;
        for (gi, group) in self.groups.iter().enumerate() {
            let lr_g = lr * group.lr_scale;
            for (pi, (name, var)) in group.params.iter().enumerate() {
                let Some(g) = grad_for(grads, name, var)? else {
                    continue;
                };
                let slot = match &mut self.slots[gi][pi] {
                    Some(s) => s,
                    empty => empty.insert(Slot {
                        step: 0,
                        exp_avg: Tensor::zeros(var.shape(), var.dtype(), var.device())?,
                        exp_avg_sq: Tensor::zeros(var.shape(), var.dtype(), var.device())?,
                    }),
                };
                slot.step += 1;
                let t = slot.step as f64;
                let bias_correction1 = 1.0 - beta1.powf(t);
                let bias_correction2 = 1.0 - beta2.powf(t);
                let update = Update {
                    decay: 1.0 - lr_g * group.weight_decay,
                    neg_step_size: -(lr_g / bias_correction1),
                    bc2_sqrt: bias_correction2.sqrt(),
                    eps: self.cfg.eps,
                };
                let p = var.as_tensor();
                if self.fused_cpu
                    && fusable(p)
                    && fusable(&slot.exp_avg)
                    && fusable(&slot.exp_avg_sq)
                    && g.device().is_cpu()
                {
                    let g = g.contiguous()?;
                    slot.exp_avg.inplace_op2(
                        &g,
                        &Fused2(Moment1 {
                            weight: 1.0 - beta1,
                        }),
                    )?;
                    slot.exp_avg_sq
                        .inplace_op2(&g, &Fused2(Moment2 { beta2 }))?;
                    p.inplace_op3(&slot.exp_avg, &slot.exp_avg_sq, &Fused3(update))?;
                } else {
                    let w = 1.0 - beta1;
                    let m = &slot.exp_avg;
                    let m_new = if w < 0.5 {
                        (m + (g.sub(m)? * w)?)?
                    } else {
                        (&g - (g.sub(m)? * (1.0 - w))?)?
                    };
                    let v_new = ((&slot.exp_avg_sq * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                    let denom = ((v_new.sqrt()? / update.bc2_sqrt)? + update.eps)?;
                    let p_new =
                        ((p * update.decay)? + (m_new.div(&denom)? * update.neg_step_size)?)?;
                    var.set(&p_new)?;
                    slot.exp_avg = m_new;
                    slot.exp_avg_sq = v_new;
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
        let mut out = Vec::new();
        for (group, slots) in self.groups.iter().zip(&self.slots) {
            for ((name, _), slot) in group.params.iter().zip(slots) {
                let Some(s) = slot else { continue };
                out.push((format!("{name}.exp_avg"), s.exp_avg.copy()?));
                out.push((format!("{name}.exp_avg_sq"), s.exp_avg_sq.copy()?));
                out.push((
                    format!("{name}.step"),
                    Tensor::new(s.step as i64, &Device::Cpu)?,
                ));
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &[(String, Tensor)], step_count: u64) -> Result<()> {
        let parsed = parse_state(
            state,
            &self.groups,
            &self.index,
            &["exp_avg", "exp_avg_sq", "step"],
        )?;
        let mut slots: PerParam<Slot> = empty_per_param(&self.groups);
        for ((gi, pi), mut entries) in parsed {
            let name = &self.groups[gi].params[pi].0;
            let incomplete = || Error::OptimizerState {
                key: name.clone(),
                msg: "needs exp_avg, exp_avg_sq and step together".into(),
            };
            let (Some(m), Some(v), Some(step)) = (
                entries.remove("exp_avg"),
                entries.remove("exp_avg_sq"),
                entries.remove("step"),
            ) else {
                return Err(incomplete());
            };
            let step = read_step(&format!("{name}.step"), &step.to_dtype(DType::F64)?)?;
            slots[gi][pi] = Some(Slot {
                step,
                exp_avg: m,
                exp_avg_sq: v,
            });
        }
        self.slots = slots;
        self.steps = step_count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::Var;

    /// One AdamW step on a scalar, worked by hand: with step 1 the bias
    /// corrections cancel the (1 - beta) factors, so the update is
    /// `-lr * g / (|g| + eps)` = `-lr * sign(g)` up to eps.
    #[test]
    fn first_step_moves_by_lr_times_sign_after_decay() {
        for fused in [true, false] {
            let p = Var::new(&[2.0f64, -1.0], &Device::Cpu).unwrap();
            let groups = vec![ParamGroup {
                params: vec![("w".into(), p.clone())],
                lr_scale: 0.5,
                weight_decay: 0.1,
            }];
            let mut opt = AdamW::new(
                groups,
                AdamWConfig {
                    betas: [0.9, 0.999],
                    eps: 0.0,
                },
            )
            .unwrap();
            opt.set_fused_cpu(fused);
            let loss = (p.as_tensor() * &Tensor::new(&[3.0f64, -4.0], &Device::Cpu).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.2).unwrap(); // group lr 0.1
            let got: Vec<f64> = p.as_tensor().to_vec1().unwrap();
            let want = [2.0 * (1.0 - 0.1 * 0.1) - 0.1, -(1.0 - 0.1 * 0.1) + 0.1];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "fused={fused}: {got:?} vs {want:?}");
            }
            assert_eq!(opt.step_count(), 1);
        }
    }

    #[test]
    fn params_without_grad_get_no_state_and_do_not_move() {
        let a = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let b = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let groups = vec![ParamGroup {
            params: vec![("a".into(), a.clone()), ("b".into(), b.clone())],
            lr_scale: 1.0,
            weight_decay: 0.5,
        }];
        let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
        let grads = a.as_tensor().sum_all().unwrap().backward().unwrap();
        opt.step(&grads, 0.1).unwrap();
        assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0]);
        let names: Vec<String> = opt.state().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a.exp_avg", "a.exp_avg_sq", "a.step"]);
    }

    #[test]
    fn state_is_a_snapshot_not_a_view() {
        let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let groups = vec![ParamGroup {
            params: vec![("a".into(), a.clone())],
            lr_scale: 1.0,
            weight_decay: 0.0,
        }];
        let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
        let grads = a.as_tensor().sum_all().unwrap().backward().unwrap();
        opt.step(&grads, 0.1).unwrap();
        let snap = opt.state().unwrap();
        let before: Vec<f32> = snap[0].1.to_vec1().unwrap();
        opt.step(&grads, 0.1).unwrap();
        assert_eq!(snap[0].1.to_vec1::<f32>().unwrap(), before);
    }

    #[test]
    fn load_state_rejects_foreign_names_shapes_and_partial_slots() {
        let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let groups = vec![ParamGroup {
            params: vec![("a".into(), a.clone())],
            lr_scale: 1.0,
            weight_decay: 0.0,
        }];
        let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
        let z2 = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let z3 = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let one = Tensor::new(1i64, &Device::Cpu).unwrap();

        let e = opt
            .load_state(&[("b.exp_avg".into(), z2.clone())], 1)
            .unwrap_err();
        assert!(
            matches!(e, Error::OptimizerState { .. }) && e.to_string().contains("b.exp_avg"),
            "{e}"
        );
        assert!(e.is_user_error());
        let e = opt
            .load_state(&[("a.momentum_buffer".into(), z2.clone())], 1)
            .unwrap_err();
        assert!(e.to_string().contains("unknown slot"), "{e}");
        let e = opt
            .load_state(
                &[
                    ("a.exp_avg".into(), z3),
                    ("a.exp_avg_sq".into(), z2.clone()),
                    ("a.step".into(), one.clone()),
                ],
                1,
            )
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let e = opt
            .load_state(&[("a.exp_avg".into(), z2.clone())], 1)
            .unwrap_err();
        assert!(e.to_string().contains("together"), "{e}");

        opt.load_state(
            &[
                ("a.exp_avg".into(), z2.clone()),
                ("a.exp_avg_sq".into(), z2),
                ("a.step".into(), one),
            ],
            7,
        )
        .unwrap();
        assert_eq!(opt.step_count(), 7);
    }

    #[test]
    fn gradient_of_wrong_shape_is_an_error() {
        let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let groups = vec![ParamGroup {
            params: vec![("a".into(), a.clone())],
            lr_scale: 1.0,
            weight_decay: 0.0,
        }];
        let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
        let mut grads = a.as_tensor().sum_all().unwrap().backward().unwrap();
        grads.insert(
            a.as_tensor(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            opt.step(&grads, 0.1).unwrap_err(),
            Error::ShapeMismatch { .. }
        ));
    }

    #[test]
    fn bad_betas_are_config_errors() {
        let e = AdamW::new(
            vec![],
            AdamWConfig {
                betas: [1.0, 0.9],
                eps: 1e-8,
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}
