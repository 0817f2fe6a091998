//! `configs/pretrain_mocov3_tiny.toml` holds the released recipe: its
//! `[model]` table is the default [`MocoV3Config`], and its optimizer
//! numbers are those of `pretrain::mocov3::recipe`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pretrain::mocov3::{recipe, MocoV3Config};

fn recipe_toml() -> toml::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/pretrain_mocov3_tiny.toml");
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn model_table_is_the_default_config() {
    let model: MocoV3Config = recipe_toml()["model"].clone().try_into().unwrap();
    model.validate().unwrap();
    assert_eq!(model, MocoV3Config::default());
}

#[test]
fn optimisation_numbers_are_the_recipe_module_s() {
    let value = recipe_toml();
    let train = &value["train"];
    let f = |k: &str| train[k].as_float().unwrap();
    assert_eq!(f("blr"), recipe::BLR);
    assert_eq!(f("weight_decay"), recipe::WEIGHT_DECAY);
    assert_eq!(f("warmup_lr"), recipe::WARMUP_LR_START);
    assert_eq!(f("warmup_epochs"), recipe::WARMUP_EPOCHS as f64);
    assert_eq!(train["epochs"].as_integer().unwrap() as usize, recipe::EPOCHS);
    assert_eq!(train["batch_size"].as_integer().unwrap() as usize, recipe::BATCH_SIZE);
    let betas: Vec<f64> = train["optimizer"]["betas"].as_array().unwrap().iter().map(|b| b.as_float().unwrap()).collect();
    assert_eq!(betas, recipe::BETAS);
}
