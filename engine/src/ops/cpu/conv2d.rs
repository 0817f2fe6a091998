//! Fused stride-1 `conv2d` (any kernel size, zero padding, optional bias):
//! im2col and GEMM per image and block of output rows, with a backward
//! computing the input gradient as the correlation of dY with the flipped
//! kernel (im2col + GEMM again) and the weight and bias gradients in one
//! pass (dW = Σ dY im2col(X)^T, db = Σ dY). A batch of small maps (the
//! mask head's ROIs) runs whole images on each thread instead of splitting
//! every image's GEMM over the threads.
//!
//! Why: candle 0.11.1's CPU conv2d backward runs the input gradient through
//! its `conv_transpose2d` loop and the weight gradient through a conv2d with
//! batch and channels swapped (candle-notes.md §1, §5); the ViTDet pyramid's
//! 256-channel 3x3 and 1x1 convolutions spend most of their time there
//! (BENCHMARKS.md, "ViTDet convolutions and RoIAlign").
//!
//! Shapes: N images, C input channels, O output channels, (H, W) the input
//! map, (P, Q) = (H + 2 pad - kh + 1, W + 2 pad - kw + 1) the output map,
//! K = C kh kw the rows of an im2col matrix.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::image_batch::{for_each_image_group, sum_over_image_groups};
use super::{contiguous_slice, gemm, MatRef, Real};

/// Elements per parallel task when filling an im2col matrix or summing
/// bias-gradient rows: below this, scheduling a task costs more than the copy.
const MIN_ELEMS_PER_TASK: usize = 16 * 1024;

/// Most elements of one im2col block (8 MiB in f32): the GEMM reads the
/// block while it is still in the cache the im2col wrote it to, and the
/// scratch stays below the 32 MiB mmap threshold `src/main.rs` sets, so it
/// is reused instead of page-faulted in again. A whole 3x3, 256-channel,
/// 64x64 map would be 37 MiB.
const COLS_BLOCK_ELEMS: usize = 1 << 21;

/// `F.conv2d(x, weight, bias, stride=1, padding=padding)` for contiguous
/// `x` (N, C, H, W), `weight` (O, C, kh, kw) and `bias` (O).
pub(crate) fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    let op = Conv2dFwd { padding };
    match bias {
        Some(b) => x.apply_op3(weight, b, op),
        None => x.apply_op2(weight, op),
    }
}

/// One image's stride-1 cross-correlation: a (C, H, W) source padded by
/// (`pad_h`, `pad_w`) on each side (negative: cropped), read through a
/// kh x kw window into a (P, Q) output. The forward is one; so is the input
/// gradient, with the flipped kernel and padding k - 1 - pad.
#[derive(Debug, Clone, Copy)]
struct Correlation {
    /// Source channels.
    c: usize,
    /// Source height.
    h: usize,
    /// Source width.
    w: usize,
    /// Kernel height.
    kh: usize,
    /// Kernel width.
    kw: usize,
    /// Rows of zeros added above and below (negative: rows dropped).
    pad_h: isize,
    /// Columns of zeros added left and right (negative: columns dropped).
    pad_w: isize,
    /// Output height.
    p: usize,
    /// Output width.
    q: usize,
}

impl Correlation {
    /// The geometry of a (C, H, W) source padded by `pad_h`/`pad_w` under a
    /// kh x kw kernel.
    ///
    /// # Errors
    /// The padded map is smaller than the kernel.
    fn new(c: usize, h: usize, w: usize, kh: usize, kw: usize, pad_h: isize, pad_w: isize) -> Result<Self> {
        let out = |len: usize, k: usize, pad: isize| -> Option<usize> {
            let padded = isize::try_from(len).ok()? + 2 * pad;
            let k = isize::try_from(k).ok()?;
            if k == 0 || padded < k {
                return None;
            }
            usize::try_from(padded - k + 1).ok()
        };
        match (out(h, kh, pad_h), out(w, kw, pad_w)) {
            (Some(p), Some(q)) => Ok(Self { c, h, w, kh, kw, pad_h, pad_w, p, q }),
            _ => Err(candle_core::Error::Msg(format!("conv2d: a {h}x{w} map padded by ({pad_h}, {pad_w}) is smaller than the {kh}x{kw} kernel"))),
        }
    }

