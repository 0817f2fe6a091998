//! The random draws of the reference transforms, expressed over any
//! `rand::Rng` so a sample's augmentation is a pure function of its seed.
//!
//! Python's `random` module and torch's generator are not reproduced bit for
//! bit (their streams differ from any Rust generator anyway); what is kept is
//! each draw's distribution and the arithmetic applied to it, e.g.
//! `random.uniform(a, b) = a + (b - a) * random()` and Python's round half to
//! even.

use rand::Rng;

/// Python's `random.uniform(lo, hi)`: `lo + (hi - lo) * U[0, 1)`.
pub fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.gen::<f64>()
}

/// Python's `random.randint(lo, hi)`: uniform over `lo..=hi` (both included).
pub fn randint(rng: &mut impl Rng, lo: usize, hi: usize) -> usize {
    rng.gen_range(lo..=hi)
}

/// True with probability `p` (`torch.rand(1) < p`, or timm's
/// `not random.random() > p`; the two differ only on a set of measure zero).
pub fn coin(rng: &mut impl Rng, p: f64) -> bool {
    rng.gen::<f64>() < p
}

/// A normal draw with mean `mu` and standard deviation `sigma` (Python's
/// `random.gauss`, torch's `normal_`), by the Box-Muller transform.
pub fn gauss(rng: &mut impl Rng, mu: f64, sigma: f64) -> f64 {
    // 1 - U[0, 1) lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.gen::<f64>();
    let u2 = rng.gen::<f64>();
    mu + sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Python 3's `round(x)`: to the nearest integer, ties to even (so
/// `round(2.5) == 2`), which RandomResizedCrop and RandomErasing use for sizes.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn round_half_even_matches_python() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), -0.0);
        assert_eq!(round_half_even(2.4999), 2.0);
    }

    #[test]
    fn gauss_has_the_requested_mean_and_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| gauss(&mut rng, 9.0, 0.5)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
        // standard errors: 0.5 / sqrt(n) = 0.0035 for the mean, ~1% for the std
        assert!((mean - 9.0).abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.02, "std {}", var.sqrt());
    }

    #[test]
    fn uniform_and_randint_stay_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let u = uniform(&mut rng, -2.0, 3.0);
            assert!((-2.0..3.0).contains(&u));
            seen[randint(&mut rng, 0, 3)] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
