//! Exponential moving average of a model's weights (timm
//! `utils/model_ema.py::ModelEmaV2`): after each optimizer step,
//! `ema = decay * ema + (1 - decay) * model` for every variable of the
//! model, parameters and buffers (BatchNorm running statistics) alike, as
//! `ModelEmaV2` walks the whole `state_dict`.
//!
//! The average lives in tensors of its own, copied from the model at
//! creation: they are no [`Var`]s, so no optimizer can reach them and an
//! optimizer step leaves them alone (`tests/ema_reference.rs` checks this,
//! and the arithmetic step by step against `ModelEmaV2`).
//!
//! The arithmetic is that of PyTorch in the model's dtype: `decay` and
//! `1 - decay` (computed in f64) are rounded to it, each product rounded,
//! then the sum, so f32 averages equal timm's bit for bit.
//!
//! Not covered: `ModelEmaV2`'s `device` argument (keeping the average on
//! another device) and `ModelEmaV3`'s warmup of the decay.

use candle_core::{Tensor, Var};

use crate::{Error, Result};

/// The moving average of a model's variables, by name.
#[derive(Debug, Clone)]
pub struct ModelEma {
    decay: f64,
    tensors: Vec<(String, Tensor)>,
}

impl ModelEma {
    /// Starts the average at a copy of `model` (name, variable) pairs, e.g.
    /// [`crate::vars::named_vars`] of the model's map; names must be unique.
    ///
    /// # Errors
    /// [`Error::Config`] for a `decay` outside [0, 1] or a repeated name; a
    /// copy fails.
    pub fn new(model: &[(String, Var)], decay: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::Config(format!("model EMA decay must be in [0, 1], got {decay}")));
        }
        let mut names: Vec<&str> = model.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!("model EMA: variable name {} appears twice", w[0])));
        }
        let tensors = model.iter().map(|(n, v)| Ok((n.clone(), own_copy(v.as_tensor())?))).collect::<Result<_>>()?;
        Ok(Self { decay, tensors })
    }

    /// The decay factor (timm's `decay`, e.g. 0.9998).
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// One averaging step: `ema = decay * ema + (1 - decay) * model` for
    /// every variable (timm `ModelEmaV2.update`).
    ///
    /// # Errors
    /// [`Error::Msg`] when `model` does not hold exactly the averaged names
    /// (in any order), [`Error::ShapeMismatch`] for a variable whose shape
    /// changed; nothing is updated then.
    pub fn update(&mut self, model: &[(String, Var)]) -> Result<()> {
        let (d, rest) = (self.decay, 1.0 - self.decay);
        let sources = self.match_model(model)?;
        for ((_, ema), source) in self.tensors.iter_mut().zip(sources) {
            *ema = (ema.affine(d, 0.0)? + source.detach().affine(rest, 0.0)?)?;
        }
        Ok(())
    }

    /// Restarts the average at a copy of `model` (timm `ModelEmaV2.set`).
    ///
    /// # Errors
    /// As [`ModelEma::update`].
    pub fn set(&mut self, model: &[(String, Var)]) -> Result<()> {
        let sources = self.match_model(model)?;
        for ((_, ema), source) in self.tensors.iter_mut().zip(sources) {
            *ema = own_copy(source)?;
        }
        Ok(())
    }

    /// The averaged tensors by name, in the order the model was given: what
    /// a checkpoint stores.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    /// Restores the average from `tensors` (as [`ModelEma::tensors`]
    /// returned, possibly read back from a checkpoint), converting each to
    /// its variable's dtype and device.
    ///
    /// # Errors
    /// [`Error::Msg`] for a missing or unknown name, [`Error::ShapeMismatch`]
    /// for a wrong shape; the average is unchanged then.
    pub fn load(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        if let Some((unknown, _)) = tensors.iter().find(|(n, _)| !self.tensors.iter().any(|(m, _)| m == n)) {
            return Err(Error::Msg(format!("model EMA: saved tensor {unknown} matches no model variable")));
        }
        let mut loaded = Vec::with_capacity(self.tensors.len());
        for (name, ema) in &self.tensors {
            let saved = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| Error::Msg(format!("model EMA: no saved tensor for {name}")))?;
            if saved.dims() != ema.dims() {
                return Err(Error::ShapeMismatch { key: name.clone(), expected: ema.dims().to_vec(), found: saved.dims().to_vec() });
            }
            loaded.push((name.clone(), own_copy(&saved.to_dtype(ema.dtype())?.to_device(ema.device())?)?));
        }
        self.tensors = loaded;
        Ok(())
    }

    /// Writes the average into `model`'s variables (to evaluate or export
    /// the EMA weights); the average itself is unchanged.
    ///
    /// # Errors
    /// As [`ModelEma::update`].
    pub fn copy_to(&self, model: &[(String, Var)]) -> Result<()> {
        let order = self.order_of(model)?;
        for ((_, ema), i) in self.tensors.iter().zip(order) {
            model[i].1.set(ema)?;
        }
        Ok(())
    }

    /// `model`'s tensors in the order of `self.tensors`.
    fn match_model<'a>(&self, model: &'a [(String, Var)]) -> Result<Vec<&'a Tensor>> {
        Ok(self.order_of(model)?.into_iter().map(|i| model[i].1.as_tensor()).collect())
    }

    /// For each averaged tensor, the index of its variable in `model`, after
    /// checking the names and shapes correspond one to one.
    fn order_of(&self, model: &[(String, Var)]) -> Result<Vec<usize>> {
        if model.len() != self.tensors.len() {
            return Err(Error::Msg(format!("model EMA: the model has {} variables, the average {}", model.len(), self.tensors.len())));
        }
        self.tensors
            .iter()
            .map(|(name, ema)| {
                let i = model
                    .iter()
                    .position(|(n, _)| n == name)
                    .ok_or_else(|| Error::Msg(format!("model EMA: the model has no variable {name}")))?;
                if model[i].1.dims() != ema.dims() {
                    return Err(Error::ShapeMismatch { key: name.clone(), expected: ema.dims().to_vec(), found: model[i].1.dims().to_vec() });
                }
                Ok(i)
            })
            .collect()
    }
}

