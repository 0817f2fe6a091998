//! Test support shared by every crate: gradient checks against central finite
//! differences, and the check that every trainable variable got a gradient.
//!
//! Gradient checks run in f64 on the CPU. The scalar checked is
//! `sum(f(x) * w)` with a fixed random `w`, so every output element
//! contributes with a different weight and a wrong gradient for any single
//! element changes the result.

// Test support only: `random_tensor` builds its data to match the shape it is
// given, so its one `expect` can only fire on a bug in this file.
#![allow(clippy::expect_used)]

use candle_core::{backprop::GradStore, DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

/// Step of the central differences. In f64 the truncation error is about
/// STEP² and the rounding error about 1e-16 / STEP, both far below [`GRAD_TOL`].
const STEP: f64 = 1e-6;
/// Allowed |analytic - numeric| / max(1, |numeric|). Wrong gradients are off
/// by O(1); correct ones agree to ~1e-9.
const GRAD_TOL: f64 = 1e-6;

/// A deterministic f64 tensor with entries uniform in [-1, 1), for tests.
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("data length equals the shape's element count")
}

/// Checks the gradients `f` produces for every input against central finite
/// differences.
///
/// # Errors
/// Fails, naming the input and element, when an input receives no gradient or
/// an analytic gradient differs from the numeric one by more than the tolerance.
pub fn check_gradients<F>(inputs: &[Tensor], f: F) -> Result<()>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let inputs: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(DType::F64)).collect::<Result<_>>()?;
    let probe = f(&inputs)?;
    let weights = random_tensor(probe.dims(), 12345);
    let loss = |xs: &[Tensor]| -> Result<f64> { (f(xs)? * &weights)?.sum_all()?.to_vec0::<f64>() };

    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<Result<_>>()?;
    let var_tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = (f(&var_tensors)? * &weights)?.sum_all()?.backward()?;

    for (i, var) in vars.iter().enumerate() {
        let analytic = grads
            .get(var)
            .ok_or_else(|| candle_core::Error::Msg(format!("input {i} received no gradient")))?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let base = inputs[i].flatten_all()?.to_vec1::<f64>()?;
        for (j, a) in analytic.iter().enumerate() {
            let mut shifted = inputs.to_vec();
            let mut plus = base.clone();
            plus[j] += STEP;
            shifted[i] = Tensor::from_vec(plus, inputs[i].dims(), &Device::Cpu)?;
            let lp = loss(&shifted)?;
            let mut minus = base.clone();
            minus[j] -= STEP;
            shifted[i] = Tensor::from_vec(minus, inputs[i].dims(), &Device::Cpu)?;
            let lm = loss(&shifted)?;
            let numeric = (lp - lm) / (2.0 * STEP);
            if (a - numeric).abs() > GRAD_TOL * numeric.abs().max(1.0) {
                return Err(candle_core::Error::Msg(format!(
                    "input {i} element {j}: analytic gradient {a} vs finite differences {numeric}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks that every variable of `varmap` received a gradient, except
/// normalisation buffers ([`crate::ops::is_buffer_name`]), which never do.
///
/// # Errors
/// Lists the names of the variables without one.
pub fn assert_all_vars_have_grad(varmap: &VarMap, grads: &GradStore) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
    let mut missing: Vec<&String> = data
        .iter()
        .filter(|(name, var)| !crate::ops::is_buffer_name(name) && grads.get(var).is_none())
        .map(|(name, _)| name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    Err(candle_core::Error::Msg(format!("{} variables received no gradient: {missing:?}", missing.len())))
}
