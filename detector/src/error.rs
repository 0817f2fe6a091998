//! The detector's error type. Each variant names the input involved and what
//! was wrong with it, so a failure deep inside the RPN or ROI heads can be
//! traced back to the offending box, threshold or tensor.

/// Everything that can go wrong in the detector.
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
    /// A recipe file cannot be read or is invalid.
    #[error("recipe {path}: {msg}")]
    Recipe {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// A prediction picture could not be drawn or written.
    #[error("cannot draw {path}: {msg}")]
    Draw {
        /// The PNG file.
        path: std::path::PathBuf,
        /// What failed.
        msg: String,
    },
    /// A weights file is not a usable detector.
    #[error("{path}: {msg}")]
    BadWeights {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Two inputs that must have matching lengths do not.
    #[error("{what}: expected length {expected}, found {found}")]
    LengthMismatch {
        /// Which input, e.g. `"scores"`.
        what: &'static str,
        /// The length implied by the other inputs.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A tensor had the wrong shape.
    #[error("{what}: expected shape {expected}, found {found:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: &'static str,
        /// The expected shape, in words (e.g. `"(N, 4)"`).
        expected: &'static str,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("config {key}: {msg}")]
    Config {
        /// The offending key, e.g. `"matcher.thresholds"`.
        key: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// A match-quality (IoU) value is negative or NaN.
    #[error("match quality [gt {gt}, prediction {pred}] = {value}: must be >= 0")]
    InvalidIou {
        /// Row (ground truth) index.
        gt: usize,
        /// Column (prediction) index.
        pred: usize,
        /// The value found.
        value: f32,
    },
    /// A reference box for box coding has no positive width or height.
    #[error("box {index} has width {width} and height {height}: box deltas need both > 0")]
    DegenerateBox {
        /// Index of the box.
        index: usize,
        /// Its width in pixels.
        width: f32,
        /// Its height in pixels.
        height: f32,
    },
    /// A dataset directory or file is missing or not laid out as expected
    /// (`--data DIR`, explicit annotation / image paths). A user error.
    #[error("{path}: {expected}")]
    DataLayout {
        /// The directory or file looked at.
        path: std::path::PathBuf,
        /// What was expected there, in words.
        expected: String,
    },
    /// Reading or validating a COCO file failed (the message names the file).
    #[error(transparent)]
    Coco(#[from] coco::Error),
    /// Reading or listing images failed, or an image is unusable for its
    /// annotation (the message names the file). The data loader counts
    /// these and skips the image.
    #[error(transparent)]
    Vision(#[from] vision::Error),
    /// A score is NaN, so no score order exists.
    #[error("score {index} is NaN")]
    NanScore {
        /// Index of the score.
        index: usize,
    },
}

impl Error {
    /// True for mistakes the user can fix (a bad `--data` directory, a missing
    /// or malformed annotation file, an out-of-range config value): the CLI
    /// exits with code 2 for these and with 1 for everything else.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::DataLayout { .. } | Error::Config { .. } | Error::Recipe { .. } | Error::BadWeights { .. } => true,
            Error::Coco(e) => e.is_user_error(),
            Error::Engine(e) => e.is_user_error(),
            Error::Backbone(e) => e.is_user_error(),
            Error::Vision(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// Result alias for the detector.
pub type Result<T, E = Error> = std::result::Result<T, E>;
