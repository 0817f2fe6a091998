//! The vision crate's error type: every variant names the file, folder or
//! setting involved.

use std::path::{Path, PathBuf};

/// Everything that can go wrong reading images and building batches.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image file could not be opened or decoded.
    #[error("{}: cannot read the image: {reason}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder or the file system said.
        reason: String,
    },
    /// A folder of images could not be listed.
    #[error("{}: cannot list the folder (expected an image file or a folder of images): {source}", path.display())]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// A folder holds no image file.
    #[error("{}: no image files ({}) in this folder{}", path.display(), crate::list::IMAGE_EXTENSIONS.join(", "), if *recursive { " or below it" } else { "" })]
    NoImages {
        /// The folder.
        path: PathBuf,
        /// Whether subfolders were searched too.
        recursive: bool,
    },
    /// A dataset could not make a sample from a file that decoded (for
    /// example its size differs from the annotation's).
    #[error("{}: {reason}", path.display())]
    BadSample {
        /// The file behind the sample.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A loader or transform setting is out of range.
    #[error("config {key}: {msg}")]
    Config {
        /// The offending key, e.g. `"data.batch_size"`.
        key: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// A buffer does not have the length its shape implies.
    #[error("{what}: expected {expected}, found {found:?}")]
    ShapeMismatch {
        /// Which buffer.
        what: &'static str,
        /// The expected shape, in words.
        expected: &'static str,
        /// The length and shape found.
        found: Vec<usize>,
    },
    /// Creating a tensor failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A failure of vitdet itself, not of the user's input (a loader thread
    /// that cannot start): exit code 1.
    #[error("internal error: {0} (a failure of vitdet itself, not of your input; please report it)")]
    Internal(String),
}

impl Error {
    /// True for mistakes the user can fix (a missing or corrupt file, an
    /// empty folder, a bad setting): the CLI exits with code 2 for these.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Decode { .. } | Error::ReadDir { .. } | Error::NoImages { .. } | Error::BadSample { .. } | Error::Config { .. } => true,
            Error::ShapeMismatch { .. } | Error::Candle(_) | Error::Internal(_) => false,
        }
    }

    /// The file or folder the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Decode { path, .. } | Error::ReadDir { path, .. } | Error::NoImages { path, .. } | Error::BadSample { path, .. } => Some(path),
            Error::Config { .. } | Error::ShapeMismatch { .. } | Error::Candle(_) | Error::Internal(_) => None,
        }
    }
}

/// Result alias for the vision crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
