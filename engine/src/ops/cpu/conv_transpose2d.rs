//! Fused `conv_transpose2d` with kernel = stride s (no overlap, no padding):
//! each input pixel paints its own s x s block, so the op is one GEMM per
//! image, T = W^T X with T's rows (o, ky, kx) and columns the input pixels,
//! followed by a scatter of T into the blocks (with the bias). The backward
//! gathers dY back into that (O s s, H W) layout once per op and runs
//! dX = W G and dW = Σ X G^T as GEMMs, db = Σ dY. A batch of small maps
//! (the mask head's ROIs) runs whole images on each thread.
//!
//! Why: candle 0.11.1's CPU `conv_transpose2d` is a direct loop over every
//! (input pixel, output channel, input channel) and its backward runs two
//! more convolutions (candle-notes.md §1, §5); the ViTDet pyramid's stride-2
//! upsampling and the mask head's deconvolution use it.
//!
//! Shapes: N images, C input channels, O output channels, (H, W) the input
//! map, (H s, W s) the output map. The weight is (C, O, s, s) as PyTorch
//! stores it, i.e. a row-major (C, O s s) matrix.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv2d::sum_planes;
use super::image_batch::{for_each_chunk, for_each_image_group, sum_over_image_groups};
use super::{contiguous_slice, gemm, MatRef, Real};

/// `F.conv_transpose2d(x, weight, bias, stride=s)` with an s x s kernel for
/// contiguous `x` (N, C, H, W), `weight` (C, O, s, s) and `bias` (O).
pub(crate) fn conv_transpose2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: usize) -> Result<Tensor> {
    let op = ConvTranspose2dFwd { stride };
    match bias {
        Some(b) => x.apply_op3(weight, b, op),
        None => x.apply_op2(weight, op),
    }
}

/// Sizes shared by the forward and backward ops.
#[derive(Debug, Clone, Copy)]
struct Blocks {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    s: usize,
}

impl Blocks {
    /// Reads the sizes from an input (N, C, H, W) and a weight (C, O, s, s).
    fn new(x: &[usize], weight: &[usize], s: usize) -> Result<Self> {
        let bad = || candle_core::Error::Msg(format!("conv_transpose2d: input {x:?} and weight {weight:?} do not fit a {s}x{s} kernel with stride {s}"));
        match (x, weight) {
            (&[n, c, h, w], &[wc, o, kh, kw]) if wc == c && kh == s && kw == s && s > 0 => Ok(Self { n, c, o, h, w, s }),
            _ => Err(bad()),
        }
    }

    /// Input pixels of one image.
    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Rows of the block matrix: O s s.
    fn rows(&self) -> usize {
        self.o * self.s * self.s
    }

    /// One image's output elements.
    fn out_len(&self) -> usize {
        self.o * self.hw() * self.s * self.s
    }

    /// Moves one image's block matrix `t` (O s s, H W) into its output map
    /// `y` (O, H s, W s), adding `bias` (O): `y[o, y s + ky, x s + kx] =
    /// t[(o, ky, kx), (y, x)] + bias[o]`. Planes in parallel when `par` > 1.
    fn scatter<T: Real>(&self, t: &[T], y: &mut [T], bias: Option<&[T]>, par: usize) {
        let Self { h, w, s, .. } = *self;
        let (hw, ws) = (self.hw(), w * s);
        let plane_of = |(oi, plane): (usize, &mut [T])| {
            let b = bias.map_or(T::zero(), |b| b[oi]);
            for ky in 0..s {
                for kx in 0..s {
                    let row = &t[((oi * s + ky) * s + kx) * hw..][..hw];
                    for (yi, src) in row.chunks(w.max(1)).enumerate().take(h) {
                        let line = &mut plane[(yi * s + ky) * ws..][..ws];
                        for (dst, v) in line.iter_mut().skip(kx).step_by(s).zip(src) {
                            *dst = *v + b;
                        }
                    }
                }
            }
        };
        for_each_chunk(y, hw * s * s, par, plane_of);
    }

