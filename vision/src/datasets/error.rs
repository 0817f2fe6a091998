//! The one error type of the dataset readers.
//!
//! Every variant names the file (or folder) it is about and what was
//! expected there, so the CLI can print it as one line. All of them are the
//! user's to fix (a wrong `--data`, an incomplete download, a damaged file):
//! the CLI maps them to exit code 2.

use std::path::PathBuf;

/// Errors of the dataset readers.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder could not be read (permissions, I/O failure).
    #[error("failed to read {path}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder the layout requires is not there.
    #[error("{path} not found: expected {expected}")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
        /// What should be there (the published layout, in words).
        expected: String,
    },
    /// A folder is there but is not laid out as the dataset publishes it.
    #[error("{path}: wrong layout: expected {expected}")]
    Layout {
        /// The folder.
        path: PathBuf,
        /// The published layout, in words.
        expected: String,
    },
    /// A file's content does not parse as its format says.
    #[error("{path}: {location}: expected {expected}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in the file: a line, a byte offset, a variable or key.
        location: String,
        /// What should be there.
        expected: String,
    },
    /// A class label outside the dataset's classes.
    #[error("{path}: {location}: label {label} is out of range, expected {range}")]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// Where in the file.
        location: String,
        /// The label as written in the file.
        label: i64,
        /// The valid range, as written in the file's convention (e.g. `1..=102`).
        range: String,
    },
    /// Images that a list file names are not on disk.
    #[error("{list}: {missing} of {total} listed images do not exist (first: {first})")]
    MissingImages {
        /// The list file (or annotation file) naming them.
        list: PathBuf,
        /// How many are missing.
        missing: usize,
        /// How many the list names.
        total: usize,
        /// The first missing image, in list order.
        first: PathBuf,
    },
    /// A MATLAB v7.3 file, which is HDF5 and not the v5 format read here.
    #[error("{path} is a MATLAB v7.3 (HDF5) MAT-file; only the v5/v6/v7 format is read (re-save it with `save -v7`)")]
    MatV73 {
        /// The file.
        path: PathBuf,
    },
    /// A dataset name the CLI does not know.
    #[error("unknown dataset `{name}`: expected one of {valid}")]
    UnknownDataset {
        /// What was given.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// A CIFAR image index past the end of its split.
    #[error("CIFAR image {index} requested from a split of {len} images ({source_file})")]
    CifarIndex {
        /// The index asked for.
        index: usize,
        /// How many images the split holds.
        len: usize,
        /// The folder the split was read from.
        source_file: PathBuf,
    },
}

/// Result of the dataset readers.
pub type Result<T> = std::result::Result<T, DatasetError>;

/// Builds a [`DatasetError::Parse`] from displayable parts.
pub(crate) fn parse_error(path: impl Into<PathBuf>, location: impl Into<String>, expected: impl Into<String>) -> DatasetError {
    DatasetError::Parse { path: path.into(), location: location.into(), expected: expected.into() }
}

/// Builds a [`DatasetError::Read`] for `path`.
pub(crate) fn read_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DatasetError {
    let path = path.into();
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DatasetError::Missing { path, expected: "the file to exist".into() }
        } else {
            DatasetError::Read { path, source }
        }
    }
}
