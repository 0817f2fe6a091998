//! Fused exact GELU: forward `x Φ(x)` and backward `dY (Φ(x) + x φ(x))`, each
//! one vectorised pass (f32 uses the branch-free erfc/exp of `real.rs`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use candle_core::backend::BackendStorage as _;
use rayon::prelude::*;

use super::{contiguous_slice, vectorized, Real};

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// Exact GELU of a contiguous `x`.
pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(GeluFwd)
}

#[derive(Debug, Clone, Copy)]
struct GeluFwd;

fn forward<T: Real>(x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let mut y = vec![T::zero(); xs.len()];
    y.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        vectorized(
            #[inline(always)]
            || {
                for (o, v) in yc.iter_mut().zip(xc) {
                    *o = v.gelu();
                }
            },
        );
    });
    Ok((T::to_cpu_storage_owned(y), xl.shape().clone()))
}

impl CustomOp1 for GeluFwd {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(x, xl),
            CpuStorage::F64(_) => forward::<f64>(x, xl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused gelu")),
        }
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&grad.contiguous()?, GeluBwd)?.detach()))
    }
}

/// dX = dY (Φ(x) + x φ(x)). No backward of its own.
#[derive(Debug, Clone, Copy)]
struct GeluBwd;

fn backward<T: Real>(x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    if xs.len() != gs.len() {
        return Err(candle_core::Error::Msg("gelu backward: shape mismatch".into()));
    }
    let mut dx = vec![T::zero(); xs.len()];
    dx.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).zip(gs.par_chunks(CHUNK)).for_each(|((dc, xc), gc)| {
        vectorized(
            #[inline(always)]
            || {
                for ((o, v), g) in dc.iter_mut().zip(xc).zip(gc) {
                    *o = *g * v.gelu_grad();
                }
            },
        );
    });
    Ok((T::to_cpu_storage_owned(dx), xl.shape().clone()))
}

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "fused-gelu-backward"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => backward::<f32>(x, xl, g, gl),
            CpuStorage::F64(_) => backward::<f64>(x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused gelu backward")),
        }
    }
}
