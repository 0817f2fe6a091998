//! Fused layer norm over the channels of an NCHW map (ViTDet's channels-first
//! `LayerNorm` in the feature pyramid and the heads), computed in place of
//! the layout: each pixel's statistics run down its C planes, with a block
//! of neighbouring pixels in the SIMD lanes. Forward one op, backward two
//! (dX; dweight and dbias), each recomputing the pixel's mean and 1/std.
//!
//! Why: the alternative, permuting to channels-last, running the last-dim
//! kernel and permuting back, copies the map twice each way. On the mask
//! head's 14x14 ROIs that made the norm cost a third of its convolution.
//!
//! Shapes: N images, C channels, S = H W pixels a plane.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::layer_norm::vector;
use super::{contiguous_slice, vectorized, Real};

/// Pixels a task normalises: 128 channels of 256 f32 pixels are 128 KB,
/// which the pixel's passes over its planes read back from the cache.
const PIXELS_PER_BLOCK: usize = 256;

/// Partial sums of a parameter gradient: one AVX-512 register of f32.
const LANES: usize = 16;

/// Layer norm over dim 1 of contiguous `x` (N, C, H, W) with `weight`,
/// `bias` (C).
pub(crate) fn layer_norm_2d(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.apply_op3(weight, bias, LayerNorm2dFwd { eps })
}

/// (N, C, S) of an NCHW layout, checked against the weight's C.
fn planes(xl: &Layout, c: usize) -> Result<(usize, usize)> {
    let (n, xc, h, w) = xl.shape().dims4()?;
    if xc != c {
        return Err(candle_core::Error::Msg(format!("layer norm 2d: input {:?} has {xc} channels, the weight {c}", xl.dims())));
    }
    Ok((n, h * w))
}

/// One task: pixels `start..start + len` of image `image`.
#[derive(Debug, Clone, Copy)]
struct Block {
    image: usize,
    start: usize,
    len: usize,
}

impl Block {
    /// Channel `ci`'s run of this block's pixels in an (N, C, S) buffer.
    #[inline(always)]
    fn run<T>(self, data: &[T], c: usize, s: usize, ci: usize) -> &[T] {
        &data[(self.image * c + ci) * s + self.start..][..self.len]
    }
}

/// Every image's pixels in blocks of [`PIXELS_PER_BLOCK`].
fn blocks(n: usize, s: usize) -> Vec<Block> {
    (0..n).flat_map(|image| (0..s).step_by(PIXELS_PER_BLOCK).map(move |start| Block { image, start, len: PIXELS_PER_BLOCK.min(s - start) })).collect()
}

/// For each block, its rows of `out` (one `len`-long run per channel): the
/// disjoint pieces of an (N, C, S) buffer the blocks write, in block order.
fn block_rows<T>(out: &mut [T], c: usize, s: usize) -> Vec<Vec<&mut [T]>> {
    let per_image = s.div_ceil(PIXELS_PER_BLOCK);
    let mut rows: Vec<Vec<&mut [T]>> = Vec::new();
    for image in out.chunks_mut((c * s).max(1)) {
        let first = rows.len();
        rows.extend((0..per_image).map(|_| Vec::with_capacity(c)));
        for plane in image.chunks_mut(s.max(1)) {
            for (b, run) in plane.chunks_mut(PIXELS_PER_BLOCK).enumerate() {
                rows[first + b].push(run);
            }
        }
    }
    rows
}

