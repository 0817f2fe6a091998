//! Fused layer norm over the last dim: one pass per row forward, and one op
//! for the backward that recomputes the row's mean and 1/std (cheaper than
//! keeping them) and returns dX, dweight and dbias together.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_core::backend::BackendStorage as _;
use rayon::prelude::*;

use super::{contiguous_slice, vectorized, Real};

/// Rows per rayon task: ~100 KB of f32 per task at D = 192.
const ROWS_PER_TASK: usize = 128;

/// Layer norm of contiguous `x` (..., D) with `weight`, `bias` (D).
pub(crate) fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.apply_op3(weight, bias, LayerNormFwd { eps })
}

#[derive(Debug, Clone, Copy)]
struct LayerNormFwd {
    eps: f64,
}

/// A D-vector (weight or bias) as a Vec, whatever its stride.
pub(super) fn vector<T: Real>(s: &CpuStorage, l: &Layout) -> Result<Vec<T>> {
    let data = s.as_slice::<T>()?;
    let d = l.dims().first().copied().unwrap_or(1);
    let stride = l.stride().first().copied().unwrap_or(1);
    (0..d)
        .map(|i| data.get(l.start_offset() + i * stride).copied().ok_or_else(|| candle_core::Error::Msg("layer norm: vector out of bounds".into())))
        .collect()
}

/// Lanes of the row sums: one AVX-512 register of f32 (float sums are kept
/// in order unless split into fixed-size partial sums like this).
const LANES: usize = 16;

/// `Σ f(a_i, b_i)` over two equal-length rows in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |s, (x, y)| s + f(*x, *y));
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += f(*x, *y);
        }
    }
    acc.iter().fold(tail, |s, v| s + *v)
}

/// Mean and 1/sqrt(var + eps) of one row (biased variance, two passes).
#[inline(always)]
fn row_stats<T: Real>(row: &[T], eps: T) -> (T, T) {
    let n = T::from_f64(row.len().max(1) as f64);
    let mean = lane_sum(row, row, |x, _| x) / n;
    let sq = lane_sum(row, row, |x, _| (x - mean) * (x - mean));
    (mean, T::one() / (sq / n + eps).sqrt())
}

fn forward<T: Real>(eps: f64, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let (w, b) = (vector::<T>(w, wl)?, vector::<T>(b, bl)?);
    let d = w.len().max(1);
    if xl.dims().last() != Some(&w.len()) || b.len() != w.len() {
        return Err(candle_core::Error::Msg(format!("layer norm: input {:?} vs weight {}, bias {}", xl.dims(), w.len(), b.len())));
    }
    let eps = T::from_f64(eps);
    let mut y = vec![T::zero(); xs.len()];
    y.par_chunks_mut(d * ROWS_PER_TASK).zip(xs.par_chunks(d * ROWS_PER_TASK)).for_each(|(yc, xc)| {
        vectorized(
            #[inline(always)]
            || {
                for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                    let (mean, rstd) = row_stats(xr, eps);
                    for (((o, v), wv), bv) in yr.iter_mut().zip(xr).zip(&w).zip(&b) {
                        *o = (*v - mean) * rstd * *wv + *bv;
                    }
                }
            },
        );
    });
    Ok((T::to_cpu_storage_owned(y), xl.shape().clone()))
}

impl CustomOp3 for LayerNormFwd {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.eps, x, xl, w, wl, b, bl),
            CpuStorage::F64(_) => forward::<f64>(self.eps, x, xl, w, wl, b, bl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused layer norm")),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d = w.dim(0)?;
        let dx = x.apply_op3(w, &grad, LayerNormBwdInput { eps: self.eps })?.detach();
        let params = x.apply_op2(&grad, LayerNormBwdParams { eps: self.eps })?.detach();
        Ok((Some(dx), Some(params.narrow(0, 0, d)?), Some(params.narrow(0, d, d)?)))
    }
}

