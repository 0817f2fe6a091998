//! Recipe composition at the command line: `base = "..."` in a recipe file
//! and `--set KEY=VALUE` on `train`, `finetune` and `pretrain`; every mistake
//! is one `error:` line naming the file or `--set` argument, the line and
//! column and the key, with exit code 2. (A run with `--set` recording it in
//! `OUT/config.toml` is in `detection_cli.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{assert_user_error, path, vitdet};

#[test]
fn an_unknown_key_in_set_is_named_with_its_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = vitdet(&["train", "--set", "train.max_itr=3", "--out", path(&out)]);
    assert_user_error(&o, "--set train.max_itr=3 (line 1, column 1): unknown field `max_itr`");
    let o = vitdet(&["finetune", "--set", "train.blr=0.1", "--set", "train.blrr=1", "--out", path(&out)]);
    assert_user_error(&o, "--set train.blrr=1 (line 1, column 1): unknown field `blrr`");
    let o = vitdet(&["pretrain", "--method", "mae", "--set", "model.mask_ratio=most", "--out", path(&out)]);
    assert_user_error(&o, "--set model.mask_ratio=most");
    assert!(!out.exists(), "nothing is written before the recipe is checked");
}

#[test]
fn set_values_are_validated_like_recipe_values() {
    let dir = tempfile::tempdir().unwrap();
    let o = vitdet(&["pretrain", "--method", "mae", "--set", "model.mask_ratio=1.5", "--out", path(&dir.path().join("r"))]);
    assert_user_error(&o, "mask_ratio");
    let o = vitdet(&["train", "--set", "train.max_iter", "--out", path(&dir.path().join("r"))]);
    assert_user_error(&o, "expected KEY=VALUE");
}

#[test]
fn a_recipe_file_names_its_own_mistakes_through_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let mine = dir.path().join("mine.toml");
    // A built-in base, and a typo in this file: named with this file's line and column.
    std::fs::write(&mine, "base = \"vitdet_tiny_shapes.toml\"\n\n[train]\nmax_iter = 10\n  batchsize = 2\n").unwrap();
    assert_user_error(&vitdet(&["train", "--config", path(&mine), "--out", path(&out)]), &format!("{} (line 5, column 3): unknown field `batchsize`", mine.display()));
    // A base that is neither a file next to it nor built in.
    std::fs::write(&mine, "base = \"nowhere.toml\"\n").unwrap();
    assert_user_error(&vitdet(&["finetune", "--config", path(&mine), "--out", path(&out)]), "base \"nowhere.toml\": no such file");
    // Two files that include each other.
    let other = dir.path().join("other.toml");
    std::fs::write(&mine, "base = \"other.toml\"\n").unwrap();
    std::fs::write(&other, "base = \"mine.toml\"\n").unwrap();
    assert_user_error(&vitdet(&["pretrain", "--method", "mae", "--config", path(&mine), "--out", path(&out)]), "base cycle");
    assert!(!out.exists());
}
