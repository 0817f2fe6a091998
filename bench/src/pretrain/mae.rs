//! `vitdet bench mae`: one MAE-Tiny training step of the released recipe
//! (`configs/pretrain_mae_tiny.toml`: ViT-Tiny with 12 heads, decoder 96
//! wide, depth 1, 3 heads) as [`pretrain::task`] runs it: fresh per-sample
//! masking 0.75 from the run's generator, the encoder on the 49 visible
//! patches, the decoder on every patch, the `norm_pix_loss` on the masked
//! ones, backward, AdamW (0.9, 0.95) over the released parameter groups
//! (decay 0.05 except 1-D parameters and biases, fixed sin-cos tables not
//! trained). Random weights (MAE's initialisation) and fixed random images
//! stand in for the data. Mirrors `bench/bench_mae.py` (MAE-Lite's
//! `models_mae` as the MAE parity fixtures build it).

use candle_core::Device;
use candle_nn::VarMap;
use engine::rng::TrainRng;
use rand::SeedableRng;


use super::{time_train_steps, StepBenchOptions, StepBenchResult, LR};
use pretrain::encoder::EncoderTaps;
use pretrain::recipe::Recipe;
use pretrain::task::{build_mae, build_mae_optimizer};
use anyhow::Result;
use engine::testing::random_images;

/// Runs the benchmark on `device`.
///
/// # Errors
/// An input size the ViT cannot take; tensor or optimizer errors.
pub fn bench_mae(opts: &StepBenchOptions, device: &Device) -> Result<StepBenchResult> {
    let mut recipe = Recipe::default();
    recipe.data.input_size = opts.input_size;
    let spec = recipe.spec()?;
    let varmap = VarMap::new();
    let model = build_mae(&spec, recipe.train.seed, &varmap, device)?;
    let named = engine::vars::named_vars(&varmap)?;
    let mut optimizer = build_mae_optimizer(&named, &model.encoder().param_rules(), &recipe)?;

    let images = random_images(opts.batch, opts.input_size, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0), device)?;
    let mut rng = TrainRng::seed_from_u64(1);
    let (e, d) = (&spec.encoder, &spec.decoder);
    let name = format!(
        "vitdet mae vit(dim {}, depth {}, heads {}) decoder(dim {}, depth {}, heads {}) mask {} @{}",
        e.embed_dim, e.depth, e.num_heads, d.embed_dim, d.depth, d.num_heads, spec.mask_ratio, opts.input_size
    );
    time_train_steps(opts, name, device, || {
        let masking = model.random_masking(opts.batch, &mut rng)?;
        let loss = model.forward(&images, &masking, &EncoderTaps::default(), &mut rng)?.loss;
        optimizer.step(&loss.backward()?, LR)?;
        Ok(loss)
    })
}
