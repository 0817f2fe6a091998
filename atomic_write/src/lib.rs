//! Atomic file writes: the one implementation every crate of the workspace
//! calls (checkpoints and run files in `engine`, results, reports and the
//! shapes dataset's annotations in `coco`). A leaf crate so that `coco`, which
//! stands alone, and `engine` reach the same code.
//!
//! The protocol (vernier `commands/eval.rs::write_atomic`, plus the folder
//! sync it leaves out):
//!
//! 1. write to a temporary file in the target's folder, named
//!    `.NAME.tmp-PID-N` (process id and a per-process counter, so concurrent
//!    writers, threads or processes, never share a temporary);
//! 2. fsync the temporary, so its bytes are on disk before it gets the name;
//! 3. rename it over the target (atomic within one folder on POSIX);
//! 4. fsync the folder, so the rename itself survives a crash (best effort:
//!    some filesystems refuse to sync a folder, and the data is safe by then).
//!
//! A crash therefore leaves the old file or the new one, never a torn one; at
//! worst a stale `.NAME.tmp-…` file, which `engine::run_dir` sweeps up. On any
//! error the temporary is removed, and the error names the file the caller
//! asked for, never the temporary.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A failed atomic write: the file that was to be written and why. The I/O
/// error is part of the message, not a separate `source`, so a printed error
/// chain names it once.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {cause}", path = path.display())]
pub struct Error {
    /// The file the caller asked for (never the temporary).
    pub path: PathBuf,
    /// The underlying failure.
    pub cause: io::Error,
}

/// Writes `bytes` to `path` atomically (see the crate doc).
///
/// # Errors
/// [`Error`] naming `path`: its folder does not exist, or creating, writing,
/// syncing or renaming the temporary fails.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_with(path, |tmp| File::create(tmp)?.write_all(bytes))
}

/// Runs `write` on a temporary path next to `path`, then makes the result
/// durable and renames it into place (see the crate doc). For writers that
/// want a path rather than bytes (e.g. `safetensors::serialize_to_file`).
///
/// # Errors
/// [`Error`] naming `path`: as [`write`], or `write`'s own error.
pub fn write_with(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> Result<(), Error> {
    let fail = |cause: io::Error| Error { path: path.to_path_buf(), cause };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| fail(io::Error::other("not a file path")))?
        .to_string_lossy()
        .into_owned();
    if !dir.is_dir() {
        let why = format!("the folder {} does not exist", dir.display());
        return Err(fail(io::Error::new(io::ErrorKind::NotFound, why)));
    }
    let tmp = dir.join(temporary_name(&file_name));
    let result = write(&tmp).and_then(|()| {
        File::open(&tmp)?.sync_all()?;
        abort_if_injected(&file_name);
        fs::rename(&tmp, path)
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether `name` is a temporary of this crate (`.NAME.tmp-PID-N`), left
/// behind by a process that died mid-write.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// `.NAME.tmp-PID-N`: unique per process and call.
fn temporary_name(file_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{file_name}.tmp-{}-{n}", std::process::id())
}

/// Environment variable of the kill tests' fault injection (the root
/// package's `tests/kill_resume.rs`): `NAME:K` makes the process abort, as a
/// kill would, after the K-th temporary of a file named NAME is written and
/// synced and before it is renamed into place. Unset, it costs one lookup per
/// atomic write.
pub const FAULT_ABORT_WRITE_ENV: &str = "VITDET_FAULT_ABORT_WRITE";

/// Aborts the process if [`FAULT_ABORT_WRITE_ENV`] asks for it at this write.
fn abort_if_injected(file_name: &str) {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var(FAULT_ABORT_WRITE_ENV) else { return };
    let Some((name, k)) = spec.rsplit_once(':') else { return };
    if name == file_name {
        let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        if k.parse::<usize>().is_ok_and(|k| k == n) {
            eprintln!("{FAULT_ABORT_WRITE_ENV}: aborting in the middle of writing {file_name} (write {n})");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn writing_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, b"a longer first version").unwrap();
        write(&p, b"short").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        assert_eq!(names(dir.path()), vec!["a.json".to_string()]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_removes_the_temporary_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        write(&p, b"old").unwrap();
        let e = write_with(&p, |tmp| {
            fs::write(tmp, b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.path, p);
        assert_eq!(e.to_string(), format!("{}: disk full", p.display()));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), vec!["w.bin".to_string()]);
    }

    #[test]
    fn a_missing_folder_is_named_with_the_file_not_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/x.json");
        let msg = write(&p, b"{}").unwrap_err().to_string();
        assert_eq!(msg, format!("{}: the folder {} does not exist", p.display(), dir.path().join("no/such").display()));
    }

    #[test]
    fn temporaries_are_unique_per_call_and_recognised() {
        let (a, b) = (temporary_name("x.json"), temporary_name("x.json"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!(".x.json.tmp-{}-", std::process::id())), "{a}");
        assert!(is_temporary(&a) && is_temporary(".last.safetensors.tmp-123-4"));
        assert!(!is_temporary("x.json") && !is_temporary(".hidden"));
    }

    #[test]
    fn concurrent_writers_of_one_file_never_tear_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.txt");
        let payloads: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 4096 * (1 + i as usize)]).collect();
        std::thread::scope(|s| {
            for bytes in &payloads {
                let p = &p;
                s.spawn(move || write(p, bytes).unwrap());
            }
        });
        assert!(payloads.contains(&fs::read(&p).unwrap()));
        assert_eq!(names(dir.path()), vec!["shared.txt".to_string()]);
    }

    #[test]
    fn a_path_naming_no_file_is_an_error_naming_it() {
        let e = write(Path::new("/"), b"x").unwrap_err();
        assert_eq!(e.path, Path::new("/"));
        assert!(e.to_string().contains("not a file path"), "{e}");
    }
}
