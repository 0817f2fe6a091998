//! Recipe files, for every task: where a recipe comes from (a file or a
//! built-in name), `base = "..."` includes and `--set key=value` overrides,
//! resolved into one TOML text that the task's `Recipe::parse` reads.
//!
//! Composition follows detectron2's LazyConfig (a recipe imports another and
//! overrides what differs) and its `key=value` command-line overrides:
//!
//! - `base = "other.toml"`, a top-level key on one line, names the recipe
//!   this one starts from: a file relative to this file's folder or, when no
//!   such file exists (and always inside a built-in recipe), a built-in
//!   recipe by name. Bases may have bases; a cycle is an error.
//! - Merging is a deep merge of TOML tables: a table merges key by key into
//!   the base's table of the same name, anything else (a number, a string,
//!   an array) replaces the base's value. A tagged table given with another
//!   `kind` (`[train.schedule] kind = "warmup_cosine"` over a step schedule)
//!   is another variant: it replaces the base's table whole, so give all of
//!   its keys.
//! - `--set a.b.c=VALUE` (repeatable, applied in order after every file)
//!   sets one key; VALUE is read as a TOML value (`200`, `1e-4`, `[0.5, 2.0]`,
//!   `true`, `"x"`) and, when it is not one, as a string (`--set
//!   train.backbone=mae_tiny`).
//!
//! Errors name the file (or the `--set` argument), the line and column of
//! the key and what was expected, as a single recipe file's errors do
//! (`toml_errors`): the merged recipe is checked against the task's type, and
//! a failure is traced back to the layer that wrote the key.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::toml_errors;
use crate::{Error, Result};

/// The top-level key naming a recipe's base.
pub const BASE_KEY: &str = "base";

/// How deep bases may nest: far beyond any real recipe, and a bound on a
/// runaway chain of distinct files.
const MAX_BASE_DEPTH: usize = 16;

/// A recipe resolved from its bases and overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The recipe's TOML text: the file's own text when it has neither base
    /// nor overrides (so later errors keep its lines), otherwise the merged
    /// table written out.
    pub text: String,
    /// The recipe's name in messages: its file, or `configs/NAME.toml` for a
    /// built-in one.
    pub origin: PathBuf,
}

/// One source of keys: a recipe file, a built-in recipe or a `--set`.
#[derive(Debug, Clone)]
struct Layer {
    /// Its name in messages.
    origin: String,
    /// Its text (for positions), the `base` line blanked.
    text: String,
    /// Its keys.
    table: toml::Table,
}

/// Where a recipe is: a file on disk or a built-in recipe.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    File(PathBuf),
    Builtin(&'static str, &'static str),
}

impl Source {
    /// Whether two sources are the same recipe (files compared by their
    /// canonical paths, so `a/../b.toml` and `b.toml` are one file).
    fn same_as(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::File(a), Source::File(b)) => match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            },
            _ => self == other,
        }
    }

    fn origin(&self) -> PathBuf {
        match self {
            Source::File(p) => p.clone(),
            Source::Builtin(name, _) => PathBuf::from(format!("configs/{name}.toml")),
        }
    }
}

/// Resolves `--config SPEC` (a TOML file, or a built-in recipe by name, also
/// written `configs/NAME.toml`) with its bases, applies `overrides`
/// (`a.b.c=VALUE` each) and checks the result deserializes as `T` (the
/// task's recipe type, without its cross-field validation).
///
/// # Errors
/// [`Error::Config`], one line naming the file or `--set` argument, with the
/// line and column of the offending key where it has one: a file that cannot
/// be read, a name that is neither a file nor built in (listing the built-in
/// ones), TOML syntax, an unknown key or a value of the wrong type, a
/// missing base, a base cycle, a malformed `--set`.
pub fn resolve<T: DeserializeOwned>(spec: &str, builtins: &[(&'static str, &'static str)], overrides: &[String]) -> Result<Resolved> {
    let source = find(spec, builtins)?;
    let origin = source.origin();
    let mut layers = Vec::new();
    collect(&source, builtins, &mut Vec::new(), &mut layers)?;
    let own_text_only = layers.len() == 1 && overrides.is_empty();
    for arg in overrides {
        layers.push(override_layer(arg)?);
    }
    if own_text_only {
        let text = match &source {
            Source::File(p) => read(p)?,
            Source::Builtin(_, text) => (*text).to_string(),
        };
        return Ok(Resolved { text, origin });
    }
    let mut merged = toml::Table::new();
    for layer in &layers {
        merge(&mut merged, layer.table.clone());
    }
    let text = toml::to_string(&merged).map_err(|e| Error::Config(format!("{}: cannot write the merged recipe: {e}", origin.display())))?;
    if let Err(e) = toml::from_str::<T>(&text) {
        return Err(Error::Config(trace_back(&e, &text, &layers, &origin)));
    }
    Ok(Resolved { text, origin })
}

