//! Fused `x @ W^T + b`: one GEMM with the bias preloaded into the output, and
//! a backward computing dX = dY W, dW = dY^T X and db = colsum(dY) in one op
//! (the composed backward sums the bias gradient over non-last dims, which
//! candle does slowly: 82 ms for (64, 197, 768) in candle-notes.md §5).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use candle_core::backend::BackendStorage as _;
use rayon::prelude::*;

use super::{contiguous_slice, gemm, threads, MatRef, Real};

/// Rows per task when summing the bias gradient: enough work per task to
/// pay for the task, few enough partial sums to add up afterwards.
const BIAS_ROWS_PER_TASK: usize = 512;

/// `x @ W^T (+ b)` for contiguous `x` (..., in), any-strided `W` (out, in)
/// and `b` (out).
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => x.apply_op3(weight, b, LinearFwd),
        None => x.apply_op2(weight, LinearFwd),
    }
}

/// The forward op; as `CustomOp2` without bias, as `CustomOp3` with one.
#[derive(Debug, Clone, Copy)]
struct LinearFwd;

/// Output shape: `x`'s with the last dim replaced by `out`; and (rows, in, out).
fn geometry(x: &Layout, w: &Layout) -> Result<(Shape, usize, usize, usize)> {
    let (out_dim, in_dim) = w.shape().dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&in_dim) {
        return Err(candle_core::Error::Msg(format!("linear: input {:?} does not end in {in_dim}", x.dims())));
    }
    let rows = x.shape().elem_count() / in_dim.max(1);
    let mut out_dims = dims.to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = out_dim;
    }
    Ok((Shape::from(out_dims), rows, in_dim, out_dim))
}

fn forward<T: Real>(x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: Option<(&CpuStorage, &Layout)>) -> Result<(CpuStorage, Shape)> {
    let (shape, rows, in_dim, out_dim) = geometry(xl, wl)?;
    let xs = contiguous_slice::<T>(x, xl)?;
    let ws = &w.as_slice::<T>()?[wl.start_offset()..];
    let (w_rs, w_cs) = (wl.stride()[0], wl.stride()[1]);
    let mut y = vec![T::zero(); rows * out_dim];
    if let Some((b, bl)) = b {
        let bs = &b.as_slice::<T>()?[bl.start_offset()..];
        let stride = bl.stride().first().copied().unwrap_or(1);
        let bias: Vec<T> = (0..out_dim).map(|o| bs.get(o * stride).copied().unwrap_or(T::zero())).collect();
        y.par_chunks_mut(out_dim.max(1) * 64).for_each(|chunk| {
            for row in chunk.chunks_mut(out_dim.max(1)) {
                row.copy_from_slice(&bias);
            }
        });
    }
    // (rows, in) @ (in, out): W^T's element (i, o) is W's (o, i).
    gemm(
        rows,
        out_dim,
        in_dim,
        &mut y,
        out_dim,
        MatRef { data: xs, rs: in_dim, cs: 1 },
        MatRef { data: ws, rs: w_cs, cs: w_rs },
        T::one(),
        b.is_some(),
        threads(),
    )?;
    Ok((T::to_cpu_storage_owned(y), shape))
}

macro_rules! dispatch {
    ($s:expr, $f:ident, $($args:expr),*) => {
        match $s {
            CpuStorage::F32(_) => $f::<f32>($($args),*),
            CpuStorage::F64(_) => $f::<f64>($($args),*),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused linear")),
        }
    };
}

impl CustomOp2 for LinearFwd {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(x, forward, x, xl, w, wl, None)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = backward(x, w, None, grad)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for LinearFwd {
    fn name(&self) -> &'static str {
        "fused-linear-bias"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(x, forward, x, xl, w, wl, Some((b, bl)))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = backward(x, w, Some(b), grad)?;
        Ok((dx, Some(dw), db))
    }
}

