//! RoIAlign (He et al., Mask R-CNN) with a backward, as a candle `CustomOp2`.
//!
//! Mirrors torchvision `ops.roi_align(input, rois, output_size, spatial_scale,
//! sampling_ratio, aligned)` and its CPU kernels
//! (`torchvision/csrc/ops/cpu/roi_align_kernel.cpp`,
//! `roi_align_common.h`) operation for operation, including:
//! - `aligned=true` (detectron2 `ROIAlignV2`): box corners are scaled and then
//!   shifted by -0.5, so a pixel's value sits at its centre; the RoI size is
//!   not clamped to >= 1 (with `aligned=false` it is, and there is no shift);
//! - `sampling_ratio = 0`: an adaptive grid of `ceil(roi_h / pooled_h)` ×
//!   `ceil(roi_w / pooled_w)` bilinear samples per bin, averaged;
//! - border rules: a sample with y < -1, y > H, x < -1 or x > W contributes 0;
//!   otherwise coordinates below 0 are clamped to 0 and the upper neighbour is
//!   clamped to H-1 / W-1.
//!
//! The backward scatters each output gradient back through the same bilinear
//! weights (divided by the sample count) into the input gradient; the boxes
//! get no gradient (in Mask R-CNN they come from the RPN and are treated as
//! constants). Both are checked against torchvision (forward and input
//! gradient, f32 and f64; `detector/tests/roi_align.rs`, fixtures from
//! `detector/tests/fixtures/make_fixtures.py`), and in the tests below against
//! central finite differences in f64 and against the composed version
//! (`roi_align_composed.rs`, built from candle primitives).
//!
//! Why a kernel: the composed form materialises C × (samples × 4 corners)
//! per RoI (about 400 MB for 512 RoIs × 256 channels at 7×7 with 2×2
//! samples, which is why it runs in bounded chunks); the kernel streams over
//! the input instead.
//!
//! [`roi_align`] dispatches through the kernel switch ([`crate::ops::Kernels`]):
//! the CPU kernel below where `fused_eligible` (CPU, f32/f64, switch `Auto`),
//! the CUDA kernel (`roi_align_cuda.rs`, f32, `cuda` feature; it reuses this
//! file's per-RoI geometry) where [`device_kernel`] says so, and
//! otherwise the composed version (`roi_align_composed.rs`: candle
//! primitives, any device and float dtype, chunked over RoIs so its largest
//! temporary stays under 64 MiB; also public as
//! `engine::ops::reference::roi_align`).
//!
//! Shapes: B images, C channels, (H, W) the feature map, K RoIs,
//! (PH, PW) = `output_size`. `input` is (B, C, H, W); `rois` is (K, 5) with
//! rows `(batch_index, x1, y1, x2, y2)` in input-image pixels (multiplied by
//! `spatial_scale` to reach feature-map pixels); the output is (K, C, PH, PW).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
#[path = "roi_align_cuda.rs"]
mod cuda;

/// Whether a device kernel other than the CPU's runs this op for `x` under
/// the kernel switch: the CUDA kernel (f32, `cuda` feature) unless
/// [`crate::ops::Kernels::Composed`] is chosen.
#[cfg(feature = "cuda")]
fn device_kernel(x: &Tensor) -> bool {
    crate::ops::fused_allowed() && cuda::eligible(x)
}

/// Without the `cuda` feature there is no device kernel.
#[cfg(not(feature = "cuda"))]
fn device_kernel(_x: &Tensor) -> bool {
    false
}

