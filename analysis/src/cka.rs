//! Minibatch linear CKA with the unbiased HSIC estimator, as MAE-Lite's
//! `projects/eval_tools/visualize/rep_cmp_analyzer.py` computes it (after
//! AntixK/PyTorch-Model-Compare `torch_cka/cka.py`; Nguyen et al. 2020,
//! arXiv 2010.15327, Eq. 3; Song et al. 2012):
//!
//! - per minibatch of n images, X is each image's representation flattened
//!   to one row, K = X Xᵀ with its diagonal set to zero (likewise L from Y);
//! - `HSIC(K, L) = [tr(KL) + (1ᵀK1 · 1ᵀL1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀKL1] / (n(n-3))`;
//! - HSIC(K,L), HSIC(K,K) and HSIC(L,L) are each averaged over minibatches,
//!   then `CKA = mean HSIC(K,L) / sqrt(mean HSIC(K,K) · mean HSIC(L,L))`.
//!
//! Minibatch CKA depends on n, so every minibatch has the same size: the
//! caller drops a ragged last batch (as the released loop, which only sees
//! full batches of 128). n must be at least [`MIN_BATCH`].
//!
//! Precision: Gram matrices are computed and everything after them is
//! accumulated in f64 (the features may be f32); `tests/reference.rs` agrees
//! with the float64 NumPy reference of `tests/fixtures/make_analysis_fixtures.py`
//! within 1e-9.
//!
//! Shapes: n images per minibatch, P features per image (tokens x channels).

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Smallest minibatch the unbiased estimator is defined for (it divides by n - 3).
pub const MIN_BATCH: usize = 4;

/// The linear-kernel Gram matrix K = X Xᵀ of one minibatch (n x n, f64,
/// row-major), with the sums the estimator needs over its off-diagonal
/// entries (the estimator zeroes the diagonal).
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    n: usize,
    data: Vec<f64>,
    /// Σ_{j≠i} K_ij for each row i.
    row_sums: Vec<f64>,
    /// Σ_{i≠j} K_ij.
    total: f64,
}

impl Gram {
    /// K from a row-major n x n matrix (must be symmetric, as X Xᵀ is).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `data` is not n² long; [`Error::Setting`]
    /// when n < [`MIN_BATCH`].
    pub fn from_matrix(n: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != n * n {
            return Err(Error::ShapeMismatch { what: "Gram matrix".into(), expected: format!("{n} x {n} = {} values", n * n), found: format!("{} values", data.len()) });
        }
        if n < MIN_BATCH {
            return Err(Error::setting("--batch", format!("minibatch CKA needs at least {MIN_BATCH} images per minibatch, got {n}")));
        }
        let row_sums: Vec<f64> = (0..n).map(|i| data[i * n..(i + 1) * n].iter().enumerate().filter(|&(j, _)| j != i).map(|(_, v)| v).sum()).collect();
        let total = row_sums.iter().sum();
        Ok(Self { n, data, row_sums, total })
    }

    /// K = X Xᵀ of X (n, ...) with everything after dim 0 flattened into
    /// one row per image, computed in f64.
    ///
    /// # Errors
    /// Tensor errors; as [`Gram::from_matrix`] for n < [`MIN_BATCH`].
    pub fn from_rows(x: &Tensor) -> Result<Self> {
        let n = x.dim(0)?;
        let x = x.flatten_from(1)?.to_dtype(DType::F64)?;
        let k = x.matmul(&x.t()?)?;
        Self::from_matrix(n, k.flatten_all()?.to_vec1::<f64>()?)
    }

    /// K of token maps (n, T, D) with cls first: cls is dropped and the
    /// (T-1) x D patch tokens of each image form its row.
    ///
    /// # Errors
    /// As [`Gram::from_rows`]; a tensor that is not (n, T, D) with T ≥ 2.
    pub fn from_tokens(tokens: &Tensor) -> Result<Self> {
        let (_, t, _) = tokens.dims3()?;
        if t < 2 {
            return Err(Error::ShapeMismatch { what: "token map".into(), expected: "a cls token and at least one patch token".into(), found: format!("{t} tokens") });
        }
        Self::from_rows(&tokens.narrow(1, 1, t - 1)?)
    }