/// Runs the two gradient ops: dX (skipped when `x` needs no gradient, e.g.
/// image patches) and the packed `[dW | db]`. They are separate buffers so a
/// kept dW does not keep the much larger dX alive.
fn backward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, grad: &Tensor) -> Result<(Option<Tensor>, Tensor, Option<Tensor>)> {
    let grad = grad.contiguous()?;
    let dx = if x.track_op() { Some(grad.apply_op2(w, LinearBwdInput)?.detach().reshape(x.shape())?) } else { None };
    let with_bias = b.is_some();
    let packed = x.apply_op2(&grad, LinearBwdParams { with_bias })?.detach();
    let (out_dim, in_dim) = w.dims2()?;
    let dw = packed.narrow(0, 0, out_dim * in_dim)?.reshape((out_dim, in_dim))?;
    let db = if with_bias { Some(packed.narrow(0, out_dim * in_dim, out_dim)?) } else { None };
    Ok((dx, dw, db))
}

/// dX = dY W for contiguous dY (..., out). No backward of its own.
#[derive(Debug, Clone, Copy)]
struct LinearBwdInput;

fn grad_input<T: Real>(g: &CpuStorage, gl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
    let (out_dim, in_dim) = wl.shape().dims2()?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let rows = gs.len() / out_dim.max(1);
    let ws = &w.as_slice::<T>()?[wl.start_offset()..];
    let mut dx = vec![T::zero(); rows * in_dim];
    // (rows, out) @ (out, in)
    let w_mat = MatRef { data: ws, rs: wl.stride()[0], cs: wl.stride()[1] };
    gemm(rows, in_dim, out_dim, &mut dx, in_dim, MatRef { data: gs, rs: out_dim, cs: 1 }, w_mat, T::one(), false, threads())?;
    Ok((T::to_cpu_storage_owned(dx), Shape::from((rows, in_dim))))
}

impl CustomOp2 for LinearBwdInput {
    fn name(&self) -> &'static str {
        "fused-linear-backward-input"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(g, grad_input, g, gl, w, wl)
    }
}

/// dW = dY^T X and db = colsum(dY), packed as `[dW (out*in) | db (out)]`
/// (db only `with_bias`). No backward of its own.
#[derive(Debug, Clone, Copy)]
struct LinearBwdParams {
    with_bias: bool,
}

impl LinearBwdParams {
    fn run<T: Real>(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = contiguous_slice::<T>(x, xl)?;
        let gs = contiguous_slice::<T>(g, gl)?;
        let in_dim = xl.dims().last().copied().unwrap_or(1).max(1);
        let out_dim = gl.dims().last().copied().unwrap_or(1).max(1);
        let rows = xs.len() / in_dim;
        let db_len = if self.with_bias { out_dim } else { 0 };
        let mut packed = vec![T::zero(); out_dim * in_dim + db_len];
        let (dw, db) = packed.split_at_mut(out_dim * in_dim);
        // (out, rows) @ (rows, in): dY^T's element (o, r) is dY's (r, o).
        gemm(out_dim, in_dim, rows, dw, in_dim, MatRef { data: gs, rs: 1, cs: out_dim }, MatRef { data: xs, rs: in_dim, cs: 1 }, T::one(), false, threads())?;
        if self.with_bias {
            let partials: Vec<Vec<T>> = gs
                .par_chunks(out_dim * BIAS_ROWS_PER_TASK)
                .map(|chunk| {
                    let mut acc = vec![T::zero(); out_dim];
                    for row in chunk.chunks(out_dim) {
                        for (a, g) in acc.iter_mut().zip(row) {
                            *a += *g;
                        }
                    }
                    acc
                })
                .collect();
            for part in partials {
                for (a, p) in db.iter_mut().zip(part) {
                    *a += p;
                }
            }
        }
        Ok((T::to_cpu_storage_owned(packed), Shape::from(out_dim * in_dim + db_len)))
    }
}

impl CustomOp2 for LinearBwdParams {
    fn name(&self) -> &'static str {
        "fused-linear-backward-params"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => self.run::<f32>(x, xl, g, gl),
            CpuStorage::F64(_) => self.run::<f64>(x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused linear backward")),
        }
    }
}
