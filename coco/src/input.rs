//! Reading the (large) JSON inputs: memory-mapped when the platform allows,
//! else read into memory.
//!
//! A results file of COCO val size is ~40 MB. Reading it copies every byte
//! from the page cache into a fresh buffer whose pages are faulted in one by
//! one; mapping it lets the parser read the page cache directly (one fault per
//! 64 KiB with the kernel's fault-around). Parsing is identical either way.

use std::ops::Deref;
use std::path::Path;

use crate::Error;

/// A whole input file's bytes.
pub(crate) enum FileBytes {
    /// The file mapped read-only.
    Mapped(memmap2::Mmap),
    /// The file read into memory (empty files, platforms without mmap).
    Read(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Read(bytes) => bytes,
        }
    }
}

/// The bytes of the file at `path`.
///
/// # Errors
/// [`Error::Read`], as `std::fs::read` reports it.
pub(crate) fn read(path: &Path) -> Result<FileBytes, Error> {
    let fail = |source| Error::Read { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(fail)?;
    // SAFETY: the map is read-only and private to this process; it is only
    // read while the evaluation parses the file. As with every file map (and
    // ripgrep's, which makes the same choice), a file truncated by another
    // process during the parse would fault; input files are not rewritten
    // while they are evaluated. Directories, empty files and special files
    // fail to map and are read normally below (with the same errors).
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => Ok(FileBytes::Mapped(map)),
        Err(_) => std::fs::read(path).map(FileBytes::Read).map_err(fail),
    }
}
