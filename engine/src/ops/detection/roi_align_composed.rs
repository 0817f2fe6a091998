//! RoIAlign from candle primitives: what runs on a device without a RoIAlign
//! kernel (CUDA until its kernel lands, any device under
//! `VITDET_KERNELS=composed`), and the public reference
//! `engine::ops::reference::roi_align`.
//!
//! The host computes, from the boxes, every bilinear sample's four
//! neighbours and weights exactly as the CPU kernel does (`roi_align.rs`,
//! torchvision's rules; the geometry in f64 for f64 input, in f32
//! otherwise, so f32 results use the kernel's very weights). The device then
//! gathers the neighbours with `index_select` on one image's (C, H·W)
//! plane, weights them, and sums them per bin with `index_add`.
//!
//! Bounded memory: the RoIs are processed in chunks of consecutive RoIs of
//! one image, each chunk's largest temporary (C × its samples × 4 corners
//! values, or C × its bins for the pooled output) kept under
//! [`MAX_CHUNK_BYTES`]. A single RoI larger than the bound is a chunk of its
//! own (at ViTDet's scales one RoI is a few MB). Without chunking the
//! temporaries reach C × K × PH·PW × samples × 4 values (about 400 MB for
//! 512 RoIs × 256 channels at 7×7 with 2×2 samples).
//!
//! The backward is explicit, not derived by candle: a candle-derived backward
//! would keep every chunk's gathered values alive until the backward pass
//! (the same 400 MB), and would sum the chunks' partial gradients in an
//! order that depends on the chunking. Here the forward runs outside the
//! autograd graph and a [`CustomOp2`] attaches the backward, which
//! recomputes each chunk's weighted gradients and adds them into the input
//! gradient with a chain of `index_add`s, sample by sample in the CPU
//! kernel's order. So the result, forward and backward, does not depend on
//! the chunk bound (bitwise: `chunked_equals_unchunked_bitwise`), and the
//! input gradient equals the CPU kernel's bitwise in f32 and f64
//! (`backward_equals_the_kernel_bitwise`); the forward sums the weighted
//! samples in one pass instead of per sample, so it agrees with the kernel
//! to rounding.
//!
//! Every primitive used (`index_select`, `index_add`, `broadcast_mul`,
//! `narrow`, `permute`, `cat`, `stack`, `zeros`, `to_dtype`) has a CUDA and a
//! Metal implementation in candle 0.11.1; the attaching op copies its second
//! argument's storage (`BackendStorage::try_clone`), which every backend has.
//!
//! Shapes: B images, C channels, (H, W) the map, K RoIs, (PH, PW) bins, n a
//! chunk's (sample, corner) entries.

use std::ops::Range;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, MetalStorage, Result, Shape, Tensor, WithDType};

use super::roi_align::RoiAlign;

/// The bound on a chunk's largest temporary: 64 MiB, about 1/1000 of a
/// GPU's memory, yet large enough that a detector batch (512 RoIs × 256
/// channels at 7×7, 2×2 samples: 400 MB unchunked) takes a handful of chunks.
pub(crate) const MAX_CHUNK_BYTES: usize = 64 << 20;

/// [`super::roi_align`] from candle primitives (`index_select`, `index_add`,
/// host-side box geometry; chunked over RoIs under 64 MiB per temporary):
/// what any device without a RoIAlign kernel runs, on any float dtype.
/// Public as `engine::ops::reference::roi_align`.
///
/// # Errors
/// As [`super::roi_align`].
pub fn reference(
    input: &Tensor,
    rois: &Tensor,
    output_size: (usize, usize),
    spatial_scale: f64,
    sampling_ratio: usize,
    aligned: bool,
) -> Result<Tensor> {
    let op = RoiAlign::new(input, rois, output_size, spatial_scale, sampling_ratio, aligned)?;
    roi_align(input, rois, op, MAX_CHUNK_BYTES)
}

