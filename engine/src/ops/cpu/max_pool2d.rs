//! Fused `max_pool2d` with kernel = stride k (non-overlapping windows, floor
//! mode: trailing rows and columns that do not fill a window are dropped),
//! with a backward that routes each window's gradient to its first maximum
//! in row-major order, as PyTorch's CPU kernel does.
//!
//! Why: candle 0.11.1's max-pool backward multiplies the gradient by the
//! fraction of the window that holds the maximum (`avg_pool2d` of the
//! equality mask) where it means to divide by the number of maxima, so the
//! gradient of a window with one maximum comes out k² times too small
//! (`backprop.rs`, `Op::MaxPool2D`; caught by this crate's finite-difference
//! test).
//!
//! Shapes: N images, C channels, (H, W) the input map, (H / k, W / k) the
//! output map (floor).

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, Real};

/// `F.max_pool2d(x, kernel_size=k, stride=k)` for a contiguous `x` (N, C, H, W).
pub(crate) fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    x.apply_op1(MaxPool2d { k })
}

/// The forward op.
#[derive(Debug, Clone, Copy)]
struct MaxPool2d {
    k: usize,
}

/// (N C planes, H, W, output height, output width).
fn geometry(xl: &Layout, k: usize) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, c, h, w) = xl.shape().dims4()?;
    if k == 0 || h < k || w < k {
        return Err(candle_core::Error::Msg(format!("max_pool2d: a {h}x{w} map is smaller than the {k}x{k} window")));
    }
    Ok((n * c, h, w, h / k, w / k))
}

/// The flat index inside its plane of the first maximum of window (oy, ox).
#[inline]
fn argmax<T: Real>(plane: &[T], w: usize, k: usize, oy: usize, ox: usize) -> usize {
    let mut best = oy * k * w + ox * k;
    for dy in 0..k {
        let row = (oy * k + dy) * w + ox * k;
        for i in row..row + k {
            if plane[i] > plane[best] {
                best = i;
            }
        }
    }
    best
}

fn forward<T: Real>(k: usize, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
    let (planes, h, w, oh, ow) = geometry(xl, k)?;
    let xs = contiguous_slice::<T>(x, xl)?;
    let mut y = vec![T::zero(); planes * oh * ow];
    y.par_chunks_mut((oh * ow).max(1)).zip(xs.par_chunks((h * w).max(1))).for_each(|(out, plane)| {
        for (i, v) in out.iter_mut().enumerate() {
            *v = plane[argmax(plane, w, k, i / ow, i % ow)];
        }
    });
    let (n, c, _, _) = xl.shape().dims4()?;
    Ok((T::to_cpu_storage_owned(y), Shape::from((n, c, oh, ow))))
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "fused-max-pool2d"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.k, x, xl),
            CpuStorage::F64(_) => forward::<f64>(self.k, x, xl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused max_pool2d")),
        }
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&grad.contiguous()?, MaxPool2dBwd { k: self.k })?.detach()))
    }
}

/// dX: each window's gradient on its first maximum, zero elsewhere. No
/// backward of its own.
#[derive(Debug, Clone, Copy)]
struct MaxPool2dBwd {
    k: usize,
}

fn backward<T: Real>(k: usize, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let (planes, h, w, oh, ow) = geometry(xl, k)?;
    if gl.shape().elem_count() != planes * oh * ow {
        return Err(candle_core::Error::Msg(format!("max_pool2d backward: gradient {:?} does not fit input {:?}", gl.dims(), xl.dims())));
    }
    let xs = contiguous_slice::<T>(x, xl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let mut dx = vec![T::zero(); xs.len()];
    dx.par_chunks_mut((h * w).max(1)).zip(xs.par_chunks((h * w).max(1))).zip(gs.par_chunks((oh * ow).max(1))).for_each(|((out, plane), grad)| {
        for (i, gv) in grad.iter().enumerate() {
            out[argmax(plane, w, k, i / ow, i % ow)] = *gv;
        }
    });
    Ok((T::to_cpu_storage_owned(dx), xl.shape().clone()))
}

impl CustomOp2 for MaxPool2dBwd {
    fn name(&self) -> &'static str {
        "fused-max-pool2d-backward"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => backward::<f32>(self.k, x, xl, g, gl),
            CpuStorage::F64(_) => backward::<f64>(self.k, x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused max_pool2d backward")),
        }
    }
}