/// RoIAlign over `input` (B, C, H, W) for `rois` (K, 5) rows
/// `(batch_index, x1, y1, x2, y2)`; returns (K, C, PH, PW).
///
/// `spatial_scale` maps box pixels to feature pixels (1/stride);
/// `sampling_ratio` 0 means adaptive (`ceil(roi_size / output_size)` samples
/// per bin and axis); `aligned` selects the half-pixel model (detectron2
/// `ROIAlignV2` uses `true`). `rois` is converted to `input`'s dtype, as
/// torchvision requires them to match. The result has a backward to `input`
/// only.
///
/// Runs on any device: the CPU kernel (f32/f64) or a device kernel where
/// [`crate::ops::Kernels`] allows one, the composed version otherwise (any
/// float dtype; there the box geometry is computed in f64 for f64 input and
/// in f32 otherwise).
///
/// # Errors
/// If `input` is not a rank-4 float tensor, `rois` is not (K, 5), an output
/// size is 0, or a batch index is not an integer in [0, B).
pub fn roi_align(
    input: &Tensor,
    rois: &Tensor,
    output_size: (usize, usize),
    spatial_scale: f64,
    sampling_ratio: usize,
    aligned: bool,
) -> Result<Tensor> {
    let op = RoiAlign::new(input, rois, output_size, spatial_scale, sampling_ratio, aligned)?;
    if crate::ops::cpu::fused_eligible(&[input]) || device_kernel(input) {
        let rois = rois.to_device(input.device())?.to_dtype(input.dtype())?.detach().contiguous()?;
        return input.contiguous()?.apply_op2(&rois, op);
    }
    super::roi_align_composed::roi_align(input, rois, op, super::roi_align_composed::MAX_CHUNK_BYTES)
}

/// The RoIAlign op: its parameters and the input geometry it was built for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlign {
    /// (PH, PW), the bins per RoI.
    pub output_size: (usize, usize),
    /// Box pixels → feature pixels (1 / stride of the level).
    pub spatial_scale: f64,
    /// Samples per bin and axis; 0 = adaptive.
    pub sampling_ratio: usize,
    /// Half-pixel model (shift by -0.5, no minimum RoI size).
    pub aligned: bool,
    /// (B, C, H, W) of the input.
    pub(super) input_dims: [usize; 4],
}

impl RoiAlign {
    /// Validates the arguments of [`roi_align`] and records the input shape.
    ///
    /// # Errors
    /// As [`roi_align`], except for batch indices, which are checked when the op runs.
    pub fn new(
        input: &Tensor,
        rois: &Tensor,
        output_size: (usize, usize),
        spatial_scale: f64,
        sampling_ratio: usize,
        aligned: bool,
    ) -> Result<Self> {
        let (b, c, h, w) = input.dims4().map_err(|e| e.context("roi_align input must be (B, C, H, W)"))?;
        if h == 0 || w == 0 {
            candle_core::bail!("roi_align: empty feature map ({h}x{w})");
        }
        if !input.dtype().is_float() {
            candle_core::bail!("roi_align: input dtype {:?} is not a float dtype", input.dtype());
        }
        let rd = rois.dims();
        if rd.len() != 2 || rd[1] != 5 {
            candle_core::bail!("roi_align: rois must be (K, 5) rows (batch_index, x1, y1, x2, y2), got {rd:?}");
        }
        if output_size.0 == 0 || output_size.1 == 0 {
            candle_core::bail!("roi_align: output_size {output_size:?} must be positive");
        }
        if !spatial_scale.is_finite() || spatial_scale <= 0.0 {
            candle_core::bail!("roi_align: spatial_scale {spatial_scale} must be finite and > 0");
        }
        Ok(Self { output_size, spatial_scale, sampling_ratio, aligned, input_dims: [b, c, h, w] })
    }
}

/// One bilinear sample: the four neighbours' flat offsets in an (H, W) plane
/// and their weights, in torchvision's order (low-low, low-high, high-low, high-high).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample<T> {
    /// Flat offsets `y * W + x` of the four neighbours.
    pub(super) pos: [usize; 4],
    /// Their bilinear weights.
    pub(super) w: [T; 4],
}

/// Per-RoI geometry in feature-map pixels, in the op's dtype.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoiGeometry<T> {
    /// The RoI's image.
    pub(super) batch: usize,
    start_h: T,
    start_w: T,
    bin_h: T,
    bin_w: T,
    grid_h: usize,
    grid_w: usize,
    /// max(grid_h · grid_w, 1), the divisor of the average.
    pub(super) count: T,
}

