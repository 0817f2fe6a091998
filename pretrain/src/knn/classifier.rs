//! The weighted k-nearest-neighbour vote of DINO's
//! `eval_knn.py::knn_classifier` (facebookresearch/dino; solo-learn's and
//! lightly's k-NN monitors use the same rule), over features already
//! L2-normalised by the caller, so the dot product is the cosine similarity.
//!
//! Shapes: N train features, M test features, D channels, C classes, k
//! neighbours.
//!
//! For each test feature: its similarity to every train feature, the k most
//! similar train features, each neighbour's vote `exp(sim / T)` added to its
//! class, the classes ranked by their summed votes.
//!
//! Deliberate differences from DINO, each where DINO is unspecified or fails:
//! - ties: among equal similarities the lower train index is the nearer
//!   neighbour; among equal votes the lower class ranks first (DINO's
//!   `topk` and `sort` leave both orders open);
//! - `k` larger than N uses all N train features (DINO's `topk` fails);
//! - votes are summed in f64 (DINO: f32, where `exp(sim / T)` of an
//!   unnormalised feature overflows).
//!
//! Memory: the (M, N) similarity matrix is never built whole; test features
//! go through in chunks of at most [`SIMILARITY_CHUNK_ELEMS`] similarities,
//! computed on the features' device and read back to the host, where the
//! top-k selection runs in parallel over the chunk's rows.
//! `pretrain/tests/knn_reference.rs` compares every ranking with a PyTorch
//! reference of DINO's formula (`tests/fixtures/make_knn_fixtures.py`).

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::{Error, Result};

/// Similarities held at once: 2^24 f32 (64 MiB), so an ImageNet-sized
/// train split (1.28 M) is scored about a dozen test images at a time.
pub const SIMILARITY_CHUNK_ELEMS: usize = 1 << 24;

/// Classes ranked for each test feature, for top-5.
pub const RANKED_CLASSES: usize = 5;

/// The classifier's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnParams {
    /// Neighbours that vote (DINO: 20); more than the train features means all of them.
    pub k: usize,
    /// Temperature T of the votes `exp(sim / T)` (DINO: 0.07).
    pub temperature: f64,
    /// Number of classes C; every label is below it.
    pub num_classes: usize,
}

/// Accuracy of the vote over a test set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnAccuracy {
    /// Fraction of test features whose label is the first ranked class.
    pub top1: f64,
    /// Fraction whose label is among the first five; `None` under five classes.
    pub top5: Option<f64>,
}

/// The first `min(5, C)` ranked classes of every test feature.
///
/// `train` (N, D) and `test` (M, D) on one device; `train_labels` has N
/// entries. `chunk_elems` bounds the similarities computed at once
/// ([`SIMILARITY_CHUNK_ELEMS`] in use; tests pass smaller values); at least
/// one test row is scored per chunk.
///
/// # Errors
/// [`Error::Shape`] for features that are not matrices of one width, a label
/// count that is not N, or no train feature; [`Error::Config`] for `k` = 0,
/// a temperature that is not positive, no class, or a label not below C;
/// tensor errors.
pub fn knn_rank(train: &Tensor, train_labels: &[usize], test: &Tensor, params: &KnnParams, chunk_elems: usize) -> Result<Vec<Vec<usize>>> {
    let (n, d) = train.dims2().map_err(|_| shape("train features", "(N, D)", train))?;
    let (m, d_test) = test.dims2().map_err(|_| shape("test features", "(M, D)", test))?;
    if d_test != d {
        return Err(shape("test features", &format!("(M, {d}) like the train features"), test));
    }
    if n == 0 || train_labels.len() != n {
        return Err(Error::Shape { what: "train labels", expected: format!("one label per train feature, at least one ({n})"), found: vec![train_labels.len()] });
    }
    params.validate()?;
    if let Some(&bad) = train_labels.iter().find(|&&l| l >= params.num_classes) {
        return Err(Error::config("knn", format!("train label {bad} is not below the {} classes", params.num_classes)));
    }
    let k = params.k.min(n);
    let rows_per_chunk = (chunk_elems / n).max(1);
    let train_t = train.to_dtype(DType::F32)?.t()?.contiguous()?;
    let mut ranked = Vec::with_capacity(m);
    let mut start = 0;
    while start < m {
        let rows = rows_per_chunk.min(m - start);
        let sim = test.narrow(0, start, rows)?.to_dtype(DType::F32)?.matmul(&train_t)?.to_vec2::<f32>()?;
        ranked.par_extend(sim.into_par_iter().map(|row| vote(&row, train_labels, k, params)));
        start += rows;
    }
    Ok(ranked)
}

/// Top-1 and top-5 accuracy of [`knn_rank`]'s rankings against `test_labels`.
///
/// # Errors
/// As [`knn_rank`]; [`Error::Shape`] when `test_labels` does not have M
/// entries or M is 0.
pub fn knn_accuracy(train: &Tensor, train_labels: &[usize], test: &Tensor, test_labels: &[usize], params: &KnnParams, chunk_elems: usize) -> Result<KnnAccuracy> {
    let ranked = knn_rank(train, train_labels, test, params, chunk_elems)?;
    if ranked.is_empty() || test_labels.len() != ranked.len() {
        return Err(Error::Shape { what: "test labels", expected: format!("one label per test feature, at least one ({})", ranked.len()), found: vec![test_labels.len()] });
    }
    Ok(accuracy(&ranked, test_labels, params.num_classes))
}

