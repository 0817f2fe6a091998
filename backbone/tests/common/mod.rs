//! Shared by the backbone's reference tests: agreement with a PyTorch tensor.
#![allow(clippy::unwrap_used, dead_code)]

use candle_core::Tensor;

/// The bar for agreement with PyTorch, as max |a - b| / max |b| per
/// tensor (f32 against the fixtures' references).
pub const REL_TOL: f64 = 1e-4;

/// max |got - want| / max |want|, after checking the shapes agree.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shape");
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_vec0::<f32>().unwrap();
    f64::from(diff) / f64::from(scale).max(1e-12)
}

/// Asserts `got` is within [`REL_TOL`] of `want`, naming `what` otherwise.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let e = rel_err(got, want);
    assert!(e <= REL_TOL, "{what}: relative error {e:.3e} > {REL_TOL:e}");
}
