//! `vitdet selftest`: the same tiny forward and backward of a model on two
//! devices, compared output by output and gradient by gradient.
//!
//! The reference is always the CPU with the fused kernels
//! ([`Kernels::Auto`]), the path every CPU test checks against PyTorch. The
//! candidate is the device under test with the kernels it runs in
//! training: on a GPU that is `Auto` too (the composed path plus the GPU
//! kernels, such as RoIAlign's), and for the CPU it is
//! [`Kernels::Composed`], which is the code a GPU runs, so `--device cpu`
//! checks the GPU's math on a machine without one.
//!
//! Each task crate exposes its models as [`Case`]s (a name and a function
//! that builds the model tiny and seeded on a device, runs it and
//! backpropagates). A case must give both runs identical weights: it
//! builds and initialises the model on the CPU and copies the variables to
//! the device ([`copy_vars`]), so no device random-number generator is ever
//! involved. [`run`] runs every case on both sides and [`Report`] prints
//! the table.

mod compare;
mod table;

pub use compare::{diff, max_magnitude, TensorDiff};
pub use table::{Report, Row};

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::ops::{kernels, set_kernels, Kernels};

/// What can stop the self-test (a mismatch is not an error: it is a failing
/// row of the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    /// A model could not be built or run on a side.
    #[error("selftest {model} on {side}: {source}")]
    Case {
        /// The case's model name.
        model: String,
        /// Which side failed ("reference cpu" or the candidate device).
        side: String,
        /// What the case returned.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The two sides produced tensors of different shapes.
    #[error("selftest {what}: candidate shape {candidate:?} differs from the reference's {reference:?}")]
    ShapeMismatch {
        /// The tensor compared.
        what: String,
        /// Its shape on the device under test.
        candidate: Vec<usize>,
        /// Its shape on the reference.
        reference: Vec<usize>,
    },
    /// A variable of the reference model has no counterpart to copy into.
    #[error("selftest: variable {name} of the CPU model is missing from the device model")]
    MissingVar {
        /// The variable's name.
        name: String,
    },
    /// A tensor operation failed (reading a value back, a device copy).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// Listing the variables failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// The default relative tolerance of `vitdet selftest`. Both sides compute
/// in f32; the paths differ in summation order (fused kernels, cuBLAS,
/// atomics), which moves a tiny model's outputs and gradients by about
/// 1e-6 of their largest value; 1e-4 leaves room for a few blocks of that
/// while a wrong kernel (a missed term, a wrong index) shows up at 1e-2 or
/// more.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// Any task crate's error, as a case returns it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a case returns: `Err` carries the task crate's own error.
pub type CaseResult = std::result::Result<CaseRun, BoxError>;

/// The seed of every self-test case: weights, inputs and the training
/// randomness (drop path, masking, sampling) all derive from it.
pub const SEED: u64 = 0;

/// One model of the self-test.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The name in the table (`vit`, `detector`, `mae`, ...).
    pub model: &'static str,
    /// Builds the model tiny on the device (weights from the CPU, see the
    /// module doc), runs the forward and the backward, and returns what to
    /// compare. Must be deterministic: the same seeds on every call.
    pub run: fn(&Device) -> CaseResult,
}

/// The tensors one run of a case produced on one device.
#[derive(Debug, Clone, Default)]
pub struct CaseRun {
    /// Outputs and losses by name (`loss`, `logits`, ...).
    pub outputs: Vec<(String, Tensor)>,
    /// Every variable's gradient by name, `None` where it got none (frozen
    /// tables, BatchNorm buffers).
    pub grads: Vec<(String, Option<Tensor>)>,
}

impl CaseRun {
    /// The outputs `outputs` and the gradient of every variable of
    /// `varmaps` from `grads`, prefixed by their map's name.
    ///
    /// # Errors
    /// A variable map's lock was poisoned.
    pub fn new(outputs: Vec<(&str, Tensor)>, varmaps: &[(&str, &VarMap)], grads: &GradStore) -> Result<Self, SelftestError> {
        let mut named_grads = Vec::new();
        for (prefix, varmap) in varmaps {
            for (name, var) in crate::vars::named_vars(varmap)? {
                named_grads.push((format!("{prefix}{name}"), grads.get(&var).cloned()));
            }
        }
        Ok(Self { outputs: outputs.into_iter().map(|(n, t)| (n.to_string(), t)).collect(), grads: named_grads })
    }
}

