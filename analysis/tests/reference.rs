//! The analysis tools against the float64 NumPy reference of
//! `fixtures/make_analysis_fixtures.py` (minibatch CKA at three batch sizes,
//! attention entropy and distance, Fourier diagonals), plus the properties
//! the estimators must have whatever the data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use analysis::attention::{grid_distances, head_sums, row_stats};
use analysis::cka::{hsic_unbiased, minibatch_cka, Gram, MinibatchCka};
use analysis::fourier::{diagonal_sums, FourierSums, GridFft, AMPLITUDE_EPS};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

/// Everything after the (f32-representable) inputs is f64 on both sides:
/// the reference is matched to rounding error.
const TOLERANCE: f64 = 1e-9;

fn reference() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn shape(v: &Value) -> Vec<usize> {
    let mut dims = Vec::new();
    let mut v = v;
    while let Value::Array(a) = v {
        dims.push(a.len());
        v = &a[0];
    }
    dims
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    Tensor::from_vec(floats(v), shape(v), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn assert_all_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}\n got  {got:?}\n want {want:?}");
    }
}

fn cka_features() -> (Vec<Tensor>, Vec<Tensor>, Value) {
    let r = reference();
    let c = r["cka"].clone();
    let a = c["a"].as_array().unwrap().iter().map(|v| tensor(v, DType::F64)).collect();
    let b = c["b"].as_array().unwrap().iter().map(|v| tensor(v, DType::F64)).collect();
    (a, b, c)
}

#[test]
fn cka_matches_the_numpy_unbiased_estimator_at_three_batch_sizes() {
    let (a, b, c) = cka_features();
    for (key, batch, batches) in [("batch12", 12, 1), ("batch6", 6, 2), ("batch5", 5, 2)] {
        let (m, n) = minibatch_cka(&a, &b, batch).unwrap();
        assert_eq!(n, batches, "{key}");
        assert_all_close(key, &m.concat(), &floats(&c[key]), TOLERANCE);
    }
}

#[test]
fn cka_agrees_with_f32_features_within_1e_6() {
    // What the model hands over: f32 tokens; Gram matrices are still f64.
    let (a, b, c) = cka_features();
    let f32s = |ts: &[Tensor]| ts.iter().map(|t| t.to_dtype(DType::F32).unwrap()).collect::<Vec<_>>();
    let (m, _) = minibatch_cka(&f32s(&a), &f32s(&b), 6).unwrap();
    assert_all_close("f32 batch6", &m.concat(), &floats(&c["batch6"]), 1e-6);
}

#[test]
fn two_minibatches_average_hsic_terms_not_cka_values() {
    let (a, b, c) = cka_features();
    // By hand: HSIC terms of each half, averaged, then the ratio.
    let half = |t: &Tensor, i: usize| Gram::from_rows(&t.narrow(0, 6 * i, 6).unwrap()).unwrap();
    let (k0, k1, l0, l1) = (half(&a[0], 0), half(&a[0], 1), half(&b[0], 0), half(&b[0], 1));
    let h = |x: &Gram, y: &Gram| hsic_unbiased(x, y).unwrap();
    let by_hand = (h(&k0, &l0) + h(&k1, &l1)) / ((h(&k0, &k0) + h(&k1, &k1)) * (h(&l0, &l0) + h(&l1, &l1))).sqrt();
    let (m, _) = minibatch_cka(&a, &b, 6).unwrap();
    assert!((m[0][0] - by_hand).abs() < TOLERANCE);
    assert!((m[0][0] - floats(&c["batch6"])[0]).abs() < TOLERANCE);
    // The mean of the two per-batch CKA values is another number.
    let cka = |k: &Gram, l: &Gram| h(k, l) / (h(k, k) * h(l, l)).sqrt();
    let mean_of_ratios = (cka(&k0, &l0) + cka(&k1, &l1)) / 2.0;
    assert!((m[0][0] - mean_of_ratios).abs() > 1e-4, "{} vs {mean_of_ratios}", m[0][0]);
    // And one batch of all 12 images is a third.
    let (one, _) = minibatch_cka(&a, &b, 12).unwrap();
    assert!((one[0][0] - m[0][0]).abs() > 1e-4);
}

#[test]
fn cka_of_a_representation_with_itself_is_one() {
    let (a, _, _) = cka_features();
    let (m, _) = minibatch_cka(&a, &a, 6).unwrap();
    for (i, row) in m.iter().enumerate() {
        assert!((row[i] - 1.0).abs() < 1e-12, "{i}: {}", row[i]);
    }
}

