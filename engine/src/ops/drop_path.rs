//! Stochastic depth per sample (timm's `DropPath`): in training, each sample's
//! residual branch is dropped with probability `rate` and the kept ones are
//! scaled by `1 / (1 - rate)`; in evaluation it is the identity.

use candle_core::{Result, Tensor};
use rand::Rng;

/// Applies drop path to `x` of shape (B, ...). The keep/drop draws come from
/// `rng` (one per sample, in batch order), so a seeded run is reproducible.
pub fn drop_path<R: Rng + ?Sized>(x: &Tensor, rate: f64, train: bool, rng: &mut R) -> Result<Tensor> {
    if !train || rate <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - rate;
    let batch = x.dim(0)?;
    let scale: Vec<f64> = (0..batch)
        .map(|_| if rng.gen::<f64>() < keep { 1.0 / keep } else { 0.0 })
        .collect();
    let mut mask_shape = vec![1usize; x.rank()];
    mask_shape[0] = batch;
    let mask = Tensor::from_vec(scale, mask_shape, x.device())?.to_dtype(x.dtype())?;
    x.broadcast_mul(&mask)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::{check_gradients, random_tensor};
    use rand::SeedableRng;

    #[test]
    fn eval_mode_is_identity() {
        let x = random_tensor(&[3, 4], 20);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let y = drop_path(&x, 0.5, false, &mut rng).unwrap();
        assert_eq!(x.to_vec2::<f64>().unwrap(), y.to_vec2::<f64>().unwrap());
    }

    #[test]
    fn drops_whole_samples_and_rescales_the_rest() {
        let x = Tensor::ones((200, 3), candle_core::DType::F64, &candle_core::Device::Cpu).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let y = drop_path(&x, 0.25, true, &mut rng).unwrap().to_vec2::<f64>().unwrap();
        let mut kept = 0;
        for row in &y {
            assert!(row.iter().all(|v| *v == row[0]), "a sample is dropped or kept as a whole");
            assert!(row[0] == 0.0 || (row[0] - 1.0 / 0.75).abs() < 1e-15);
            kept += usize::from(row[0] != 0.0);
        }
        assert!((120..180).contains(&kept), "kept {kept} of 200 at keep prob 0.75");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_tensor(&[6, 2, 3], 21);
        // The same seed each call gives the same mask, so the function is deterministic.
        check_gradients(&[x], |t| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            drop_path(&t[0], 0.5, true, &mut rng)
        })
        .unwrap();
    }
}