/// Copies every variable of `from` into the variable of the same name in
/// `to`, moving it to that variable's device: the device model gets the CPU
/// model's weights.
///
/// # Errors
/// [`SelftestError::MissingVar`] for a name `to` lacks; a tensor error for a
/// shape or dtype mismatch.
pub fn copy_vars(from: &VarMap, to: &VarMap) -> Result<(), SelftestError> {
    let targets: std::collections::HashMap<String, candle_core::Var> = crate::vars::named_vars(to)?.into_iter().collect();
    for (name, source) in crate::vars::named_vars(from)? {
        let target = targets.get(&name).ok_or_else(|| SelftestError::MissingVar { name: name.clone() })?;
        target.set(&source.as_tensor().to_device(target.device())?)?;
    }
    Ok(())
}

/// Builds a model on `device` with the weights it gets on the CPU: `build`
/// creates its variables in the given map and initialises them (seeded);
/// it runs on the CPU, then (for another device) on `device`, whose
/// variables then receive the CPU values ([`copy_vars`]). Returns the
/// device model and its variables.
///
/// # Errors
/// What `build` returns; a failed copy.
pub fn build_on<M>(device: &Device, build: impl Fn(&VarMap, &Device) -> Result<M, BoxError>) -> Result<(VarMap, M), BoxError> {
    let cpu = VarMap::new();
    let cpu_model = build(&cpu, &Device::Cpu)?;
    if device.is_cpu() {
        return Ok((cpu, cpu_model));
    }
    let varmap = VarMap::new();
    let model = build(&varmap, device)?;
    copy_vars(&cpu, &varmap)?;
    Ok((varmap, model))
}

/// A scalar that every element of `t` reaches with its own weight:
/// `sum(t * r)` with `r` uniform in [-1, 1), drawn from `seed` on the
/// host. Backpropagating it sends a generic gradient into a model whose
/// output is a feature map or token set (a plain sum would send the same
/// value everywhere, which hides permutation bugs).
///
/// # Errors
/// A tensor error.
pub fn probe_loss(t: &Tensor, seed: u64) -> candle_core::Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let weights: Vec<f32> = (0..t.elem_count()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let r = Tensor::from_vec(weights, t.dims(), t.device())?.to_dtype(t.dtype())?;
    (t * r)?.sum_all()
}

/// A device with the kernels it runs.
#[derive(Debug, Clone)]
pub struct Side {
    /// Where the case runs.
    pub device: Device,
    /// The kernel switch during the run.
    pub kernels: Kernels,
}

impl Side {
    /// The reference: the CPU with its fused kernels.
    pub fn reference() -> Self {
        Self { device: Device::Cpu, kernels: Kernels::Auto }
    }

    /// The side under test for `device`: the composed kernels on the CPU
    /// (what a GPU runs), the default kernels elsewhere.
    pub fn candidate(device: &Device) -> Self {
        let kernels = if device.is_cpu() { Kernels::Composed } else { Kernels::Auto };
        Self { device: device.clone(), kernels }
    }

    /// `cpu (auto)`, `cuda:0 (auto)`, ... for messages and the table header.
    pub fn describe(&self) -> String {
        let device = match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        format!("{device} ({} kernels)", self.kernels.name())
    }

    /// Runs `case` on this side, with the kernel switch set for the run and
    /// put back afterwards (also on error).
    ///
    /// # Errors
    /// [`SelftestError::Case`] with what the case returned.
    pub fn run(&self, case: &Case) -> Result<CaseRun, SelftestError> {
        struct Restore(Kernels);
        impl Drop for Restore {
            fn drop(&mut self) {
                set_kernels(self.0);
            }
        }
        let _restore = Restore(kernels());
        set_kernels(self.kernels);
        (case.run)(&self.device).map_err(|source| SelftestError::Case { model: case.model.to_string(), side: self.describe(), source })
    }
}

