//! In-place, single-pass CPU kernels for optimizer updates.
//!
//! candle's own optimizers spend about ten tensor ops (each a fresh
//! allocation) per parameter and step. On CPU the update of a parameter is
//! an elementwise loop over a few contiguous slices, so the optimizers here
//! run it as candle `InplaceOp2`/`InplaceOp3` kernels: one pass per mutated
//! tensor (parameter, moment buffers), no temporaries. Other devices and
//! dtypes use the composed tensor-op path in each optimizer.
//!
//! A kernel only supplies the per-element arithmetic ([`Kernel2::elem`],
//! [`Kernel3::elem`]) generically over [`Elem`] (f32, f64): computing in the
//! tensor's own precision, with scalars rounded to it first, is what PyTorch's
//! CPU kernels do, so f32 results match PyTorch to an ulp or two.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout};
use rayon::prelude::*;

/// Below this many elements a parameter is updated on the calling thread:
/// splitting a few thousand multiply-adds across threads costs more in
/// dispatch than it saves (ViT-Tiny's biases and norms are 192 elements; its
/// weight matrices are 37k to 590k).
const MIN_PARALLEL_LEN: usize = 1 << 15;

/// Rayon chunk size for large parameters.
const CHUNK: usize = 1 << 13;

/// A floating-point element type the fused kernels run on.
pub(crate) trait Elem:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    /// Rounds an f64 scalar to this precision (as PyTorch casts a Python
    /// float scalar to the tensor's dtype).
    fn of(x: f64) -> Self;
    /// Square root in this precision.
    fn sqrt(self) -> Self;
}

impl Elem for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Elem for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// `dst[i] = elem(dst[i], src[i])`.
pub(crate) trait Kernel2: Sync {
    /// Name used in candle error messages.
    const NAME: &'static str;
    /// The update of one element.
    fn elem<T: Elem>(&self, dst: T, src: T) -> T;
}

/// `dst[i] = elem(dst[i], a[i], b[i])`.
pub(crate) trait Kernel3: Sync {
    /// Name used in candle error messages.
    const NAME: &'static str;
    /// The update of one element.
    fn elem<T: Elem>(&self, dst: T, a: T, b: T) -> T;
}

/// Adapts a [`Kernel2`] to candle's `InplaceOp2`.
pub(crate) struct Fused2<K>(pub K);

/// Adapts a [`Kernel3`] to candle's `InplaceOp3`.
pub(crate) struct Fused3<K>(pub K);

fn span<'a, T>(v: &'a [T], l: &Layout, name: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) if b <= v.len() => Ok(&v[a..b]),
        _ => candle_core::bail!("{name}: operand is not contiguous"),
    }
}

fn span_mut<'a, T>(v: &'a mut [T], l: &Layout, name: &str) -> candle_core::Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) if b <= v.len() => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{name}: operand is not contiguous"),
    }
}

fn check_len(name: &str, d: usize, s: usize) -> candle_core::Result<()> {
    if d != s {
        candle_core::bail!("{name}: operand lengths differ ({d} vs {s})")
    }
    Ok(())
}

fn run2<T: Elem, K: Kernel2>(k: &K, d: &mut [T], s: &[T]) -> candle_core::Result<()> {
    check_len(K::NAME, d.len(), s.len())?;
    if d.len() < MIN_PARALLEL_LEN {
        d.iter_mut().zip(s).for_each(|(x, &y)| *x = k.elem(*x, y));
    } else {
        d.par_chunks_mut(CHUNK)
            .zip(s.par_chunks(CHUNK))
            .for_each(|(dc, sc)| {
                dc.iter_mut().zip(sc).for_each(|(x, &y)| *x = k.elem(*x, y));
            });
    }
    Ok(())
}

fn run3<T: Elem, K: Kernel3>(k: &K, d: &mut [T], a: &[T], b: &[T]) -> candle_core::Result<()> {
    check_len(K::NAME, d.len(), a.len())?;
    check_len(K::NAME, d.len(), b.len())?;
    if d.len() < MIN_PARALLEL_LEN {
        d.iter_mut()
            .zip(a)
            .zip(b)
            .for_each(|((x, &y), &z)| *x = k.elem(*x, y, z));
    } else {
        d.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((dc, ac), bc)| {
                dc.iter_mut()
                    .zip(ac)
                    .zip(bc)
                    .for_each(|((x, &y), &z)| *x = k.elem(*x, y, z));
            });
    }
    Ok(())
}