/// Mean and 1/sqrt(var + eps) of each pixel of `block` over the C planes of
/// `x` (N, C, S) (biased variance, two passes, as the last-dim kernel).
#[inline(always)]
fn block_stats<T: Real>(x: &[T], c: usize, s: usize, block: Block, eps: T) -> (Vec<T>, Vec<T>) {
    let plane = |ci: usize| block.run(x, c, s, ci);
    let inv_c = T::one() / T::from_f64(c.max(1) as f64);
    let mut mean = vec![T::zero(); block.len];
    for ci in 0..c {
        mean.iter_mut().zip(plane(ci)).for_each(|(m, v)| *m += *v);
    }
    mean.iter_mut().for_each(|m| *m *= inv_c);
    let mut rstd = vec![T::zero(); block.len];
    for ci in 0..c {
        rstd.iter_mut().zip(plane(ci)).zip(&mean).for_each(|((r, v), m)| *r += (*v - *m) * (*v - *m));
    }
    rstd.iter_mut().for_each(|r| *r = T::one() / (*r * inv_c + eps).sqrt());
    (mean, rstd)
}

#[derive(Debug, Clone, Copy)]
struct LayerNorm2dFwd {
    eps: f64,
}

fn forward<T: Real>(eps: f64, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let (w, b) = (vector::<T>(w, wl)?, vector::<T>(b, bl)?);
    let c = w.len();
    let (n, s) = planes(xl, c)?;
    if b.len() != c {
        return Err(candle_core::Error::Msg(format!("layer norm 2d: weight {c}, bias {}", b.len())));
    }
    let eps = T::from_f64(eps);
    let mut y = vec![T::zero(); xs.len()];
    blocks(n, s).into_par_iter().zip(block_rows(&mut y, c, s)).for_each(|(block, mut rows)| {
        vectorized(
            #[inline(always)]
            || {
                let (mean, rstd) = block_stats(xs, c, s, block, eps);
                for (ci, out) in rows.iter_mut().enumerate() {
                    let src = block.run(xs, c, s, ci);
                    let (wv, bv) = (w[ci], b[ci]);
                    for (((o, v), m), r) in out.iter_mut().zip(src).zip(&mean).zip(&rstd) {
                        *o = (*v - *m) * *r * wv + bv;
                    }
                }
            },
        );
    });
    Ok((T::to_cpu_storage_owned(y), xl.shape().clone()))
}

impl CustomOp3 for LayerNorm2dFwd {
    fn name(&self) -> &'static str {
        "fused-layer-norm-2d"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.eps, x, xl, w, wl, b, bl),
            CpuStorage::F64(_) => forward::<f64>(self.eps, x, xl, w, wl, b, bl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused layer norm 2d")),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let c = w.dim(0)?;
        let dx = x.apply_op3(w, &grad, LayerNorm2dBwdInput { eps: self.eps })?.detach();
        let params = x.apply_op2(&grad, LayerNorm2dBwdParams { eps: self.eps })?.detach();
        Ok((Some(dx), Some(params.narrow(0, 0, c)?), Some(params.narrow(0, c, c)?)))
    }
}

/// dX = rstd (g - mean_C(g) - x̂ mean_C(g x̂)) with g = dY weight, per pixel.
/// No backward of its own.
#[derive(Debug, Clone, Copy)]
struct LayerNorm2dBwdInput {
    eps: f64,
}

fn grad_input<T: Real>(eps: f64, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let w = vector::<T>(w, wl)?;
    let c = w.len();
    let (n, s) = planes(xl, c)?;
    if gs.len() != xs.len() {
        return Err(candle_core::Error::Msg("layer norm 2d backward: shape mismatch".into()));
    }
    let eps = T::from_f64(eps);
    let inv_c = T::one() / T::from_f64(c.max(1) as f64);
    let mut dx = vec![T::zero(); xs.len()];
    blocks(n, s).into_par_iter().zip(block_rows(&mut dx, c, s)).for_each(|(block, mut rows)| {
        vectorized(
            #[inline(always)]
            || {
                let (mean, rstd) = block_stats(xs, c, s, block, eps);
                // Per pixel: a = mean_C(g), b = mean_C(g x̂).
                let mut a = vec![T::zero(); block.len];
                let mut bsum = vec![T::zero(); block.len];
                for (ci, wv) in w.iter().enumerate() {
                    let (xr, gr) = (block.run(xs, c, s, ci), block.run(gs, c, s, ci));
                    for ((((av, bv), xv), gv), (m, r)) in a.iter_mut().zip(bsum.iter_mut()).zip(xr).zip(gr).zip(mean.iter().zip(&rstd)) {
                        let gw = *gv * *wv;
                        *av += gw;
                        *bv += gw * (*xv - *m) * *r;
                    }
                }
                a.iter_mut().zip(bsum.iter_mut()).for_each(|(av, bv)| {
                    *av *= inv_c;
                    *bv *= inv_c;
                });
                for ((ci, out), wv) in rows.iter_mut().enumerate().zip(&w) {
                    let (xr, gr) = (block.run(xs, c, s, ci), block.run(gs, c, s, ci));
                    for (((((o, xv), gv), (m, r)), av), bv) in out.iter_mut().zip(xr).zip(gr).zip(mean.iter().zip(&rstd)).zip(&a).zip(&bsum) {
                        let xhat = (*xv - *m) * *r;
                        *o = *r * (*gv * *wv - *av - xhat * *bv);
                    }
                }
            },
        );
    });
    Ok((T::to_cpu_storage_owned(dx), xl.shape().clone()))
}