#[test]
fn cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling() {
    let (a, _, _) = cka_features();
    let x = &a[0];
    // A random orthogonal matrix: Q of a QR by Gram-Schmidt on a fixed random matrix.
    let p = x.dim(1).unwrap();
    let r = Tensor::randn(0f64, 1.0, (p, p), &Device::Cpu).unwrap().to_vec2::<f64>().unwrap();
    let mut q: Vec<Vec<f64>> = Vec::new();
    for v in r {
        let mut v = v;
        for u in &q {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|a| a / norm).collect());
    }
    let q = Tensor::from_vec(q.concat(), (p, p), &Device::Cpu).unwrap();
    let rotated_scaled = (x.matmul(&q).unwrap() * 3.7).unwrap();
    let (m, _) = minibatch_cka(&a, &[rotated_scaled], 6).unwrap();
    let (same, _) = minibatch_cka(&a, std::slice::from_ref(x), 6).unwrap();
    for i in 0..a.len() {
        assert!((m[i][0] - same[i][0]).abs() < 1e-10, "{i}: {} vs {}", m[i][0], same[i][0]);
    }
    assert!((m[0][0] - 1.0).abs() < 1e-10);
    // Not invariant to an anisotropic scaling (a real check that the test can fail).
    let stretched = x.broadcast_mul(&Tensor::from_vec((0..p).map(|i| 1.0 + i as f64).collect::<Vec<_>>(), p, &Device::Cpu).unwrap()).unwrap();
    let (s, _) = minibatch_cka(&a[..1], &[stretched], 6).unwrap();
    assert!((s[0][0] - 1.0).abs() > 1e-3);
}

#[test]
fn cka_refuses_batches_below_four_and_mixed_sizes() {
    let (a, b, _) = cka_features();
    let err = minibatch_cka(&a, &b, 3).unwrap_err();
    assert!(err.is_user_error() && err.to_string().contains("--batch"), "{err}");
    let mut sums = MinibatchCka::new(1, 1);
    let g6 = Gram::from_rows(&a[0].narrow(0, 0, 6).unwrap()).unwrap();
    let g5 = Gram::from_rows(&a[0].narrow(0, 0, 5).unwrap()).unwrap();
    sums.add(std::slice::from_ref(&g6), std::slice::from_ref(&g6)).unwrap();
    assert!(sums.add(std::slice::from_ref(&g5), std::slice::from_ref(&g5)).is_err());
    assert!(MinibatchCka::new(1, 1).matrix().is_err());
}

#[test]
fn gram_of_tokens_drops_cls() {
    let (a, _, _) = cka_features();
    // (12, 20) as 12 images of 4 tokens x 5 channels; a cls token in front must not count.
    let tokens = a[0].reshape((12, 4, 5)).unwrap();
    let cls = Tensor::ones((12, 1, 5), DType::F64, &Device::Cpu).unwrap();
    let with_cls = Tensor::cat(&[&(cls * 100.0).unwrap(), &tokens], 1).unwrap();
    assert_eq!(Gram::from_tokens(&with_cls).unwrap(), Gram::from_rows(&a[0]).unwrap());
}

