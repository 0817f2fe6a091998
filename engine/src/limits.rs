//! Bounds on the sizes a user sets, checked when a recipe or command is read:
//! a typo such as `batch_size = 100000` must be a one-line message naming the
//! key, not an allocator abort minutes later.

/// Most images one forward pass may hold (`batch_size / grad_accum`). Far
/// above what fits a GPU at 224 px with ViT-Tiny; larger batches are split
/// with gradient accumulation.
pub const MAX_MICRO_BATCH: usize = 1024;

/// Most optimizer steps a run may ask for (and what a TOML integer holds).
pub const MAX_STEPS: usize = 1_000_000_000_000;

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
        (
            batch_key.into(),
            format!(
                "{batch_size} images in one forward pass ({accum_key} = {grad_accum}) is more than {MAX_MICRO_BATCH}; \
                 split it with {accum_key} (e.g. {} or more)",
                (accum..=batch_size).find(|a| batch_size.is_multiple_of(*a)).unwrap_or(batch_size)
            ),
        )
    })
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
    }
}