    /// Rows of the im2col matrix: C kh kw.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Whether the im2col matrix is the source itself (1x1 kernel, no padding).
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad_h == 0 && self.pad_w == 0
    }

    /// Output rows per im2col block: blocks of at most [`COLS_BLOCK_ELEMS`]
    /// elements (all rows when pointwise: the source is the matrix).
    fn rows_per_block(&self) -> usize {
        if self.is_pointwise() {
            return self.p.max(1);
        }
        (COLS_BLOCK_ELEMS / (self.k() * self.q).max(1)).clamp(1, self.p.max(1))
    }

    /// The columns of output rows `y0..y1` of the source's im2col matrix, a
    /// (K, (y1 - y0) Q) matrix: a view of the source when pointwise, else
    /// written into `scratch` (by all threads when `parallel`).
    fn columns<'a, T: Real>(&self, src: &'a [T], y0: usize, y1: usize, scratch: &'a mut Vec<T>, parallel: bool) -> MatRef<'a, T> {
        let width = (y1 - y0) * self.q;
        if self.is_pointwise() {
            return MatRef { data: &src[y0 * self.q..], rs: self.p * self.q, cs: 1 };
        }
        scratch.resize(self.k() * width, T::zero());
        let width = width.max(1);
        if parallel {
            let rows_per_task = (MIN_ELEMS_PER_TASK / width).max(1);
            scratch.par_chunks_mut(width).with_min_len(rows_per_task).enumerate().for_each(|(row, out)| self.im2col_row(src, y0, y1, row, out));
        } else {
            scratch.chunks_mut(width).enumerate().for_each(|(row, out)| self.im2col_row(src, y0, y1, row, out));
        }
        MatRef { data: scratch, rs: width, cs: 1 }
    }

    /// Row `row` = (c, ky, kx) of the im2col matrix of output rows `y0..y1`:
    /// `out[(y - y0, x)] = src[c, y + ky - pad_h, x + kx - pad_w]`, zero
    /// where that falls outside the source.
    fn im2col_row<T: Real>(&self, src: &[T], y0: usize, y1: usize, row: usize, out: &mut [T]) {
        let Self { h, w, kh, kw, pad_h, pad_w, q, .. } = *self;
        let (ci, ky, kx) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let plane = &src[ci * h * w..(ci + 1) * h * w];
        // Output column x reads source column x + dx; the valid ones are
        // [lo, hi).
        let dx = kx as isize - pad_w;
        let lo = (-dx).clamp(0, q as isize) as usize;
        let hi = (w as isize - dx).clamp(lo as isize, q as isize) as usize;
        for (y, line) in (y0..y1).zip(out.chunks_mut(q.max(1))) {
            let sy = y as isize + ky as isize - pad_h;
            if sy < 0 || sy >= h as isize {
                line.fill(T::zero());
                continue;
            }
            line[..lo].fill(T::zero());
            line[hi..].fill(T::zero());
            let start = sy as usize * w + (lo as isize + dx) as usize;
            line[lo..hi].copy_from_slice(&plane[start..start + (hi - lo)]);
        }
    }

    /// For each of the `images` sources stacked in `src`, writes
    /// `dst_n (O, P Q) = kernel (O, K) @ im2col(src_n)`, plus `bias` (O) on
    /// every output pixel when given, one block of output rows at a time.
    /// Returns the (N, O, P, Q) output.
    ///
    /// # Errors
    /// `src` or `kernel` does not hold the matrices the geometry needs.
    fn apply<T: Real>(&self, src: &[T], images: usize, kernel: MatRef<'_, T>, o: usize, bias: Option<&[T]>) -> Result<Vec<T>> {
        let (src_len, pq) = (self.c * self.h * self.w, self.p * self.q);
        if src.len() != images * src_len {
            return Err(candle_core::Error::Msg(format!("conv2d: {} source elements for {images} images of {src_len}", src.len())));
        }
        let mut dst = vec![T::zero(); images * o * pq];
        if let Some(bias) = bias {
            dst.par_chunks_mut(pq.max(1)).enumerate().for_each(|(i, out)| out.fill(bias[i % o]));
        }
        let accumulate = bias.is_some();
        for_each_image_group(&mut dst, o * pq, images, |range, dst_g, par| {
            let mut scratch = Vec::new();
            for (i, dst_n) in range.zip(dst_g.chunks_mut((o * pq).max(1))) {
                self.apply_to_image(&src[i * src_len..(i + 1) * src_len], dst_n, kernel, o, accumulate, par, &mut scratch)?;
            }
            Ok(())
        })?;
        Ok(dst)
    }

    /// One image: `dst_n (O, P Q) (+)= kernel (O, K) @ im2col(src_n)`, one
    /// block of output rows at a time, on `par` threads.
    #[allow(clippy::too_many_arguments)]
    fn apply_to_image<T: Real>(&self, src_n: &[T], dst_n: &mut [T], kernel: MatRef<'_, T>, o: usize, accumulate: bool, par: usize, scratch: &mut Vec<T>) -> Result<()> {
        let pq = self.p * self.q;
        let block = self.rows_per_block();
        for y0 in (0..self.p).step_by(block) {
            let y1 = (y0 + block).min(self.p);
            let cols = self.columns(src_n, y0, y1, scratch, par > 1);
            let width = (y1 - y0) * self.q;
            gemm(o, width, self.k(), &mut dst_n[y0 * self.q..], pq, kernel, cols, T::one(), accumulate, par)?;
        }
        Ok(())
    }

    /// One image's share of a weight gradient: `dw (O, K) (+)= dY_n (O, P Q)
    /// @ im2col(X_n)^T`, one block of output rows at a time, on `par` threads.
    #[allow(clippy::too_many_arguments)]
    fn weight_gradient_of_image<T: Real>(&self, x_n: &[T], g_n: &[T], o: usize, dw: &mut [T], accumulate: bool, par: usize, scratch: &mut Vec<T>) -> Result<()> {
        let (k, q, pq) = (self.k(), self.q, self.p * self.q);
        let block = self.rows_per_block();
        for (b, y0) in (0..self.p).step_by(block).enumerate() {
            let y1 = (y0 + block).min(self.p);
            let cols = self.columns(x_n, y0, y1, scratch, par > 1);
            // (O, width) @ (width, K): im2col^T's element (j, r) is im2col's (r, j).
            let lhs = MatRef { data: &g_n[y0 * q..], rs: pq, cs: 1 };
            gemm(o, k, (y1 - y0) * q, dw, k, lhs, MatRef { data: cols.data, rs: cols.cs, cs: cols.rs }, T::one(), accumulate || b > 0, par)?;
        }
        Ok(())
    }
}

