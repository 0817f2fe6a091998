//! Fused CPU kernels behind the op layer (candle-notes.md §5: composed candle
//! ops on the CPU allocate a fresh output per primitive, run small batched
//! GEMMs at ~14 GFLOP/s and reduce slowly over non-last dimensions).
//!
//! Each kernel is a candle `CustomOp` whose backward is another `CustomOp`
//! computing all input gradients in one pass. Gradient tensors are detached,
//! as candle detaches every gradient it computes by default (`backprop.rs`,
//! `CANDLE_GRAD_DO_NOT_DETACH`): otherwise each parameter gradient would keep
//! the activation and dY it was computed from alive until the optimizer step
//! (about 0.5 GB for ViT-Tiny at batch 32). Gradient ops have no backward. Kernels run in f32 (the training dtype) and f64
//! (the finite-difference tests); anything else goes to the composed path.
//!
//! Shapes: R rows (flattened leading dims), D channels, B batch, H heads,
//! N queries, M keys, d head dim; the convolutions' own in their files.

pub(crate) mod attention;
pub(crate) mod conv2d;
pub(crate) mod conv_transpose2d;
pub(crate) mod gelu;
mod image_batch;
pub(crate) mod layer_norm;
pub(crate) mod layer_norm_2d;
pub(crate) mod linear;
pub(crate) mod max_pool2d;
pub(crate) mod qkv_attention;
mod real;

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

pub(crate) use real::Real;

/// Whether the fused CPU kernels can run on these tensors: the kernel switch
/// allows them, and all are on the CPU and of one float dtype the kernels
/// support.
pub(crate) fn fused_eligible(tensors: &[&Tensor]) -> bool {
    if !super::kernels::fused_allowed() {
        return false;
    }
    let Some(first) = tensors.first() else { return false };
    let dtype = first.dtype();
    matches!(dtype, DType::F32 | DType::F64) && tensors.iter().all(|t| t.device().is_cpu() && t.dtype() == dtype)
}

/// The elements of a contiguous layout as a slice of `storage`.
///
/// # Errors
/// The layout is not contiguous or the dtype is not `T`.
pub(crate) fn contiguous_slice<'a, T: Real>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused cpu kernel: input is not contiguous".into()))?;
    data.get(start..end).ok_or_else(|| candle_core::Error::Msg("fused cpu kernel: layout out of bounds".into()))
}

/// Threads a kernel may use (rayon's pool, which candle's GEMMs use too).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// A strided matrix inside a slice: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    /// The elements, starting at (0, 0).
    pub data: &'a [T],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// The view, if a (rows, cols) matrix at these strides fits in its
    /// slice: what makes indexing it inside the kernels safe from panics.
    ///
    /// # Errors
    /// The last element lies outside the slice.
    pub fn checked(self, rows: usize, cols: usize) -> Result<Self> {
        if rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len() {
            Ok(self)
        } else {
            Err(candle_core::Error::Msg(format!("fused cpu kernel: a ({rows}, {cols}) view does not fit its buffer")))
        }
    }
}

/// `dst = beta * lhs @ rhs`, plus the old `dst` when `accumulate`: `lhs` is
/// (m, k), `rhs` (k, n), `dst` (m, n) row-major with row stride `dst_rs`.
/// Runs on `par` threads (1: on the calling thread).
///
/// # Errors
/// A matrix does not fit in its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    beta: T,
    accumulate: bool,
    par: usize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    // The last element each matrix touches must be inside its slice: this is
    // what makes the unchecked GEMM below sound.
    let fits = |len: usize, rows: usize, cols: usize, rs: usize, cs: usize| rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len;
    if !fits(dst.len(), m, n, dst_rs, 1) || !fits(lhs.data.len(), m, k, lhs.rs, lhs.cs) || !fits(rhs.data.len(), k, n, rhs.rs, rhs.cs) {
        return Err(candle_core::Error::Msg(format!("fused cpu gemm: ({m}x{k}) @ ({k}x{n}) does not fit its buffers")));
    }
    let as_isize = |v: usize| isize::try_from(v).map_err(|_| candle_core::Error::Msg("fused cpu gemm: stride overflow".into()));
    let (dst_rs, lhs_rs, lhs_cs, rhs_rs, rhs_cs) = (as_isize(dst_rs)?, as_isize(lhs.rs)?, as_isize(lhs.cs)?, as_isize(rhs.rs)?, as_isize(rhs.cs)?);
    let parallelism = if par > 1 { gemm::Parallelism::Rayon(par) } else { gemm::Parallelism::None };
    // SAFETY: every index the GEMM reads or writes was checked above to lie
    // inside the corresponding slice; `dst` is borrowed mutably and cannot
    // alias `lhs` or `rhs`; T is f32 or f64, which `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs,
            accumulate,
            lhs.data.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.data.as_ptr(),
            rhs_cs,
            rhs_rs,
            T::one(),
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// Runs `f` compiled for the best SIMD level of this CPU (AVX-512, AVX2+FMA,
/// or baseline), so plain loops inside it are auto-vectorised wide.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Test support: runs a fused kernel and its composed reference on the same
/// inputs and compares outputs and all input gradients.
#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used)]
    use candle_core::{DType, Result, Tensor, Var};

    use crate::testing::random_tensor;

    /// Largest |a - b| over the largest |b|: the error relative to the
    /// tensor's scale (elementwise relative error is meaningless where a
    /// sum cancels to ~0).
    fn scaled_error(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
        a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Output and gradients of `sum(f(inputs) * w)` for a fixed random `w`.
    fn run<F: Fn(&[Tensor]) -> Result<Tensor>>(inputs: &[Tensor], dtype: DType, f: &F) -> Vec<Tensor> {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()).collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&tensors).unwrap();
        let w = random_tensor(out.dims(), 999).to_dtype(dtype).unwrap();
        let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let mut all = vec![out];
        all.extend(vars.iter().map(|v| grads.get(v).unwrap().clone()));
        all
    }

    /// Asserts the fused and composed versions agree in f32 (within `tol_f32`
    /// of the scale) and f64 (within `tol_f64`), forward and backward.
    pub(crate) fn assert_matches_composed<F, G>(inputs: &[Tensor], fused: F, composed: G, tol_f32: f64, tol_f64: f64)
    where
        F: Fn(&[Tensor]) -> Result<Tensor>,
        G: Fn(&[Tensor]) -> Result<Tensor>,
    {
        for (dtype, tol) in [(DType::F32, tol_f32), (DType::F64, tol_f64)] {
            let got = run(inputs, dtype, &fused);
            let want = run(inputs, dtype, &composed);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.dims(), w.dims(), "{dtype:?} tensor {i}");
                assert_eq!(g.dtype(), dtype);
                let err = scaled_error(g, w);
                // Tensor 0 is the output, tensor i > 0 the gradient of input i - 1.
                assert!(err <= tol, "{dtype:?} tensor {i}: scaled error {err} > {tol}");
            }
        }
    }
}
