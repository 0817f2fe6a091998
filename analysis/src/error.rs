//! The analysis crate's error type: each variant names the input, file or
//! setting involved, so the CLI prints one line a user can act on.

use std::path::PathBuf;

/// Everything that can go wrong in an analysis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The runtime (file writing) failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// Images could not be read or transformed.
    #[error(transparent)]
    Vision(#[from] vision::Error),
    /// The built-in synthetic images could not be rendered.
    #[error(transparent)]
    Coco(#[from] coco::Error),
    /// A setting is out of range (`--batch 2` for CKA, no images, ...).
    #[error("{setting}: {msg}")]
    Setting {
        /// The setting or input involved (`--batch`, `--images`).
        setting: String,
        /// What was expected.
        msg: String,
    },
    /// Inputs of the pure functions disagree in shape.
    #[error("{what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// Which input.
        what: String,
        /// The expected shape, in words.
        expected: String,
        /// The shape found.
        found: String,
    },
    /// A picture could not be drawn or written.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// A [`Error::Setting`] for `setting`.
    pub fn setting(setting: &str, msg: impl Into<String>) -> Self {
        Error::Setting { setting: setting.to_string(), msg: msg.into() }
    }

    /// True for mistakes the user can fix (settings, unreadable inputs).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Setting { .. } => true,
            Error::Engine(e) => e.is_user_error(),
            Error::Vision(e) => e.is_user_error(),
            Error::Coco(e) => e.is_user_error(),
            Error::Candle(_) | Error::ShapeMismatch { .. } | Error::Plot { .. } => false,
        }
    }
}

/// Result alias for the analysis crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
