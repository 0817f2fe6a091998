//! The classification crate's error type: each variant names the file or
//! recipe key involved, so the CLI prints one line a user can act on.

use std::path::PathBuf;

/// Everything that can go wrong in classification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The runtime (checkpoints, optimizers, run directories) failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The backbone could not be built or loaded.
    #[error(transparent)]
    Backbone(#[from] backbone::Error),
    /// Images could not be read or batched.
    #[error(transparent)]
    Vision(#[from] vision::Error),
    /// A dataset's files are missing or malformed.
    #[error(transparent)]
    Dataset(#[from] vision::datasets::DatasetError),
    /// Mixup settings or a batch it cannot mix.
    #[error(transparent)]
    Mixup(#[from] crate::mixup::MixupError),
    /// A recipe value is invalid.
    #[error("{key}: {msg}")]
    Config {
        /// The recipe key (e.g. `train.epochs`) or input involved.
        key: String,
        /// What was expected.
        msg: String,
    },
    /// A file could not be read or written. The I/O error is part of the
    /// message, so a printed chain names it once.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A picture could not be drawn or written.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A weights file is not a usable classifier.
    #[error("{path}: {msg}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
}

impl Error {
    /// Whether the user can fix this (a missing file, a bad recipe value,
    /// a malformed dataset) rather than it being a failure of ours.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_user_error(),
            Error::Backbone(e) => e.is_user_error(),
            Error::Vision(e) => e.is_user_error(),
            Error::Dataset(_) | Error::Config { .. } | Error::Io { .. } | Error::BadWeights { .. } => true,
            Error::Mixup(e) => matches!(e, crate::mixup::MixupError::Config(_)),
            Error::Candle(_) | Error::Plot { .. } => false,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
