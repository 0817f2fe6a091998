//! Test support shared by every crate: gradient checks against central finite
//! differences, the check that every trainable variable got a gradient, and
//! the probes that show which kernels the switch selected
//! ([`switch_probes`]).
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

/// A batch of `batch` random RGB images (B, 3, `side`, `side`), values
/// uniform in [-2, 2) (about the range of normalised pixels), drawn from
/// `rng` in row-major order: the stand-in for data of the benchmarks and
/// of `vitdet selftest`.
///
/// # Errors
/// The tensor cannot be created on `device`.
pub fn random_images(batch: usize, side: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
    let pixels: Vec<f32> = (0..batch * 3 * side * side).map(|_| rng.gen_range(-2.0..2.0)).collect();
    Tensor::from_vec(pixels, (batch, 3, side, side), device)
}

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

/// One op (or optimizer update) run twice on the same inputs: through the
/// op layer, which takes a fused CPU kernel only when [`crate::ops::Kernels`]
/// allows it, and through its composed reference.
#[derive(Debug)]
pub struct SwitchProbe {
    /// The op's name.
    pub name: &'static str,
    /// Output and input gradients through the op layer (for an optimizer,
    /// the parameters after a few steps).
    pub op: Vec<Tensor>,
    /// The same through the composed reference.
    pub reference: Vec<Tensor>,
}

impl SwitchProbe {
    /// Whether the two runs agree bit for bit (what the composed path gives;
    /// the fused kernels round differently on these inputs).
    ///
    /// # Errors
    /// A tensor cannot be read back.
    pub fn bitwise_equal(&self) -> Result<bool> {
        let bits = |ts: &[Tensor]| -> Result<Vec<Vec<u64>>> {
            ts.iter().map(|t| Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.iter().map(|v| v.to_bits()).collect())).collect()
        };
        Ok(bits(&self.op)? == bits(&self.reference)?)
    }
}

/// Output and input gradients of `sum(f(inputs) * w)` for a fixed random `w`.
fn output_and_grads(inputs: &[Tensor], f: &dyn Fn(&[Tensor]) -> Result<Tensor>) -> Result<Vec<Tensor>> {
    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&tensors)?;
    let w = random_tensor(out.dims(), 4321).to_dtype(out.dtype())?;
    let grads = (&out * &w)?.sum_all()?.backward()?;
    let mut all = vec![out];
    for (i, v) in vars.iter().enumerate() {
        all.push(grads.get(v).ok_or_else(|| candle_core::Error::Msg(format!("input {i} received no gradient")))?.clone());
    }
    Ok(all)
}

/// A probe of an op: `op` and `reference` on f32 versions of `inputs`.
fn op_probe(
    name: &'static str,
    inputs: &[Tensor],
    op: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    reference: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<SwitchProbe> {
    let inputs: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(DType::F32)).collect::<Result<_>>()?;
    Ok(SwitchProbe { name, op: output_and_grads(&inputs, op)?, reference: output_and_grads(&inputs, reference)? })
}

/// A probe of an optimizer: three steps on a quadratic loss, from the
/// default optimizer and from one with its fused update turned off.
fn optimizer_probe(name: &'static str, build: &dyn Fn(Vec<crate::optim::ParamGroup>, bool) -> crate::Result<Box<dyn crate::optim::Optimizer>>) -> Result<SwitchProbe> {
    let run = |fused: bool| -> Result<Vec<Tensor>> {
        let p = Var::from_tensor(&random_tensor(&[700], 61).to_dtype(DType::F32)?)?;
        let target = random_tensor(&[700], 62).to_dtype(DType::F32)?;
        let group = crate::optim::ParamGroup { params: vec![("w".into(), p.clone())], lr_scale: 1.0, weight_decay: 0.05 };
        let mut opt = build(vec![group], fused).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        for step in 0..3 {
            let grads = (p.as_tensor() - &target)?.sqr()?.sum_all()?.backward()?;
            opt.step(&grads, 0.01 / (step + 1) as f64).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        }
        Ok(vec![p.as_tensor().copy()?])
    };
    Ok(SwitchProbe { name, op: run(true)?, reference: run(false)? })
}

