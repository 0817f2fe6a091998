//! Stride-2 subsampling of a feature map: the P6 level of ViTDet's pyramid.
//!
//! detectron2 `modeling/backbone/fpn.py::LastLevelMaxPool` is
//! `F.max_pool2d(x, kernel_size=1, stride=2, padding=0)`. With a 1×1 window
//! the max is the single element, so the op is plain subsampling: output
//! `(floor((H - 1) / 2) + 1, floor((W - 1) / 2) + 1)`, element (i, j) =
//! input (2i, 2j). candle's `max_pool2d_with_stride(1, 2)` has no backward
//! when kernel ≠ stride (candle-notes.md §1), so this is composed from
//! `index_select`, whose backward (`index_add`) candle provides.
//!
//! Shapes: (N, C, H, W) → (N, C, ceil(H / 2), ceil(W / 2)).

use candle_core::{Result, Tensor};

/// `max_pool2d(x, kernel_size=1, stride=2)`: keeps rows and columns 0, 2, 4, ...
///
/// # Errors
/// If `x` is not rank 4 or has an empty spatial dimension.
pub fn max_pool2d_k1s2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4().map_err(|e| e.context("max_pool2d_k1s2 input must be (N, C, H, W)"))?;
    if h == 0 || w == 0 {
        candle_core::bail!("max_pool2d_k1s2: empty spatial dimensions {h}x{w}");
    }
    let even = |n: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..n as u32).step_by(2).collect();
        let len = idx.len();
        Tensor::from_vec(idx, len, x.device())
    };
    x.index_select(&even(h)?, 2)?.index_select(&even(w)?, 3)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::{check_gradients, random_tensor};
    use candle_core::Device;

    #[test]
    fn keeps_even_rows_and_columns() {
        // 3×5 map with value 10·row + col.
        let v: Vec<f32> = (0..15).map(|i| (10 * (i / 5) + i % 5) as f32).collect();
        let x = Tensor::from_vec(v, (1, 1, 3, 5), &Device::Cpu).unwrap();
        let y = max_pool2d_k1s2(&x).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 3]);
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 2.0, 4.0, 20.0, 22.0, 24.0]);
        // 1×1 stays 1×1; even sizes halve.
        assert_eq!(max_pool2d_k1s2(&Tensor::zeros((2, 3, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap().dims(), &[2, 3, 1, 1]);
        assert_eq!(max_pool2d_k1s2(&Tensor::zeros((1, 1, 16, 10), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap().dims(), &[1, 1, 8, 5]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 2, 5, 4], 3);
        check_gradients(&[x], |xs| max_pool2d_k1s2(&xs[0])).unwrap();
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(max_pool2d_k1s2(&random_tensor(&[2, 4, 4], 1)).is_err());
    }
}