/// The forward op; as `CustomOp2` without bias, as `CustomOp3` with one.
#[derive(Debug, Clone, Copy)]
struct Conv2dFwd {
    padding: usize,
}

/// The correlation of the forward pass and the output channels O.
fn forward_geometry(xl: &Layout, wl: &Layout, padding: usize) -> Result<(usize, Correlation, usize)> {
    let (n, c, h, w) = xl.shape().dims4()?;
    let (o, wc, kh, kw) = wl.shape().dims4()?;
    if wc != c {
        return Err(candle_core::Error::Msg(format!("conv2d: input has {c} channels, the weight expects {wc}")));
    }
    let pad = isize::try_from(padding).map_err(|_| candle_core::Error::Msg("conv2d: padding overflow".into()))?;
    Ok((n, Correlation::new(c, h, w, kh, kw, pad, pad)?, o))
}

fn forward<T: Real>(padding: usize, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: Option<(&CpuStorage, &Layout)>) -> Result<(CpuStorage, Shape)> {
    let (n, corr, o) = forward_geometry(xl, wl, padding)?;
    let xs = contiguous_slice::<T>(x, xl)?;
    let ws = contiguous_slice::<T>(w, wl)?;
    let bias = b.map(|(b, bl)| contiguous_slice::<T>(b, bl)).transpose()?;
    if bias.is_some_and(|b| b.len() != o) {
        return Err(candle_core::Error::Msg(format!("conv2d: bias must have {o} elements")));
    }
    let y = corr.apply(xs, n, MatRef { data: ws, rs: corr.k(), cs: 1 }, o, bias)?;
    Ok((T::to_cpu_storage_owned(y), Shape::from((n, o, corr.p, corr.q))))
}

