//! MoCo-v3's momentum encoder (moco-v3 `moco/builder.py`:
//! `momentum_encoder`, `_update_momentum_encoder`; MAE-Lite
//! `projects/mocov3/mocov3.py`: `get_param_momentum`) and its cosine
//! momentum schedule.
//!
//! The encoder owns its storage. The optimizers update the online
//! parameters in place ([`engine::optim`]), so a `detach()` or `clone()` of
//! an online tensor, which shares its storage, would silently follow every
//! optimizer step. Here every tensor is copied into fresh storage at
//! creation, held in [`Var`]s that no optimizer is given, and changed only
//! by [`MomentumEncoder::update`], [`MomentumEncoder::load`] and its own
//! BatchNorm running statistics. The network reads them through detached
//! views, so its forward pass records no gradient graph.
//! `tests/mocov3_momentum.rs` proves an optimizer step reaches it only
//! through the EMA.
//!
//! As in moco-v3, the EMA covers the parameters (the fixed position table
//! included), not the BatchNorm running statistics: the momentum encoder
//! runs in training mode and keeps its own.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarBuilder;
use engine::ops::is_buffer_name;
use rand::RngCore;

use super::model::Encoder;
use super::{Error, MocoV3Config, Result};

/// The momentum m at 0-based iteration `iter` of `total_iters`: cosine from
/// `base` (0.99) at iteration 0 to 1 at the end,
/// `m = 1 - ½ (1 + cos(π t / T)) (1 - base)` (MAE-Lite's per-iteration
/// `get_param_momentum`; moco-v3's `adjust_moco_momentum` with fractional
/// epochs is the same curve). Deviation: past `total_iters` (and for
/// `total_iters` 0) m stays at 1 instead of following the cosine back down.
pub fn momentum_at(iter: usize, total_iters: usize, base: f64) -> f64 {
    // π·t/T in Python's evaluation order, so the value is PyTorch's to the bit.
    let angle = if total_iters == 0 { std::f64::consts::PI } else { std::f64::consts::PI * iter.min(total_iters) as f64 / total_iters as f64 };
    1.0 - 0.5 * (1.0 + angle.cos()) * (1.0 - base)
}

/// The momentum encoder: a ViT and projector with storage of their own.
#[derive(Debug, Clone)]
pub struct MomentumEncoder {
    /// Every variable of the online encoder (parameters and BatchNorm
    /// buffers) copied into fresh storage, sorted by name.
    vars: Vec<(String, Var)>,
    /// The network over `vars`: parameters through detached views, buffers
    /// as the variables themselves (so train-mode statistics land in `vars`).
    encoder: Encoder,
}

impl MomentumEncoder {
    /// A copy of the online encoder `online` (its ViT and projector
    /// variables, names as [`super::MocoV3::variables`]; other names, such
    /// as the predictor's, are ignored), in storage of its own.
    ///
    /// # Errors
    /// `online` lacks a variable of the encoder `cfg` describes, or a copy fails.
    pub fn new(cfg: &MocoV3Config, online: &[(String, Var)]) -> Result<Self> {
        let Some((_, first)) = online.first() else {
            return Err(Error::State("the online model has no variables to copy".into()));
        };
        let (dtype, device) = (first.dtype(), first.device().clone());
        let mut vars: Vec<(String, Var)> = online
            .iter()
            .filter(|(name, _)| is_encoder_name(name))
            // `copy()`: fresh storage, never the online variable's own.
            .map(|(name, var)| Ok((name.clone(), Var::from_tensor(&var.as_tensor().detach().copy()?)?)))
            .collect::<Result<_>>()?;
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let views: HashMap<String, Tensor> = vars
            .iter()
            .map(|(name, var)| {
                let t = if is_buffer_name(name) { var.as_tensor().clone() } else { var.as_tensor().detach() };
                (name.clone(), t)
            })
            .collect();
        let encoder = Encoder::new(cfg, VarBuilder::from_tensors(views, dtype, &device)).map_err(|e| match e {
            Error::Candle(c) => Error::State(format!("the online model does not hold the encoder: {c}")),
            other => other,
        })?;
        Ok(Self { vars, encoder })
    }

