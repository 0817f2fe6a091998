//! Optimizers over parameter groups, with state that checkpoints can save.
//!
//! candle's optimizers have no parameter groups, no momentum SGD, no
//! clipping and no state export (`shared/reference/candle-notes.md` §4);
//! the MAE-Lite recipes need all four. This module provides:
//!
//! * [`ParamGroup`]: parameters sharing an `lr_scale` and a `weight_decay`,
//!   built from a model's naming rules by [`build_param_groups`];
//! * the [`Optimizer`] trait and its implementations [`AdamW`]
//!   (`torch.optim.AdamW`) and [`Sgd`] (`torch.optim.SGD` with momentum and
//!   Nesterov), verified step by step against PyTorch in
//!   `tests/optim_reference.rs`, and [`Lars`] (MAE's linear-probe LARS,
//!   against a PyTorch implementation of its definition there);
//! * [`clip_grad_norm`] (`torch.nn.utils.clip_grad_norm_`).
//!
//! Optimizer state is exported as named tensors `<param>.<slot>` (e.g.
//! `blocks.0.attn.qkv.weight.exp_avg`), which [`crate::checkpoint`] stores
//! under the `optim.` prefix. State is created lazily, on a parameter's first
//! gradient, exactly as PyTorch does, so a parameter that has never had a
//! gradient has no state entries.

mod adamw;
mod clip;
mod fused;
mod lars;
mod param_groups;
mod sgd;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use lars::{Lars, LarsConfig};
pub use param_groups::{build_param_groups, DecayRule, ParamRules, ViTNameRules};
pub use sgd::{Sgd, SgdConfig};

/// Parameters that share a learning-rate scale and a weight decay (PyTorch's
/// `param_groups` entry with MAE-Lite's `lr_scale` key).
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// The parameters with their timm-style names (unique across groups).
    pub params: Vec<(String, Var)>,
    /// Multiplies the schedule's learning rate for this group (layer-wise
    /// lr decay; 1.0 without it).
    pub lr_scale: f64,
    /// Weight decay of this group (0.0 for biases, norms, position
    /// embeddings under the timm rules).
    pub weight_decay: f64,
}

/// Every variable of `groups`, in group order (e.g. for [`clip_grad_norm`]).
pub fn all_vars(groups: &[ParamGroup]) -> Vec<Var> {
    groups
        .iter()
        .flat_map(|g| g.params.iter().map(|(_, v)| v.clone()))
        .collect()
}

/// A first-order optimizer over [`ParamGroup`]s.
///
/// The trainer calls [`Optimizer::step`] once per iteration with the
/// schedule's learning rate; each group uses `lr * lr_scale`.
pub trait Optimizer {
    /// Updates every parameter that has a gradient in `grads`; parameters
    /// without one are skipped and their state is left untouched (PyTorch
    /// skips parameters whose `.grad` is `None`).
    ///
    /// # Errors
    /// A tensor operation fails, or a gradient's shape differs from its
    /// parameter's ([`Error::ShapeMismatch`]).
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;

    /// How many times [`Optimizer::step`] has been called (including before
    /// a [`Optimizer::load_state`]).
    fn step_count(&self) -> u64;

    /// The parameter groups this optimizer updates.
    fn groups(&self) -> &[ParamGroup];

    /// The optimizer's state as named tensors `<param>.<slot>`, deep-copied
    /// (later steps do not change them).
    ///
    /// # Errors
    /// Copying a tensor fails.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;

    /// Replaces the optimizer's state with `state` (as returned by
    /// [`Optimizer::state`], possibly from another process) and its step
    /// count with `step_count`. On error the optimizer is left unchanged.
    ///
    /// # Errors
    /// [`Error::OptimizerState`] for a name that matches no parameter or
    /// slot, or a parameter with only some of its slots;
    /// [`Error::ShapeMismatch`] for a tensor of the wrong shape.
    fn load_state(&mut self, state: &[(String, Tensor)], step_count: u64) -> Result<()>;
}

/// Which optimizer a recipe uses, with its hyper-parameters (weight decay
/// lives on the groups). In TOML: `kind = "adamw"` plus [`AdamWConfig`]
/// fields, `kind = "sgd"` plus [`SgdConfig`] fields, or `kind = "lars"`
/// plus [`LarsConfig`] fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// [`AdamW`].
    Adamw(AdamWConfig),
    /// [`Sgd`].
    Sgd(SgdConfig),
    /// [`Lars`].
    Lars(LarsConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adamw(AdamWConfig::default())
    }
}

