//! COCO data, masks and evaluation (filled in by the COCO toolkit issue).

pub mod types;

/// Errors of the COCO toolkit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder variant.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// True for mistakes the user can fix.
    pub fn is_user_error(&self) -> bool {
        true
    }
}