/// A copy in fresh storage, outside any autograd graph.
fn own_copy(t: &Tensor) -> Result<Tensor> {
    Ok(t.copy()?.detach())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{DType, Device};

    fn model() -> Vec<(String, Var)> {
        let dev = Device::Cpu;
        vec![
            ("w".to_string(), Var::from_tensor(&Tensor::new(&[1.0f64, 2.0], &dev).unwrap()).unwrap()),
            ("bn.running_var".to_string(), Var::from_tensor(&Tensor::new(&[4.0f64], &dev).unwrap()).unwrap()),
        ]
    }

    #[test]
    fn update_moves_towards_the_model_by_one_minus_decay() {
        let m = model();
        let mut ema = ModelEma::new(&m, 0.75).unwrap();
        m[0].1.set(&Tensor::new(&[5.0f64, 2.0], &Device::Cpu).unwrap()).unwrap();
        m[1].1.set(&Tensor::new(&[0.0f64], &Device::Cpu).unwrap()).unwrap();
        ema.update(&m).unwrap();
        assert_eq!(ema.tensors()[0].1.to_vec1::<f64>().unwrap(), [2.0, 2.0]);
        assert_eq!(ema.tensors()[1].1.to_vec1::<f64>().unwrap(), [3.0]);
        ema.set(&m).unwrap();
        assert_eq!(ema.tensors()[0].1.to_vec1::<f64>().unwrap(), [5.0, 2.0]);
    }

    #[test]
    fn the_average_has_storage_of_its_own() {
        let m = model();
        let ema = ModelEma::new(&m, 0.9).unwrap();
        m[0].1.set(&Tensor::new(&[7.0f64, 7.0], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(ema.tensors()[0].1.to_vec1::<f64>().unwrap(), [1.0, 2.0]);
        assert!(!ema.tensors()[0].1.is_variable());
        // Writing the average into the model leaves the two independent.
        ema.copy_to(&m).unwrap();
        assert_eq!(m[0].1.as_tensor().to_vec1::<f64>().unwrap(), [1.0, 2.0]);
        m[0].1.set(&Tensor::new(&[3.0f64, 3.0], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(ema.tensors()[0].1.to_vec1::<f64>().unwrap(), [1.0, 2.0]);
    }

    #[test]
    fn load_restores_and_checks_names_and_shapes() {
        let m = model();
        let mut ema = ModelEma::new(&m, 0.9).unwrap();
        let saved = vec![
            ("bn.running_var".to_string(), Tensor::new(&[9.0f32], &Device::Cpu).unwrap()),
            ("w".to_string(), Tensor::new(&[8.0f32, 6.0], &Device::Cpu).unwrap()),
        ];
        ema.load(&saved).unwrap();
        assert_eq!(ema.tensors()[0].1.dtype(), DType::F64, "converted to the model's dtype");
        assert_eq!(ema.tensors()[0].1.to_vec1::<f64>().unwrap(), [8.0, 6.0]);
        let err = ema.load(&saved[..1]).unwrap_err().to_string();
        assert!(err.contains("no saved tensor for w"), "{err}");
        let mut extra = saved.clone();
        extra.push(("head.bias".to_string(), Tensor::new(&[0.0f32], &Device::Cpu).unwrap()));
        assert!(ema.load(&extra).unwrap_err().to_string().contains("head.bias"));
        let wrong = vec![saved[0].clone(), ("w".to_string(), Tensor::new(&[1.0f32], &Device::Cpu).unwrap())];
        assert!(matches!(ema.load(&wrong).unwrap_err(), Error::ShapeMismatch { key, .. } if key == "w"));
        assert_eq!(ema.tensors()[0].1.to_vec1::<f64>().unwrap(), [8.0, 6.0], "a failed load changes nothing");
    }

    #[test]
    fn mismatched_models_and_bad_decays_are_errors() {
        let m = model();
        assert!(matches!(ModelEma::new(&m, 1.5), Err(Error::Config(_))));
        let twice = vec![m[0].clone(), m[0].clone()];
        assert!(ModelEma::new(&twice, 0.9).unwrap_err().to_string().contains("appears twice"));
        let mut ema = ModelEma::new(&m, 0.9).unwrap();
        assert!(ema.update(&m[..1]).unwrap_err().to_string().contains("has 1 variables"));
        let renamed = vec![m[0].clone(), ("other".to_string(), m[1].1.clone())];
        assert!(ema.update(&renamed).unwrap_err().to_string().contains("no variable bn.running_var"));
    }
}