/// Builds the optimizer `cfg` names over `groups`.
///
/// # Errors
/// See [`AdamW::new`], [`Sgd::new`] and [`Lars::new`].
pub fn build_optimizer(
    cfg: &OptimizerConfig,
    groups: Vec<ParamGroup>,
) -> Result<Box<dyn Optimizer>> {
    Ok(match cfg {
        OptimizerConfig::Adamw(c) => Box::new(AdamW::new(groups, c.clone())?),
        OptimizerConfig::Sgd(c) => Box::new(Sgd::new(groups, c.clone())?),
        OptimizerConfig::Lars(c) => Box::new(Lars::new(groups, c.clone())?),
    })
}

/// Maps each parameter name to its (group, index) position.
///
/// # Errors
/// [`Error::Config`] when a name appears twice or a group's `lr_scale` /
/// `weight_decay` is negative or not finite.
fn index_params(groups: &[ParamGroup]) -> Result<HashMap<String, (usize, usize)>> {
    let mut index = HashMap::new();
    for (gi, g) in groups.iter().enumerate() {
        if !(g.lr_scale.is_finite() && g.lr_scale >= 0.0) {
            return Err(Error::Config(format!(
                "param group {gi}: lr_scale must be >= 0, got {}",
                g.lr_scale
            )));
        }
        if !(g.weight_decay.is_finite() && g.weight_decay >= 0.0) {
            return Err(Error::Config(format!(
                "param group {gi}: weight_decay must be >= 0, got {}",
                g.weight_decay
            )));
        }
        for (pi, (name, _)) in g.params.iter().enumerate() {
            if index.insert(name.clone(), (gi, pi)).is_some() {
                return Err(Error::Config(format!(
                    "parameter {name} appears in more than one param group"
                )));
            }
        }
    }
    Ok(index)
}

/// The gradient of `var`, checked against its shape and cast to its dtype.
fn grad_for(grads: &GradStore, name: &str, var: &Var) -> Result<Option<Tensor>> {
    let Some(g) = grads.get(var.as_tensor()) else {
        return Ok(None);
    };
    if g.dims() != var.dims() {
        return Err(Error::ShapeMismatch {
            key: format!("{name} (gradient)"),
            expected: var.dims().to_vec(),
            found: g.dims().to_vec(),
        });
    }
    let g = if g.dtype() == var.dtype() {
        g.clone()
    } else {
        g.to_dtype(var.dtype())?
    };
    Ok(Some(g))
}

/// Saved state tensors by parameter position (group, index), then slot name.
type StateByParam = HashMap<(usize, usize), HashMap<&'static str, Tensor>>;

/// Splits state entries `<param>.<slot>` by parameter position, checking
/// names and shapes (`slots` lists the valid slot names; a slot named
/// `step` must be a scalar, the others have the parameter's shape and are
/// copied to its dtype and device).
fn parse_state(
    state: &[(String, Tensor)],
    groups: &[ParamGroup],
    index: &HashMap<String, (usize, usize)>,
    slots: &[&'static str],
) -> Result<StateByParam> {
    let mut out = StateByParam::new();
    for (key, t) in state {
        let bad = |msg: &str| Error::OptimizerState {
            key: key.clone(),
            msg: msg.to_string(),
        };
        let (param, slot) = key
            .rsplit_once('.')
            .ok_or_else(|| bad("expected <param>.<slot>"))?;
        let slot = slots
            .iter()
            .copied()
            .find(|s| *s == slot)
            .ok_or_else(|| bad(&format!("unknown slot (expected one of {slots:?})")))?;
        let &(gi, pi) = index
            .get(param)
            .ok_or_else(|| bad("no such parameter in this optimizer"))?;
        let var = &groups[gi].params[pi].1;
        let t = if slot == "step" {
            if t.rank() != 0 {
                return Err(bad(&format!(
                    "step must be a scalar, found shape {:?}",
                    t.dims()
                )));
            }
            t.clone()
        } else {
            if t.dims() != var.dims() {
                return Err(Error::ShapeMismatch {
                    key: key.clone(),
                    expected: var.dims().to_vec(),
                    found: t.dims().to_vec(),
                });
            }
            // A private copy: the fused kernels update state in place.
            t.to_dtype(var.dtype())?.to_device(var.device())?.copy()?
        };
        if out.entry((gi, pi)).or_default().insert(slot, t).is_some() {
            return Err(bad("appears twice"));
        }
    }
    Ok(out)
}

/// Per-parameter optimizer state laid out like the groups: `[group][param]`,
/// `None` until the parameter's first gradient.
type PerParam<T> = Vec<Vec<Option<T>>>;

/// No state yet for any parameter of `groups`.
fn empty_per_param<T>(groups: &[ParamGroup]) -> PerParam<T> {
    groups.iter().map(|g| g.params.iter().map(|_| None).collect()).collect()
}

/// The checkpoint entries `<param>.<slot>` of a one-buffer optimizer (SGD's
/// and LARS's momentum), for the buffers that exist.
fn buffer_state(groups: &[ParamGroup], buffers: &PerParam<Tensor>, slot: &str) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (group, bufs) in groups.iter().zip(buffers) {
        for ((name, _), buf) in group.params.iter().zip(bufs) {
            if let Some(b) = buf {
                out.push((format!("{name}.{slot}"), b.copy()?));
            }
        }
    }
    Ok(out)
}

