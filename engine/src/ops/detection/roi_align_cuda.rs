//! The CUDA kernels of [`super::RoiAlign`] (forward) and its input gradient
//! (backward), f32, compiled from the CUDA C source below by NVRTC once per
//! process and loaded once per device (candle caches the module by name).
//!
//! Same results as the CPU kernel in `roi_align.rs` by construction where it
//! matters:
//! - the per-RoI geometry (batch index check, `aligned` shift, minimum RoI
//!   size, bin size, `sampling_ratio` / adaptive grid, sample count) is not
//!   re-implemented in CUDA: the host computes it with the CPU kernel's own
//!   [`super::RoiAlign::geometry`] and uploads it, 8 floats per RoI;
//! - the kernel evaluates the sample coordinates, torchvision's bilinear
//!   border rules and the per-bin sum in the CPU kernel's order, and is
//!   compiled with `--fmad=false` so no multiply-add is contracted: the
//!   forward matches the CPU kernel to the last bit or nearly;
//! - the backward spreads each output gradient over the same four
//!   neighbours with the same averaged weights, adding with `atomicAdd`
//!   (one thread per output element; several RoIs and bins share input
//!   pixels), so only the order of the additions differs from the CPU's.
//!
//! Cost of the shared geometry: each call copies the RoIs (K × 5 floats) to
//! the host and the geometry back, a synchronisation of the stream; RoIAlign
//! runs a handful of times a step, on a few hundred RoIs.
//!
//! The PTX targets `compute_75`, the oldest architecture CUDA 13 supports,
//! so the driver JIT-compiles it for whatever GPU runs it (the kernels use
//! nothing newer than float `atomicAdd`).
//!
//! Shapes as in `roi_align.rs`: input (B, C, H, W), rois (K, 5), output and
//! grad_output (K, C, PH, PW).

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result, Shape, Tensor};

use super::{RoiAlign, RoiGeometry};

/// The CUDA C source of both kernels. `geom` holds 8 floats per RoI:
/// batch index, start_h, start_w, bin_h, bin_w, grid_h, grid_w and the
/// averaging count (all exact in f32 for any realistic map).
pub(super) const SOURCE: &str = r#"
#define GEOM 8

// torchvision's bilinear_interpolate, as roi_align.rs's `bilinear`: false
// when (y, x) is outside [-1, H] x [-1, W]; otherwise the four neighbours'
// offsets in an (H, W) plane and their weights.
__device__ __forceinline__ bool bilinear(int height, int width, float y, float x, int* pos, float* w) {
    if (y < -1.0f || y > (float)height || x < -1.0f || x > (float)width) {
        return false;
    }
    if (y <= 0.0f) y = 0.0f;
    if (x <= 0.0f) x = 0.0f;
    int y_low = (int)y;
    int x_low = (int)x;
    int y_high, x_high;
    if (y_low + 1 >= height) {
        y_low = height - 1;
        y_high = y_low;
        y = (float)y_low;
    } else {
        y_high = y_low + 1;
    }
    if (x_low + 1 >= width) {
        x_low = width - 1;
        x_high = x_low;
        x = (float)x_low;
    } else {
        x_high = x_low + 1;
    }
    float ly = y - (float)y_low;
    float lx = x - (float)x_low;
    float hy = 1.0f - ly;
    float hx = 1.0f - lx;
    pos[0] = y_low * width + x_low;
    pos[1] = y_low * width + x_high;
    pos[2] = y_high * width + x_low;
    pos[3] = y_high * width + x_high;
    w[0] = hy * hx;
    w[1] = hy * lx;
    w[2] = ly * hx;
    w[3] = ly * lx;
    return true;
}

// start + p * bin + (i + 0.5) * bin / grid, evaluated left to right.
__device__ __forceinline__ float sample_coord(float start, int p, float bin, int i, int grid) {
    return start + (float)p * bin + ((float)i + 0.5f) * bin / (float)grid;
}

