//! The engine's error type. Variants carry the file, key or shape involved so
//! the CLI can print one line a user can act on.

use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape error inside a kernel, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed. The I/O error is part of the
    /// message, not a separate `source`, so a printed error chain names it once.
    #[error("{path}: {cause}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        cause: std::io::Error,
    },
    /// A file exists but its contents are not what was expected.
    #[error("{path}: {msg}")]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// What was wrong with it.
        msg: String,
    },
    /// A tensor had the wrong shape for the key it was loaded into.
    #[error("{key}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Parameter name.
        key: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape the file holds.
        found: Vec<usize>,
    },
    /// A configuration value is invalid (names the key and what was expected).
    #[error("config: {0}")]
    Config(String),
    /// The requested device cannot be used in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// An invariant of the caller's inputs was violated.
    #[error("{0}")]
    Msg(String),
    /// A failure of vitdet itself, not of the user's input (a lock poisoned
    /// by a panicking thread, a broken internal invariant): exit code 1.
    #[error("internal error: {0} (a failure of vitdet itself, not of your input; please report it)")]
    Internal(String),
    /// A run directory cannot start the requested command: it already holds
    /// a checkpoint and `--resume` was not given, or `--resume` found none.
    #[error("{path}: {msg}")]
    RunDir {
        /// The output directory or checkpoint file involved.
        path: PathBuf,
        /// What the user should do about it.
        msg: String,
    },
    /// Saved optimizer state does not fit the optimizer's parameters
    /// (typically a checkpoint from a different model).
    #[error("optimizer state {key}: {msg}")]
    OptimizerState {
        /// The state tensor's name (`<param>.<slot>`).
        key: String,
        /// What did not fit.
        msg: String,
    },
    /// The training loop cannot go on: a loss term or the gradient norm is
    /// no longer finite, or the training batches ran out or stayed empty.
    #[error("training stopped at iteration {iter}: {reason}")]
    TrainingStopped {
        /// 0-based iteration that failed.
        iter: usize,
        /// What happened and what to do about it.
        reason: String,
    },
}

impl Error {
    /// True for mistakes the user can fix (bad file, key, shape, config or device flag).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::BadFile { .. }
                | Error::ShapeMismatch { .. }
                | Error::Config(_)
                | Error::Device(_)
                | Error::RunDir { .. }
                | Error::OptimizerState { .. }
                | Error::TrainingStopped { .. }
        )
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }
}

impl From<atomic_write::Error> for Error {
    /// An atomic write's failure is an I/O error on the file asked for.
    fn from(e: atomic_write::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
