//! MoCo-v3-Tiny's released optimisation recipe (MAE-Lite
//! `projects/mocov3/mocov3_exp.py`; maelite-recipes.md §3), as values the
//! trainer's optimizer and schedule take. `configs/pretrain_mocov3_tiny.toml`
//! writes the same numbers as a recipe.

use engine::optim::AdamWConfig;
use engine::schedule::Schedule;

/// Learning rate per 256 images (`basic_lr_per_img = 1.5e-4 / 256`).
pub const BLR: f64 = 1.5e-4;
/// AdamW weight decay, on every parameter ([`super::MocoV3::param_groups`]).
pub const WEIGHT_DECAY: f64 = 0.1;
/// AdamW betas: `torch.optim.AdamW`'s defaults, which MAE-Lite keeps.
pub const BETAS: [f64; 2] = [0.9, 0.999];
/// Released length in epochs.
pub const EPOCHS: usize = 400;
/// Linear warmup length in epochs.
pub const WARMUP_EPOCHS: usize = 40;
/// Learning rate at iteration 0 (`warmup_lr`); the warmup rises from it.
pub const WARMUP_LR_START: f64 = 1e-6;
/// Released total batch (8 GPUs), giving lr 6e-4.
pub const BATCH_SIZE: usize = 1024;

/// The peak learning rate for a total batch of `batch` images: `BLR · batch / 256`.
pub fn peak_lr(batch: usize) -> f64 {
    BLR * batch as f64 / 256.0
}

/// AdamW with the recipe's betas and PyTorch's eps 1e-8.
pub fn adamw() -> AdamWConfig {
    AdamWConfig { betas: BETAS, ..AdamWConfig::default() }
}

/// MAE-Lite's `warmcos` for this recipe, stepped per iteration: linear from
/// [`WARMUP_LR_START`] to [`peak_lr`] over `warmup_epochs`, then cosine to 0
/// at `epochs`.
pub fn schedule(batch: usize, iters_per_epoch: usize, epochs: usize, warmup_epochs: usize) -> Schedule {
    Schedule::WarmupCosine {
        base_lr: peak_lr(batch),
        total_iters: iters_per_epoch * epochs,
        warmup_iters: iters_per_epoch * warmup_epochs,
        warmup_lr_start: WARMUP_LR_START,
        min_lr: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_recipe_numbers() {
        assert!((peak_lr(BATCH_SIZE) - 6e-4).abs() < 1e-18);
        let s = schedule(BATCH_SIZE, 1251, EPOCHS, WARMUP_EPOCHS);
        assert_eq!(s.lr_at(0), WARMUP_LR_START);
        assert!((s.lr_at(1251 * 40) - 6e-4).abs() < 1e-15);
        assert!(s.lr_at(1251 * 400) < 1e-15);
        assert_eq!(adamw().betas, [0.9, 0.999]);
    }
}
