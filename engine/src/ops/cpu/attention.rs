//! Fused attention `softmax(q k^T * scale) v` without bias, one rayon task
//! per (batch, head): the (N, M) scores live only in that task's scratch
//! buffer. The backward recomputes them (one extra N x M x d GEMM) instead of
//! keeping B*H*N*M probabilities per layer alive between forward and
//! backward, as flash attention does.
//!
//! Backward, with P = softmax(S): dV = P^T dO, dP = dO V^T,
//! dS = P ⊙ (dP - rowsum(dP ⊙ P)), dQ = dS K * scale, dK = dS^T Q * scale.
//!
//! The per-head pieces, [`head_forward`] and [`head_backward`], also serve
//! the packed-qkv self-attention (`qkv_attention.rs`). They pack each
//! operand once per head and walk the queries in blocks.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_core::backend::BackendStorage as _;
use rayon::prelude::*;

use super::{gemm, vectorized, MatRef, Real};

/// `softmax(q k^T * scale) v` for q (B, H, N, d), k (B, H, M, d), v (B, H, M, dv)
/// of any strides; returns (B, H, N, dv). Callers ensure no dim is zero.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    q.apply_op3(k, v, AttentionFwd { scale })
}

#[derive(Debug, Clone, Copy)]
struct AttentionFwd {
    scale: f64,
}

/// Sizes of one problem: (B, H, N, M, d, dv).
type Dims = (usize, usize, usize, usize, usize, usize);

fn dims(ql: &Layout, kl: &Layout, vl: &Layout) -> Result<Dims> {
    let (b, h, n, d) = ql.shape().dims4()?;
    let (kb, kh, m, kd) = kl.shape().dims4()?;
    let (vb, vh, vm, dv) = vl.shape().dims4()?;
    if (kb, kh, kd) != (b, h, d) || (vb, vh, vm) != (b, h, m) {
        return Err(candle_core::Error::Msg(format!("attention: q {:?}, k {:?}, v {:?} do not match", ql.dims(), kl.dims(), vl.dims())));
    }
    Ok((b, h, n, m, d, dv))
}

/// The (rows, cols) matrix of head `h` of batch `b` in a (B, H, rows, cols) layout.
fn head<'a, T: Real>(data: &'a [T], l: &Layout, b: usize, h: usize) -> Result<MatRef<'a, T>> {
    let s = l.stride();
    let offset = l.start_offset() + b * s[0] + h * s[1];
    let data = data.get(offset..).ok_or_else(|| candle_core::Error::Msg("attention: layout out of bounds".into()))?;
    let dims = l.dims();
    MatRef { data, rs: s[2], cs: s[3] }.checked(dims[2], dims[3])
}

/// Queries per block: a block's scores (64 x M) stay in the cache between
/// the products that use them, and a task's memory is O(M) per head instead
/// of O(N M), which matters for ViTDet's global attention over thousands of
/// tokens.
const QUERY_BLOCK: usize = 64;

/// Lanes of the reductions below: one AVX-512 register of f32. Whole
/// fixed-size chunks let LLVM keep the partial results in registers.
const LANES: usize = 16;

/// Sizes of one head: `n` queries, `m` keys, `d` query/key width, `dv` value width.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadDims {
    pub n: usize,
    pub m: usize,
    pub d: usize,
    pub dv: usize,
}

/// Replaces each row of `s` (rows of length `m`) by its softmax.
#[inline(always)]
fn softmax_rows<T: Real>(s: &mut [T], m: usize) {
    for row in s.chunks_mut(m) {
        let mut mx = [T::NEG_INF; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in chunks.by_ref() {
            for (a, v) in mx.iter_mut().zip(c) {
                *a = a.maximum(*v);
            }
        }
        let max = chunks.remainder().iter().chain(&mx).fold(T::NEG_INF, |a, b| a.maximum(*b));
        let mut acc = [T::zero(); LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in chunks.by_ref() {
            for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
                *v = (*v - max).exp();
                *a += *v;
            }
        }
        // The last partial vector through the same SIMD code (scalar exps of
        // the 5 leftover keys of ViT-Tiny's 197 cost a quarter of the row).
        let rest = chunks.into_remainder();
        let mut tail = [max; LANES];
        tail[..rest.len()].copy_from_slice(rest);
        for v in tail.iter_mut() {
            *v = (*v - max).exp();
        }
        rest.copy_from_slice(&tail[..rest.len()]);
        let sum = rest.iter().fold(T::zero(), |a, b| a + *b);
        let inv = T::one() / acc.iter().fold(sum, |a, b| a + *b);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// `sum(a ⊙ b)` in [`LANES`] partial sums.
#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |s, (x, y)| s + *x * *y);
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += *x * *y;
        }
    }
    acc.iter().fold(tail, |s, v| s + *v)
}