/// The smallest scale a gradient's error is measured against, as a fraction
/// of the largest gradient value of the model. Some gradients are zero in
/// exact arithmetic and hold only rounding noise, e.g. the bias of a layer
/// whose output feeds a batch norm (MoCo-v3's projector), which removes any
/// constant shift: relative to their own size, two noises never agree.
/// Every other gradient is measured against its own largest value.
pub const GRADIENT_SCALE_FLOOR: f64 = 1e-2;

/// The table rows comparing `candidate` with `reference` for `model`: one
/// per output, one for all gradients together (naming the worst parameter;
/// errors relative to the larger of the gradient's largest value and
/// [`GRADIENT_SCALE_FLOOR`] of the model's largest gradient value),
/// and a failing row for every gradient present on one side only. A case
/// whose parameters got no gradient at all fails too (nothing was checked).
///
/// # Errors
/// Outputs that differ in name or shape; a tensor error.
pub fn compare_runs(model: &str, reference: &CaseRun, candidate: &CaseRun, tolerance: f64) -> Result<Vec<Row>, SelftestError> {
    let mut rows = Vec::new();
    if reference.outputs.len() != candidate.outputs.len() {
        return Err(SelftestError::ShapeMismatch { what: format!("{model} outputs (count)"), candidate: vec![candidate.outputs.len()], reference: vec![reference.outputs.len()] });
    }
    for ((name, r), (_, c)) in reference.outputs.iter().zip(&candidate.outputs) {
        rows.push(Row::new(model, name.clone(), diff(&format!("{model} {name}"), c, r, 0.0)?, tolerance));
    }
    let mut largest_gradient = 0f64;
    for g in reference.grads.iter().filter_map(|(_, g)| g.as_ref()) {
        largest_gradient = largest_gradient.max(max_magnitude(g)?);
    }
    let min_scale = GRADIENT_SCALE_FLOOR * largest_gradient;
    let candidate_grads: std::collections::HashMap<&str, &Option<Tensor>> = candidate.grads.iter().map(|(n, g)| (n.as_str(), g)).collect();
    let mut worst: Option<(String, TensorDiff)> = None;
    let mut compared = 0;
    for (name, r) in &reference.grads {
        let c = candidate_grads.get(name.as_str()).copied().unwrap_or(&None);
        match (r, c) {
            (Some(r), Some(c)) => {
                let d = diff(&format!("{model} gradient of {name}"), c, r, min_scale)?;
                compared += 1;
                let worse = match &worst {
                    None => true,
                    Some((_, w)) => !d.within(w.max_rel) || d.max_rel > w.max_rel,
                };
                if worse {
                    worst = Some((name.clone(), d));
                }
            }
            (None, None) => {}
            (Some(_), None) => rows.push(Row::failed(model, format!("gradient of {name}: missing on the device"), tolerance)),
            (None, Some(_)) => rows.push(Row::failed(model, format!("gradient of {name}: only on the device"), tolerance)),
        }
    }
    match worst {
        Some((name, d)) => rows.push(Row::new(model, format!("gradients ({compared}; worst {name})"), d, tolerance)),
        None => rows.push(Row::failed(model, "gradients: no parameter received one".to_string(), tolerance)),
    }
    Ok(rows)
}

