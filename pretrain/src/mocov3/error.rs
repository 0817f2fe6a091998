//! The MoCo-v3 objective's error type.

/// Everything that can go wrong building or training the MoCo-v3 model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine failure (tensor op, optimizer, checkpoint tensors).
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// A backbone failure (an invalid ViT config).
    #[error(transparent)]
    Backbone(#[from] backbone::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An invalid MoCo-v3 configuration: names the key and what was expected.
    #[error("mocov3 config: {0}")]
    Config(String),
    /// Saved momentum-encoder state that does not fit the model (missing,
    /// unknown or mis-shaped tensors).
    #[error("mocov3 momentum-encoder state: {0}")]
    State(String),
}

impl Error {
    /// True for mistakes the user can fix (a config, a checkpoint that does
    /// not fit).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_user_error(),
            Error::Backbone(e) => e.is_user_error(),
            Error::Candle(_) => false,
            Error::Config(_) | Error::State(_) => true,
        }
    }
}

/// Result alias for the MoCo-v3 objective.
pub type Result<T, E = Error> = std::result::Result<T, E>;