// One thread per output element (k, c, py, px): the average of the bin's
// in-range bilinear samples, summed row-major as the CPU kernel does.
extern "C" __global__ void roi_align_fwd_f32(
    const float* input, const float* geom, float* out,
    int channels, int height, int width, int pooled_h, int pooled_w, unsigned int n) {
    unsigned int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int px = idx % pooled_w;
    int py = (idx / pooled_w) % pooled_h;
    int c = (idx / (pooled_w * pooled_h)) % channels;
    int k = idx / (pooled_w * pooled_h * channels);
    const float* g = geom + k * GEOM;
    int batch = (int)g[0];
    int grid_h = (int)g[5];
    int grid_w = (int)g[6];
    const float* plane = input + ((long long)batch * channels + c) * height * width;
    float acc = 0.0f;
    int pos[4];
    float w[4];
    for (int iy = 0; iy < grid_h; ++iy) {
        float y = sample_coord(g[1], py, g[3], iy, grid_h);
        for (int ix = 0; ix < grid_w; ++ix) {
            float x = sample_coord(g[2], px, g[4], ix, grid_w);
            if (bilinear(height, width, y, x, pos, w)) {
                acc += w[0] * plane[pos[0]] + w[1] * plane[pos[1]] + w[2] * plane[pos[2]] + w[3] * plane[pos[3]];
            }
        }
    }
    out[idx] = acc / g[7];
}

// One thread per grad_output element: spreads it over the samples' four
// neighbours with the averaged weights (w / count), atomically.
extern "C" __global__ void roi_align_bwd_f32(
    const float* grad_out, const float* geom, float* grad_in,
    int channels, int height, int width, int pooled_h, int pooled_w, unsigned int n) {
    unsigned int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int px = idx % pooled_w;
    int py = (idx / pooled_w) % pooled_h;
    int c = (idx / (pooled_w * pooled_h)) % channels;
    int k = idx / (pooled_w * pooled_h * channels);
    const float* g = geom + k * GEOM;
    int batch = (int)g[0];
    int grid_h = (int)g[5];
    int grid_w = (int)g[6];
    float count = g[7];
    float gb = grad_out[idx];
    float* plane = grad_in + ((long long)batch * channels + c) * height * width;
    int pos[4];
    float w[4];
    for (int iy = 0; iy < grid_h; ++iy) {
        float y = sample_coord(g[1], py, g[3], iy, grid_h);
        for (int ix = 0; ix < grid_w; ++ix) {
            float x = sample_coord(g[2], px, g[4], ix, grid_w);
            if (bilinear(height, width, y, x, pos, w)) {
                for (int j = 0; j < 4; ++j) {
                    atomicAdd(plane + pos[j], gb * (w[j] / count));
                }
            }
        }
    }
}
"#;

/// candle caches loaded modules per device under this name.
const MODULE: &str = "vitdet_roi_align";
/// The forward kernel's name in [`SOURCE`].
pub(super) const FORWARD: &str = "roi_align_fwd_f32";
/// The backward kernel's name in [`SOURCE`].
pub(super) const BACKWARD: &str = "roi_align_bwd_f32";
/// Floats per RoI in the uploaded geometry.
const GEOM: usize = 8;

/// The PTX of [`SOURCE`], compiled by NVRTC on first use and kept for the
/// life of the process (the outcome too: a failed compile is not retried).
///
/// # Errors
/// NVRTC failed (its log is in the message) or could not be loaded.
pub(super) fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let compiled = PTX.get_or_init(|| {
        // No fused multiply-add: the CPU kernel rounds every product.
        let opts = CompileOptions { arch: Some("compute_75"), fmad: Some(false), ..Default::default() };
        compile_ptx_with_opts(SOURCE, opts).map(|p| p.to_src()).map_err(|e| format!("{e}"))
    });
    match compiled {
        Ok(ptx) => Ok(ptx.as_str()),
        Err(e) => candle_core::bail!("roi_align: NVRTC could not compile the CUDA kernels: {e}"),
    }
}

/// Whether the CUDA kernel can run this op for `x`: an f32 tensor on a CUDA device.
pub(super) fn eligible(x: &Tensor) -> bool {
    x.device().is_cuda() && x.dtype() == DType::F32
}

/// The contiguous f32 data of a CUDA storage, or an error naming the operand.
fn contiguous_f32<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    let slice = s
        .as_cuda_slice::<f32>()
        .map_err(|_| candle_core::Error::Msg(format!("roi_align (cuda): {what} must be f32")))?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle_core::bail!("roi_align (cuda): {what} must be contiguous"),
    }
}