    /// The inverse of [`Self::scatter`] without bias: one image's gradient map
    /// `g` (O, H s, W s) as the block matrix `t` (O s s, H W). Planes in
    /// parallel when `par` > 1.
    fn gather<T: Real>(&self, g: &[T], t: &mut [T], par: usize) {
        let Self { h, w, s, .. } = *self;
        let (hw, ws) = (self.hw(), w * s);
        let plane_of = |(oi, rows): (usize, &mut [T])| {
            let plane = &g[oi * hw * s * s..][..hw * s * s];
            for ky in 0..s {
                for kx in 0..s {
                    let row = &mut rows[(ky * s + kx) * hw..][..hw];
                    for (yi, dst) in row.chunks_mut(w.max(1)).enumerate().take(h) {
                        let line = &plane[(yi * s + ky) * ws..][..ws];
                        for (d, v) in dst.iter_mut().zip(line.iter().skip(kx).step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            }
        };
        for_each_chunk(t, hw * s * s, par, plane_of);
    }
}

/// The forward op; as `CustomOp2` without bias, as `CustomOp3` with one.
#[derive(Debug, Clone, Copy)]
struct ConvTranspose2dFwd {
    stride: usize,
}

fn forward<T: Real>(stride: usize, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: Option<(&CpuStorage, &Layout)>) -> Result<(CpuStorage, Shape)> {
    let geo = Blocks::new(xl.dims(), wl.dims(), stride)?;
    let xs = contiguous_slice::<T>(x, xl)?;
    let ws = contiguous_slice::<T>(w, wl)?;
    let bias = b.map(|(b, bl)| contiguous_slice::<T>(b, bl)).transpose()?;
    if bias.is_some_and(|b| b.len() != geo.o) {
        return Err(candle_core::Error::Msg(format!("conv_transpose2d: bias must have {} elements", geo.o)));
    }
    let (hw, rows, x_len, y_len) = (geo.hw(), geo.rows(), geo.c * geo.hw(), geo.out_len());
    let mut y = vec![T::zero(); geo.n * y_len];
    for_each_image_group(&mut y, y_len, geo.n, |images, y_g, par| {
        let mut t = vec![T::zero(); rows * hw];
        for (i, y_n) in images.zip(y_g.chunks_mut(y_len.max(1))) {
            // (O s s, C) @ (C, H W): W^T's element (r, c) is W's (c, r).
            gemm(rows, hw, geo.c, &mut t, hw, MatRef { data: ws, rs: 1, cs: rows }, MatRef { data: &xs[i * x_len..(i + 1) * x_len], rs: hw, cs: 1 }, T::one(), false, par)?;
            geo.scatter(&t, y_n, bias, par);
        }
        Ok(())
    })?;
    Ok((T::to_cpu_storage_owned(y), Shape::from((geo.n, geo.o, geo.h * geo.s, geo.w * geo.s))))
}

impl CustomOp2 for ConvTranspose2dFwd {
    fn name(&self) -> &'static str {
        "fused-conv-transpose2d"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.stride, x, xl, w, wl, None),
            CpuStorage::F64(_) => forward::<f64>(self.stride, x, xl, w, wl, None),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv_transpose2d")),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = backward(self.stride, x, w, false, grad)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for ConvTranspose2dFwd {
    fn name(&self) -> &'static str {
        "fused-conv-transpose2d-bias"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, w: &CpuStorage, wl: &Layout, b: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => forward::<f32>(self.stride, x, xl, w, wl, Some((b, bl))),
            CpuStorage::F64(_) => forward::<f64>(self.stride, x, xl, w, wl, Some((b, bl))),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv_transpose2d")),
        }
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = backward(self.stride, x, w, true, grad)?;
        Ok((dx, Some(dw), db))
    }
}

/// Runs the two gradient ops: dX (skipped when `x` needs no gradient) and
/// the packed `[dW | db]`, separate buffers so a kept dW does not keep the
/// larger dX alive.
fn backward(stride: usize, x: &Tensor, w: &Tensor, with_bias: bool, grad: &Tensor) -> Result<(Option<Tensor>, Tensor, Option<Tensor>)> {
    let grad = grad.contiguous()?;
    let dx = if x.track_op() { Some(grad.apply_op2(w, ConvTranspose2dBwdInput { stride })?.detach()) } else { None };
    let packed = x.apply_op2(&grad, ConvTranspose2dBwdParams { stride, with_bias })?.detach();
    let weights = w.elem_count();
    let dw = packed.narrow(0, 0, weights)?.reshape(w.shape())?;
    let db = if with_bias { Some(packed.narrow(0, weights, w.dim(1)?)?) } else { None };
    Ok((dx, dw, db))
}

/// Checks that a gradient (N, O, H s, W s) fits the block geometry.
fn check_grad(geo: &Blocks, gl: &Layout) -> Result<()> {
    if gl.dims() != [geo.n, geo.o, geo.h * geo.s, geo.w * geo.s] {
        return Err(candle_core::Error::Msg(format!("conv_transpose2d backward: gradient {:?} does not fit the output", gl.dims())));
    }
    Ok(())
}