impl CustomOp2 for Conv2dFwd {
    fn name(&self) -> &'static str {
        "fused-conv2d"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.padding, x, xl, w, wl, None),
            CpuStorage::F64(_) => forward::<f64>(self.padding, x, xl, w, wl, None),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv2d")),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = backward(self.padding, x, w, false, grad)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for Conv2dFwd {
    fn name(&self) -> &'static str {
        "fused-conv2d-bias"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.padding, x, xl, w, wl, Some((b, bl))),
            CpuStorage::F64(_) => forward::<f64>(self.padding, x, xl, w, wl, Some((b, bl))),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv2d")),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = backward(self.padding, x, w, true, grad)?;
        Ok((dx, Some(dw), db))
    }
}

/// Runs the two gradient ops: dX (skipped when `x` needs no gradient) and
/// the packed `[dW | db]`, separate buffers so a kept dW does not keep the
/// larger dX alive.
fn backward(padding: usize, x: &Tensor, w: &Tensor, with_bias: bool, grad: &Tensor) -> Result<(Option<Tensor>, Tensor, Option<Tensor>)> {
    let grad = grad.contiguous()?;
    let dx = if x.track_op() { Some(grad.apply_op2(w, Conv2dBwdInput { padding })?.detach()) } else { None };
    let (o, c, kh, kw) = w.dims4()?;
    let packed = x.apply_op2(&grad, Conv2dBwdParams { padding, kh, kw, with_bias })?.detach();
    let weights = o * c * kh * kw;
    let dw = packed.narrow(0, 0, weights)?.reshape(w.shape())?;
    let db = if with_bias { Some(packed.narrow(0, weights, o)?) } else { None };
    Ok((dx, dw, db))
}

/// dX = the correlation of dY (N, O, P, Q) with the flipped kernel,
/// `W'[c, (o, ky, kx)] = W[o, c, kh - 1 - ky, kw - 1 - kx]`, padded by
/// k - 1 - pad. No backward of its own.
#[derive(Debug, Clone, Copy)]
struct Conv2dBwdInput {
    padding: usize,
}

fn grad_input<T: Real>(padding: usize, g: &CpuStorage, gl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
    let (n, o, p, q) = gl.shape().dims4()?;
    let (wo, c, kh, kw) = wl.shape().dims4()?;
    if wo != o {
        return Err(candle_core::Error::Msg(format!("conv2d backward: gradient has {o} channels, the weight {wo}")));
    }
    let flip_pad = |k: usize| isize::try_from(k).unwrap_or(isize::MAX) - 1 - isize::try_from(padding).unwrap_or(isize::MAX);
    let corr = Correlation::new(o, p, q, kh, kw, flip_pad(kh), flip_pad(kw))?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let ws = contiguous_slice::<T>(w, wl)?;
    let taps = kh * kw;
    let mut flipped = vec![T::zero(); c * o * taps];
    flipped.par_chunks_mut((o * taps).max(1)).enumerate().for_each(|(ci, row)| {
        for (oi, out) in row.chunks_mut(taps.max(1)).enumerate() {
            let src = &ws[(oi * c + ci) * taps..(oi * c + ci + 1) * taps];
            for (dst, v) in out.iter_mut().zip(src.iter().rev()) {
                *dst = *v;
            }
        }
    });
    let dx = corr.apply(gs, n, MatRef { data: &flipped, rs: o * taps, cs: 1 }, c, None)?;
    Ok((T::to_cpu_storage_owned(dx), Shape::from((n, c, corr.p, corr.q))))
}

