//! The backbone's error type.

use std::path::PathBuf;

/// Everything that can go wrong building a ViT or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine failure (tensor op, file I/O, shapes).
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A checkpoint file could not be read or does not hold a ViT.
    #[error("{path}: {msg}")]
    Checkpoint {
        /// The checkpoint involved.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
    /// A named backbone's weight file was not found.
    #[error("{0}")]
    WeightsNotFound(String),
    /// An invalid model configuration.
    #[error("config: {0}")]
    Config(String),
}

impl Error {
    /// Names `path` in a shape mismatch found while loading its tensors, so
    /// the message says which file, tensor and shapes.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Error::Engine(e @ engine::Error::ShapeMismatch { .. }) => Error::Checkpoint { path: path.into(), msg: e.to_string() },
            other => other,
        }
    }

    /// True for mistakes the user can fix.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_user_error(),
            Error::Candle(_) => false,
            Error::Checkpoint { .. } | Error::WeightsNotFound(_) | Error::Config(_) => true,
        }
    }
}

/// Result alias for the backbone.
pub type Result<T, E = Error> = std::result::Result<T, E>;