/// A (rows, cols) view copied into a new row-major buffer; with `transpose`,
/// its transpose (cols, rows) instead. With a head's width as small as 16,
/// `gemm` runs ~14x faster on such copies than on the strided views
/// (8.5 vs 141 GFLOP/s for 197 x 197 x 16), and each operand is copied once
/// per head, not once per product.
///
/// # Panics
/// The view is smaller than (rows, cols) (callers check with [`MatRef::checked`]).
fn packed<T: Real>(a: MatRef<'_, T>, rows: usize, cols: usize, transpose: bool) -> Vec<T> {
    let mut out = vec![T::zero(); rows * cols];
    if transpose {
        // Column by column of a, so the writes run along out's rows.
        for (j, dst) in out.chunks_exact_mut(rows.max(1)).enumerate() {
            for (i, v) in dst.iter_mut().enumerate() {
                *v = a.data[i * a.rs + j * a.cs];
            }
        }
    } else {
        for (i, dst) in out.chunks_exact_mut(cols.max(1)).enumerate() {
            if a.cs == 1 {
                dst.copy_from_slice(&a.data[i * a.rs..][..cols]);
            } else {
                for (j, v) in dst.iter_mut().enumerate() {
                    *v = a.data[i * a.rs + j * a.cs];
                }
            }
        }
    }
    out
}

/// A row-major (rows, cols) buffer as a view.
fn rows_of<T>(data: &[T], cols: usize) -> MatRef<'_, T> {
    MatRef { data, rs: cols, cs: 1 }
}

/// Its transpose as a view.
fn transposed<T>(data: &[T], cols: usize) -> MatRef<'_, T> {
    MatRef { data, rs: 1, cs: cols }
}

/// One head's `softmax(q k^T * scale) v` into `out` (N, dv), rows `out_rs`
/// apart: Q, K^T and V are packed once, then each block of queries runs
/// S = scale Q K^T, P = softmax(S), O = P V.
///
/// # Errors
/// `out` is too small for (N, dv) at `out_rs`.
///
/// # Panics
/// A view is smaller than `dims` say (callers check with [`MatRef::checked`]).
pub(super) fn head_forward<T: Real>(q: MatRef<'_, T>, k: MatRef<'_, T>, v: MatRef<'_, T>, dims: HeadDims, scale: T, out: &mut [T], out_rs: usize) -> Result<()> {
    let HeadDims { n, m, d, dv } = dims;
    let (qp, kt, vp) = (packed(q, n, d, false), packed(k, m, d, true), packed(v, m, dv, false));
    let block = QUERY_BLOCK.min(n);
    let mut s = vec![T::zero(); block * m];
    for i in (0..n).step_by(block.max(1)) {
        let rows = block.min(n - i);
        let s = &mut s[..rows * m];
        gemm(rows, m, d, s, m, rows_of(&qp[i * d..], d), rows_of(&kt, m), scale, false, 1)?;
        vectorized(
            #[inline(always)]
            || softmax_rows(s, m),
        );
        let dst = out.get_mut(i * out_rs..).ok_or_else(|| candle_core::Error::Msg("attention: output out of bounds".into()))?;
        gemm(rows, dv, m, dst, out_rs, rows_of(s, m), rows_of(&vp, dv), T::one(), false, 1)?;
    }
    Ok(())
}

/// One head's input gradients: dQ (N, d), dK (M, d), dV (M, dv), row-major.
pub(super) struct HeadGrads<T> {
    pub dq: Vec<T>,
    pub dk: Vec<T>,
    pub dv: Vec<T>,
}

impl<T> HeadGrads<T> {
    /// dQ, dK, dV in that order, each as (row-major buffer, rows, columns).
    pub(super) fn parts(&self, dims: HeadDims) -> [(&[T], usize, usize); 3] {
        let HeadDims { n, m, d, dv } = dims;
        [(&self.dq, n, d), (&self.dk, m, d), (&self.dv, m, dv)]
    }
}

