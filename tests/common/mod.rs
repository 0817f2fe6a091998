//! Helpers shared by the end-to-end CLI tests: run the built binary and
//! check how it ended.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `vitdet` with no home folder or weights directory (named
/// backbones are never found), and a backtrace if it panics.
pub fn vitdet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitdet")).args(args).env("HOME", "/nonexistent-home").env_remove("VITDET_WEIGHTS").env("RUST_BACKTRACE", "1").output().unwrap()
}

/// Lossy UTF-8 text of a captured stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command succeeded (else its exit code and both streams).
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), text(&o.stdout), text(&o.stderr));
}

/// Lossy UTF-8 text of the command's stderr.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Lossy UTF-8 text of the command's stdout.
pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// A user mistake: exit code 2, exactly one `error:` line naming `needle`,
/// and no panic. Our errors are the last line; clap's usage errors are
/// followed by their usage lines.
pub fn assert_user_error(o: &Output, needle: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    let errors = lines.iter().filter(|l| l.starts_with("error: ")).count();
    let last_or_usage = lines.last().is_some_and(|l| l.starts_with("error: ")) || err.contains("\nUsage: ");
    assert!(errors == 1 && last_or_usage, "one error line, last (or followed by clap's usage): {err}");
    assert!(err.contains(needle), "stderr names {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A fresh, empty folder `name` under the test target's temporary directory
/// (whatever an earlier run left there is removed first).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
