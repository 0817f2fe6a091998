//! Per-tensor comparison of the self-test: the largest absolute difference
//! and the same relative to the reference tensor's largest magnitude.
//!
//! Why relative to the largest magnitude and not element by element: a
//! gradient holds many values near zero whose element-wise relative error
//! is noise (a rounding difference of 1e-9 on a value of 1e-8); what a
//! kernel bug changes is the tensor as a whole, at the scale of its values.
//! A caller can floor that scale ([`diff`]'s `min_scale`) for tensors that
//! are zero in exact arithmetic and hold only rounding noise.

use candle_core::{DType, Device, Tensor};

use super::SelftestError;

/// The difference of a candidate tensor from its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorDiff {
    /// max |candidate - reference| over the elements.
    pub max_abs: f64,
    /// `max_abs / max |reference|` (0 when both are all zero, infinite when
    /// only the reference is).
    pub max_rel: f64,
}

impl TensorDiff {
    /// Whether the difference is within `tolerance` (on `max_rel`). A
    /// non-finite difference (NaN or infinity on either side) never is.
    pub fn within(&self, tolerance: f64) -> bool {
        self.max_abs.is_finite() && self.max_rel.is_finite() && self.max_rel <= tolerance
    }
}

/// The values of `t` as f64 on the CPU, row-major.
fn host_values(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
}

/// The largest magnitude of `t`'s values (0 for an empty tensor).
///
/// # Errors
/// A value cannot be read back.
pub fn max_magnitude(t: &Tensor) -> candle_core::Result<f64> {
    Ok(host_values(t)?.iter().fold(0f64, |m, v| m.max(v.abs())))
}

/// Compares `candidate` (any device) with `reference`, element by element;
/// the relative error is to `max(max |reference|, min_scale)`.
///
/// # Errors
/// [`SelftestError::ShapeMismatch`] when the shapes differ (`what` names the
/// tensor); a tensor error when a value cannot be read back.
pub fn diff(what: &str, candidate: &Tensor, reference: &Tensor, min_scale: f64) -> Result<TensorDiff, SelftestError> {
    if candidate.dims() != reference.dims() {
        return Err(SelftestError::ShapeMismatch { what: what.to_string(), candidate: candidate.dims().to_vec(), reference: reference.dims().to_vec() });
    }
    let (c, r) = (host_values(candidate)?, host_values(reference)?);
    let mut max_abs = 0f64;
    let mut scale = min_scale;
    for (a, b) in c.iter().zip(&r) {
        if !a.is_finite() || !b.is_finite() {
            return Ok(TensorDiff { max_abs: f64::NAN, max_rel: f64::NAN });
        }
        max_abs = max_abs.max((a - b).abs());
        scale = scale.max(b.abs());
    }
    let max_rel = if max_abs == 0.0 {
        0.0
    } else if scale == 0.0 {
        f64::INFINITY
    } else {
        max_abs / scale
    };
    Ok(TensorDiff { max_abs, max_rel })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn relative_error_is_to_the_largest_reference_value() {
        let d = diff("x", &t(&[1.0, 2.0, 4.5]), &t(&[1.0, 2.5, 5.0]), 0.0).unwrap();
        assert_eq!(d.max_abs, 0.5);
        assert_eq!(d.max_rel, 0.1);
        assert!(d.within(0.1) && !d.within(0.099));
        // A floor above the tensor's own scale takes its place.
        let d = diff("x", &t(&[1.0, 2.0, 4.5]), &t(&[1.0, 2.5, 5.0]), 50.0).unwrap();
        assert_eq!(d.max_rel, 0.01);
    }

    #[test]
    fn equal_tensors_pass_any_tolerance_and_zero_scale_is_infinite() {
        let d = diff("x", &t(&[0.0, 3.0]), &t(&[0.0, 3.0]), 0.0).unwrap();
        assert_eq!((d.max_abs, d.max_rel), (0.0, 0.0));
        assert!(d.within(0.0));
        let d = diff("x", &t(&[1e-30]), &t(&[0.0]), 0.0).unwrap();
        assert!(d.max_rel.is_infinite() && !d.within(1.0));
    }

    #[test]
    fn non_finite_values_never_pass() {
        let d = diff("x", &t(&[f32::NAN, 1.0]), &t(&[1.0, 1.0]), 0.0).unwrap();
        assert!(!d.within(f64::MAX));
        let d = diff("x", &t(&[1.0]), &t(&[f32::INFINITY]), 0.0).unwrap();
        assert!(!d.within(f64::MAX));
    }

    #[test]
    fn shape_mismatch_is_a_typed_error_naming_the_tensor() {
        let err = diff("logits", &t(&[1.0, 2.0]), &t(&[1.0]), 0.0).unwrap_err();
        assert!(matches!(err, SelftestError::ShapeMismatch { .. }));
        assert!(err.to_string().contains("logits"), "{err}");
    }
}
