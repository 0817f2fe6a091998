//! A dataset split as the shared loader sees it: an index
//! ([`LabeledImages`]) paired with timm's training and evaluation transforms,
//! for classification fine-tuning and evaluation and for pre-training's
//! k-NN monitor. Decoding, parallelism, prefetching, per-sample randomness
//! and skipped-image counting are the loader's ([`crate::loader`]).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use super::LabeledImages;
use crate::eval_transform::{eval_transform, EvalTransform};
use crate::loader::{stack_chw, Dataset};
use crate::transforms::TrainTransform;
use crate::{Error, Result, RgbImage};

/// One transformed image and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClsSample {
    /// Normalised (3, S, S) pixels, channel-major.
    pub pixels: Vec<f32>,
    /// Class index.
    pub label: usize,
}

/// A split with its transforms; implements the loader's [`Dataset`].
pub struct ClassificationSet {
    images: LabeledImages,
    train: Option<TrainTransform>,
    eval: EvalTransform,
}

impl std::fmt::Debug for ClassificationSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassificationSet").field("images", &self.images.items.len()).field("classes", &self.images.classes.len()).finish()
    }
}

impl ClassificationSet {
    /// `images` with `train` (for a training split) and `eval` transforms.
    pub fn new(images: LabeledImages, train: Option<TrainTransform>, eval: EvalTransform) -> Self {
        Self { images, train, eval }
    }

    /// The index underneath (class names, items).
    pub fn images(&self) -> &LabeledImages {
        &self.images
    }

    /// Input side S of the samples.
    pub fn input_size(&self) -> usize {
        self.eval.size
    }

    /// Item `index`'s pixels ([`super::ImageSource::load`]).
    fn load(&self, index: usize) -> Result<RgbImage> {
        self.images.items[index].0.load()
    }

    fn sample(&self, index: usize, pixels: std::result::Result<Vec<f32>, String>) -> Result<ClsSample> {
        let (source, label) = &self.images.items[index];
        let pixels = pixels.map_err(|reason| Error::BadSample { path: PathBuf::from(source.path_or_label()), reason })?;
        Ok(ClsSample { pixels, label: *label })
    }
}

impl Dataset for ClassificationSet {
    type Sample = ClsSample;

    fn len(&self) -> usize {
        self.images.items.len()
    }

    fn train_sample(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<ClsSample> {
        let image = self.load(index)?;
        let pixels = match &self.train {
            Some(t) => t.apply(&image, rng).map_err(|e| e.to_string()),
            None => eval_transform(&image, &self.eval).map_err(|e| e.to_string()),
        };
        self.sample(index, pixels)
    }

    fn eval_sample(&self, index: usize) -> Result<ClsSample> {
        let image = self.load(index)?;
        let pixels = eval_transform(&image, &self.eval).map_err(|e| e.to_string());
        self.sample(index, pixels)
    }
}

/// A batch ready for the model: (B, 3, S, S) pixels and B labels.
#[derive(Debug, Clone)]
pub struct ClsBatch {
    /// Normalised pixels.
    pub images: Tensor,
    /// Class indices.
    pub labels: Vec<u32>,
}

impl ClsBatch {
    /// Stacks `samples` of side `size` on `device`.
    ///
    /// # Errors
    /// A sample of another size, or a tensor that cannot be created.
    pub fn from_samples(samples: &[ClsSample], size: usize, device: &Device) -> Result<Self> {
        let pixels: Vec<&[f32]> = samples.iter().map(|s| s.pixels.as_slice()).collect();
        let images = stack_chw(&pixels, (3, size, size), device)?;
        Ok(Self { images, labels: samples.iter().map(|s| s.label as u32).collect() })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}