impl RoiAlign {
    /// The geometry of RoI `row` (`(batch_index, x1, y1, x2, y2)`), computed
    /// as torchvision does in dtype T.
    pub(super) fn geometry<T: WithDType>(&self, row: &[T]) -> Result<RoiGeometry<T>> {
        let [b, _, _, _] = self.input_dims;
        let bf = row[0].to_f64();
        if !(bf >= 0.0 && bf < b as f64 && bf.fract() == 0.0) {
            candle_core::bail!("roi_align: batch index {bf} is not an integer in [0, {b})");
        }
        let scale = T::from_f64(self.spatial_scale);
        let offset = T::from_f64(if self.aligned { 0.5 } else { 0.0 });
        let start_w = row[1] * scale - offset;
        let start_h = row[2] * scale - offset;
        let end_w = row[3] * scale - offset;
        let end_h = row[4] * scale - offset;
        let mut roi_w = end_w - start_w;
        let mut roi_h = end_h - start_h;
        if !self.aligned {
            let one = T::from_f64(1.0);
            roi_w = if roi_w > one { roi_w } else { one };
            roi_h = if roi_h > one { roi_h } else { one };
        }
        let (ph, pw) = (T::from_f64(self.output_size.0 as f64), T::from_f64(self.output_size.1 as f64));
        let bin_h = roi_h / ph;
        let bin_w = roi_w / pw;
        // torchvision: int grid = ceil(roi / pooled). A non-positive grid (an
        // inverted RoI) runs no sample loop, so clamping it at 0 changes nothing.
        let grid = |extent: T, pooled: T| -> usize {
            if self.sampling_ratio > 0 {
                self.sampling_ratio
            } else {
                (extent / pooled).to_f64().ceil().max(0.0) as usize
            }
        };
        let grid_h = grid(roi_h, ph);
        let grid_w = grid(roi_w, pw);
        let count = T::from_f64((grid_h * grid_w).max(1) as f64);
        Ok(RoiGeometry { batch: bf as usize, start_h, start_w, bin_h, bin_w, grid_h, grid_w, count })
    }
}

/// The sample coordinate `start + p·bin + (i + 0.5)·bin / grid`, in
/// torchvision's evaluation order.
fn sample_coord<T: WithDType>(start: T, p: usize, bin: T, i: usize, grid: usize) -> T {
    start + T::from_f64(p as f64) * bin + T::from_f64(i as f64 + 0.5) * bin / T::from_f64(grid as f64)
}

/// torchvision's `bilinear_interpolate` neighbours and weights for the point
/// (y, x) in an (H, W) plane; `None` when the point is outside [-1, H] × [-1, W].
fn bilinear<T: WithDType>(height: usize, width: usize, y: T, x: T) -> Option<Sample<T>> {
    let (yf, xf) = (y.to_f64(), x.to_f64());
    if yf < -1.0 || yf > height as f64 || xf < -1.0 || xf > width as f64 {
        return None;
    }
    let zero = T::from_f64(0.0);
    let mut y = if y <= zero { zero } else { y };
    let mut x = if x <= zero { zero } else { x };
    let mut y_low = y.to_f64() as usize;
    let mut x_low = x.to_f64() as usize;
    let y_high;
    let x_high;
    if y_low + 1 >= height {
        y_low = height - 1;
        y_high = y_low;
        y = T::from_f64(y_low as f64);
    } else {
        y_high = y_low + 1;
    }
    if x_low + 1 >= width {
        x_low = width - 1;
        x_high = x_low;
        x = T::from_f64(x_low as f64);
    } else {
        x_high = x_low + 1;
    }
    let one = T::from_f64(1.0);
    let ly = y - T::from_f64(y_low as f64);
    let lx = x - T::from_f64(x_low as f64);
    let hy = one - ly;
    let hx = one - lx;
    Some(Sample {
        pos: [y_low * width + x_low, y_low * width + x_high, y_high * width + x_low, y_high * width + x_high],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    })
}

impl RoiAlign {
    /// Calls `f(bin, sample)` for every in-range sample of the RoI, bins in
    /// row-major order and samples row-major inside a bin (torchvision's order).
    pub(super) fn for_each_sample<T: WithDType>(&self, g: &RoiGeometry<T>, mut f: impl FnMut(usize, Sample<T>)) {
        let [_, _, height, width] = self.input_dims;
        let (ph, pw) = self.output_size;
        for by in 0..ph {
            for iy in 0..g.grid_h {
                let y = sample_coord(g.start_h, by, g.bin_h, iy, g.grid_h);
                for bx in 0..pw {
                    for ix in 0..g.grid_w {
                        let x = sample_coord(g.start_w, bx, g.bin_w, ix, g.grid_w);
                        if let Some(s) = bilinear(height, width, y, x) {
                            f(by * pw + bx, s);
                        }
                    }
                }
            }
        }
    }

