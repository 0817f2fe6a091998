//! Shared helpers of the fixture tests: loading the JSON files written by
//! `fixtures/make_fixtures.py` and comparing floats with one stated tolerance.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::Value;

/// Tolerance for f32 results compared with torch's f32 results:
/// |a - b| <= F32_TOL · max(|b|, 1). The Rust code performs the same f32
/// operations in the same order as the reference; what remains is torch's
/// vectorised `exp`/`log`/`log2` differing from Rust's by an ulp or two.
pub const F32_TOL: f32 = 1e-5;

/// Loads `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (run make_fixtures.py)"));
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of numbers as f32 (exact for values written from f32).
pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// A JSON array of numbers as f64.
pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A JSON array of integers.
pub fn i64s(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

/// A JSON array of 4-number rows.
pub fn rows4(v: &Value) -> Vec<[f32; 4]> {
    v.as_array().unwrap().iter().map(|r| f32s(r).try_into().unwrap()).collect()
}

/// Asserts `actual` matches `expected` element-wise within [`F32_TOL`],
/// naming the first mismatching element.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, b)) in actual.iter().zip(expected).enumerate() {
        assert!((a - b).abs() <= F32_TOL * b.abs().max(1.0), "{what}[{i}]: {a} vs reference {b}");
    }
}
