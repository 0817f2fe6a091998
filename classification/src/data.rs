//! A classification split as the shared loader sees it: a dataset index
//! (`datasets::LabeledImages`) paired with timm's training and evaluation
//! transforms. Decoding, parallelism, prefetching, per-sample randomness and
//! skipped-image counting are the `vision` loader's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use vision::eval_transform::{eval_transform, EvalTransform};
use vision::loader::{stack_chw, Dataset};
use vision::transforms::TrainTransform;
use vision::RgbImage;

use vision::datasets::{self, DatasetKind, ImageSource, LabeledImages, Split};
use crate::recipe::Recipe;
use crate::{Error, Result};

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

    /// Decodes item `index` upright (files) or reads it from memory (CIFAR).
    fn load(&self, index: usize) -> vision::Result<RgbImage> {
        let (source, _) = &self.images.items[index];
        match source {
            ImageSource::File(path) => vision::decode::decode_upright(path),
            ImageSource::Cifar { images, index } => images.image(*index).map_err(|e| vision::Error::BadSample { path: PathBuf::from(source.path_or_label()), reason: e.to_string() }),
        }
    }

    fn sample(&self, index: usize, pixels: Result<Vec<f32>, String>) -> vision::Result<ClsSample> {
        let (source, label) = &self.images.items[index];
        let pixels = pixels.map_err(|reason| vision::Error::BadSample { path: PathBuf::from(source.path_or_label()), reason })?;
        Ok(ClsSample { pixels, label: *label })
    }
}

impl Dataset for ClassificationSet {
    type Sample = ClsSample;

    fn len(&self) -> usize {
        self.images.items.len()
    }

    fn train_sample(&self, index: usize, rng: &mut ChaCha8Rng) -> vision::Result<ClsSample> {
        let image = self.load(index)?;
        let pixels = match &self.train {
            Some(t) => t.apply(&image, rng).map_err(|e| e.to_string()),
            None => eval_transform(&image, &self.eval).map_err(|e| e.to_string()),
        };
        self.sample(index, pixels)
    }

    fn eval_sample(&self, index: usize) -> vision::Result<ClsSample> {
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
    pub fn from_samples(samples: &[ClsSample], size: usize, device: &Device) -> vision::Result<Self> {
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


/// Where a run's images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A dataset in its published layout.
    Published {
        /// Which reader.
        kind: DatasetKind,
        /// The folder as published.
        root: PathBuf,
    },
    /// The built-in synthetic set of the recipe's `[data.synthetic]`,
    /// generated into this folder once (an existing one is reused).
    Synthetic(PathBuf),
}

/// The training split with the recipe's augmentation and the evaluation
/// split with its evaluation transform.
///
/// # Errors
/// A dataset that is missing or malformed (naming the file), a synthetic
/// set that cannot be written, or a bad transform setting.
pub fn open_splits(source: &DataSource, recipe: &Recipe) -> Result<(Arc<ClassificationSet>, Arc<ClassificationSet>)> {
    let (kind, root) = match source {
        DataSource::Published { kind, root } => (*kind, root.clone()),
        DataSource::Synthetic(dir) => {
            generate_synthetic(recipe, dir)?;
            (DatasetKind::Folder, dir.clone())
        }
    };
    let train = datasets::open(kind, &root, Split::Train)?;
    let val = datasets::open(kind, &root, Split::Val)?;
    if val.classes != train.classes {
        return Err(Error::Config { key: "--data".into(), msg: format!("{}: the evaluation split's classes differ from the training split's", root.display()) });
    }
    let augment = recipe.train_transform().build().map_err(|e| Error::Config { key: "train.augment".into(), msg: e.to_string() })?;
    let eval = eval_transform_of(recipe.data.input_size, recipe.data.crop_pct, recipe.data.eval_interpolation)?;
    Ok((Arc::new(ClassificationSet::new(train, Some(augment), eval)), Arc::new(ClassificationSet::new(val, None, eval))))
}

/// timm's evaluation transform at `size` with `crop_pct` and `interpolation`.
///
/// # Errors
/// [`Error::Config`] for an invalid setting.
pub fn eval_transform_of(size: usize, crop_pct: f64, interpolation: vision::resize::Filter) -> Result<EvalTransform> {
    let eval = EvalTransform { size, crop_pct, interpolation, ..EvalTransform::default() };
    eval.validate().map_err(|e| Error::Config { key: "data".into(), msg: e.to_string() })?;
    Ok(eval)
}

/// Writes the recipe's synthetic set into `dir` unless it is there already.
fn generate_synthetic(recipe: &Recipe, dir: &Path) -> Result<()> {
    if dir.join("train").is_dir() && dir.join("val").is_dir() {
        return Ok(());
    }
    let cfg = recipe.data.synthetic.shapes_config(recipe.train.seed);
    coco::shapes::generate(&cfg, dir).map_err(|e| Error::Config { key: "data.synthetic".into(), msg: format!("generating {}: {e}", dir.display()) })?;
    Ok(())
}
