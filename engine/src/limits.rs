//! Bounds on the sizes a user sets, checked when a recipe or command is read:
//! a typo such as `batch_size = 100000` must be a one-line message naming the
//! key, not an allocator abort minutes later.

/// Most images one forward pass may hold (`batch_size / grad_accum`). Far
/// above what fits a GPU at 224 px with ViT-Tiny; larger batches are split
/// with gradient accumulation.
pub const MAX_MICRO_BATCH: usize = 1024;

/// Most optimizer steps a run may ask for (and what a TOML integer holds).
pub const MAX_STEPS: usize = 1_000_000_000_000;

/// How many candidate values of `grad_accum` a batch-size message tries
/// before it stops suggesting a number.
const DIVISOR_SEARCH: usize = 1 << 20;

/// Why `batch_size` split into `grad_accum` micro-batches is not a valid
/// setting, naming the key at fault (`batch_key` / `accum_key`), or `None`.
pub fn batch_problem(batch_key: &str, batch_size: usize, accum_key: &str, grad_accum: usize) -> Option<(String, String)> {
    if batch_size == 0 {
        return Some((batch_key.into(), "must be at least 1".into()));
    }
    if grad_accum == 0 || !batch_size.is_multiple_of(grad_accum) {
        return Some((accum_key.into(), format!("{grad_accum} must be at least 1 and divide {batch_key} = {batch_size}")));
    }
    let micro = batch_size / grad_accum;
    (micro > MAX_MICRO_BATCH).then(|| {
        let accum = batch_size.div_ceil(MAX_MICRO_BATCH);
        // The smallest divisor of batch_size from `accum` up, looked for among
        // a bounded number of candidates: a huge prime batch size would
        // otherwise scan up to 10^19 numbers (found by tests/recipe_properties.rs).
        let suggestion = (accum..=batch_size)
            .take(DIVISOR_SEARCH)
            .find(|a| batch_size.is_multiple_of(*a))
            .map_or_else(|| format!("a divisor of {batch_size} of at least {accum}"), |a| format!("e.g. {a} or more"));
        (
            batch_key.into(),
            format!(
                "{batch_size} images in one forward pass ({accum_key} = {grad_accum}) is more than {MAX_MICRO_BATCH}; \
                 split it with {accum_key} ({suggestion})"
            ),
        )
    })
}

/// The steps of `epochs` epochs of `iters_per_epoch` steps, or why that is
/// not a run (more than [`MAX_STEPS`], which also keeps the product from
/// overflowing). Found by `tests/recipe_properties.rs`: a shipped recipe on
/// a huge image set planned a run past `MAX_STEPS`.
///
/// # Errors
/// The message for the `train.epochs` key.
pub fn epochs_in_steps(epochs: usize, iters_per_epoch: usize) -> Result<usize, String> {
    epochs
        .checked_mul(iters_per_epoch)
        .filter(|&n| n <= MAX_STEPS)
        .ok_or_else(|| format!("{epochs} epochs of {iters_per_epoch} steps is more than {MAX_STEPS} steps"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batch_problems_name_the_key_at_fault() {
        assert_eq!(batch_problem("b", 64, "a", 2), None);
        assert_eq!(batch_problem("b", 0, "a", 1).map(|p| p.0), Some("b".into()));
        assert_eq!(batch_problem("b", 64, "a", 0).map(|p| p.0), Some("a".into()));
        assert_eq!(batch_problem("b", 64, "a", 3).map(|p| p.0), Some("a".into()));
        let (key, msg) = batch_problem("b", 100_000, "a", 1).unwrap();
        assert_eq!(key, "b");
        assert!(msg.contains("a (e.g. 100 or more)"), "{msg}");
        assert_eq!(batch_problem("b", 4096, "a", 4), None);
        // A huge prime: answered at once, without a number to suggest.
        let (_, msg) = batch_problem("b", 9_223_372_036_854_775_783, "a", 1).unwrap();
        assert!(msg.contains("a divisor of 9223372036854775783 of at least"), "{msg}");
    }

    #[test]
    fn epochs_beyond_the_step_limit_are_refused() {
        assert_eq!(epochs_in_steps(300, 5004), Ok(1_501_200));
        assert!(epochs_in_steps(usize::MAX, 2).unwrap_err().contains("epochs"));
        assert!(epochs_in_steps(2, MAX_STEPS).is_err());
    }
}
