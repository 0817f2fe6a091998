//! Batches: stacking per-sample (C, H, W) buffers into one tensor.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Stacks per-sample (C, H, W) f32 buffers into a (B, C, H, W) tensor on
/// `device` (B = `samples.len()`; an empty slice gives a (0, C, H, W) tensor).
///
/// # Errors
/// [`Error::ShapeMismatch`] naming the sample whose buffer is not C·H·W long;
/// [`Error::Candle`] if the tensor cannot be created on `device`.
pub fn stack_chw<S: AsRef<[f32]>>(samples: &[S], chw: (usize, usize, usize), device: &Device) -> Result<Tensor> {
    let (c, h, w) = chw;
    let mut flat = Vec::with_capacity(samples.len() * c * h * w);
    for (index, sample) in samples.iter().enumerate() {
        let sample = sample.as_ref();
        if sample.len() != c * h * w {
            return Err(Error::ShapeMismatch { what: "sample pixels", expected: "C * H * W values per sample", found: vec![index, sample.len(), c, h, w] });
        }
        flat.extend_from_slice(sample);
    }
    Ok(Tensor::from_vec(flat, (samples.len(), c, h, w), device)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn samples_stack_along_a_new_first_axis() {
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let b: Vec<f32> = (12..24).map(|v| v as f32).collect();
        let t = stack_chw(&[a.as_slice(), b.as_slice()], (3, 2, 2), &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3, 2, 2]);
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), (0..24).map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(stack_chw::<Vec<f32>>(&[], (3, 2, 2), &Device::Cpu).unwrap().dims(), &[0, 3, 2, 2]);
        let err = stack_chw(&[a, vec![0.0; 11]], (3, 2, 2), &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { ref found, .. } if found[..2] == [1, 11]), "{err}");
    }
}