    fn forward<T: WithDType>(&self, input: &[T], rois: &[T]) -> Result<Vec<T>> {
        let [_, c, h, w] = self.input_dims;
        let bins = self.output_size.0 * self.output_size.1;
        let geoms: Vec<RoiGeometry<T>> = rois.chunks_exact(5).map(|r| self.geometry(r)).collect::<Result<_>>()?;
        let mut out = vec![T::from_f64(0.0); geoms.len() * c * bins];
        out.par_chunks_mut((c * bins).max(1)).zip(geoms.par_iter()).for_each(|(out_roi, g)| {
            // Samples grouped by bin, in torchvision's accumulation order.
            let mut samples: Vec<Vec<Sample<T>>> = vec![Vec::new(); bins];
            self.for_each_sample(g, |bin, s| samples[bin].push(s));
            for (ch, out_ch) in out_roi.chunks_exact_mut(bins).enumerate() {
                let plane = &input[(g.batch * c + ch) * h * w..(g.batch * c + ch + 1) * h * w];
                for (o, bin_samples) in out_ch.iter_mut().zip(&samples) {
                    let mut acc = T::from_f64(0.0);
                    for s in bin_samples {
                        acc += s.w[0] * plane[s.pos[0]] + s.w[1] * plane[s.pos[1]] + s.w[2] * plane[s.pos[2]] + s.w[3] * plane[s.pos[3]];
                    }
                    *o = acc / g.count;
                }
            }
        });
        Ok(out)
    }

    /// Every in-range sample of the RoI with the bin it falls in, in
    /// [`Self::for_each_sample`]'s order, its weights divided by the bin's
    /// sample count: what one output gradient spreads over the input.
    fn averaging_samples<T: WithDType>(&self, g: &RoiGeometry<T>) -> Vec<(usize, Sample<T>)> {
        let mut samples = Vec::with_capacity(self.output_size.0 * self.output_size.1 * g.grid_h * g.grid_w);
        self.for_each_sample(g, |bin, s| samples.push((bin, Sample { pos: s.pos, w: s.w.map(|w| w / g.count) })));
        samples
    }

    /// The input gradient for `grad_out` (K, C, PH, PW): each (image, channel)
    /// plane is filled by one task, visiting its RoIs in index order so the
    /// additions happen in torchvision's order. Each RoI's samples are
    /// computed once, not once per channel, and carry their share of the
    /// average, so the loop over channels multiplies and adds (torchvision
    /// divides each product by the count: the same sums up to rounding).
    fn backward<T: WithDType>(&self, grad_out: &[T], rois: &[T]) -> Result<Vec<T>> {
        let [b, c, h, w] = self.input_dims;
        let bins = self.output_size.0 * self.output_size.1;
        let geoms: Vec<RoiGeometry<T>> = rois.chunks_exact(5).map(|r| self.geometry(r)).collect::<Result<_>>()?;
        let samples: Vec<Vec<(usize, Sample<T>)>> = geoms.par_iter().map(|g| self.averaging_samples(g)).collect();
        let mut by_image: Vec<Vec<usize>> = vec![Vec::new(); b];
        for (k, g) in geoms.iter().enumerate() {
            by_image[g.batch].push(k);
        }
        let mut grad_in = vec![T::from_f64(0.0); b * c * h * w];
        grad_in.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(plane_index, plane)| {
            let (img, ch) = (plane_index / c, plane_index % c);
            for &k in &by_image[img] {
                let go = &grad_out[(k * c + ch) * bins..(k * c + ch + 1) * bins];
                for (bin, s) in &samples[k] {
                    let gb = go[*bin];
                    for (&p, &wt) in s.pos.iter().zip(&s.w) {
                        plane[p] += gb * wt;
                    }
                }
            }
        });
        Ok(grad_in)
    }
}

/// The contiguous data of a storage with a layout, or an error naming the op.
fn contiguous_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("roi_align: {what} must be contiguous"),
    }
}

