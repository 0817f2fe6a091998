//! Small file helpers the readers share: finding the dataset folder under
//! `--data`, requiring files, reading text lists, checking that listed
//! images exist.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::{read_error, DatasetError, Result};
use super::ImageSource;

/// The dataset folder: `root` itself if it holds `marker`, else the first
/// `root/sub` (for `sub` in `subfolders`) that does. Lets `--data` name the
/// extracted folder or the folder torchvision is given (its parent).
///
/// # Errors
/// [`DatasetError::Missing`] naming `root/marker` and the layout `expected`.
pub(crate) fn find_root(root: &Path, subfolders: &[&str], marker: &str, expected: &str) -> Result<PathBuf> {
    if !root.is_dir() {
        return Err(DatasetError::Missing { path: root.to_path_buf(), expected: format!("the dataset folder: {expected}") });
    }
    std::iter::once(root.to_path_buf())
        .chain(subfolders.iter().map(|s| root.join(s)))
        .find(|dir| dir.join(marker).exists())
        .ok_or_else(|| DatasetError::Missing { path: root.join(marker), expected: expected.to_owned() })
}

/// Checks that `path` exists.
///
/// # Errors
/// [`DatasetError::Missing`] naming it and what it should be.
pub(crate) fn require(path: &Path, expected: &str) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(DatasetError::Missing { path: path.to_path_buf(), expected: expected.to_owned() })
    }
}

/// Reads a whole file after checking it exists.
///
/// # Errors
/// [`DatasetError::Missing`] (with `expected`) or [`DatasetError::Read`].
pub(crate) fn read_bytes(path: &Path, expected: &str) -> Result<Vec<u8>> {
    require(path, expected)?;
    std::fs::read(path).map_err(read_error(path))
}

/// Reads a UTF-8 text file after checking it exists.
///
/// # Errors
/// As [`read_bytes`], or [`DatasetError::Parse`] if it is not UTF-8.
pub(crate) fn read_text(path: &Path, expected: &str) -> Result<String> {
    let bytes = read_bytes(path, expected)?;
    String::from_utf8(bytes).map_err(|e| super::error::parse_error(path, format!("byte {}", e.utf8_error().valid_up_to()), "UTF-8 text"))
}

/// The non-blank lines of a text list with their 1-based line numbers,
/// trimmed of surrounding whitespace (and so of `\r`).
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty())
}

/// `v` if it is a whole number that fits an `i64`.
pub(crate) fn whole_number(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.abs() < 9.0e18).then_some(v as i64)
}

/// Checks that every image file of `items` exists; `list` is the file that
/// named them. One `stat` per image, in parallel.
///
/// # Errors
/// [`DatasetError::MissingImages`] with the count and the first missing
/// file in list order.
pub(crate) fn check_images_exist(list: &Path, items: &[(ImageSource, usize)]) -> Result<()> {
    let missing: Vec<usize> = items
        .par_iter()
        .enumerate()
        .filter_map(|(i, (source, _))| match source {
            ImageSource::File(path) if !path.is_file() => Some(i),
            _ => None,
        })
        .collect();
    match missing.first().map(|&i| &items[i].0) {
        Some(ImageSource::File(first)) => Err(DatasetError::MissingImages {
            list: list.to_path_buf(),
            missing: missing.len(),
            total: items.len(),
            first: first.clone(),
        }),
        _ => Ok(()),
    }
}