/// RoIAlign as [`super::roi_align`] computes it, from candle primitives on
/// `input`'s device, with temporaries bounded by `max_chunk_bytes` (see the
/// module doc). `op` holds the validated arguments.
///
/// # Errors
/// A batch index is not an integer in [0, B), or a tensor op fails.
pub(crate) fn roi_align(input: &Tensor, rois: &Tensor, op: RoiAlign, max_chunk_bytes: usize) -> Result<Tensor> {
    let plan = match geometry_dtype(input.dtype()) {
        DType::F64 => Plan::new::<f64>(op, rois, input.dtype(), max_chunk_bytes)?,
        _ => Plan::new::<f32>(op, rois, input.dtype(), max_chunk_bytes)?,
    };
    let input = input.contiguous()?;
    let pooled = plan.forward(&input.detach())?;
    input.apply_op2(&pooled, plan)
}

/// The dtype the box geometry is computed in: f64 for f64 input, f32 for
/// the others (as the CPU kernel for f32, and enough for f16/bf16).
fn geometry_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Consecutive RoIs of one image and their samples: `index[i]` is the flat
/// (H·W) offset of entry i's neighbour, `weight[i]` its bilinear weight
/// divided by the bin's sample count, `segment[i]` the chunk-local output
/// column (RoI-in-chunk · PH·PW + bin) it adds to.
#[derive(Debug)]
struct Chunk {
    batch: usize,
    rois: Range<usize>,
    index: Vec<u32>,
    weight: Vec<f64>,
    segment: Vec<u32>,
}

/// Everything the forward and backward need: the op's geometry, the dtype
/// and the chunks. Also the [`CustomOp2`] that attaches the backward.
#[derive(Debug)]
struct Plan {
    op: RoiAlign,
    dtype: DType,
    roi_count: usize,
    chunks: Vec<Chunk>,
}

impl Plan {
    /// The chunks for `rois` (K, 5), geometry computed in `G`.
    fn new<G: WithDType>(op: RoiAlign, rois: &Tensor, dtype: DType, max_chunk_bytes: usize) -> Result<Self> {
        let [_, c, h, w] = op.input_dims;
        let bins = op.output_size.0 * op.output_size.1;
        let rows = rois.to_dtype(G::DTYPE)?.flatten_all()?.to_vec1::<G>()?;
        if h * w > u32::MAX as usize || bins.saturating_mul(rows.len() / 5) > u32::MAX as usize {
            candle_core::bail!("roi_align: a {h}x{w} map or {} RoIs of {bins} bins do not fit u32 indices", rows.len() / 5);
        }
        // What one value of a temporary costs; a chunk holds C values per entry.
        let value_bytes = c.max(1) * dtype.size_in_bytes();
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut current: Option<Chunk> = None;
        for (r, row) in rows.chunks_exact(5).enumerate() {
            let g = op.geometry::<G>(row)?;
            let mut entries: Vec<(u32, f64, usize)> = Vec::new();
            op.for_each_sample(&g, |bin, s| {
                for (&p, &wt) in s.pos.iter().zip(&s.w) {
                    entries.push((p as u32, (wt / g.count).to_f64(), bin));
                }
            });
            let fits = |chunk: &Chunk| {
                let values = (chunk.index.len() + entries.len()).max((chunk.rois.len() + 1) * bins);
                chunk.batch == g.batch && values.saturating_mul(value_bytes) <= max_chunk_bytes
            };
            let mut chunk = match current.take() {
                Some(chunk) if fits(&chunk) => chunk,
                full => {
                    chunks.extend(full);
                    Chunk { batch: g.batch, rois: r..r, index: Vec::new(), weight: Vec::new(), segment: Vec::new() }
                }
            };
            let column = (chunk.rois.len() * bins) as u32;
            for (p, wt, bin) in entries {
                chunk.index.push(p);
                chunk.weight.push(wt);
                chunk.segment.push(column + bin as u32);
            }
            chunk.rois.end = r + 1;
            current = Some(chunk);
        }
        chunks.extend(current);
        Ok(Self { op, dtype, roi_count: rows.len() / 5, chunks })
    }

