//! MAE's per-sample random masking (`models_mae.py::random_masking`): each
//! image's patches are ranked by uniform noise, the lowest `len_keep` stay
//! visible, the rest are masked.
//!
//! Shapes: B images, L patches per image (row-major over the token grid),
//! K = `len_keep` visible patches, D token width.
//!
//! As in MAE:
//! - `len_keep = int(L * (1 - mask_ratio))`, i.e. **truncated**, computed in
//!   f64 exactly as Python does (L = 196, ratio 0.75: 49; L = 16, ratio 0.6:
//!   `int(6.4)` = 6) — [`len_keep`];
//! - `ids_shuffle = argsort(noise)` per row (ascending; equal noise values,
//!   which a float generator practically never draws, keep index order),
//!   `ids_restore = argsort(ids_shuffle)`, `ids_keep = ids_shuffle[:, :K]`;
//! - `mask` is 0 for kept and 1 for removed patches, in the original order.
//!
//! The noise comes from the run's [`TrainRng`] ([`Masking::random`]), so a
//! resumed run masks exactly as an uninterrupted one. The index bookkeeping
//! lives on the host; tensors are built from it where the model needs them
//! ([`Masking::gather_visible`], [`Masking::unshuffle`], [`Masking::mask_tensor`]).
//! The same `Masking` can drive two encoders (the distillation student and
//! its teacher see exactly the same visible patches).

use candle_core::{Device, Tensor};
use engine::rng::TrainRng;
use rand::Rng;

use crate::{Error, Result};

/// MAE's number of visible patches: `int(num_patches * (1 - mask_ratio))`.
pub fn len_keep(num_patches: usize, mask_ratio: f64) -> usize {
    // Python: int(L * (1 - mask_ratio)), both factors f64, truncated toward 0.
    (num_patches as f64 * (1.0 - mask_ratio)) as usize
}

/// One batch's masking: which patches each image keeps, and how to put the
/// decoder's tokens back in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masking {
    batch: usize,
    num_patches: usize,
    len_keep: usize,
    /// (B, L): patch indices sorted by noise (kept ones first).
    ids_shuffle: Vec<u32>,
    /// (B, L): position of each patch in `ids_shuffle` (its inverse).
    ids_restore: Vec<u32>,
}