impl CustomOp2 for Conv2dBwdInput {
    fn name(&self) -> &'static str {
        "fused-conv2d-backward-input"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        match g {
            CpuStorage::F32(_) => grad_input::<f32>(self.padding, g, gl, w, wl),
            CpuStorage::F64(_) => grad_input::<f64>(self.padding, g, gl, w, wl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv2d backward")),
        }
    }
}

/// dW = Σ_n dY_n im2col(X_n)^T and db = Σ dY per channel, packed as
/// `[dW (O C kh kw) | db (O)]` (db only `with_bias`). No backward of its own.
#[derive(Debug, Clone, Copy)]
struct Conv2dBwdParams {
    padding: usize,
    kh: usize,
    kw: usize,
    with_bias: bool,
}

impl Conv2dBwdParams {
    fn run<T: Real>(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = xl.shape().dims4()?;
        let (gn, o, p, q) = gl.shape().dims4()?;
        let pad = isize::try_from(self.padding).map_err(|_| candle_core::Error::Msg("conv2d: padding overflow".into()))?;
        let corr = Correlation::new(c, h, w, self.kh, self.kw, pad, pad)?;
        if gn != n || (corr.p, corr.q) != (p, q) {
            return Err(candle_core::Error::Msg(format!("conv2d backward: gradient {:?} does not fit input {:?}", gl.dims(), xl.dims())));
        }
        let xs = contiguous_slice::<T>(x, xl)?;
        let gs = contiguous_slice::<T>(g, gl)?;
        let (k, pq) = (corr.k(), p * q);
        let db_len = if self.with_bias { o } else { 0 };
        let mut packed = vec![T::zero(); o * k + db_len];
        let (dw, db) = packed.split_at_mut(o * k);
        let (x_len, g_len) = (c * h * w, o * pq);
        sum_over_image_groups(dw, n, |range, acc, par| {
            let mut scratch = Vec::new();
            for (j, i) in range.enumerate() {
                corr.weight_gradient_of_image(&xs[i * x_len..(i + 1) * x_len], &gs[i * g_len..(i + 1) * g_len], o, acc, j > 0, par, &mut scratch)?;
            }
            Ok(())
        })?;
        if self.with_bias {
            sum_planes(gs, o, pq, db);
        }
        Ok((T::to_cpu_storage_owned(packed), Shape::from(o * k + db_len)))
    }
}

/// `out[o] = Σ_{n, j} g[n, o, j]` for `g` (N, O, plane): the bias gradient
/// of an NCHW map.
pub(crate) fn sum_planes<T: Real>(g: &[T], o: usize, plane: usize, out: &mut [T]) {
    let sums: Vec<T> = g.par_chunks(plane.max(1)).with_min_len((MIN_ELEMS_PER_TASK / plane.max(1)).max(1)).map(|row| row.iter().fold(T::zero(), |a, v| a + *v)).collect();
    for (i, s) in sums.into_iter().enumerate() {
        out[i % o.max(1)] += s;
    }
}

impl CustomOp2 for Conv2dBwdParams {
    fn name(&self) -> &'static str {
        "fused-conv2d-backward-params"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => self.run::<f32>(x, xl, g, gl),
            CpuStorage::F64(_) => self.run::<f64>(x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv2d backward")),
        }
    }
}