/// A task's recipe type (detection, classification, pre-training): its
/// built-in recipes and its own parse-and-validate step. Loading, with bases
/// and overrides, is then the same for every task (the provided methods).
pub trait RecipeFile: DeserializeOwned + Sized {
    /// The task's error type, which carries this module's errors.
    type Error: From<Error>;

    /// The recipes built into the binary, `(name, TOML text)`.
    const BUILTIN: &'static [(&'static str, &'static str)];

    /// Parses and checks one recipe text (without bases: a resolved one);
    /// `origin` names it in errors. Reads it with [`from_text`], then checks
    /// the task's cross-field rules.
    ///
    /// # Errors
    /// [`Error::Config`] (in the task's error) for a TOML mistake, with its
    /// line and column; the task's error naming a key that breaks a rule.
    fn parse(text: &str, origin: &Path) -> std::result::Result<Self, Self::Error>;

    /// A recipe file or built-in recipe, with its `base` recipes merged in
    /// and `overrides` (`--set a.b=VALUE` each) applied, checked
    /// ([`resolve`], then [`RecipeFile::parse`]).
    ///
    /// # Errors
    /// [`Error::Config`] (in the task's error) naming the file or `--set`
    /// argument, the line and column of a TOML error, a name that is neither
    /// a file nor built in; the task's error naming a key that breaks a rule.
    fn resolve(spec: &str, overrides: &[String]) -> std::result::Result<Self, Self::Error> {
        let resolved = resolve::<Self>(spec, Self::BUILTIN, overrides)?;
        Self::parse(&resolved.text, &resolved.origin)
    }

    /// A recipe file (with its bases).
    ///
    /// # Errors
    /// As [`RecipeFile::resolve`].
    fn load(path: &Path) -> std::result::Result<Self, Self::Error> {
        Self::resolve(&path.to_string_lossy(), &[])
    }

    /// A recipe file, or a built-in recipe by name (with its bases).
    ///
    /// # Errors
    /// As [`RecipeFile::resolve`].
    fn load_or_builtin(spec: &str) -> std::result::Result<Self, Self::Error> {
        Self::resolve(spec, &[])
    }
}

/// Deserializes one recipe text as `T` (the first step of every task's
/// [`RecipeFile::parse`]).
///
/// # Errors
/// [`Error::Config`]: `origin (line L, column C): message` on one line, for
/// TOML syntax, an unknown key or a value of the wrong type.
pub fn from_text<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::Config(format!("{}{}: {}", origin.display(), toml_errors::position(&e, text), toml_errors::message(&e))))
}

/// The file or built-in recipe `spec` names.
fn find(spec: &str, builtins: &[(&'static str, &'static str)]) -> Result<Source> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(Source::File(path.to_path_buf()));
    }
    builtin(spec, builtins).ok_or_else(|| {
        Error::Config(format!("--config {spec}: no such file, and not a built-in recipe ({})", builtin_names(builtins)))
    })
}

/// The built-in recipe named by `spec`'s file stem (`NAME`, `NAME.toml`, `configs/NAME.toml`).
fn builtin(spec: &str, builtins: &[(&'static str, &'static str)]) -> Option<Source> {
    let stem = Path::new(spec).file_stem().and_then(|s| s.to_str()).unwrap_or(spec);
    builtins.iter().find(|(name, _)| *name == stem).map(|&(name, text)| Source::Builtin(name, text))
}