    /// Images in the minibatch.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// The unbiased HSIC estimate of two Gram matrices of the same minibatch
/// (their diagonals are treated as zero).
///
/// # Errors
/// [`Error::ShapeMismatch`] when the minibatch sizes differ.
pub fn hsic_unbiased(k: &Gram, l: &Gram) -> Result<f64> {
    if k.n != l.n {
        return Err(Error::ShapeMismatch { what: "HSIC Gram matrices".into(), expected: format!("{0} x {0}", k.n), found: format!("{0} x {0}", l.n) });
    }
    let n = k.n;
    // tr(KL) = Σ_ij K_ij L_ji = Σ_{i≠j} K_ij L_ij for symmetric, zero-diagonal K and L.
    let mut trace = 0.0;
    for i in 0..n {
        let (kr, lr) = (&k.data[i * n..(i + 1) * n], &l.data[i * n..(i + 1) * n]);
        trace += kr.iter().zip(lr).enumerate().filter(|&(j, _)| j != i).map(|(_, (a, b))| a * b).sum::<f64>();
    }
    // 1ᵀKL1 = (K1)ᵀ(L1).
    let kl: f64 = k.row_sums.iter().zip(&l.row_sums).map(|(a, b)| a * b).sum();
    let nf = n as f64;
    Ok((trace + k.total * l.total / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * kl) / (nf * (nf - 3.0)))
}

/// The running sums of minibatch CKA between the representations of model
/// A (rows) and model B (columns).
#[derive(Debug, Clone, PartialEq)]
pub struct MinibatchCka {
    rows: usize,
    cols: usize,
    /// Σ over batches of HSIC(K_i, L_j), row-major rows x cols.
    cross: Vec<f64>,
    /// Σ over batches of HSIC(K_i, K_i).
    self_a: Vec<f64>,
    /// Σ over batches of HSIC(L_j, L_j).
    self_b: Vec<f64>,
    batches: usize,
    batch_size: Option<usize>,
}

impl MinibatchCka {
    /// Empty sums for `rows` representations of A and `cols` of B.
    pub fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols, cross: vec![0.0; rows * cols], self_a: vec![0.0; rows], self_b: vec![0.0; cols], batches: 0, batch_size: None }
    }

    /// Adds one minibatch: A's Gram matrices (one per representation) and B's,
    /// all of the same images.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the counts differ from the sums' or a
    /// minibatch has another size than the first (CKA of mixed batch sizes
    /// is not the released quantity).
    pub fn add(&mut self, a: &[Gram], b: &[Gram]) -> Result<()> {
        if a.len() != self.rows || b.len() != self.cols {
            return Err(Error::ShapeMismatch { what: "CKA representations".into(), expected: format!("{} and {}", self.rows, self.cols), found: format!("{} and {}", a.len(), b.len()) });
        }
        let n = a.first().or(b.first()).map_or(0, Gram::n);
        if *self.batch_size.get_or_insert(n) != n {
            return Err(Error::ShapeMismatch { what: "CKA minibatch".into(), expected: format!("{} images like the first", self.batch_size.unwrap_or(n)), found: format!("{n} images") });
        }
        for (i, k) in a.iter().enumerate() {
            self.self_a[i] += hsic_unbiased(k, k)?;
            for (j, l) in b.iter().enumerate() {
                self.cross[i * self.cols + j] += hsic_unbiased(k, l)?;
            }
        }
        for (j, l) in b.iter().enumerate() {
            self.self_b[j] += hsic_unbiased(l, l)?;
        }
        self.batches += 1;
        Ok(())
    }

    /// Minibatches added so far.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// The CKA matrix, rows x cols: `mean HSIC(K_i, L_j) / sqrt(mean
    /// HSIC(K_i, K_i) · mean HSIC(L_j, L_j))`. A representation that is
    /// constant over images (HSIC 0 with itself) gives NaN in its row or column.
    ///
    /// # Errors
    /// [`Error::Setting`] when no minibatch was added.
    pub fn matrix(&self) -> Result<Vec<Vec<f64>>> {
        if self.batches == 0 {
            return Err(Error::setting("--max-images", "no complete minibatch of images: CKA needs at least one"));
        }
        let m = self.batches as f64;
        Ok((0..self.rows)
            .map(|i| (0..self.cols).map(|j| (self.cross[i * self.cols + j] / m) / ((self.self_a[i] / m) * (self.self_b[j] / m)).sqrt()).collect())
            .collect())
    }
}

/// Minibatch CKA of features held in memory: `a[i]` and `b[j]` are (N, ...)
/// with the same N images in the same order, cut into minibatches of
/// `batch`; the last N mod `batch` images are dropped. Returns the matrix
/// and the number of minibatches.
///
/// # Errors
/// [`Error::Setting`] for `batch` < [`MIN_BATCH`] or N < `batch`;
/// [`Error::ShapeMismatch`] when the image counts differ.
pub fn minibatch_cka(a: &[Tensor], b: &[Tensor], batch: usize) -> Result<(Vec<Vec<f64>>, usize)> {
    if batch < MIN_BATCH {
        return Err(Error::setting("--batch", format!("minibatch CKA needs at least {MIN_BATCH} images per minibatch, got {batch}")));
    }
    let n = a.first().or(b.first()).map_or(Ok(0), |t| t.dim(0))?;
    for t in a.iter().chain(b) {
        if t.dim(0)? != n {
            return Err(Error::ShapeMismatch { what: "CKA features".into(), expected: format!("{n} images"), found: format!("{} images", t.dim(0)?) });
        }
    }
    let mut sums = MinibatchCka::new(a.len(), b.len());
    for start in (0..n / batch).map(|i| i * batch) {
        let grams = |ts: &[Tensor]| ts.iter().map(|t| Gram::from_rows(&t.narrow(0, start, batch)?)).collect::<Result<Vec<_>>>();
        sums.add(&grams(a)?, &grams(b)?)?;
    }
    Ok((sums.matrix()?, sums.batches()))
}