/// Copies a row-major (rows, cols) buffer into `dst`, rows `dst_rs` apart.
///
/// # Errors
/// `dst` is too small.
pub(super) fn unpack<T: Copy>((src, rows, cols): (&[T], usize, usize), dst: &mut [T], dst_rs: usize) -> Result<()> {
    for (i, row) in src.chunks_exact(cols.max(1)).take(rows).enumerate() {
        let out = dst.get_mut(i * dst_rs..i * dst_rs + cols).ok_or_else(|| candle_core::Error::Msg("attention: gradient out of bounds".into()))?;
        out.copy_from_slice(row);
    }
    Ok(())
}

/// One head's input gradients from dO `g` (N, dv), recomputing the
/// probabilities block by block: dP = dO V^T,
/// dS = P ⊙ (dP - rowsum(dP ⊙ P)), dQ = scale dS K, and the sums over
/// query blocks dV = P^T dO, dK = scale dS^T Q.
///
/// # Errors
/// Only a failed internal GEMM bounds check.
///
/// # Panics
/// A view is smaller than `dims` say (callers check with [`MatRef::checked`]).
pub(super) fn head_backward<T: Real>(q: MatRef<'_, T>, k: MatRef<'_, T>, v: MatRef<'_, T>, g: MatRef<'_, T>, dims: HeadDims, scale: T) -> Result<HeadGrads<T>> {
    let HeadDims { n, m, d, dv } = dims;
    let (qp, kp, kt) = (packed(q, n, d, false), packed(k, m, d, false), packed(k, m, d, true));
    let (vt, gp) = (packed(v, m, dv, true), packed(g, n, dv, false));
    let mut grads = HeadGrads { dq: vec![T::zero(); n * d], dk: vec![T::zero(); m * d], dv: vec![T::zero(); m * dv] };
    let block = QUERY_BLOCK.min(n);
    let (mut p, mut ds) = (vec![T::zero(); block * m], vec![T::zero(); block * m]);
    for i in (0..n).step_by(block.max(1)) {
        let rows = block.min(n - i);
        let (p, ds) = (&mut p[..rows * m], &mut ds[..rows * m]);
        let (qb, gb) = (rows_of(&qp[i * d..], d), rows_of(&gp[i * dv..], dv));
        gemm(rows, m, d, p, m, qb, rows_of(&kt, m), scale, false, 1)?;
        gemm(rows, m, dv, ds, m, gb, rows_of(&vt, m), T::one(), false, 1)?;
        vectorized(
            #[inline(always)]
            || {
                softmax_rows(p, m);
                for (dr, pr) in ds.chunks_mut(m).zip(p.chunks(m)) {
                    let dot = dot(dr, pr);
                    for (a, b) in dr.iter_mut().zip(pr) {
                        *a = *b * (*a - dot);
                    }
                }
            },
        );
        // dV += P^T dO; dQ = scale dS K; dK += scale dS^T Q.
        gemm(m, dv, rows, &mut grads.dv, dv, transposed(p, m), gb, T::one(), i > 0, 1)?;
        gemm(rows, d, m, &mut grads.dq[i * d..], d, rows_of(ds, m), rows_of(&kp, d), scale, false, 1)?;
        gemm(m, d, rows, &mut grads.dk, d, transposed(ds, m), qb, scale, i > 0, 1)?;
    }
    Ok(grads)
}

fn forward<T: Real>(scale: f64, q: &CpuStorage, ql: &Layout, k: &CpuStorage, kl: &Layout, v: &CpuStorage, vl: &Layout) -> Result<(CpuStorage, Shape)> {
    let (b, h, n, m, d, dv) = dims(ql, kl, vl)?;
    let (qs, ks, vs) = (q.as_slice::<T>()?, k.as_slice::<T>()?, v.as_slice::<T>()?);
    let scale = T::from_f64(scale);
    let mut out = vec![T::zero(); b * h * n * dv];
    out.par_chunks_mut((n * dv).max(1)).enumerate().try_for_each(|(bh, o)| -> Result<()> {
        let (bi, hi) = (bh / h, bh % h);
        head_forward(head(qs, ql, bi, hi)?, head(ks, kl, bi, hi)?, head(vs, vl, bi, hi)?, HeadDims { n, m, d, dv }, scale, o, dv)
    })?;
    Ok((T::to_cpu_storage_owned(out), Shape::from((b, h, n, dv))))
}