/// Top-1 / top-5 fractions of `ranked` against `labels` (equal lengths, not empty).
fn accuracy(ranked: &[Vec<usize>], labels: &[usize], num_classes: usize) -> KnnAccuracy {
    let count = |depth: usize| ranked.iter().zip(labels).filter(|(r, l)| r.iter().take(depth).any(|c| c == *l)).count();
    let total = labels.len() as f64;
    KnnAccuracy { top1: count(1) as f64 / total, top5: (num_classes >= RANKED_CLASSES).then(|| count(RANKED_CLASSES) as f64 / total) }
}

/// The ranked classes of one test feature from its similarities to every train feature.
fn vote(sim: &[f32], labels: &[usize], k: usize, params: &KnnParams) -> Vec<usize> {
    // Nearer first; equal similarities by train index (the stable order).
    let nearer = |a: &usize, b: &usize| sim[*b].total_cmp(&sim[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..sim.len()).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, nearer);
        order.truncate(k);
    }
    order.sort_unstable_by(nearer);
    let mut votes = vec![0.0f64; params.num_classes];
    // Summed nearest first, as DINO's sum over the k neighbours runs.
    for &i in &order {
        votes[labels[i]] += (f64::from(sim[i]) / params.temperature).exp();
    }
    let mut classes: Vec<usize> = (0..params.num_classes).collect();
    classes.sort_by(|a, b| votes[*b].total_cmp(&votes[*a]).then(a.cmp(b)));
    classes.truncate(RANKED_CLASSES.min(params.num_classes));
    classes
}

impl KnnParams {
    /// Checks k, T and C.
    ///
    /// # Errors
    /// [`Error::Config`] naming `knn.k`, `knn.temperature` or the class count.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::config("knn.k", "must be >= 1"));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::config("knn.temperature", format!("must be a positive number, got {}", self.temperature)));
        }
        if self.num_classes == 0 {
            return Err(Error::config("knn", "the dataset has no class"));
        }
        Ok(())
    }
}

/// An [`Error::Shape`] for `t`.
fn shape(what: &'static str, expected: &str, t: &Tensor) -> Error {
    Error::Shape { what, expected: expected.to_owned(), found: t.dims().to_vec() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    fn features(rows: &[[f32; 2]]) -> Tensor {
        Tensor::from_vec(rows.concat(), (rows.len(), 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_nearest_class_wins_and_equal_votes_go_to_the_lower_class() {
        let train = features(&[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]]);
        let p = KnnParams { k: 1, temperature: 0.07, num_classes: 3 };
        // Test row 0 is nearest train 0 (class 2); row 1 ties train 1 (class 1) and 2 (class 0): the lower index wins.
        let ranked = knn_rank(&train, &[2, 1, 0, 0], &features(&[[0.9, 0.1], [0.0, 1.0]]), &p, 1).unwrap();
        assert_eq!(ranked, vec![vec![2, 0, 1], vec![1, 0, 2]]);
        // k = 2 for row 1: one vote each for classes 1 and 0, equal: class 0 first.
        let p2 = KnnParams { k: 2, ..p };
        let ranked = knn_rank(&train, &[2, 1, 0, 0], &features(&[[0.0, 1.0]]), &p2, 1).unwrap();
        assert_eq!(ranked, vec![vec![0, 1, 2]]);
        let acc = knn_accuracy(&train, &[2, 1, 0, 0], &features(&[[0.9, 0.1], [0.0, 1.0]]), &[2, 0], &p, 8).unwrap();
        assert_eq!(acc, KnnAccuracy { top1: 0.5, top5: None });
    }

    #[test]
    fn bad_inputs_are_errors_naming_them() {
        let train = features(&[[1.0, 0.0]]);
        let p = KnnParams { k: 1, temperature: 0.07, num_classes: 2 };
        let err = |r: Result<Vec<Vec<usize>>>| r.unwrap_err().to_string();
        assert!(err(knn_rank(&train, &[], &train, &p, 8)).contains("train labels"));
        assert!(err(knn_rank(&train, &[2], &train, &p, 8)).contains("label 2"));
        assert!(err(knn_rank(&train, &[0], &train, &KnnParams { k: 0, ..p }, 8)).contains("knn.k"));
        assert!(err(knn_rank(&train, &[0], &train, &KnnParams { temperature: 0.0, ..p }, 8)).contains("knn.temperature"));
        let wide = Tensor::zeros((1, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(err(knn_rank(&train, &[0], &wide, &p, 8)).contains("test features"));
        let e = knn_accuracy(&train, &[0], &train, &[0, 1], &p, 8).unwrap_err().to_string();
        assert!(e.contains("test labels"), "{e}");
    }
}
