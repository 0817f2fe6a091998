//! The k-NN vote against DINO's `knn_classifier` in PyTorch, on the cases
//! `tests/fixtures/make_knn_fixtures.py` wrote (random features and labels,
//! several k and T, k above the train size, unnormalised features, and
//! built ties): every test feature's ranked classes must be the reference's
//! exactly, and so top-1 and top-5; whatever the chunking of the
//! similarity matrix.
#![allow(clippy::unwrap_used, clippy::panic)]

use candle_core::{Device, Tensor};
use pretrain::knn::{knn_accuracy, knn_rank, KnnParams};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/knn_cases.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
    let (n, d) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu).unwrap()
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

#[test]
fn rankings_and_accuracies_match_dinos_knn_classifier() {
    let cases = cases();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (train, test) = (matrix(&case["train"]), matrix(&case["test"]));
        let (train_labels, test_labels) = (labels(&case["train_labels"]), labels(&case["test_labels"]));
        let n = train_labels.len();
        let num_classes = case["num_classes"].as_u64().unwrap() as usize;
        for e in case["expected"].as_array().unwrap() {
            let params = KnnParams { k: e["k"].as_u64().unwrap() as usize, temperature: e["temperature"].as_f64().unwrap(), num_classes };
            let want: Vec<Vec<usize>> = e["ranked"].as_array().unwrap().iter().map(labels).collect();
            // One test row per chunk, a few, and all at once.
            for chunk in [1, 3 * n, usize::MAX] {
                let got = knn_rank(&train, &train_labels, &test, &params, chunk).unwrap();
                assert_eq!(got, want, "{name}, k {} T {}, chunk {chunk}", params.k, params.temperature);
            }
            let acc = knn_accuracy(&train, &train_labels, &test, &test_labels, &params, 1 << 24).unwrap();
            assert_eq!(acc.top1, e["top1"].as_f64().unwrap(), "{name} top-1, k {}", params.k);
            assert_eq!(acc.top5, e["top5"].as_f64(), "{name} top-5, k {}", params.k);
        }
    }
}