impl CustomOp3 for AttentionFwd {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, q: &CpuStorage, ql: &Layout, k: &CpuStorage, kl: &Layout, v: &CpuStorage, vl: &Layout) -> Result<(CpuStorage, Shape)> {
        match q {
            CpuStorage::F32(_) => forward::<f32>(self.scale, q, ql, k, kl, v, vl),
            CpuStorage::F64(_) => forward::<f64>(self.scale, q, ql, k, kl, v, vl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused attention")),
        }
    }

    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed = q.apply_op3(k, v, AttentionBwd { scale: self.scale, grad: grad.clone() })?.detach();
        let (q_len, k_len, v_len) = (q.elem_count(), k.elem_count(), v.elem_count());
        let dq = packed.narrow(0, 0, q_len)?.reshape(q.shape())?;
        let dk = packed.narrow(0, q_len, k_len)?.reshape(k.shape())?;
        let dv = packed.narrow(0, q_len + k_len, v_len)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// dQ, dK, dV packed as `[dQ (B,H,N,d) | dK (B,H,M,d) | dV (B,H,M,dv)]`.
/// No backward of its own.
#[derive(Debug, Clone)]
struct AttentionBwd {
    scale: f64,
    /// dO, (B, H, N, dv), any strides.
    grad: Tensor,
}

impl AttentionBwd {
    fn run<T: Real>(&self, q: &CpuStorage, ql: &Layout, k: &CpuStorage, kl: &Layout, v: &CpuStorage, vl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, n, m, d, dv) = dims(ql, kl, vl)?;
        let (qs, ks, vs) = (q.as_slice::<T>()?, k.as_slice::<T>()?, v.as_slice::<T>()?);
        let (g_storage, gl) = self.grad.storage_and_layout();
        let candle_core::Storage::Cpu(g_storage) = &*g_storage else {
            return Err(candle_core::Error::Msg("fused attention: gradient is not on the CPU".into()));
        };
        let gs = g_storage.as_slice::<T>()?;
        if gl.dims() != [b, h, n, dv] {
            return Err(candle_core::Error::Msg(format!("attention backward: gradient {:?}, expected {:?}", gl.dims(), [b, h, n, dv])));
        }
        let scale = T::from_f64(self.scale);
        let total = b * h * (n * d + m * d + m * dv);
        let mut packed = vec![T::zero(); total];
        let (dq, rest) = packed.split_at_mut(b * h * n * d);
        let (dk, dvs) = rest.split_at_mut(b * h * m * d);
        dq.par_chunks_mut((n * d).max(1))
            .zip(dk.par_chunks_mut((m * d).max(1)))
            .zip(dvs.par_chunks_mut((m * dv).max(1)))
            .enumerate()
            .try_for_each(|(bh, ((dq, dk), dvb))| -> Result<()> {
                let (bi, hi) = (bh / h, bh % h);
                let (qm, km, vm, gm) = (head(qs, ql, bi, hi)?, head(ks, kl, bi, hi)?, head(vs, vl, bi, hi)?, head(gs, gl, bi, hi)?);
                let dims = HeadDims { n, m, d, dv };
                let grads = head_backward(qm, km, vm, gm, dims, scale)?;
                for (part, (dst, rs)) in grads.parts(dims).into_iter().zip([(dq, d), (dk, d), (dvb, dv)]) {
                    unpack(part, dst, rs)?;
                }
                Ok(())
            })?;
        Ok((T::to_cpu_storage_owned(packed), Shape::from(total)))
    }
}

impl CustomOp3 for AttentionBwd {
    fn name(&self) -> &'static str {
        "fused-attention-backward"
    }

    fn cpu_fwd(&self, q: &CpuStorage, ql: &Layout, k: &CpuStorage, kl: &Layout, v: &CpuStorage, vl: &Layout) -> Result<(CpuStorage, Shape)> {
        match q {
            CpuStorage::F32(_) => self.run::<f32>(q, ql, k, kl, v, vl),
            CpuStorage::F64(_) => self.run::<f64>(q, ql, k, kl, v, vl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused attention backward")),
        }
    }
}
