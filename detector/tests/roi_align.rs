//! `engine::ops::detection::roi_align` (forward and input gradient) against
//! torchvision `ops.roi_align(..., aligned=True)` and autograd, in f32 and f64,
//! on two images with boxes inside, partly outside, entirely outside, empty,
//! tiny (under a feature pixel) and large (several samples per bin), at two
//! spatial scales, adaptive and fixed sampling ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, f32s, f64s, fixture, i64s};
use engine::ops::detection::roi_align;

/// f64 results follow the same operations as torchvision's double kernel; only
/// summation order inside torch could differ, at the 1e-15 level.
const F64_TOL: f64 = 1e-12;

struct Run {
    output: Tensor,
    grad_input: Tensor,
}

fn run(input: Tensor, rois: &Tensor, case: &serde_json::Value, grad_output: Tensor) -> Run {
    let out_hw = i64s(&case["output_size"]);
    let x = Var::from_tensor(&input).unwrap();
    let y = roi_align(
        x.as_tensor(),
        rois,
        (out_hw[0] as usize, out_hw[1] as usize),
        case["spatial_scale"].as_f64().unwrap(),
        case["sampling_ratio"].as_u64().unwrap() as usize,
        true,
    )
    .unwrap();
    let grads = (&y * grad_output.reshape(y.dims()).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    Run { output: y, grad_input: grads.get(&x).unwrap().clone() }
}

#[test]
fn forward_and_input_gradient_match_torchvision() {
    let f = fixture("roi_align.json");
    let shape: Vec<usize> = i64s(&f["input_shape"]).into_iter().map(|d| d as usize).collect();
    let rois_rows: Vec<f64> = f["rois_f64"].as_array().unwrap().iter().flat_map(f64s).collect();
    let k = rois_rows.len() / 5;
    let rois64 = Tensor::from_vec(rois_rows, (k, 5), &Device::Cpu).unwrap();
    let rois32 = rois64.to_dtype(DType::F32).unwrap();
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for (c, case) in cases.iter().enumerate() {
        // f32: same tolerance as every other f32 comparison.
        let r = &case["f32"];
        let input = Tensor::from_vec(f32s(&f["input_f32"]), shape.as_slice(), &Device::Cpu).unwrap();
        let go = Tensor::from_vec(f32s(&r["grad_output"]), f32s(&r["grad_output"]).len(), &Device::Cpu).unwrap();
        let got = run(input, &rois32, case, go);
        let out = got.output.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&format!("case {c} f32 output"), &out, &f32s(&r["output"]));
        let gin = got.grad_input.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&format!("case {c} f32 grad_input"), &gin, &f32s(&r["grad_input"]));
        assert!(gin.iter().any(|v| *v != 0.0));

        // f64.
        let r = &case["f64"];
        let input = Tensor::from_vec(f64s(&f["input_f64"]), shape.as_slice(), &Device::Cpu).unwrap();
        let go = Tensor::from_vec(f64s(&r["grad_output"]), f64s(&r["grad_output"]).len(), &Device::Cpu).unwrap();
        let got = run(input, &rois64, case, go);
        let pairs = [
            ("output", got.output.flatten_all().unwrap().to_vec1::<f64>().unwrap(), f64s(&r["output"])),
            ("grad_input", got.grad_input.flatten_all().unwrap().to_vec1::<f64>().unwrap(), f64s(&r["grad_input"])),
        ];
        for (what, a, b) in pairs {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!((x - y).abs() <= F64_TOL * y.abs().max(1.0), "case {c} f64 {what}[{i}]: {x} vs {y}");
            }
        }
    }
}
