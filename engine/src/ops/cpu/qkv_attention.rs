//! Fused multi-head self-attention straight from the packed qkv projection
//! (timm layout: (B, N, 3 * H * d), q then k then v, head-major inside each)
//! to the (B, N, H * d) input of the output projection. Compared with slicing
//! q, k, v out of a permuted copy, it skips the permute copy and transpose
//! copy forward and, backward, writes d(qkv) into one (B, N, 3D) buffer
//! instead of three zero-padded slices that candle then adds up.
//!
//! One rayon task per image; heads run in turn inside it, reusing the kernel
//! pieces of `attention.rs` (scores recomputed in the backward).

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::attention::{head_backward, head_forward, unpack, HeadDims};
use super::{contiguous_slice, MatRef, Real};

/// `softmax(q k^T * scale) v` per head for contiguous `qkv` (B, N, 3D),
/// D = `heads` * d; returns (B, N, D).
pub(crate) fn self_attention(qkv: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    qkv.apply_op1(QkvAttention { heads, scale })
}

#[derive(Debug, Clone, Copy)]
struct QkvAttention {
    heads: usize,
    scale: f64,
}

/// (B, N, D, d) of a (B, N, 3D) layout split into `heads` heads.
fn sizes(l: &Layout, heads: usize) -> Result<(usize, usize, usize, usize)> {
    let (b, n, three_d) = l.shape().dims3()?;
    let dim = three_d / 3;
    if heads == 0 || three_d % 3 != 0 || dim % heads != 0 || n == 0 || dim == 0 {
        return Err(candle_core::Error::Msg(format!("self attention: qkv {:?} does not split into 3 x {heads} heads", l.dims())));
    }
    Ok((b, n, dim, dim / heads))
}

/// The (`rows`, d) matrix at column `col` of one image's rows `rs` apart.
fn cols<T>(image: &[T], col: usize, rs: usize, (rows, d): (usize, usize)) -> Result<MatRef<'_, T>> {
    let data = image.get(col..).ok_or_else(|| candle_core::Error::Msg("self attention: out of bounds".into()))?;
    MatRef { data, rs, cs: 1 }.checked(rows, d)
}

fn forward<T: Real>(op: QkvAttention, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(s, l)?;
    let (b, n, dim, d) = sizes(l, op.heads)?;
    let scale = T::from_f64(op.scale);
    let mut out = vec![T::zero(); b * n * dim];
    out.par_chunks_mut(n * dim).zip(xs.par_chunks(n * 3 * dim)).try_for_each(|(o, image)| -> Result<()> {
        for h in 0..op.heads {
            let (q, k, v) = (cols(image, h * d, 3 * dim, (n, d))?, cols(image, dim + h * d, 3 * dim, (n, d))?, cols(image, 2 * dim + h * d, 3 * dim, (n, d))?);
            let dst = o.get_mut(h * d..).ok_or_else(|| candle_core::Error::Msg("self attention: out of bounds".into()))?;
            head_forward(q, k, v, HeadDims { n, m: n, d, dv: d }, scale, dst, dim)?;
        }
        Ok(())
    })?;
    Ok((T::to_cpu_storage_owned(out), Shape::from((b, n, dim))))
}

impl CustomOp1 for QkvAttention {
    fn name(&self) -> &'static str {
        "fused-self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => forward::<f32>(*self, s, l),
            CpuStorage::F64(_) => forward::<f64>(*self, s, l),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused self attention")),
        }
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(qkv.apply_op2(&grad.contiguous()?, QkvAttentionBwd(*self))?.detach()))
    }
}

/// d(qkv) (B, N, 3D) from qkv and dO (B, N, D). No backward of its own.
#[derive(Debug, Clone, Copy)]
struct QkvAttentionBwd(QkvAttention);

fn backward<T: Real>(op: QkvAttention, s: &CpuStorage, l: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(s, l)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let (b, n, dim, d) = sizes(l, op.heads)?;
    if gs.len() != b * n * dim {
        return Err(candle_core::Error::Msg(format!("self attention backward: gradient {:?} for qkv {:?}", gl.dims(), l.dims())));
    }
    let scale = T::from_f64(op.scale);
    let oob = || candle_core::Error::Msg("self attention backward: out of bounds".into());
    let mut dqkv = vec![T::zero(); xs.len()];
    dqkv.par_chunks_mut(n * 3 * dim).zip(xs.par_chunks(n * 3 * dim)).zip(gs.par_chunks(n * dim)).try_for_each(|((dst, image), go)| -> Result<()> {
        for h in 0..op.heads {
            let (q, k, v) = (cols(image, h * d, 3 * dim, (n, d))?, cols(image, dim + h * d, 3 * dim, (n, d))?, cols(image, 2 * dim + h * d, 3 * dim, (n, d))?);
            let gm = cols(go, h * d, dim, (n, d))?;
            let dims = HeadDims { n, m: n, d, dv: d };
            // dQ, dK, dV into their columns of the image's (N, 3D) rows.
            let grads = head_backward(q, k, v, gm, dims, scale)?;
            for (part, col) in grads.parts(dims).into_iter().zip([h * d, dim + h * d, 2 * dim + h * d]) {
                unpack(part, dst.get_mut(col..).ok_or_else(oob)?, 3 * dim)?;
            }
        }
        Ok(())
    })?;
    Ok((T::to_cpu_storage_owned(dqkv), l.shape().clone()))
}

impl CustomOp2 for QkvAttentionBwd {
    fn name(&self) -> &'static str {
        "fused-self-attention-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => backward::<f32>(self.0, s, l, g, gl),
            CpuStorage::F64(_) => backward::<f64>(self.0, s, l, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused self attention backward")),
        }
    }
}