/// dX = rstd * (g - mean(g) - x̂ mean(g x̂)) with g = dY * weight, per row.
/// No backward of its own.
#[derive(Debug, Clone, Copy)]
struct LayerNormBwdInput {
    eps: f64,
}

fn grad_input<T: Real>(eps: f64, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let w = vector::<T>(w, wl)?;
    let d = w.len().max(1);
    if gs.len() != xs.len() || xl.dims().last() != Some(&w.len()) {
        return Err(candle_core::Error::Msg("layer norm backward: shape mismatch".into()));
    }
    let eps = T::from_f64(eps);
    let inv_d = T::one() / T::from_f64(d as f64);
    let mut dx = vec![T::zero(); xs.len()];
    dx.par_chunks_mut(d * ROWS_PER_TASK).zip(xs.par_chunks(d * ROWS_PER_TASK)).zip(gs.par_chunks(d * ROWS_PER_TASK)).for_each(|((dxc, xc), gc)| {
        vectorized(
            #[inline(always)]
            || {
                for ((dxr, xr), gr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(gc.chunks(d)) {
                    let (mean, rstd) = row_stats(xr, eps);
                    // g = dY * weight, stored in dX's row until the sums are known.
                    for ((o, gv), wv) in dxr.iter_mut().zip(gr).zip(&w) {
                        *o = *gv * *wv;
                    }
                    let a = lane_sum(dxr, xr, |g, _| g) * inv_d;
                    let c = lane_sum(dxr, xr, |g, x| g * (x - mean) * rstd) * inv_d;
                    for (o, xv) in dxr.iter_mut().zip(xr) {
                        let xhat = (*xv - mean) * rstd;
                        *o = rstd * (*o - a - xhat * c);
                    }
                }
            },
        );
    });
    Ok((T::to_cpu_storage_owned(dx), xl.shape().clone()))
}

impl CustomOp3 for LayerNormBwdInput {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward-input"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => grad_input::<f32>(self.eps, x, xl, w, wl, g, gl),
            CpuStorage::F64(_) => grad_input::<f64>(self.eps, x, xl, w, wl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused layer norm backward")),
        }
    }
}

/// dweight = Σ_rows dY x̂ and dbias = Σ_rows dY, packed `[dweight | dbias]`.
/// No backward of its own.
#[derive(Debug, Clone, Copy)]
struct LayerNormBwdParams {
    eps: f64,
}

fn grad_params<T: Real>(eps: f64, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let d = xl.dims().last().copied().unwrap_or(1).max(1);
    if gs.len() != xs.len() {
        return Err(candle_core::Error::Msg("layer norm backward: shape mismatch".into()));
    }
    let eps = T::from_f64(eps);
    let partials: Vec<Vec<T>> = xs
        .par_chunks(d * ROWS_PER_TASK)
        .zip(gs.par_chunks(d * ROWS_PER_TASK))
        .map(|(xc, gc)| {
            vectorized(
                #[inline(always)]
                || {
                    let mut acc = vec![T::zero(); 2 * d];
                    let (dw, db) = acc.split_at_mut(d);
                    for (xr, gr) in xc.chunks(d).zip(gc.chunks(d)) {
                        let (mean, rstd) = row_stats(xr, eps);
                        for (((w_acc, b_acc), xv), gv) in dw.iter_mut().zip(db.iter_mut()).zip(xr).zip(gr) {
                            *w_acc += *gv * (*xv - mean) * rstd;
                            *b_acc += *gv;
                        }
                    }
                    acc
                },
            )
        })
        .collect();
    let mut out = vec![T::zero(); 2 * d];
    for part in partials {
        for (o, p) in out.iter_mut().zip(part) {
            *o += p;
        }
    }
    Ok((T::to_cpu_storage_owned(out), Shape::from(2 * d)))
}

impl candle_core::CustomOp2 for LayerNormBwdParams {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward-params"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => grad_params::<f32>(self.eps, x, xl, g, gl),
            CpuStorage::F64(_) => grad_params::<f64>(self.eps, x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused layer norm backward")),
        }
    }
}