/// Reads the RoIs back, computes each one's geometry with the CPU kernel's
/// code (which also checks the batch indices) and uploads it.
fn upload_geometry(op: &RoiAlign, dev: &CudaDevice, rois: &CudaStorage, l: &Layout) -> Result<(CudaSlice<f32>, usize)> {
    let rows = dev.cuda_stream().clone_dtoh(&contiguous_f32(rois, l, "rois")?).w()?;
    let mut packed = Vec::with_capacity(rows.len() / 5 * GEOM);
    for row in rows.chunks_exact(5) {
        let g: RoiGeometry<f32> = op.geometry(row)?;
        packed.extend_from_slice(&[g.batch as f32, g.start_h, g.start_w, g.bin_h, g.bin_w, g.grid_h as f32, g.grid_w as f32, g.count]);
    }
    let k = packed.len() / GEOM;
    // No RoIs: a placeholder, as a zero-byte device allocation is an error.
    let geometry = if packed.is_empty() { dev.alloc_zeros::<f32>(GEOM)? } else { dev.cuda_stream().clone_htod(&packed).w()? };
    Ok((geometry, k))
}

/// An index that the kernels take as a C `int` or `unsigned int`.
fn as_kernel_int<T: TryFrom<usize>>(v: usize, what: &str) -> Result<T> {
    T::try_from(v).map_err(|_| candle_core::Error::Msg(format!("roi_align (cuda): {what} = {v} is too large for the kernel's 32-bit indices")))
}

/// Runs `kernel` over the `n` elements of the (K, C, PH, PW) side with
/// `src` (input or grad_output) and the geometry, writing into `dst`.
fn launch(op: &RoiAlign, dev: &CudaDevice, kernel: &str, src: &candle_core::cuda_backend::cudarc::driver::CudaView<'_, f32>, geometry: &CudaSlice<f32>, dst: &mut CudaSlice<f32>, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let [_, c, h, w] = op.input_dims;
    let (ph, pw) = op.output_size;
    let dims: [i32; 5] = [
        as_kernel_int(c, "channels")?,
        as_kernel_int(h, "height")?,
        as_kernel_int(w, "width")?,
        as_kernel_int(ph, "output height")?,
        as_kernel_int(pw, "output width")?,
    ];
    // The planes are indexed with 64 bits, everything else with 32.
    let n32: u32 = as_kernel_int(n, "elements")?;
    let func = dev.get_or_load_custom_func(kernel, MODULE, ptx()?)?;
    let mut args = func.builder();
    args.arg(src);
    args.arg(geometry);
    args.arg(dst);
    for d in &dims {
        args.arg(d);
    }
    args.arg(&n32);
    // SAFETY: the argument list matches the kernel's signature in SOURCE;
    // every index the kernel forms stays inside the buffers: idx < n =
    // K·C·PH·PW elements of the (K, C, PH, PW) side, k < K rows of the
    // geometry, and the four neighbours lie in the (batch, c) plane of the
    // (B, C, H, W) side, since the geometry's batch index was checked < B
    // and `bilinear` clamps to [0, H-1] × [0, W-1].
    unsafe { args.launch(LaunchConfig::for_num_elems(n32)) }.w()?;
    Ok(())
}

/// The forward on CUDA: (K, C, PH, PW) from input (B, C, H, W) and rois (K, 5).
pub(super) fn forward(op: &RoiAlign, input: &CudaStorage, l_input: &Layout, rois: &CudaStorage, l_rois: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &input.device;
    let x = contiguous_f32(input, l_input, "input")?;
    let (geometry, k) = upload_geometry(op, dev, rois, l_rois)?;
    let [_, c, _, _] = op.input_dims;
    let (ph, pw) = op.output_size;
    let n = k * c * ph * pw;
    // At least one element: a zero-byte device allocation is an error, and a
    // storage longer than its shape is fine.
    let mut out = dev.alloc_zeros::<f32>(n.max(1))?;
    launch(op, dev, FORWARD, &x, &geometry, &mut out, n)?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from((k, c, ph, pw))))
}

