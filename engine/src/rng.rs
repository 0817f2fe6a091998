//! The training run's random number generator: seeded, serialisable, and
//! saved in every checkpoint so that a resumed run draws exactly the numbers
//! an uninterrupted run would have drawn (proved by `tests/resume.rs`).
//!
//! Everything random in a training loop (minibatch order, masking noise,
//! augmentation parameters, drop-path masks) should be drawn from one
//! [`TrainRng`] that the trainer owns, never from `rand::thread_rng()` or
//! candle's `Tensor::rand`, whose state cannot be saved. The generator is
//! ChaCha8 (`rand_chacha`): fast, portable, and its full state (key, stream,
//! word position) is a few dozen bytes of JSON.

use candle_core::{Device, Shape, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Result;

/// A seeded random number generator whose whole state can be checkpointed.
///
/// It implements [`RngCore`], so every `rand::Rng` method works on it; the
/// helpers below cover what training code needs most. Two generators compare
/// equal exactly when they will produce the same stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrainRng {
    inner: ChaCha8Rng,
}

impl TrainRng {
    /// A generator seeded from `seed` (the recipe's `seed`).
    pub fn seed_from_u64(seed: u64) -> Self {
        Self {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// An independent child generator (e.g. one per data-loading worker),
    /// seeded from this generator's next draw, which it advances.
    pub fn fork(&mut self) -> Self {
        Self::seed_from_u64(self.inner.next_u64())
    }

    /// A uniform integer in `0..n`.
    ///
    /// # Errors
    /// [`crate::Error::Msg`] when `n == 0`.
    pub fn below(&mut self, n: usize) -> Result<usize> {
        if n == 0 {
            return Err(crate::Error::Msg(
                "TrainRng::below: empty range 0..0".into(),
            ));
        }
        Ok(self.inner.gen_range(0..n))
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut self.inner);
        idx
    }

    /// An f32 tensor of the given shape with values uniform in `[0, 1)`,
    /// created on `device` (e.g. MAE's per-patch masking noise).
    ///
    /// # Errors
    /// Tensor creation on `device` fails.
    pub fn uniform(&mut self, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count())
            .map(|_| self.inner.gen::<f32>())
            .collect();
        Ok(Tensor::from_vec(data, shape, device)?)
    }

    /// An f32 tensor of `mean + std * z` values, z drawn by
    /// [`standard_normal_pair`] (both values of each pair are used).
    ///
    /// # Errors
    /// Tensor creation on `device` fails.
    pub fn normal(
        &mut self,
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.elem_count();
        let mut data = Vec::with_capacity(n + 1);
        while data.len() < n {
            let (z0, z1) = standard_normal_pair(&mut self.inner);
            data.push((mean + std * z0) as f32);
            data.push((mean + std * z1) as f32);
        }
        data.truncate(n);
        Ok(Tensor::from_vec(data, shape, device)?)
    }
}

/// Two independent N(0, 1) draws from two uniform draws (Box-Muller): the
/// workspace's one Gaussian sampler, so that no extra distribution crate is
/// needed and every seeded initialisation draws the same stream.
///
/// Draws `u1` then `u2` from `rng`; returns `(r cos θ, r sin θ)` with
/// `r = sqrt(-2 ln(1 - u1))` (`1 - u1` is in (0, 1], so the log is finite)
/// and `θ = 2π u2`.
pub fn standard_normal_pair(rng: &mut impl Rng) -> (f64, f64) {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = std::f64::consts::TAU * u2;
    (r * theta.cos(), r * theta.sin())
}

/// One N(0, 1) draw: the first value of [`standard_normal_pair`] (two uniform
/// draws per value). The model initialisations (`backbone::init`,
/// `detector::init`, pre-training and classification heads) draw with it.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    standard_normal_pair(rng).0
}

impl RngCore for TrainRng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand::Error> {
        self.inner.try_fill_bytes(dest)
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let mut a = TrainRng::seed_from_u64(7);
        let mut b = TrainRng::seed_from_u64(7);
        let mut c = TrainRng::seed_from_u64(8);
        let xa: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn json_round_trip_resumes_the_stream_mid_way() {
        let mut a = TrainRng::seed_from_u64(3);
        // Leave the generator mid-block (ChaCha buffers 64 words) so the
        // word position, not just the seed, must be restored.
        for _ in 0..37 {
            a.next_u32();
        }
        let json = serde_json::to_string(&a).unwrap();
        let mut b: TrainRng = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
        let xa: Vec<u32> = (0..200).map(|_| a.next_u32()).collect();
        let xb: Vec<u32> = (0..200).map(|_| b.next_u32()).collect();
        assert_eq!(xa, xb);
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut r = TrainRng::seed_from_u64(1);
        let mut p = r.permutation(50);
        assert_ne!(
            p,
            (0..50).collect::<Vec<_>>(),
            "50! orderings; identity is vanishingly unlikely"
        );
        p.sort_unstable();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn below_rejects_empty_range_and_stays_in_range() {
        let mut r = TrainRng::seed_from_u64(1);
        assert!(r.below(0).is_err());
        for _ in 0..100 {
            assert!(r.below(3).unwrap() < 3);
        }
    }

    #[test]
    fn uniform_and_normal_have_the_right_shape_and_moments() {
        let mut r = TrainRng::seed_from_u64(5);
        let u = r.uniform((100, 50), &Device::Cpu).unwrap();
        assert_eq!(u.dims(), &[100, 50]);
        let uv: Vec<f32> = u.flatten_all().unwrap().to_vec1().unwrap();
        assert!(uv.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = uv.iter().map(|&x| x as f64).sum::<f64>() / uv.len() as f64;
        // 5000 draws: standard error of the mean is 0.29/sqrt(5000) ~ 0.004.
        assert!((mean - 0.5).abs() < 0.02, "{mean}");

        let z = r.normal(5001, 2.0, 3.0, &Device::Cpu).unwrap();
        let zv: Vec<f32> = z.to_vec1().unwrap();
        assert_eq!(zv.len(), 5001);
        let m = zv.iter().map(|&x| x as f64).sum::<f64>() / zv.len() as f64;
        let var = zv.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / zv.len() as f64;
        assert!((m - 2.0).abs() < 0.15, "{m}");
        assert!((var.sqrt() - 3.0).abs() < 0.15, "{var}");
    }

    #[test]
    fn standard_normal_is_box_muller_over_two_uniform_draws() {
        // The draw the seeded initialisations (backbone, detector heads) make:
        // pinned to the formula they used before sharing it, so a seed gives
        // the same model as before.
        let mut a = ChaCha8Rng::seed_from_u64(5);
        let mut b = a.clone();
        for _ in 0..100 {
            let z = standard_normal(&mut a);
            let (u1, u2) = (1.0 - b.gen::<f64>(), b.gen::<f64>());
            assert_eq!(z.to_bits(), ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).to_bits());
        }
        assert_eq!(a, b, "two uniform draws per value");
        let (z0, z1) = standard_normal_pair(&mut a);
        let (u1, u2) = (1.0 - b.gen::<f64>(), b.gen::<f64>());
        let r = (-2.0 * u1.ln()).sqrt();
        assert_eq!((z0, z1), (r * (std::f64::consts::TAU * u2).cos(), r * (std::f64::consts::TAU * u2).sin()));
    }
}