    /// A chunk's index tensors and weights (1, n) on `device`, in `self.dtype`.
    fn chunk_tensors(&self, chunk: &Chunk, device: &candle_core::Device) -> Result<(Tensor, Tensor, Tensor)> {
        let n = chunk.index.len();
        let index = Tensor::from_slice(&chunk.index, n, device)?;
        let segment = Tensor::from_slice(&chunk.segment, n, device)?;
        let weight = Tensor::from_slice(&chunk.weight, (1, n), device)?.to_dtype(self.dtype)?;
        Ok((index, segment, weight))
    }

    /// The pooled output (K, C, PH, PW) of a contiguous `input`, outside any graph.
    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let [_, c, h, w] = self.op.input_dims;
        let (ph, pw) = self.op.output_size;
        let device = input.device();
        if self.roi_count == 0 {
            return Tensor::zeros((0, c, ph, pw), self.dtype, device);
        }
        let mut pooled = Vec::with_capacity(self.chunks.len());
        for chunk in &self.chunks {
            let columns = Tensor::zeros((c, chunk.rois.len() * ph * pw), self.dtype, device)?;
            let columns = if chunk.index.is_empty() {
                columns
            } else {
                let (index, segment, weight) = self.chunk_tensors(chunk, device)?;
                let plane = input.get(chunk.batch)?.reshape((c, h * w))?;
                let weighted = plane.index_select(&index, 1)?.broadcast_mul(&weight)?;
                columns.index_add(&segment, &weighted, 1)?
            };
            pooled.push(columns.reshape((c, chunk.rois.len(), ph, pw))?.permute((1, 0, 2, 3))?);
        }
        // A fresh contiguous tensor: `cpu_fwd` and friends hand its storage on.
        Tensor::cat(&pooled, 0)?.contiguous()
    }

    /// The input gradient (B, C, H, W) for `grad` (K, C, PH, PW): per image,
    /// a chain of `index_add`s over its chunks in RoI order.
    fn backward(&self, grad: &Tensor) -> Result<Tensor> {
        let [b, c, h, w] = self.op.input_dims;
        let bins = self.op.output_size.0 * self.op.output_size.1;
        let device = grad.device();
        let grad = grad.contiguous()?;
        let mut planes: Vec<Tensor> = (0..b).map(|_| Tensor::zeros((c, h * w), self.dtype, device)).collect::<Result<_>>()?;
        for chunk in self.chunks.iter().filter(|chunk| !chunk.index.is_empty()) {
            let (index, segment, weight) = self.chunk_tensors(chunk, device)?;
            let columns = grad.narrow(0, chunk.rois.start, chunk.rois.len())?.permute((1, 0, 2, 3))?.reshape((c, chunk.rois.len() * bins))?;
            let spread = columns.index_select(&segment, 1)?.broadcast_mul(&weight)?;
            planes[chunk.batch] = planes[chunk.batch].index_add(&index, &spread, 1)?;
        }
        Tensor::stack(&planes, 0)?.reshape((b, c, h, w))
    }
}

/// The pooled result handed on as the op's output: `pooled` was made by
/// [`Plan::forward`] as a fresh contiguous tensor, so its whole storage is
/// the result.
fn pass_through<S: BackendStorage>(pooled: &S, layout: &Layout) -> Result<(S, Shape)> {
    if layout.start_offset() != 0 || !layout.is_contiguous() {
        candle_core::bail!("roi_align (composed): the pooled result must be a fresh contiguous tensor");
    }
    Ok((pooled.try_clone(layout)?, layout.shape().clone()))
}