impl CustomOp2 for RoiAlign {
    fn name(&self) -> &'static str {
        "roi_align"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let k = l2.dims()[0];
        let [_, c, _, _] = self.input_dims;
        let shape = Shape::from((k, c, self.output_size.0, self.output_size.1));
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(
                self.forward(contiguous_slice::<f32>(s1, l1, "input")?, contiguous_slice::<f32>(s2, l2, "rois")?)?,
            ),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(
                self.forward(contiguous_slice::<f64>(s1, l1, "input")?, contiguous_slice::<f64>(s2, l2, "rois")?)?,
            ),
            _ => candle_core::bail!("roi_align: input and rois must both be f32 or both f64"),
        };
        Ok((storage, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::forward(self, s1, l1, s2, l2)
    }

    fn bwd(&self, _input: &Tensor, rois: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_input = grad_res.contiguous()?.apply_op2(rois, RoiAlignBackward(*self))?;
        Ok((Some(grad_input), None))
    }
}

/// The input gradient of [`RoiAlign`]: (grad_output (K, C, PH, PW), rois) →
/// (B, C, H, W). Not differentiable itself (no second-order gradients are
/// needed); asking for one fails loudly with candle's `BackwardNotSupported`.
struct RoiAlignBackward(RoiAlign);

impl CustomOp2 for RoiAlignBackward {
    fn name(&self) -> &'static str {
        "roi_align_backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let shape = Shape::from(self.0.input_dims.to_vec());
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(
                self.0.backward(contiguous_slice::<f32>(s1, l1, "grad_output")?, contiguous_slice::<f32>(s2, l2, "rois")?)?,
            ),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(
                self.0.backward(contiguous_slice::<f64>(s1, l1, "grad_output")?, contiguous_slice::<f64>(s2, l2, "rois")?)?,
            ),
            _ => candle_core::bail!("roi_align backward: grad_output and rois must both be f32 or both f64"),
        };
        Ok((storage, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::backward(&self.0, s1, l1, s2, l2)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::{check_gradients, random_tensor};
    use candle_core::{DType, Device, Var};

    /// The composed version, with its default chunk bound.
    fn composed(input: &Tensor, rois: &Tensor, output_size: (usize, usize), scale: f64, sampling_ratio: usize, aligned: bool) -> Result<Tensor> {
        let op = RoiAlign::new(input, rois, output_size, scale, sampling_ratio, aligned)?;
        crate::ops::detection::roi_align_composed::roi_align(input, rois, op, crate::ops::detection::roi_align_composed::MAX_CHUNK_BYTES)
    }

    /// Boxes of every kind the detector produces, as (batch, x1, y1, x2, y2)
    /// in image pixels for an 8×10 map at spatial scale 0.5 (a 16×20 image).
    fn rois() -> Tensor {
        let rows: [[f64; 5]; 7] = [
            [0.0, 2.0, 3.0, 12.0, 11.0],   // inside
            [1.0, -6.0, -4.0, 7.0, 9.0],   // partly outside, top-left
            [0.0, 9.0, 6.0, 27.0, 22.0],   // partly outside, bottom-right
            [1.0, 5.2, 6.1, 5.6, 6.3],     // tiny
            [0.0, -2.0, -2.0, 22.0, 18.0], // large: grid > 1
            [1.0, 30.0, 30.0, 40.0, 40.0], // entirely outside
            [0.0, 4.0, 4.0, 4.0, 4.0],     // empty
        ];
        Tensor::new(&rows, &Device::Cpu).unwrap()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 2, 8, 10], 7);
        let r = rois();
        check_gradients(&[x], |xs| roi_align(&xs[0], &r, (3, 2), 0.5, 0, true)).unwrap();
        let x = random_tensor(&[2, 1, 8, 10], 8);
        check_gradients(&[x], |xs| roi_align(&xs[0], &r, (2, 2), 0.5, 3, false)).unwrap();
    }

    #[test]
    fn composed_reference_gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 1, 8, 10], 9);
        let r = rois();
        check_gradients(&[x], |xs| composed(&xs[0], &r, (3, 2), 0.5, 0, true)).unwrap();
    }

    #[test]
    fn kernel_matches_composed_reference_forward_and_backward() {
        let x = random_tensor(&[2, 3, 8, 10], 10);
        let r = rois();
        let w = random_tensor(&[7, 3, 4, 5], 11);
        for (sampling_ratio, aligned) in [(0, true), (2, true), (0, false)] {
            let xv = Var::from_tensor(&x).unwrap();
            let yk = roi_align(xv.as_tensor(), &r, (4, 5), 0.5, sampling_ratio, aligned).unwrap();
            let gk = (&yk * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let yc = composed(xv.as_tensor(), &r, (4, 5), 0.5, sampling_ratio, aligned).unwrap();
            let gc = (&yc * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let diff = (&yk - &yc).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f64>().unwrap();
            assert!(diff < 1e-12, "forward differs by {diff}");
            let gk = gk.get(&xv).unwrap();
            let gc = gc.get(&xv).unwrap();
            let diff = (gk - gc).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f64>().unwrap();
            assert!(diff < 1e-12, "gradient differs by {diff}");
            let total = gk.abs().unwrap().sum_all().unwrap().to_vec0::<f64>().unwrap();
            assert!(total > 0.1, "gradient is (nearly) all zero");
        }
    }

    #[test]
    fn hand_worked_constant_and_ramp() {
        // On a constant map every in-range RoI averages to the constant.
        let x = Tensor::full(3.0f32, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let r = Tensor::new(&[[0.0f32, 0.5, 0.5, 3.5, 3.5]], &Device::Cpu).unwrap();
        let y = roi_align(&x, &r, (2, 2), 1.0, 0, true).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y.len(), 4);
        assert!(y.iter().all(|v| (v - 3.0).abs() < 1e-6), "{y:?}");
        // On the ramp v = x (column index), aligned=true samples the box
        // [1, 3) (pixels, shifted to [0.5, 2.5) in centre coordinates): the two
        // bins' single samples sit at x = 1.0 and 2.0.
        let ramp: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let x = Tensor::from_vec(ramp, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let r = Tensor::new(&[[0.0f32, 1.0, 1.0, 3.0, 2.0]], &Device::Cpu).unwrap();
        let y = roi_align(&x, &r, (1, 2), 1.0, 0, true).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![1.0, 2.0]);
    }

    #[test]
    fn empty_roi_list_gives_empty_output_and_zero_gradient() {
        let x = Var::from_tensor(&random_tensor(&[1, 2, 4, 4], 1)).unwrap();
        let r = Tensor::zeros((0, 5), DType::F64, &Device::Cpu).unwrap();
        let y = roi_align(x.as_tensor(), &r, (7, 7), 0.25, 0, true).unwrap();
        assert_eq!(y.dims(), &[0, 2, 7, 7]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(&x).unwrap().abs().unwrap().sum_all().unwrap().to_vec0::<f64>().unwrap();
        assert_eq!(g, 0.0);
    }

    #[test]
    fn invalid_arguments_are_errors() {
        let x = random_tensor(&[2, 1, 4, 4], 1);
        let bad_batch = Tensor::new(&[[2.0f64, 0.0, 0.0, 1.0, 1.0]], &Device::Cpu).unwrap();
        let err = roi_align(&x, &bad_batch, (2, 2), 1.0, 0, true).unwrap_err().to_string();
        assert!(err.contains("batch index 2"), "{err}");
        let frac_batch = Tensor::new(&[[0.5f64, 0.0, 0.0, 1.0, 1.0]], &Device::Cpu).unwrap();
        assert!(roi_align(&x, &frac_batch, (2, 2), 1.0, 0, true).is_err());
        let four_cols = Tensor::new(&[[0.0f64, 0.0, 1.0, 1.0]], &Device::Cpu).unwrap();
        assert!(roi_align(&x, &four_cols, (2, 2), 1.0, 0, true).is_err());
        let ok = Tensor::new(&[[0.0f64, 0.0, 0.0, 1.0, 1.0]], &Device::Cpu).unwrap();
        assert!(roi_align(&x, &ok, (0, 2), 1.0, 0, true).is_err());
        assert!(roi_align(&x.flatten_all().unwrap(), &ok, (2, 2), 1.0, 0, true).is_err());
        let err = roi_align(&x.to_dtype(DType::U32).unwrap(), &ok, (2, 2), 1.0, 0, true).unwrap_err().to_string();
        assert!(err.contains("not a float dtype"), "{err}");
    }
}