/// The input gradient on CUDA: (B, C, H, W) from grad_output (K, C, PH, PW) and rois (K, 5).
pub(super) fn backward(op: &RoiAlign, grad_out: &CudaStorage, l_grad: &Layout, rois: &CudaStorage, l_rois: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &grad_out.device;
    let go = contiguous_f32(grad_out, l_grad, "grad_output")?;
    let (geometry, k) = upload_geometry(op, dev, rois, l_rois)?;
    let [b, c, h, w] = op.input_dims;
    let (ph, pw) = op.output_size;
    let mut grad_in = dev.alloc_zeros::<f32>((b * c * h * w).max(1))?;
    launch(op, dev, BACKWARD, &go, &geometry, &mut grad_in, k * c * ph * pw)?;
    Ok((CudaStorage::wrap_cuda_slice(grad_in, dev.clone()), Shape::from(op.input_dims.to_vec())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::random_tensor;
    use candle_core::{Device, Var};

    /// Largest difference allowed between the CUDA and CPU kernels relative
    /// to the largest value compared: the forward sums in the same order
    /// (bit-equal up to the JIT's instruction choices), the backward only
    /// reorders additions (atomicAdd), both in f32.
    const TOLERANCE: f32 = 1e-5;

    #[test]
    fn kernel_source_compiles_with_nvrtc() {
        let ptx = ptx().unwrap();
        for kernel in [FORWARD, BACKWARD] {
            assert!(ptx.contains(&format!(".entry {kernel}")), "no entry point {kernel} in the PTX");
        }
        assert!(ptx.contains(".target sm_75"), "PTX is not for compute_75");
        assert!(ptx.contains("atom.global.add.f32") || ptx.contains("red.global.add.f32"), "backward has no float atomic add");
    }

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.to_device(&Device::Cpu).unwrap();
        let diff = (&a - b).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
        let scale = b.abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap().max(f32::MIN_POSITIVE);
        diff / scale
    }

    /// Forward and input gradient on GPU 0 against the CPU kernel, for the
    /// CPU tests' boxes (inside, partly outside, tiny, large, outside, empty)
    /// and every grid mode; skipped (with the reason printed) without a GPU.
    #[test]
    fn matches_the_cpu_kernel_forward_and_backward() {
        let gpu = match Device::new_cuda(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: no CUDA device ({})", e.to_string().lines().next().unwrap_or_default());
                return;
            }
        };
        let rows: [[f32; 5]; 7] = [
            [0.0, 2.0, 3.0, 12.0, 11.0],
            [1.0, -6.0, -4.0, 7.0, 9.0],
            [0.0, 9.0, 6.0, 27.0, 22.0],
            [1.0, 5.2, 6.1, 5.6, 6.3],
            [0.0, -2.0, -2.0, 22.0, 18.0],
            [1.0, 30.0, 30.0, 40.0, 40.0],
            [0.0, 4.0, 4.0, 4.0, 4.0],
        ];
        let rois = Tensor::new(&rows, &Device::Cpu).unwrap();
        let x = random_tensor(&[2, 3, 8, 10], 10).to_dtype(DType::F32).unwrap();
        let w = random_tensor(&[7, 3, 4, 5], 11).to_dtype(DType::F32).unwrap();
        for (sampling_ratio, aligned) in [(0, true), (2, true), (0, false)] {
            let run = |dev: &Device| {
                let xv = Var::from_tensor(&x.to_device(dev).unwrap()).unwrap();
                let y = super::super::roi_align(xv.as_tensor(), &rois.to_device(dev).unwrap(), (4, 5), 0.5, sampling_ratio, aligned).unwrap();
                let grads = (&y * &w.to_device(dev).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
                (y, grads.get(&xv).unwrap().clone())
            };
            let (y_cpu, g_cpu) = run(&Device::Cpu);
            let (y_gpu, g_gpu) = run(&gpu);
            assert!(y_gpu.device().is_cuda());
            let (fwd, bwd) = (max_rel_diff(&y_gpu, &y_cpu), max_rel_diff(&g_gpu, &g_cpu));
            assert!(fwd <= TOLERANCE, "forward differs by {fwd} (sampling_ratio {sampling_ratio}, aligned {aligned})");
            assert!(bwd <= TOLERANCE, "gradient differs by {bwd} (sampling_ratio {sampling_ratio}, aligned {aligned})");
        }
    }

    #[test]
    fn empty_roi_list_on_cuda() {
        let Ok(gpu) = Device::new_cuda(0) else {
            eprintln!("skipped: no CUDA device");
            return;
        };
        let x = Var::from_tensor(&Tensor::ones((1, 2, 4, 4), DType::F32, &gpu).unwrap()).unwrap();
        let r = Tensor::zeros((0, 5), DType::F32, &gpu).unwrap();
        let y = super::super::roi_align(x.as_tensor(), &r, (7, 7), 0.25, 0, true).unwrap();
        assert_eq!(y.dims(), &[0, 2, 7, 7]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(&x).unwrap().abs().unwrap().sum_all().unwrap().to_vec0::<f32>().unwrap();
        assert_eq!(g, 0.0);
    }
}