impl CustomOp3 for LayerNorm2dBwdInput {
    fn name(&self) -> &'static str {
        "fused-layer-norm-2d-backward-input"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => grad_input::<f32>(self.eps, x, xl, w, wl, g, gl),
            CpuStorage::F64(_) => grad_input::<f64>(self.eps, x, xl, w, wl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused layer norm 2d backward")),
        }
    }
}

/// dweight = Σ dY x̂ and dbias = Σ dY over images and pixels, packed
/// `[dweight | dbias]`; per-block partials added in block order, so the sums
/// are the same from run to run. No backward of its own.
#[derive(Debug, Clone, Copy)]
struct LayerNorm2dBwdParams {
    eps: f64,
}

fn grad_params<T: Real>(eps: f64, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
    let xs = contiguous_slice::<T>(x, xl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let c = xl.dims().get(1).copied().unwrap_or(0);
    let (n, s) = planes(xl, c)?;
    if gs.len() != xs.len() {
        return Err(candle_core::Error::Msg("layer norm 2d backward: shape mismatch".into()));
    }
    let eps = T::from_f64(eps);
    let partials: Vec<Vec<T>> = blocks(n, s)
        .into_par_iter()
        .map(|block| {
            vectorized(
                #[inline(always)]
                || {
                    let (mean, rstd) = block_stats(xs, c, s, block, eps);
                    let mut acc = vec![T::zero(); 2 * c];
                    for ci in 0..c {
                        let (xr, gr) = (block.run(xs, c, s, ci), block.run(gs, c, s, ci));
                        // Fixed lanes of partial sums, so the loop vectorises.
                        let (mut dw, mut db) = ([T::zero(); LANES], [T::zero(); LANES]);
                        let mut pixel = 0;
                        while pixel < block.len {
                            let end = (pixel + LANES).min(block.len);
                            for (lane, j) in (pixel..end).enumerate() {
                                dw[lane] += gr[j] * (xr[j] - mean[j]) * rstd[j];
                                db[lane] += gr[j];
                            }
                            pixel = end;
                        }
                        acc[ci] = dw.iter().fold(T::zero(), |a, v| a + *v);
                        acc[c + ci] = db.iter().fold(T::zero(), |a, v| a + *v);
                    }
                    acc
                },
            )
        })
        .collect();
    let mut out = vec![T::zero(); 2 * c];
    for part in partials {
        out.iter_mut().zip(part).for_each(|(o, p)| *o += p);
    }
    Ok((T::to_cpu_storage_owned(out), Shape::from(2 * c)))
}

impl CustomOp2 for LayerNorm2dBwdParams {
    fn name(&self) -> &'static str {
        "fused-layer-norm-2d-backward-params"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => grad_params::<f32>(self.eps, x, xl, g, gl),
            CpuStorage::F64(_) => grad_params::<f64>(self.eps, x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused layer norm 2d backward")),
        }
    }
}