/// The buffers of a one-buffer optimizer read back from what
/// [`buffer_state`] wrote, checked by [`parse_state`].
fn load_buffer_state(
    state: &[(String, Tensor)],
    groups: &[ParamGroup],
    index: &HashMap<String, (usize, usize)>,
    slot: &'static str,
) -> Result<PerParam<Tensor>> {
    let mut buffers = empty_per_param(groups);
    for ((gi, pi), mut entries) in parse_state(state, groups, index, &[slot])? {
        buffers[gi][pi] = entries.remove(slot);
    }
    Ok(buffers)
}

/// Reads a scalar step count stored by [`Optimizer::state`].
fn read_step(key: &str, t: &Tensor) -> Result<u64> {
    let v = t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) {
        Ok(v as u64)
    } else {
        Err(Error::OptimizerState {
            key: key.to_string(),
            msg: format!("step must be a count, found {v}"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::{DType, Device};

    fn var(shape: &[usize]) -> Var {
        Var::zeros(shape, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn duplicate_names_across_groups_are_rejected() {
        let groups = vec![
            ParamGroup {
                params: vec![("a".into(), var(&[2]))],
                lr_scale: 1.0,
                weight_decay: 0.0,
            },
            ParamGroup {
                params: vec![("a".into(), var(&[2]))],
                lr_scale: 1.0,
                weight_decay: 0.1,
            },
        ];
        let e = AdamW::new(groups, AdamWConfig::default()).err().unwrap();
        assert!(e.to_string().contains("more than one param group"), "{e}");
    }

    #[test]
    fn negative_weight_decay_is_rejected() {
        let groups = vec![ParamGroup {
            params: vec![("a".into(), var(&[2]))],
            lr_scale: 1.0,
            weight_decay: -0.1,
        }];
        assert!(matches!(
            Sgd::new(groups, SgdConfig::default()).err().unwrap(),
            Error::Config(_)
        ));
    }

    #[test]
    fn optimizer_config_from_toml() {
        let c: OptimizerConfig =
            toml::from_str("kind = \"sgd\"\nmomentum = 0.9\nnesterov = true\n").unwrap();
        assert_eq!(
            c,
            OptimizerConfig::Sgd(SgdConfig {
                momentum: 0.9,
                nesterov: true
            })
        );
        let c: OptimizerConfig = toml::from_str("kind = \"adamw\"\nbetas = [0.9, 0.95]\n").unwrap();
        assert_eq!(
            c,
            OptimizerConfig::Adamw(AdamWConfig {
                betas: [0.9, 0.95],
                eps: 1e-8
            })
        );
        let c: OptimizerConfig = toml::from_str("kind = \"lars\"\n").unwrap();
        assert_eq!(c, OptimizerConfig::Lars(LarsConfig { momentum: 0.9, trust_coefficient: 0.001 }));
        let e = toml::from_str::<OptimizerConfig>("kind = \"adamw\"\nbeta = [0.9, 0.95]\n")
            .unwrap_err();
        assert!(e.to_string().contains("beta"), "{e}");
    }

    #[test]
    fn all_vars_lists_every_param_in_group_order() {
        let a = var(&[1]);
        let b = var(&[2]);
        let groups = vec![
            ParamGroup {
                params: vec![("a".into(), a.clone())],
                lr_scale: 1.0,
                weight_decay: 0.0,
            },
            ParamGroup {
                params: vec![("b".into(), b.clone())],
                lr_scale: 0.5,
                weight_decay: 0.0,
            },
        ];
        let vs = all_vars(&groups);
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[0].as_tensor().id(), a.as_tensor().id());
        assert_eq!(vs[1].as_tensor().id(), b.as_tensor().id());
    }
}