impl<K: Kernel2> InplaceOp2 for Fused2<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                run2(&self.0, span_mut(d, l1, K::NAME)?, span(s, l2, K::NAME)?)
            }
            (CpuStorage::F64(d), CpuStorage::F64(s)) => {
                run2(&self.0, span_mut(d, l1, K::NAME)?, span(s, l2, K::NAME)?)
            }
            (d, s) => candle_core::bail!(
                "{}: unsupported dtypes {:?}/{:?}",
                K::NAME,
                d.dtype(),
                s.dtype()
            ),
        }
    }
}

impl<K: Kernel3> InplaceOp3 for Fused3<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        match (s1, s2, s3) {
            (CpuStorage::F32(d), CpuStorage::F32(a), CpuStorage::F32(b)) => run3(
                &self.0,
                span_mut(d, l1, K::NAME)?,
                span(a, l2, K::NAME)?,
                span(b, l3, K::NAME)?,
            ),
            (CpuStorage::F64(d), CpuStorage::F64(a), CpuStorage::F64(b)) => run3(
                &self.0,
                span_mut(d, l1, K::NAME)?,
                span(a, l2, K::NAME)?,
                span(b, l3, K::NAME)?,
            ),
            (d, a, b) => candle_core::bail!(
                "{}: unsupported dtypes {:?}/{:?}/{:?}",
                K::NAME,
                d.dtype(),
                a.dtype(),
                b.dtype()
            ),
        }
    }
}

/// True when `t` can be updated by the fused CPU kernels (and the kernel
/// switch allows them).
pub(crate) fn fusable(t: &candle_core::Tensor) -> bool {
    crate::ops::fused_allowed()
        && t.device().is_cpu()
        && t.is_contiguous()
        && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::{Device, Tensor};

    struct AxPlusY(f64);
    impl Kernel2 for AxPlusY {
        const NAME: &'static str = "axpy";
        fn elem<T: Elem>(&self, d: T, s: T) -> T {
            d + T::of(self.0) * s
        }
    }

    struct Fma;
    impl Kernel3 for Fma {
        const NAME: &'static str = "fma";
        fn elem<T: Elem>(&self, d: T, a: T, b: T) -> T {
            d + a * b
        }
    }

    #[test]
    fn fused_kernels_update_in_place_small_and_large() {
        for n in [5usize, MIN_PARALLEL_LEN + 3] {
            let d = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap();
            let s = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
            d.inplace_op2(&s, &Fused2(AxPlusY(2.0))).unwrap();
            let v: Vec<f32> = d.to_vec1().unwrap();
            assert_eq!(v[0], 2.0);
            assert_eq!(v[n - 1], (n - 1) as f32 + 2.0);
            d.inplace_op3(&s, &s, &Fused3(Fma)).unwrap();
            let v: Vec<f32> = d.to_vec1().unwrap();
            assert_eq!(v[n - 1], (n - 1) as f32 + 3.0);
        }
    }

    #[test]
    fn offset_views_are_respected_and_strided_views_rejected() {
        let base = Tensor::arange(0f64, 10.0, &Device::Cpu).unwrap();
        let view = base.narrow(0, 4, 3).unwrap(); // contiguous, offset 4
        let ones = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu).unwrap();
        view.inplace_op2(&ones, &Fused2(AxPlusY(1.0))).unwrap();
        let v: Vec<f64> = base.to_vec1().unwrap();
        assert_eq!(v, vec![0., 1., 2., 3., 5., 6., 7., 7., 8., 9.]);

        let m = Tensor::zeros((2, 3), candle_core::DType::F64, &Device::Cpu).unwrap();
        let src_t = Tensor::ones((3, 2), candle_core::DType::F64, &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        assert!(!fusable(&src_t));
        let e = m
            .inplace_op2(&src_t, &Fused2(AxPlusY(1.0)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not contiguous"), "{e}");
    }

    #[test]
    fn mismatched_dtypes_are_errors() {
        let d = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let s = Tensor::zeros(3, candle_core::DType::F64, &Device::Cpu).unwrap();
        assert!(d.inplace_op2(&s, &Fused2(AxPlusY(1.0))).is_err());
    }
}
