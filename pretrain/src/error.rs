//! The pre-training crate's error type: each variant names the file or
//! recipe key involved, so the CLI prints one line a user can act on.

use std::path::PathBuf;

/// Everything that can go wrong in pre-training.
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
    /// The MoCo-v3 model could not be built, trained or restored.
    #[error(transparent)]
    MocoV3(#[from] crate::mocov3::Error),
    /// The k-NN monitor's dataset (`--knn-data`) is missing or malformed.
    #[error("--knn-data: {0}")]
    KnnData(vision::datasets::DatasetError),
    /// A recipe value or an input is invalid.
    #[error("{key}: {msg}")]
    Config {
        /// The recipe key (e.g. `model.mask_ratio`) or input involved.
        key: String,
        /// What was expected.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A weights file is not a usable pre-training model.
    #[error("{path}: {msg}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Tensors of the wrong shape reached a function (a caller's bug or a
    /// mismatched input), named with what was expected.
    #[error("{what}: expected {expected}, found shape {found:?}")]
    Shape {
        /// The argument.
        what: &'static str,
        /// The expected layout.
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },
}

impl Error {
    /// Whether the user can fix this (a missing file, a bad recipe value)
    /// rather than it being a failure of ours.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_user_error(),
            Error::Backbone(e) => e.is_user_error(),
            Error::Vision(e) => e.is_user_error(),
            Error::MocoV3(e) => e.is_user_error(),
            Error::Config { .. } | Error::Io { .. } | Error::BadWeights { .. } | Error::KnnData(_) => true,
            Error::Candle(_) | Error::Shape { .. } => false,
        }
    }

    /// A [`Error::Config`] for `key`.
    pub(crate) fn config(key: &str, msg: impl Into<String>) -> Self {
        Error::Config { key: key.into(), msg: msg.into() }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