#[test]
fn attention_matches_the_numpy_reference() {
    let r = reference();
    let at = &r["attention"];
    let grid: Vec<usize> = at["grid"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let logits = tensor(&at["logits"], DType::F32);
    // The fixture's logits are f32 values, so both sides see the same inputs.
    let b = logits.dim(0).unwrap() as f64;
    for (key, eps) in [("entropy", 0.0), ("entropy_eps1e-6", 1e-6)] {
        let (e, _) = head_sums(&logits, (grid[0], grid[1]), eps).unwrap();
        let mean: Vec<f64> = e.iter().map(|v| v / b).collect();
        assert_all_close(key, &mean, &floats(&at[key]), TOLERANCE);
    }
    let (_, d) = head_sums(&logits, (grid[0], grid[1]), 0.0).unwrap();
    let mean: Vec<f64> = d.iter().map(|v| v / b).collect();
    assert_all_close("distance", &mean, &floats(&at["distance_grid"]), TOLERANCE);
}

#[test]
fn uniform_attention_has_entropy_ln_m_and_the_mean_pairwise_distance() {
    let (h, w) = (3, 5);
    let m = h * w;
    let logits = Tensor::zeros((2, 4, m + 1, m + 1), DType::F32, &Device::Cpu).unwrap();
    let (e, d) = head_sums(&logits, (h, w), 0.0).unwrap();
    let dist = grid_distances(h, w);
    let mean_pairwise = dist.iter().sum::<f64>() / (m * m) as f64;
    for head in 0..4 {
        assert!((e[head] / 2.0 - (m as f64).ln()).abs() < 1e-12, "{}", e[head]);
        assert!((d[head] / 2.0 - mean_pairwise).abs() < 1e-12);
    }
    // The released eps lowers it by at most M * eps.
    let (row_e, _) = row_stats(&vec![0.0; m], &dist[..m], 1e-6);
    assert!(row_e < (m as f64).ln() && row_e > (m as f64).ln() - m as f64 * 1e-6);
    // The cls column does not count: a huge logit on cls changes nothing.
    let mut v = vec![0f32; 2 * 4 * (m + 1) * (m + 1)];
    for (k, x) in v.iter_mut().enumerate() {
        if k % (m + 1) == 0 {
            *x = 50.0;
        }
    }
    let with_cls = Tensor::from_vec(v, (2, 4, m + 1, m + 1), &Device::Cpu).unwrap();
    assert_eq!(head_sums(&with_cls, (h, w), 0.0).unwrap(), (e, d));
}

#[test]
fn one_hot_attention_on_self_has_zero_entropy_and_distance() {
    let (h, w) = (4, 4);
    let m = h * w;
    let mut v = vec![0f32; (m + 1) * (m + 1)];
    for i in 1..=m {
        v[i * (m + 1) + i] = 1e4;
    }
    let logits = Tensor::from_vec(v, (1, 1, m + 1, m + 1), &Device::Cpu).unwrap();
    let (e, d) = head_sums(&logits, (h, w), 0.0).unwrap();
    assert!(e[0].abs() < 1e-12 && d[0].abs() < 1e-12, "{e:?} {d:?}");
    assert!(head_sums(&logits, (3, 4), 0.0).is_err());
}

fn fourier_of(tokens: &Tensor, h: usize, w: usize) -> analysis::fourier::FourierProfile {
    let fft = GridFft::new(h, w);
    let (s, maps) = diagonal_sums(tokens, &fft).unwrap();
    let mut sums = FourierSums::new(1, h, w);
    sums.add_layer(0, &s).unwrap();
    sums.count(maps);
    sums.profiles().remove(0)
}

#[test]
fn fourier_matches_the_numpy_reference_on_even_and_odd_grids() {
    let r = reference();
    for key in ["even", "odd"] {
        let f = &r["fourier"][key];
        let grid: Vec<usize> = f["grid"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let tokens = tensor(&f["tokens"], DType::F32);
        // The fixture's tokens are f32 values, as the model's are.
        let p = fourier_of(&tokens, grid[0], grid[1]);
        assert_all_close(key, &p.diagonal, &floats(&f["diagonal"]), TOLERANCE);
        assert!((p.delta - f["delta"].as_f64().unwrap()).abs() < TOLERANCE);
    }
}

#[test]
fn a_constant_map_has_only_frequency_zero() {
    let (h, w, c) = (6, 6, 3);
    let tokens = (Tensor::ones((2, 1 + h * w, c), DType::F32, &Device::Cpu).unwrap() * 2.0).unwrap();
    let p = fourier_of(&tokens, h, w);
    let dc = (2.0 * (h * w) as f64 + AMPLITUDE_EPS).ln();
    assert!((p.diagonal[0] - dc).abs() < 1e-9);
    for v in &p.diagonal[1..] {
        assert!((v - AMPLITUDE_EPS.ln()).abs() < 1e-6, "{v}");
    }
    assert!((p.delta - (AMPLITUDE_EPS.ln() - dc)).abs() < 1e-6 && p.delta < -10.0);
    assert_eq!(p.frequency_pi, vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
}

#[test]
fn a_checkerboard_has_only_the_highest_frequency() {
    let (h, w, c) = (6, 6, 2);
    let mut v: Vec<f32> = std::iter::repeat_n(7.0, c).collect(); // cls: ignored
    for y in 0..h {
        for x in 0..w {
            v.extend(std::iter::repeat_n(if (x + y) % 2 == 0 { 1.0f32 } else { -1.0 }, c));
        }
    }
    let tokens = Tensor::from_vec(v, (1, 1 + h * w, c), &Device::Cpu).unwrap();
    let p = fourier_of(&tokens, h, w);
    let peak = ((h * w) as f64 + AMPLITUDE_EPS).ln();
    assert!((p.diagonal[3] - peak).abs() < 1e-9, "{:?}", p.diagonal);
    for v in &p.diagonal[..3] {
        assert!((v - AMPLITUDE_EPS.ln()).abs() < 1e-6, "{v}");
    }
    assert!((p.delta - (peak - AMPLITUDE_EPS.ln())).abs() < 1e-6 && p.delta > 10.0);
    // The notebook's half-diagonal stops one step short of π: it sees nothing.
    assert!(p.delta_park_kim.abs() < 1e-6);
}