impl Masking {
    /// The masking of `batch` images of `num_patches` patches given their
    /// noise (B·L values, row-major, as `torch.rand(B, L)`).
    ///
    /// # Errors
    /// [`Error::Config`] for a ratio outside [0, 1) (`model.mask_ratio`);
    /// [`Error::Shape`] when `noise` is not B·L long or holds a NaN.
    pub fn from_noise(noise: &[f32], batch: usize, num_patches: usize, mask_ratio: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&mask_ratio) {
            return Err(Error::config("model.mask_ratio", format!("must be in [0, 1), got {mask_ratio}")));
        }
        if noise.len() != batch * num_patches || noise.iter().any(|v| v.is_nan()) {
            return Err(Error::Shape { what: "masking noise", expected: format!("{batch} x {num_patches} numbers, no NaN"), found: vec![noise.len()] });
        }
        let l = num_patches;
        let mut ids_shuffle = Vec::with_capacity(batch * l);
        let mut ids_restore = vec![0u32; batch * l];
        for (b, row) in noise.chunks_exact(l.max(1)).take(batch).enumerate() {
            let mut order: Vec<u32> = (0..l as u32).collect();
            // Stable sort: ties (practically never drawn) keep index order.
            order.sort_by(|&i, &j| row[i as usize].total_cmp(&row[j as usize]));
            for (rank, &patch) in order.iter().enumerate() {
                ids_restore[b * l + patch as usize] = rank as u32;
            }
            ids_shuffle.extend(order);
        }
        Ok(Self { batch, num_patches, len_keep: len_keep(num_patches, mask_ratio), ids_shuffle, ids_restore })
    }

    /// A fresh masking whose noise is B·L uniform f32 draws from `rng`, in
    /// row-major order.
    ///
    /// # Errors
    /// As [`Masking::from_noise`].
    pub fn random(batch: usize, num_patches: usize, mask_ratio: f64, rng: &mut TrainRng) -> Result<Self> {
        let noise: Vec<f32> = (0..batch * num_patches).map(|_| rng.gen::<f32>()).collect();
        Self::from_noise(&noise, batch, num_patches, mask_ratio)
    }

    /// Images B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Patches per image L.
    pub fn num_patches(&self) -> usize {
        self.num_patches
    }

    /// Visible patches per image K.
    pub fn len_keep(&self) -> usize {
        self.len_keep
    }

    /// (B, L) row-major: each image's patch indices in noise order.
    pub fn ids_shuffle(&self) -> &[u32] {
        &self.ids_shuffle
    }

    /// (B, L) row-major: each patch's rank in `ids_shuffle` (MAE's `ids_restore`).
    pub fn ids_restore(&self) -> &[u32] {
        &self.ids_restore
    }

    /// (B, K) row-major: the visible patches of each image, in noise order
    /// (the order the encoder sees them in).
    pub fn ids_keep(&self) -> Vec<u32> {
        let l = self.num_patches;
        (0..self.batch).flat_map(|b| self.ids_shuffle[b * l..b * l + self.len_keep].iter().copied()).collect()
    }

    /// (B, L) row-major: 1 for masked (removed) patches, 0 for visible ones,
    /// in the original patch order.
    pub fn mask(&self) -> Vec<f32> {
        self.ids_restore.iter().map(|&rank| if (rank as usize) < self.len_keep { 0.0 } else { 1.0 }).collect()
    }

    /// [`Masking::mask`] as a (B, L) f32 tensor on `device`.
    ///
    /// # Errors
    /// The tensor cannot be created on `device`.
    pub fn mask_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.mask(), (self.batch, self.num_patches), device)?)
    }

    /// The visible tokens of (B, L, D) `tokens`, in noise order: (B, K, D)
    /// (`torch.gather(x, 1, ids_keep)`). Differentiable (the backward
    /// scatters into the kept rows).
    ///
    /// # Errors
    /// [`Error::Shape`] when `tokens` is not (B, L, D) for this masking.
    pub fn gather_visible(&self, tokens: &Tensor) -> Result<Tensor> {
        let l = self.num_patches;
        let rows: Vec<u32> = (0..self.batch).flat_map(|b| self.ids_shuffle[b * l..b * l + self.len_keep].iter().map(move |&i| (b * l) as u32 + i)).collect();
        self.select_rows(tokens, l, &rows, self.len_keep, "tokens to mask")
    }

    /// Tokens (B, L, D) in noise order (visible ones first, then mask
    /// tokens) put back into the original patch order
    /// (`torch.gather(x_, 1, ids_restore)`). Differentiable.
    ///
    /// # Errors
    /// [`Error::Shape`] when `tokens` is not (B, L, D) for this masking.
    pub fn unshuffle(&self, tokens: &Tensor) -> Result<Tensor> {
        let l = self.num_patches;
        let rows: Vec<u32> = (0..self.batch).flat_map(|b| self.ids_restore[b * l..(b + 1) * l].iter().map(move |&r| (b * l) as u32 + r)).collect();
        self.select_rows(tokens, l, &rows, l, "tokens to unshuffle")
    }

    /// Rows `rows` (indices into the flattened (B·`n_in`, D) view) of
    /// (B, `n_in`, D) `tokens`, as (B, `n_out`, D).
    fn select_rows(&self, tokens: &Tensor, n_in: usize, rows: &[u32], n_out: usize, what: &'static str) -> Result<Tensor> {
        let dims = tokens.dims();
        if dims.len() != 3 || dims[0] != self.batch || dims[1] != n_in {
            return Err(Error::Shape { what, expected: format!("({}, {n_in}, D)", self.batch), found: dims.to_vec() });
        }
        let d = dims[2];
        let index = Tensor::from_slice(rows, rows.len(), tokens.device())?;
        let flat = tokens.reshape((self.batch * n_in, d))?;
        Ok(flat.index_select(&index, 0)?.reshape((self.batch, n_out, d))?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn len_keep_truncates_as_python_int() {
        assert_eq!(len_keep(196, 0.75), 49);
        assert_eq!(len_keep(16, 0.75), 4);
        assert_eq!(len_keep(16, 0.6), 6); // 16 * 0.4 = 6.4
        assert_eq!(len_keep(9, 0.75), 2); // 2.25
        assert_eq!(len_keep(10, 0.7), 3); // 10 * 0.30000000000000004 = 3.0000000000000004
        assert_eq!(len_keep(4, 0.9), 0);
        assert_eq!(len_keep(7, 0.0), 7);
    }

    #[test]
    fn hand_worked_masking() {
        // Image 0: noise ranks patches 2, 0, 3, 1; image 1: 1, 3, 0, 2.
        let noise = [0.5, 0.9, 0.1, 0.6, 0.7, 0.05, 0.8, 0.2];
        let m = Masking::from_noise(&noise, 2, 4, 0.5).unwrap();
        assert_eq!(m.len_keep(), 2);
        assert_eq!(m.ids_shuffle(), &[2, 0, 3, 1, 1, 3, 0, 2]);
        assert_eq!(m.ids_restore(), &[1, 3, 0, 2, 2, 0, 3, 1]);
        assert_eq!(m.ids_keep(), vec![2, 0, 1, 3]);
        assert_eq!(m.mask(), vec![0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]);
        // Tokens whose value is 10 * image + patch.
        let tokens = Tensor::from_vec((0..8).map(|i| ((i / 4) * 10 + i % 4) as f32).collect::<Vec<_>>(), (2, 4, 1), &Device::Cpu).unwrap();
        let visible = m.gather_visible(&tokens).unwrap();
        assert_eq!(visible.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![2.0, 0.0, 11.0, 13.0]);
    }

    #[test]
    fn random_masking_invariants_hold() {
        let mut rng = TrainRng::seed_from_u64(7);
        for (l, ratio) in [(196, 0.75), (16, 0.6), (49, 0.9), (5, 0.0)] {
            let b = 3;
            let m = Masking::random(b, l, ratio, &mut rng).unwrap();
            let k = len_keep(l, ratio);
            let mask = m.mask();
            for i in 0..b {
                let row = &m.ids_shuffle()[i * l..(i + 1) * l];
                let restore = &m.ids_restore()[i * l..(i + 1) * l];
                // ids_shuffle is a permutation, and ids_restore its inverse.
                let mut sorted = row.to_vec();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..l as u32).collect::<Vec<_>>());
                for (rank, &p) in row.iter().enumerate() {
                    assert_eq!(restore[p as usize] as usize, rank);
                }
                // Exactly K visible, and they are ids_keep.
                let visible: Vec<u32> = (0..l as u32).filter(|&p| mask[i * l + p as usize] == 0.0).collect();
                assert_eq!(visible.len(), k);
                let mut keep = m.ids_keep()[i * k..(i + 1) * k].to_vec();
                keep.sort_unstable();
                assert_eq!(keep, visible);
            }
            // unshuffle(shuffle(x)) == x: tokens in noise order go back in place.
            let x = engine::testing::random_tensor(&[b, l, 2], 3).to_dtype(candle_core::DType::F32).unwrap();
            let shuffled_rows: Vec<u32> = (0..b).flat_map(|i| m.ids_shuffle()[i * l..(i + 1) * l].iter().map(move |&p| (i * l) as u32 + p)).collect();
            let shuffled = x.reshape((b * l, 2)).unwrap().index_select(&Tensor::new(shuffled_rows.as_slice(), &Device::Cpu).unwrap(), 0).unwrap().reshape((b, l, 2)).unwrap();
            let back = m.unshuffle(&shuffled).unwrap();
            assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }

    #[test]
    fn same_seed_same_masking_and_bad_inputs_are_errors() {
        let a = Masking::random(2, 16, 0.75, &mut TrainRng::seed_from_u64(1)).unwrap();
        let b = Masking::random(2, 16, 0.75, &mut TrainRng::seed_from_u64(1)).unwrap();
        assert_eq!(a, b);
        assert!(Masking::from_noise(&[0.1; 3], 1, 4, 0.5).is_err());
        let e = Masking::from_noise(&[0.1; 4], 1, 4, 1.0).unwrap_err().to_string();
        assert!(e.contains("model.mask_ratio"), "{e}");
        let wrong = Tensor::zeros((2, 5, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(a.gather_visible(&wrong), Err(Error::Shape { .. })));
    }
}
