//! Helpers shared by the end-to-end CLI tests: run the built binary and
//! check how it ended.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
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

/// A user mistake: exit code 2, one `error:` line naming `needle`, no panic.
pub fn assert_user_error(o: &Output, needle: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{err}");
    assert!(err.contains(needle), "stderr names {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
