//! timm's and torchvision's training augmentations, reproduced pixel for
//! pixel: every operation computes what Pillow computes on an 8-bit RGB
//! image (same fixed-point weights, same `float`/`double` steps, same
//! truncations), and every random wrapper draws its parameters from the same
//! distributions as the reference, from a caller-supplied `rand::Rng` (the
//! loader hands each sample a generator derived from the seed and the
//! sample's position, so an augmentation is a pure function of both).
//!
//! Layout:
//! - [`color`], [`filter`], [`geometry`]: the deterministic Pillow
//!   operations (enhancements, LUT ops, HSV, blur, affine/rotate, flips).
//! - [`crop`]: RandomResizedCrop (box draw + Pillow resize).
//! - [`photometric`]: ColorJitter, RandomGrayscale, MoCo-v3's blur and
//!   solarisation.
//! - [`augment_ops`], [`rand_augment`]: timm RandAugment, config grammar included.
//! - [`erasing`]: timm RandomErasing on the normalised tensor.
//! - [`pipeline`]: `transforms_imagenet_train`, MAE's and the two SSL views.
//!
//! Every op is compared with the reference outputs written by
//! `vision/tests/fixtures/make_augment_fixtures.py` in `vision/tests/augment.rs`.

pub mod augment_ops;
pub mod color;
pub mod crop;
pub mod erasing;
pub mod filter;
pub mod geometry;
pub mod photometric;
pub mod pipeline;
pub mod rand_augment;
pub mod random;

pub use crop::{CropBox, Interpolation, RandomResizedCrop};
pub use erasing::{EraseMode, RandomErasing};
pub use geometry::Resample;
pub use photometric::ColorJitter;
pub use pipeline::{ssl_view, ColorJitterSpec, SslView, SslViewTransform, TrainTransform, TrainTransformConfig};
pub use rand_augment::{RandAugment, RandAugmentConfig};

/// A transform configuration that cannot be used, or an input that cannot be
/// augmented.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A field of a transform config is out of range.
    #[error("invalid transform config: `{key}` must be {expected}, got {found}")]
    InvalidConfig {
        /// The config key (e.g. `hflip`, `color_jitter hue`).
        key: &'static str,
        /// What the key accepts.
        expected: &'static str,
        /// The value given.
        found: String,
    },
    /// A RandAugment config string that timm's grammar does not accept.
    #[error("invalid RandAugment config `{config}`: section `{token}`: {reason}")]
    RandAugment {
        /// The whole config string.
        config: String,
        /// The offending `-`-separated section.
        token: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `auto_augment` policy other than RandAugment (timm's AutoAugment
    /// `original`/`v0` policies and AugMix are not implemented).
    #[error("unsupported auto_augment `{0}`: only RandAugment (`rand-...`) is implemented")]
    UnsupportedAutoAugment(String),
    /// An image without pixels, which no crop can be drawn from.
    #[error("cannot augment an empty {height}x{width} image")]
    EmptyImage {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
}

impl TransformError {
    /// An [`TransformError::InvalidConfig`] for `key`.
    pub(crate) fn invalid(key: &'static str, expected: &'static str, found: impl std::fmt::Display) -> Self {
        TransformError::InvalidConfig { key, expected, found: found.to_string() }
    }
}