fn builtin_names(builtins: &[(&'static str, &'static str)]) -> String {
    builtins.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Appends `source`'s layers, deepest base first; `chain` holds the recipes
/// being included, to detect cycles.
fn collect(source: &Source, builtins: &[(&'static str, &'static str)], chain: &mut Vec<Source>, layers: &mut Vec<Layer>) -> Result<()> {
    let origin = source.origin().display().to_string();
    if chain.iter().any(|s| s.same_as(source)) {
        let names: Vec<String> = chain.iter().chain([source]).map(|s| s.origin().display().to_string()).collect();
        return Err(Error::Config(format!("{origin}: base cycle: {}", names.join(" -> "))));
    }
    if chain.len() >= MAX_BASE_DEPTH {
        return Err(Error::Config(format!("{origin}: bases nest more than {MAX_BASE_DEPTH} deep")));
    }
    let text = match source {
        Source::File(p) => read(p)?,
        Source::Builtin(_, text) => (*text).to_string(),
    };
    let mut table: toml::Table = from_text(&text, &source.origin())?;
    let base = match table.remove(BASE_KEY) {
        None => None,
        Some(toml::Value::String(base)) => Some(base),
        Some(_) => {
            let at = key_position(&text, BASE_KEY).unwrap_or_default();
            return Err(Error::Config(format!("{origin}{at}: base must be a string naming a recipe file")));
        }
    };
    if let Some(base) = base {
        let parent = match source {
            Source::File(p) => {
                let candidate = p.parent().unwrap_or(Path::new("")).join(&base);
                candidate.is_file().then_some(Source::File(candidate))
            }
            Source::Builtin(..) => None,
        };
        let Some(parent) = parent.or_else(|| builtin(&base, builtins)) else {
            let at = key_position(&text, BASE_KEY).unwrap_or_default();
            return Err(Error::Config(format!(
                "{origin}{at}: base \"{base}\": no such file next to it, and not a built-in recipe ({})",
                builtin_names(builtins)
            )));
        };
        chain.push(source.clone());
        collect(&parent, builtins, chain, layers)?;
        chain.pop();
    }
    layers.push(Layer { origin, text: blank_base_line(&text), table });
    Ok(())
}

/// `text` with its top-level `base = ...` line turned into a comment, so the
/// layer's remaining keys keep their lines and columns.
fn blank_base_line(text: &str) -> String {
    let mut header_seen = false;
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            header_seen |= t.starts_with('[');
            if !header_seen && line_key(t).is_some_and(|k| k == BASE_KEY) {
                format!("#{line}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The layer of one `--set KEY=VALUE`: VALUE as TOML, else as a string.
fn override_layer(arg: &str) -> Result<Layer> {
    let origin = format!("--set {arg}");
    let bad = || Error::Config(format!("{origin}: expected KEY=VALUE with a dotted recipe key, e.g. --set train.max_iter=200"));
    let (key, value) = arg.split_once('=').ok_or_else(bad)?;
    if key.trim().is_empty() {
        return Err(bad());
    }
    let as_toml = format!("{key}={value}");
    let (text, table) = match toml::from_str::<toml::Table>(&as_toml) {
        Ok(table) => (as_toml, table),
        Err(_) => {
            let quoted = toml::Value::String(value.to_string()).to_string();
            let as_string = format!("{key}={quoted}");
            let table = toml::from_str::<toml::Table>(&as_string).map_err(|_| bad())?;
            (as_string, table)
        }
    };
    Ok(Layer { origin, text, table })
}

/// The key that tags a table's variant (`[train.schedule] kind = ...`).
pub const KIND_KEY: &str = "kind";

/// Merges `over` into `base`: tables key by key, anything else replaced. A
/// table whose [`KIND_KEY`] differs from the base's is another variant and
/// replaces the base's table whole (its keys would not fit the new kind).
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over_inner)) if same_kind(inner, &over_inner) => merge(inner, over_inner),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Whether `over` keeps `base`'s variant: it names no kind, or the same one.
fn same_kind(base: &toml::Table, over: &toml::Table) -> bool {
    match over.get(KIND_KEY) {
        None => true,
        Some(kind) => base.get(KIND_KEY).is_none_or(|k| k == kind),
    }
}

/// The one-line message of an error found in the merged text: the key it is
/// at, traced to the last layer that wrote that key, with that layer's line
/// and column.
fn trace_back(e: &toml::de::Error, merged: &str, layers: &[Layer], origin: &Path) -> String {
    let msg = toml_errors::message(e);
    let path = e.span().and_then(|span| path_at(merged, span.start));
    if let Some(path) = path {
        for layer in layers.iter().rev() {
            if let Some(at) = path_position(&layer.text, &path) {
                return format!("{}{at}: {msg}", layer.origin);
            }
        }
        return format!("{} (key {}): {msg}", origin.display(), path.join("."));
    }
    format!("{}: {msg}", origin.display())
}

/// The key of a `key = value` line (dotted keys kept whole, quotes removed).
fn line_key(line: &str) -> Option<String> {
    if line.starts_with('#') || line.starts_with('[') {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.replace(['"', '\''], ""))
}

/// The dotted path of a `[header]` / `[[header]]` line.
fn header_path(line: &str) -> Option<Vec<String>> {
    let inner = line.strip_prefix("[[").and_then(|l| l.split("]]").next()).or_else(|| line.strip_prefix('[').and_then(|l| l.split(']').next()))?;
    Some(split_key(inner))
}

fn split_key(key: &str) -> Vec<String> {
    key.split('.').map(|p| p.trim().replace(['"', '\''], "")).collect()
}

/// For each line of `text`: its 1-based number, the column of its first
/// character, and the key path it defines (header lines their table, key
/// lines table + key).
fn key_lines(text: &str) -> Vec<(usize, usize, Vec<String>)> {
    let mut table: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let column = line.chars().count() - t.chars().count() + 1;
        if let Some(header) = header_path(t) {
            table = header.clone();
            out.push((i + 1, column, header));
        } else if let Some(key) = line_key(t) {
            let mut path = table.clone();
            path.extend(split_key(&key));
            out.push((i + 1, column, path));
        }
    }
    out
}

/// The key path defined on the line holding byte `offset` of `text`.
fn path_at(text: &str, offset: usize) -> Option<Vec<String>> {
    let line = text.get(..offset).unwrap_or(text).matches('\n').count() + 1;
    key_lines(text).into_iter().rev().find(|(l, _, _)| *l <= line).map(|(_, _, p)| p)
}

/// ` (line L, column C)` of the line of `text` that defines `path`, or of
/// the deepest line defining a prefix of it (an inline table, a header).
fn path_position(text: &str, path: &[String]) -> Option<String> {
    let lines = key_lines(text);
    let exact = lines.iter().find(|(_, _, p)| p.as_slice() == path);
    let within = || lines.iter().filter(|(_, _, p)| path.starts_with(p) || p.starts_with(path)).max_by_key(|(_, _, p)| p.len());
    exact.or_else(within).map(|(line, column, _)| format!(" (line {line}, column {column})"))
}

/// ` (line L, column C)` of a top-level key in `text`.
fn key_position(text: &str, key: &str) -> Option<String> {
    path_position(text, &[key.to_string()])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Train {
        max_iter: usize,
        lr: f64,
        scale: Vec<f64>,
        backbone: String,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Model {
        depth: usize,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct R {
        model: Model,
        train: Train,
    }

    const BUILTINS: &[(&str, &str)] = &[
        ("root", "[model]\ndepth = 12\n[train]\nmax_iter = 100\nlr = 0.1\nscale = [0.1, 2.0]\n"),
        ("child", "base = \"root.toml\"\n[train]\nmax_iter = 5\n"),
        ("loop_a", "base = \"loop_b\"\n"),
        ("loop_b", "base = \"loop_a\"\n"),
    ];

    fn resolved(spec: &str, sets: &[&str]) -> R {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let r = resolve::<R>(spec, BUILTINS, &sets).unwrap();
        toml::from_str(&r.text).unwrap()
    }

    fn error(spec: &str, sets: &[&str]) -> String {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        resolve::<R>(spec, BUILTINS, &sets).unwrap_err().to_string()
    }

    #[test]
    fn a_base_is_merged_table_by_table_and_the_child_wins() {
        let r = resolved("child", &[]);
        assert_eq!(r.model.depth, 12);
        assert_eq!((r.train.max_iter, r.train.lr, r.train.scale.clone()), (5, 0.1, vec![0.1, 2.0]));
    }

    #[test]
    fn a_recipe_without_base_or_overrides_keeps_its_own_text() {
        let r = resolve::<R>("root", BUILTINS, &[]).unwrap();
        assert_eq!(r.text, BUILTINS[0].1);
        assert_eq!(r.origin, PathBuf::from("configs/root.toml"));
    }

    #[test]
    fn overrides_set_dotted_keys_in_order_and_arrays_replace() {
        let r = resolved("child", &["train.max_iter=200", "train.scale=[0.5]", "train.backbone=mae_tiny", "train.max_iter=300"]);
        assert_eq!((r.train.max_iter, r.train.scale.clone(), r.train.backbone.as_str()), (300, vec![0.5], "mae_tiny"));
        assert_eq!(r.train.lr, 0.1);
    }

    #[test]
    fn a_table_of_another_kind_replaces_the_base_table() {
        let mut base: toml::Table = toml::from_str("[s]\nkind = \"step\"\nlr = 1\nmilestones = [3]\n[t]\nkind = \"a\"\nx = 1\n").unwrap();
        let over: toml::Table = toml::from_str("[s]\nkind = \"cosine\"\nlr = 2\n[t]\nkind = \"a\"\ny = 2\n").unwrap();
        merge(&mut base, over);
        let want: toml::Table = toml::from_str("[s]\nkind = \"cosine\"\nlr = 2\n[t]\nkind = \"a\"\nx = 1\ny = 2\n").unwrap();
        assert_eq!(base, want);
    }

    #[test]
    fn unknown_keys_name_the_layer_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[train]\nmax_iter = 3\n").unwrap();
        let child = dir.path().join("child.toml");
        std::fs::write(&child, "base = \"base.toml\"\n\n[train]\n  max_itr = 4\n").unwrap();
        let msg = error(child.to_str().unwrap(), &[]);
        assert!(msg.contains(&format!("{} (line 4, column 3): unknown field `max_itr`", child.display())), "{msg}");
        let msg = error("child", &["train.lr=0.5", "train.max_itr=9"]);
        assert!(msg.contains("--set train.max_itr=9 (line 1, column 1): unknown field `max_itr`"), "{msg}");
        let msg = error("child", &["train.max_iter=many things"]);
        assert!(msg.contains("--set train.max_iter=many things") && msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn bases_resolve_next_to_the_file_then_among_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let child = dir.path().join("mine.toml");
        std::fs::write(&child, "base = \"child.toml\"\n[model]\ndepth = 2\n").unwrap();
        let r = resolved(child.to_str().unwrap(), &[]);
        assert_eq!((r.model.depth, r.train.max_iter, r.train.lr), (2, 5, 0.1));
        std::fs::write(dir.path().join("child.toml"), "[train]\nlr = 0.7\n").unwrap();
        let r = resolved(child.to_str().unwrap(), &[]);
        assert_eq!((r.model.depth, r.train.max_iter, r.train.lr), (2, 0, 0.7), "the file next to it wins over the built-in");
    }

    #[test]
    fn missing_bases_and_cycles_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, "# comment\nbase = \"nowhere.toml\"\n").unwrap();
        let msg = error(p.to_str().unwrap(), &[]);
        assert!(msg.contains(&format!("{} (line 2, column 1): base \"nowhere.toml\": no such file", p.display())), "{msg}");
        assert!(!msg.contains('\n'));
        let msg = error("loop_a", &[]);
        assert_eq!(msg, "config: configs/loop_a.toml: base cycle: configs/loop_a.toml -> configs/loop_b.toml -> configs/loop_a.toml");
        std::fs::write(&p, "base = 3\n").unwrap();
        assert!(error(p.to_str().unwrap(), &[]).contains("(line 1, column 1): base must be a string"));
        let a = dir.path().join("a.toml");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&a, "base = \"sub/../a.toml\"\n").unwrap();
        assert!(error(a.to_str().unwrap(), &[]).contains("base cycle"), "one file under two spellings");
    }

    #[test]
    fn malformed_overrides_and_unknown_recipes_are_errors() {
        assert!(error("root", &["train.max_iter"]).contains("--set train.max_iter: expected KEY=VALUE"));
        assert!(error("root", &["=3"]).contains("expected KEY=VALUE"));
        let msg = error("nope", &[]);
        assert!(msg.contains("--config nope: no such file, and not a built-in recipe (root, child, loop_a, loop_b)"), "{msg}");
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "base = \"root\"\n[train]\nlr = \n").unwrap();
        let msg = error(p.to_str().unwrap(), &[]);
        assert!(msg.contains(&format!("{} (line 3, column", p.display())), "{msg}");
    }
}
