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

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