/// `apply_op2(input, pooled)`: returns `pooled` and gives `input` the
/// RoIAlign gradient ([`Plan::backward`]); the boxes are constants.
impl CustomOp2 for Plan {
    fn name(&self) -> &'static str {
        "roi_align_composed"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, pooled: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        pass_through(pooled, layout)
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout, pooled: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        pass_through(pooled, layout)
    }

    fn metal_fwd(&self, _: &MetalStorage, _: &Layout, pooled: &MetalStorage, layout: &Layout) -> Result<(MetalStorage, Shape)> {
        pass_through(pooled, layout)
    }

    fn bwd(&self, _input: &Tensor, _pooled: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.backward(grad_res)?), None))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::random_tensor;
    use candle_core::{Device, Var};

    /// RoIs of both images, interleaved, of every kind (inside, partly
    /// outside, entirely outside, tiny, large, empty), for an 8×10 map at
    /// spatial scale 0.5.
    fn rois() -> Tensor {
        let rows: [[f64; 5]; 9] = [
            [0.0, 2.0, 3.0, 12.0, 11.0],
            [0.0, -6.0, -4.0, 7.0, 9.0],
            [1.0, 9.0, 6.0, 27.0, 22.0],
            [1.0, 5.2, 6.1, 5.6, 6.3],
            [0.0, -2.0, -2.0, 22.0, 18.0],
            [1.0, 30.0, 30.0, 40.0, 40.0],
            [1.0, 1.0, 1.0, 15.0, 13.0],
            [0.0, 4.0, 4.0, 4.0, 4.0],
            [0.0, 0.0, 0.0, 20.0, 16.0],
        ];
        Tensor::new(&rows, &Device::Cpu).unwrap()
    }

    /// Output and input gradient of `sum(roi_align(x) * w)` with the given bound.
    fn run(x: &Tensor, bound: usize, sampling_ratio: usize, aligned: bool) -> (Tensor, Tensor) {
        let xv = Var::from_tensor(x).unwrap();
        let op = RoiAlign::new(x, &rois(), (3, 4), 0.5, sampling_ratio, aligned).unwrap();
        let y = roi_align(xv.as_tensor(), &rois(), op, bound).unwrap();
        let w = random_tensor(y.dims(), 5).to_dtype(x.dtype()).unwrap();
        let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        (y, grads.get(&xv).unwrap().clone())
    }

    fn bits(t: &Tensor) -> Vec<u64> {
        t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn chunks_respect_the_bound_and_cover_the_rois_in_order() {
        let x = random_tensor(&[2, 3, 8, 10], 1);
        let op = RoiAlign::new(&x, &rois(), (3, 4), 0.5, 0, true).unwrap();
        let bound = 3 * 8 * 40; // f64, C = 3: 40 entries per chunk
        let plan = Plan::new::<f64>(op, &rois(), DType::F64, bound).unwrap();
        assert!(plan.chunks.len() > 4, "{} chunks", plan.chunks.len());
        let mut next = 0;
        for chunk in &plan.chunks {
            assert_eq!(chunk.rois.start, next);
            next = chunk.rois.end;
            let batches: Vec<f64> = rois().get(chunk.rois.start).unwrap().to_vec1::<f64>().unwrap();
            assert_eq!(batches[0] as usize, chunk.batch);
            let values = chunk.index.len().max(chunk.rois.len() * 12);
            assert!(values * 3 * 8 <= bound || chunk.rois.len() == 1, "{chunk:?}");
            assert!(chunk.segment.iter().all(|&s| (s as usize) < chunk.rois.len() * 12));
        }
        assert_eq!(next, 9);
        let whole = Plan::new::<f64>(op, &rois(), DType::F64, MAX_CHUNK_BYTES).unwrap();
        // Unbounded, only image changes split: 0,0 | 1,1 | 0 | 1,1 | 0,0.
        assert_eq!(whole.chunks.len(), 5);
    }

    #[test]
    fn chunked_equals_unchunked_bitwise() {
        for dtype in [DType::F32, DType::F64] {
            let x = random_tensor(&[2, 3, 8, 10], 2).to_dtype(dtype).unwrap();
            for (sampling_ratio, aligned) in [(0, true), (2, false)] {
                let (y_whole, g_whole) = run(&x, usize::MAX, sampling_ratio, aligned);
                for bound in [1, 3 * dtype.size_in_bytes() * 40] {
                    let (y, g) = run(&x, bound, sampling_ratio, aligned);
                    assert_eq!(bits(&y), bits(&y_whole), "{dtype:?} bound {bound}: forward");
                    assert_eq!(bits(&g), bits(&g_whole), "{dtype:?} bound {bound}: backward");
                }
                let nonzero = g_whole.abs().unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_vec0::<f64>().unwrap();
                assert!(nonzero > 0.1);
            }
        }
    }

    #[test]
    fn backward_equals_the_kernel_bitwise_and_forward_to_rounding() {
        for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
            let x = random_tensor(&[2, 3, 8, 10], 3).to_dtype(dtype).unwrap();
            for (sampling_ratio, aligned) in [(0, true), (2, true), (0, false)] {
                let (y, g) = run(&x, 1, sampling_ratio, aligned);
                let xv = Var::from_tensor(&x).unwrap();
                let yk = super::super::roi_align(xv.as_tensor(), &rois(), (3, 4), 0.5, sampling_ratio, aligned).unwrap();
                let w = random_tensor(yk.dims(), 5).to_dtype(dtype).unwrap();
                let gk = (&yk * &w).unwrap().sum_all().unwrap().backward().unwrap();
                assert_eq!(bits(&g), bits(gk.get(&xv).unwrap()), "{dtype:?}: input gradient");
                let diff = (y.to_dtype(DType::F64).unwrap() - yk.to_dtype(DType::F64).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
                let diff = diff.to_vec0::<f64>().unwrap();
                assert!(diff < tol, "{dtype:?}: forward differs by {diff}");
            }
        }
    }

    #[test]
    fn half_precision_runs_and_follows_f32() {
        let x = random_tensor(&[2, 3, 8, 10], 4);
        let op = RoiAlign::new(&x, &rois(), (3, 4), 0.5, 0, true).unwrap();
        let want = roi_align(&x.to_dtype(DType::F32).unwrap(), &rois(), op, MAX_CHUNK_BYTES).unwrap();
        for dtype in [DType::BF16, DType::F16] {
            let xh = Var::from_tensor(&x.to_dtype(dtype).unwrap()).unwrap();
            let y = roi_align(xh.as_tensor(), &rois(), op, MAX_CHUNK_BYTES).unwrap();
            assert_eq!(y.dtype(), dtype);
            let diff = (y.to_dtype(DType::F32).unwrap() - &want).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
            // bf16 keeps 8 significant bits: inputs and sums are off by ~2^-8.
            assert!(diff < 0.02, "{dtype:?}: {diff}");
            let g = y.sum_all().unwrap().backward().unwrap();
            assert_eq!(g.get(&xh).unwrap().dtype(), dtype);
        }
    }

    #[test]
    fn empty_roi_list_gives_empty_output_and_zero_gradient() {
        let x = Var::from_tensor(&random_tensor(&[1, 2, 4, 4], 1)).unwrap();
        let r = Tensor::zeros((0, 5), DType::F64, &Device::Cpu).unwrap();
        let op = RoiAlign::new(x.as_tensor(), &r, (7, 7), 0.25, 0, true).unwrap();
        let y = roi_align(x.as_tensor(), &r, op, MAX_CHUNK_BYTES).unwrap();
        assert_eq!(y.dims(), &[0, 2, 7, 7]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(&x).unwrap();
        assert_eq!(g.dims(), &[1, 2, 4, 4]);
        assert_eq!(g.abs().unwrap().sum_all().unwrap().to_vec0::<f64>().unwrap(), 0.0);
    }
}
