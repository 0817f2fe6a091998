//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_`
//! (`torch/nn/utils/clip_grad.py`, norm_type 2): the total norm is the L2
//! norm of all gradients together; if `max_norm / (total + 1e-6) < 1`, every
//! gradient is multiplied by that coefficient. MAE-Lite's transfer recipe
//! clips at 1.0. Verified against PyTorch in `tests/optim_reference.rs`.
//!
//! Deviation: the norm is accumulated in f64 (PyTorch uses the gradients'
//! dtype), which only removes rounding error.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Storage, Tensor, Var};

use crate::Result;

/// PyTorch's guard against division by a zero norm.
const NORM_EPS: f64 = 1e-6;

/// Clips the gradients of `vars` in `grads` to a global L2 norm of at most
/// `max_norm` and returns the norm **before** clipping (log it: a NaN or
/// infinite value means the step diverged; such gradients are left as they
/// are). Variables without a gradient are ignored.
///
/// # Errors
/// A tensor operation fails (e.g. gradients on devices that cannot be
/// combined).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut cpu_sum = 0.0f64;
    let mut seen = false;
    let mut device_sums = Vec::new();
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            seen = true;
            match cpu_sum_sq(g) {
                Some(s) => cpu_sum += s,
                None => device_sums.push(g.to_dtype(DType::F64)?.sqr()?.sum_all()?),
            }
        }
    }
    if !seen {
        return Ok(0.0);
    }
    let total = (cpu_sum + device_sum(&device_sums)?).sqrt();
    let coef = max_norm / (total + NORM_EPS);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * coef)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(total)
}

/// Sum of squares of a contiguous f32/f64 CPU tensor, read in place (no
/// temporaries); `None` for anything else.
fn cpu_sum_sq(g: &Tensor) -> Option<f64> {
    if !crate::ops::fused_allowed() || !g.device().is_cpu() {
        return None;
    }
    let (storage, layout) = g.storage_and_layout();
    let (a, b) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Some(
            v.get(a..b)?
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum(),
        ),
        Storage::Cpu(CpuStorage::F64(v)) => Some(v.get(a..b)?.iter().map(|&x| x * x).sum()),
        _ => None,
    }
}

/// Adds up per-tensor sums of squares computed on a device, with a single
/// device-to-host transfer for the whole model.
fn device_sum(sums: &[Tensor]) -> Result<f64> {
    let Some(first) = sums.first() else {
        return Ok(0.0);
    };
    let device = first.device().clone();
    let sums = sums
        .iter()
        .map(|s| s.to_device(&device))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::Device;

    fn setup() -> (Var, Var, Var, GradStore) {
        let a = Var::new(&[0.0f32, 0.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        let unused = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        // grad a = (3, 0), grad b = (4): global norm 5.
        let loss = ((a.as_tensor() * &Tensor::new(&[3.0f32, 0.0], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            + (b.as_tensor() * 4.0).unwrap().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        (a, b, unused, grads)
    }

    #[test]
    fn clips_to_max_norm_and_returns_pre_clip_norm() {
        let (a, b, unused, mut grads) = setup();
        let total = clip_grad_norm(&mut grads, &[a.clone(), b.clone(), unused], 1.0).unwrap();
        assert!((total - 5.0).abs() < 1e-12);
        let coef = 1.0 / (5.0 + 1e-6);
        let ga: Vec<f32> = grads.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        let gb: Vec<f32> = grads.get(b.as_tensor()).unwrap().to_vec1().unwrap();
        assert!((ga[0] as f64 - 3.0 * coef).abs() < 1e-7, "{ga:?}");
        assert!((gb[0] as f64 - 4.0 * coef).abs() < 1e-7, "{gb:?}");
    }

    #[test]
    fn leaves_small_gradients_untouched() {
        let (a, b, _, mut grads) = setup();
        let total = clip_grad_norm(&mut grads, &[a.clone(), b], 10.0).unwrap();
        assert!((total - 5.0).abs() < 1e-12);
        assert_eq!(
            grads.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
            vec![3.0, 0.0]
        );
    }

    #[test]
    fn in_place_and_tensor_op_norms_agree() {
        let t = Tensor::arange(0f32, 1000.0, &candle_core::Device::Cpu).unwrap();
        let fast = cpu_sum_sq(&t).unwrap();
        let slow = device_sum(&[t
            .to_dtype(DType::F64)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()])
        .unwrap();
        assert_eq!(fast, slow); // integers: both sums are exact
        let strided = Tensor::ones((3, 2), DType::F32, &candle_core::Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        assert!(cpu_sum_sq(&strided).is_none());
    }

    #[test]
    fn no_gradients_means_norm_zero() {
        let (_, _, unused, mut grads) = setup();
        assert_eq!(clip_grad_norm(&mut grads, &[unused], 1.0).unwrap(), 0.0);
    }
}