    /// The EMA step `k = m·k + (1 - m)·q` for every parameter k of this
    /// encoder and its online counterpart q in `online` (matched by name;
    /// BatchNorm running statistics are left alone). Computed in the
    /// parameters' dtype, as PyTorch's `param_m.data * m + param_b.data * (1 - m)`.
    ///
    /// # Errors
    /// [`Error::State`] when `online` lacks a parameter or holds it with
    /// another shape (nothing is updated then); `m` outside [0, 1].
    pub fn update(&self, online: &[(String, Var)], m: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&m) {
            return Err(Error::Config(format!("momentum must be in [0, 1], got {m}")));
        }
        let by_name: HashMap<&str, &Var> = online.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let mut pairs = Vec::with_capacity(self.vars.len());
        for (name, k) in self.vars.iter().filter(|(n, _)| !is_buffer_name(n)) {
            let q = by_name.get(name.as_str()).ok_or_else(|| Error::State(format!("the online model has no parameter {name}")))?;
            if q.dims() != k.dims() {
                return Err(Error::State(format!("{name}: online shape {:?}, momentum shape {:?}", q.dims(), k.dims())));
            }
            pairs.push((k, *q));
        }
        for (k, q) in pairs {
            let next = (k.as_tensor().detach().affine(m, 0.0)? + q.as_tensor().detach().affine(1.0 - m, 0.0)?)?;
            k.set(&next)?;
        }
        Ok(())
    }

    /// Keys' projections (B, E) of both views, as [`Encoder::forward_views`]
    /// in training mode (batch statistics; the running statistics move),
    /// with no gradient graph.
    ///
    /// # Errors
    /// Wrong input shapes, or a batch of one.
    pub fn forward(&self, x1: &Tensor, x2: &Tensor, rng: &mut dyn RngCore) -> Result<(Tensor, Tensor)> {
        let (k1, k2) = self.encoder.forward_views(x1, x2, true, rng)?;
        Ok((k1.detach(), k2.detach()))
    }

    /// A copy of every tensor (parameters and BatchNorm buffers) by name,
    /// sorted: what a checkpoint stores.
    ///
    /// # Errors
    /// A copy fails.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?))).collect()
    }

    /// Sets every tensor from `tensors` (as [`MomentumEncoder::tensors`]
    /// returned), converted to this encoder's dtype and device.
    ///
    /// # Errors
    /// [`Error::State`] naming missing, unknown or mis-shaped tensors; the
    /// encoder is unchanged then.
    pub fn load(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let missing: Vec<&str> = self.vars.iter().map(|(n, _)| n.as_str()).filter(|n| !by_name.contains_key(n)).collect();
        let unknown: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).filter(|n| !self.vars.iter().any(|(m, _)| m == n)).collect();
        if !missing.is_empty() || !unknown.is_empty() {
            return Err(Error::State(format!("missing {missing:?}, unknown {unknown:?}")));
        }
        if let Some((name, var)) = self.vars.iter().find(|(n, v)| by_name[n.as_str()].dims() != v.dims()) {
            return Err(Error::State(format!("{name}: expected shape {:?}, found {:?}", var.dims(), by_name[name.as_str()].dims())));
        }
        for (name, var) in &self.vars {
            var.set(&by_name[name.as_str()].to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }
}

/// Whether `name` belongs to the encoder (ViT and projector), not the predictor.
pub(crate) fn is_encoder_name(name: &str) -> bool {
    !name.starts_with("predictor.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_runs_from_base_to_one() {
        assert_eq!(momentum_at(0, 100, 0.99), 0.99);
        assert!((momentum_at(50, 100, 0.99) - 0.995).abs() < 1e-15);
        assert_eq!(momentum_at(100, 100, 0.99), 1.0);
        assert_eq!(momentum_at(250, 100, 0.99), 1.0, "stays at 1 past the end");
        assert_eq!(momentum_at(0, 0, 0.99), 1.0);
    }
}