/// Every op with a fused CPU kernel, and AdamW's fused update, run through the op layer and through the composed reference on
/// inputs where the two differ in rounding (or, for the max pool, in where
/// the gradient of a tie goes). Under `Kernels::Composed` each pair agrees
/// bitwise; under `Kernels::Auto` on the CPU none does; [`check_switch_probes`]
/// checks whichever the switch says.
///
/// # Errors
/// An op fails.
pub fn switch_probes() -> Result<Vec<SwitchProbe>> {
    use crate::ops::{self, detection, reference};
    let t = |shape: &[usize], seed: u64| random_tensor(shape, seed);
    let rois = Tensor::new(&[[0.0f32, 2.0, 3.0, 12.0, 11.0], [1.0, -2.0, -2.0, 22.0, 18.0], [0.0, 5.2, 6.1, 9.6, 8.3]], &Device::Cpu)?;
    // Halves: many windows hold their maximum twice.
    let ties = (t(&[2, 3, 8, 8], 70) * 2.0)?.round()?;
    // AdamW only: SGD's fused update does the composed one's arithmetic in
    // the same order (bitwise equal, so a probe could not tell them apart).
    let adamw = |groups, fused| -> crate::Result<Box<dyn crate::optim::Optimizer>> {
        let mut o = crate::optim::AdamW::new(groups, crate::optim::AdamWConfig::default())?;
        o.set_fused_cpu(fused);
        Ok(Box::new(o))
    };
    let mut probes = vec![
        op_probe("gelu", &[(t(&[64, 50], 71) * 4.0)?], &|x| ops::gelu(&x[0]), &|x| reference::gelu(&x[0]))?,
        op_probe("layer_norm", &[t(&[6, 7, 40], 72), t(&[40], 73), t(&[40], 74)], &|x| ops::layer_norm(&x[0], &x[1], &x[2], 1e-6), &|x| reference::layer_norm(&x[0], &x[1], &x[2], 1e-6))?,
        op_probe(
            "layer_norm_channels_first",
            &[t(&[2, 16, 5, 6], 75), t(&[16], 76), t(&[16], 77)],
            &|x| ops::layer_norm_channels_first(&x[0], &x[1], &x[2], 1e-6),
            &|x| reference::layer_norm_channels_first(&x[0], &x[1], &x[2], 1e-6),
        )?,
        // Over 512 rows: the fused bias gradient adds partial sums.
        op_probe("linear", &[t(&[3, 400, 24], 78), t(&[10, 24], 79), t(&[10], 80)], &|x| ops::linear(&x[0], &x[1], Some(&x[2])), &|x| reference::linear(&x[0], &x[1], Some(&x[2])))?,
        op_probe(
            "attention",
            &[t(&[2, 3, 9, 8], 81), t(&[2, 3, 9, 8], 82), t(&[2, 3, 9, 8], 83)],
            &|x| Ok(ops::attention(&x[0], &x[1], &x[2], None, 0.35, false)?.out),
            &|x| Ok(reference::attention(&x[0], &x[1], &x[2], None, 0.35, false)?.out),
        )?,
        op_probe("self_attention", &[t(&[2, 9, 48], 84)], &|x| ops::self_attention(&x[0], 4, 0.35), &|x| reference::self_attention(&x[0], 4, 0.35))?,
        op_probe(
            "conv2d",
            &[t(&[2, 8, 9, 10], 85), t(&[12, 8, 3, 3], 86), t(&[12], 87)],
            &|x| detection::conv2d(&x[0], &x[1], Some(&x[2]), 1),
            &|x| reference::conv2d(&x[0], &x[1], Some(&x[2]), 1),
        )?,
        op_probe(
            "conv_transpose2d",
            &[t(&[2, 8, 5, 6], 88), t(&[8, 6, 2, 2], 89), t(&[6], 90)],
            &|x| detection::conv_transpose2d(&x[0], &x[1], Some(&x[2]), 2),
            &|x| reference::conv_transpose2d(&x[0], &x[1], Some(&x[2]), 2),
        )?,
        op_probe("max_pool2d", &[ties], &|x| detection::max_pool2d(&x[0], 2), &|x| reference::max_pool2d(&x[0], 2))?,
        op_probe(
            "roi_align",
            &[t(&[2, 4, 8, 10], 91)],
            &|x| detection::roi_align(&x[0], &rois, (3, 3), 0.5, 0, true),
            &|x| reference::roi_align(&x[0], &rois, (3, 3), 0.5, 0, true),
        )?,
    ];
    probes.push(optimizer_probe("adamw", &adamw)?);
    Ok(probes)
}

/// Checks that every probe of [`switch_probes`] shows the kernels the
/// switch selects: under `Kernels::Composed` the op layer equals the
/// composed reference bitwise (so no fused kernel ran), under
/// `Kernels::Auto` it differs from it (so each probe can tell the two apart).
///
/// # Errors
/// Names the probes that contradict the switch.
pub fn check_switch_probes() -> Result<()> {
    let composed = crate::ops::kernels() == crate::ops::Kernels::Composed;
    let mut wrong = Vec::new();
    for probe in switch_probes()? {
        if probe.bitwise_equal()? != composed {
            wrong.push(probe.name);
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let what = if composed { "differ from the composed reference: a fused kernel ran" } else { "equal the composed reference: the probe cannot tell the kernels apart" };
    Err(candle_core::Error::Msg(format!("kernels {:?}: {wrong:?} {what}", crate::ops::kernels())))
}
