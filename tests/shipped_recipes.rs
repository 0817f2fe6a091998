//! Every shipped recipe resolves (bases merged, as `--config NAME` loads it)
//! to exactly the values it had before the recipes were composed with
//! `base = "..."`: `tests/fixtures/recipes/NAME.resolved.toml` holds each
//! recipe's fully resolved form (what a run records in `OUT/config.toml`),
//! written from the recipes as they stood before composition (plus the
//! `train.precision = "f32"` key every recipe gained with mixed precision,
//! the only line that differs from that recording).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use engine::recipe_file::RecipeFile as _;

/// The recorded resolution of `name`.
fn recorded(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recipes").join(format!("{name}.resolved.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares the resolved recipe's TOML with the recorded one, printing both in full when they differ.
fn check(name: &str, resolved: String) {
    let want = recorded(name);
    assert!(resolved == want, "{name} resolves differently:\n--- recorded\n{want}\n--- now\n{resolved}");
}

#[test]
fn detection_recipes_resolve_to_their_recorded_values() {
    for (name, _) in detector::recipe::BUILTIN {
        check(name, toml::to_string(&detector::recipe::Recipe::resolve(name, &[]).unwrap()).unwrap());
    }
}

#[test]
fn classification_recipes_resolve_to_their_recorded_values() {
    for (name, _) in classification::recipe::BUILTIN {
        check(name, toml::to_string(&classification::Recipe::resolve(name, &[]).unwrap()).unwrap());
    }
}

#[test]
fn pretraining_recipes_resolve_to_their_recorded_values() {
    for (name, _) in pretrain::recipe::BUILTIN {
        check(name, toml::to_string(&pretrain::Recipe::resolve(name, &[]).unwrap()).unwrap());
    }
}

#[test]
fn every_recipe_file_in_configs_is_built_in() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let builtin: Vec<&str> = detector::recipe::BUILTIN.iter().chain(classification::recipe::BUILTIN).chain(pretrain::recipe::BUILTIN).map(|(n, _)| *n).collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(builtin.contains(&stem.as_str()), "{} is not built in", path.display());
    }
}