/// Runs every case on the reference and on the candidate side for
/// `device` ([`Side::candidate`]) and compares them at `tolerance`
/// (relative, [`TensorDiff::max_rel`]).
///
/// # Errors
/// The first case that fails to build or run, or whose outputs differ in
/// shape.
pub fn run(cases: &[Case], device: &Device, tolerance: f64) -> Result<Report, SelftestError> {
    let (reference, candidate) = (Side::reference(), Side::candidate(device));
    let mut rows = Vec::new();
    for case in cases {
        let r = reference.run(case)?;
        let c = candidate.run(case)?;
        rows.extend(compare_runs(case.model, &r, &c, tolerance)?);
    }
    Ok(Report { reference: reference.describe(), candidate: candidate.describe(), rows })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Var;

    /// A one-variable "model": y = w · x with w = [1, 2, 3] built on the CPU
    /// and copied over; the output is nudged by `fault` under the composed
    /// kernels, standing in for a device kernel with a bug.
    fn scaled_case(device: &Device, fault: f32) -> CaseResult {
        let cpu = VarMap::new();
        cpu.get(3, "w", candle_nn::Init::Const(0.0), candle_core::DType::F32, &Device::Cpu)?;
        cpu.data().lock().unwrap()["w"].set(&Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)?)?;
        let dev = VarMap::new();
        let w: Tensor = dev.get(3, "w", candle_nn::Init::Const(0.0), candle_core::DType::F32, device)?;
        copy_vars(&cpu, &dev)?;
        let nudge = if kernels() == Kernels::Composed { fault } else { 0.0 };
        let x = Tensor::new(&[0.5f32, -1.0, 2.0], device)?;
        let y = ((&w * &x)? + f64::from(nudge))?;
        let loss = y.sqr()?.sum_all()?;
        let grads = loss.backward()?;
        Ok(CaseRun::new(vec![("y", y), ("loss", loss)], &[("", &dev)], &grads)?)
    }

    fn healthy(device: &Device) -> CaseResult {
        scaled_case(device, 0.0)
    }

    fn faulty(device: &Device) -> CaseResult {
        scaled_case(device, 1e-3)
    }

    #[test]
    fn identical_paths_pass_and_fill_the_table() {
        let report = run(&[Case { model: "toy", run: healthy }], &Device::Cpu, 1e-6).unwrap();
        assert!(report.passed(), "{report}");
        let whats: Vec<&str> = report.rows.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(whats, ["y", "loss", "gradients (1; worst w)"]);
        assert_eq!(report.candidate, "cpu (composed kernels)");
        assert_eq!(report.reference, "cpu (auto kernels)");
    }

    #[test]
    fn an_injected_fault_fails_its_rows_only() {
        let cases = [Case { model: "good", run: healthy }, Case { model: "bad", run: faulty }];
        let report = run(&cases, &Device::Cpu, 1e-6).unwrap();
        assert!(!report.passed());
        let failed: Vec<(&str, &str)> = report.rows.iter().filter(|r| !r.ok).map(|r| (r.model.as_str(), r.what.as_str())).collect();
        assert_eq!(failed, [("bad", "y"), ("bad", "loss"), ("bad", "gradients (1; worst w)")]);
        // 1e-3 on y = [0.5, -2, 6]: relative 1e-3 / 6.
        let y = &report.rows.iter().find(|r| r.model == "bad" && r.what == "y").unwrap().diff;
        assert!((y.max_abs - 1e-3).abs() < 1e-6 && (y.max_rel - 1e-3 / 6.0).abs() < 1e-6, "{y:?}");
        // A tolerance above the fault passes it.
        assert!(run(&cases, &Device::Cpu, 1e-3).unwrap().passed());
    }

    #[test]
    fn the_kernel_switch_is_restored_after_a_run() {
        set_kernels(Kernels::Auto);
        run(&[Case { model: "toy", run: healthy }], &Device::Cpu, 1e-6).unwrap();
        assert_eq!(kernels(), Kernels::Auto);
    }

    #[test]
    fn a_gradient_on_one_side_only_fails() {
        let w = Var::new(&[1f32], &Device::Cpu).unwrap();
        let r = CaseRun { outputs: vec![], grads: vec![("w".into(), Some(w.as_tensor().clone()))] };
        let c = CaseRun { outputs: vec![], grads: vec![("w".into(), None)] };
        let rows = compare_runs("m", &r, &c, 1.0).unwrap();
        assert!(rows.iter().any(|row| !row.ok && row.what.contains("missing on the device")), "{rows:?}");
        let none = CaseRun { outputs: vec![], grads: vec![("w".into(), None)] };
        let rows = compare_runs("m", &none, &none, 1.0).unwrap();
        assert!(rows.iter().all(|row| !row.ok), "a case without gradients checks nothing: {rows:?}");
    }

    #[test]
    fn copy_vars_names_a_missing_variable() {
        let from = VarMap::new();
        from.get(2, "a", candle_nn::Init::Const(1.0), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = copy_vars(&from, &VarMap::new()).unwrap_err();
        assert!(err.to_string().contains("variable a"), "{err}");
    }
}
