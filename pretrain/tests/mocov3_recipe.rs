//! `configs/pretrain_mocov3_tiny.toml` holds the released recipe: read as a
//! pre-training recipe it is `Recipe::released(Method::Mocov3)`, its model
//! is the default [`MocoV3Config`], its optimizer numbers are those of
//! `pretrain::mocov3::recipe`, and its plan on ImageNet-1k is that module's
//! schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use engine::recipe_file::RecipeFile as _;
use engine::optim::OptimizerConfig;
use pretrain::mocov3::{recipe, MocoV3Config};
use pretrain::recipe::{Method, Recipe};

/// ImageNet-1k's training images.
const IMAGENET_TRAIN: usize = 1_281_167;

fn released_file() -> Recipe {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/pretrain_mocov3_tiny.toml");
    Recipe::load(&path).unwrap()
}

#[test]
fn model_is_the_default_config() {
    let r = released_file();
    assert_eq!(r.method(), Method::Mocov3);
    assert_eq!(r.mocov3_config().unwrap(), MocoV3Config::default());
    assert_eq!(r, Recipe::released(Method::Mocov3), "the file and the built-in defaults agree");
}

#[test]
fn optimisation_numbers_are_the_recipe_module_s() {
    let t = released_file().train;
    assert_eq!((t.blr, t.weight_decay, t.warmup_lr, t.min_lr), (recipe::BLR, recipe::WEIGHT_DECAY, recipe::WARMUP_LR_START, 0.0));
    assert_eq!((t.epochs, t.warmup_epochs, t.batch_size, t.grad_accum), (recipe::EPOCHS, recipe::WARMUP_EPOCHS as f64, recipe::BATCH_SIZE, 1));
    assert_eq!(t.optimizer, OptimizerConfig::Adamw(recipe::adamw()));
}

#[test]
fn plan_on_imagenet_is_the_released_schedule() {
    let plan = released_file().plan(IMAGENET_TRAIN, None).unwrap();
    assert_eq!(plan.iters_per_epoch, 1251);
    assert!((plan.lr - 6e-4).abs() < 1e-18);
    assert_eq!(plan.schedule, recipe::schedule(recipe::BATCH_SIZE, 1251, recipe::EPOCHS, recipe::WARMUP_EPOCHS));
}