/// dX_n = W (C, O s s) @ G_n with G_n the gathered dY_n. The gradient's
/// shape gives (N, O, H s, W s) and the weight (C, O, s, s). No backward of
/// its own.
#[derive(Debug, Clone, Copy)]
struct ConvTranspose2dBwdInput {
    stride: usize,
}

fn grad_input<T: Real>(s: usize, g: &CpuStorage, gl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
    let (n, _, hs, ws_) = gl.shape().dims4()?;
    let c = wl.shape().dims4()?.0;
    if s == 0 || hs % s != 0 || ws_ % s != 0 {
        return Err(candle_core::Error::Msg(format!("conv_transpose2d backward: gradient {:?} is not a multiple of the stride {s}", gl.dims())));
    }
    let geo = Blocks::new(&[n, c, hs / s, ws_ / s], wl.dims(), s)?;
    check_grad(&geo, gl)?;
    let gs = contiguous_slice::<T>(g, gl)?;
    let wsl = contiguous_slice::<T>(w, wl)?;
    let (hw, rows, g_len) = (geo.hw(), geo.rows(), geo.out_len());
    let mut dx = vec![T::zero(); n * c * hw];
    for_each_image_group(&mut dx, c * hw, n, |images, dx_g, par| {
        let mut t = vec![T::zero(); rows * hw];
        for (i, dx_n) in images.zip(dx_g.chunks_mut((c * hw).max(1))) {
            geo.gather(&gs[i * g_len..(i + 1) * g_len], &mut t, par);
            gemm(c, hw, rows, dx_n, hw, MatRef { data: wsl, rs: rows, cs: 1 }, MatRef { data: &t, rs: hw, cs: 1 }, T::one(), false, par)?;
        }
        Ok(())
    })?;
    Ok((T::to_cpu_storage_owned(dx), Shape::from((n, c, geo.h, geo.w))))
}

impl CustomOp2 for ConvTranspose2dBwdInput {
    fn name(&self) -> &'static str {
        "fused-conv-transpose2d-backward-input"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, w: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        match g {
            CpuStorage::F32(_) => grad_input::<f32>(self.stride, g, gl, w, wl),
            CpuStorage::F64(_) => grad_input::<f64>(self.stride, g, gl, w, wl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv_transpose2d backward")),
        }
    }
}

/// dW = Σ_n X_n (C, H W) @ G_n^T and db = Σ dY per channel, packed as
/// `[dW (C O s s) | db (O)]` (db only `with_bias`). No backward of its own.
#[derive(Debug, Clone, Copy)]
struct ConvTranspose2dBwdParams {
    stride: usize,
    with_bias: bool,
}

impl ConvTranspose2dBwdParams {
    fn run<T: Real>(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = self.stride;
        let (n, c, h, w) = xl.shape().dims4()?;
        let o = gl.shape().dims4()?.1;
        let geo = Blocks::new(&[n, c, h, w], &[c, o, s, s], s)?;
        check_grad(&geo, gl)?;
        let xs = contiguous_slice::<T>(x, xl)?;
        let gs = contiguous_slice::<T>(g, gl)?;
        let (hw, rows) = (geo.hw(), geo.rows());
        let db_len = if self.with_bias { o } else { 0 };
        let mut packed = vec![T::zero(); c * rows + db_len];
        let (dw, db) = packed.split_at_mut(c * rows);
        let (x_len, g_len) = (c * hw, geo.out_len());
        sum_over_image_groups(dw, n, |images, acc, par| {
            let mut t = vec![T::zero(); rows * hw];
            for (j, i) in images.enumerate() {
                geo.gather(&gs[i * g_len..(i + 1) * g_len], &mut t, par);
                // (C, H W) @ (H W, O s s): G^T's element (j, r) is G's (r, j).
                gemm(c, rows, hw, acc, rows, MatRef { data: &xs[i * x_len..(i + 1) * x_len], rs: hw, cs: 1 }, MatRef { data: &t, rs: 1, cs: hw }, T::one(), j > 0, par)?;
            }
            Ok(())
        })?;
        if self.with_bias {
            sum_planes(gs, o, hw * s * s, db);
        }
        Ok((T::to_cpu_storage_owned(packed), Shape::from(c * rows + db_len)))
    }
}

impl CustomOp2 for ConvTranspose2dBwdParams {
    fn name(&self) -> &'static str {
        "fused-conv-transpose2d-backward-params"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        match x {
            CpuStorage::F32(_) => self.run::<f32>(x, xl, g, gl),
            CpuStorage::F64(_) => self.run::<f64>(x, xl, g, gl),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused conv_transpose2d backward")),
        }
    }
}
