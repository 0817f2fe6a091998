//! Property tests of the recipe loaders (issue 17): detection, classification
//! and pre-training recipes of any text, and the shipped recipes with any key
//! set to any value, parse to a checked recipe or a one-line error naming the
//! file, never a panic; a parsed recipe written as TOML reads back the same,
//! and the run it plans has at least one step and periods of at least one.
//!
//! Case counts are bounded (`CASES`) so the file runs in seconds; the `fuzz/`
//! crate at the repository root runs the same parsers for longer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use engine::recipe_file::{resolve, RecipeFile as _};
use proptest::prelude::*;
use toml::Value;

/// Cases per property: enough to reach the odd branches, few enough for CI.
const CASES: u32 = 256;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Which loader a recipe goes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Detector,
    Classification,
    Pretrain,
}

/// The shipped recipes: (kind, file, text with its bases merged in, as
/// `--config FILE` resolves it).
fn shipped() -> Vec<(Kind, PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut out: Vec<(Kind, PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let kind = if name.starts_with("vitdet_") {
                Kind::Detector
            } else if name.starts_with("pretrain_") {
                Kind::Pretrain
            } else {
                Kind::Classification
            };
            let spec = p.to_str().unwrap();
            let resolved = match kind {
                Kind::Detector => resolve::<detector::recipe::Recipe>(spec, detector::recipe::BUILTIN, &[]),
                Kind::Classification => resolve::<classification::recipe::Recipe>(spec, classification::recipe::BUILTIN, &[]),
                Kind::Pretrain => resolve::<pretrain::recipe::Recipe>(spec, pretrain::recipe::BUILTIN, &[]),
            };
            (kind, p, resolved.unwrap().text)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(out.len() >= 10, "the shipped recipes are missing: {out:?}");
    out
}

/// Parses `text` with `kind`'s loader and, when it loads, checks that it
/// round-trips through TOML and that the run it plans is usable. Returns
/// the error message, if any.
fn load_and_check(kind: Kind, text: &str, images: usize, max_iter: Option<usize>) -> Option<String> {
    let origin = Path::new("recipe.toml");
    let result: Result<(), String> = match kind {
        Kind::Detector => detector::recipe::Recipe::parse(text, origin).map_err(|e| e.to_string()).map(|r| {
            let written = toml::to_string(&r).unwrap();
            let again = detector::recipe::Recipe::parse(&written, origin).unwrap();
            assert_eq!(toml::to_string(&again).unwrap(), written);
            if let Some(n) = max_iter.filter(|n| (1..=engine::limits::MAX_STEPS).contains(n)) {
                r.train.with_max_iter(n).validate().unwrap();
            }
        }),
        Kind::Classification => classification::recipe::Recipe::parse(text, origin).map_err(|e| e.to_string()).and_then(|r| {
            let written = toml::to_string(&r).unwrap();
            let again = classification::recipe::Recipe::parse(&written, origin).unwrap();
            assert_eq!(toml::to_string(&again).unwrap(), written);
            let plan = r.plan(images, max_iter).map_err(|e| e.to_string())?;
            assert!(plan.max_iter >= 1 && plan.eval_period >= 1 && plan.checkpoint_period >= 1 && plan.iters_per_epoch >= 1, "{plan:?}");
            assert!(plan.max_iter <= engine::limits::MAX_STEPS, "{plan:?}");
            Ok(())
        }),
        Kind::Pretrain => pretrain::recipe::Recipe::parse(text, origin).map_err(|e| e.to_string()).and_then(|r| {
            let written = toml::to_string(&r).unwrap();
            let again = pretrain::recipe::Recipe::parse(&written, origin).unwrap();
            assert_eq!(toml::to_string(&again).unwrap(), written);
            let plan = r.plan(images, max_iter).map_err(|e| e.to_string())?;
            assert!(plan.max_iter >= 1 && plan.checkpoint_period >= 1 && plan.iters_per_epoch >= 1, "{plan:?}");
            assert!(plan.max_iter <= engine::limits::MAX_STEPS, "{plan:?}");
            Ok(())
        }),
    };
    let err = result.err()?;
    assert!(!err.contains('\n'), "{err}");
    Some(err)
}

/// Every leaf key of a TOML table, dotted (`train.augment.scale`).
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(t) => leaf_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

/// Sets dotted `key` of `table` to `value`.
fn set(table: &mut toml::Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap();
    let mut t = table;
    for p in parts {
        t = t.entry(p).or_insert_with(|| Value::Table(toml::Table::new())).as_table_mut().unwrap();
    }
    t.insert(last.to_string(), value);
}

/// A value a user (or a typo) could write: edge numbers, other types.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![0i64, 1, -1, 2, 3, 16, 1000, 1 << 31, 1 << 40, i64::MAX, i64::MIN]).prop_map(Value::Integer),
        prop::sample::select(vec![0.0, -0.0, 0.5, 1.0, -1.0, 1e-300, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        "[a-z_0-9.-]{0,12}".prop_map(Value::String),
        prop::collection::vec(prop_oneof![(-3i64..1000).prop_map(Value::Integer), (-1.0f64..3.0).prop_map(Value::Float)], 0..4).prop_map(Value::Array),
    ]
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn any_text_is_a_recipe_or_a_one_line_error(text in "\\PC{0,200}", kind in 0usize..3) {
        let kind = [Kind::Detector, Kind::Classification, Kind::Pretrain][kind];
        load_and_check(kind, &text, 100, None);
    }

    #[test]
    fn shipped_recipes_with_any_key_changed_load_or_say_why(
        recipe in any::<prop::sample::Index>(),
        keys in prop::collection::vec((any::<prop::sample::Index>(), value()), 1..4),
        images in prop_oneof![Just(1usize), 2usize..5000, Just(usize::MAX / 2)],
        // --max-iter as the CLI passes it (it refuses more than MAX_STEPS).
        max_iter in prop::option::of(prop_oneof![Just(0usize), 1usize..10_000, Just(engine::limits::MAX_STEPS)]),
    ) {
        let recipes = shipped();
        let (kind, _, text) = recipe.get(&recipes);
        let mut table: toml::Table = toml::from_str(text).unwrap();
        let mut leaves = Vec::new();
        leaf_keys(&table, "", &mut leaves);
        for (index, v) in keys {
            let key = index.get(&leaves).clone();
            set(&mut table, &key, v);
        }
        load_and_check(*kind, &toml::to_string(&table).unwrap(), images, max_iter);
    }
}

#[test]
fn shipped_recipes_load_and_round_trip() {
    for (kind, path, text) in shipped() {
        assert_eq!(load_and_check(kind, &text, 1000, None), None, "{}", path.display());
    }
}
