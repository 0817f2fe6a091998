//! Pre-training images as the shared loader sees them: every image file
//! under a folder, labels ignored, with the recipe's augmentation: one view
//! per image for MAE (timm's crop and flip), two for MoCo-v3 (MAE-Lite's
//! asymmetric BYOL views, `vision::transforms::ssl_view` 1 and 2, drawn one
//! after the other from the sample's generator).
//!
//! A folder is read as:
//! - its `train/` subfolder when it has one (an ImageNet-style root with
//!   `train/` and `val/`, as MAE reads `DATA/train`);
//! - otherwise the folder itself, recursively: a class-per-folder tree
//!   (torchvision `ImageFolder`) and a flat folder of images with no class
//!   folders (which MAE's `ImageFolder` refuses) both work.
//!
//! Files are listed in torchvision's order ([`vision::list`]). Decoding,
//! parallelism, prefetching and per-sample randomness are the loader's; an
//! image that cannot be read is skipped, counted and reported at the end
//! (`vision::loader::LoaderStats`), never fatal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use vision::eval_transform::{eval_transform, EvalTransform};
use vision::loader::{stack_chw, Dataset};
use vision::transforms::{ssl_view, SslViewTransform, TrainTransform};

use crate::recipe::{Method, Recipe};
use crate::{Error, Result};

/// Where a run's images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A folder of images (see the module doc).
    Folder(PathBuf),
    /// The recipe's `[data.synthetic]` shapes set, generated into this folder
    /// once (an existing one is reused); its `train/` split is used.
    Synthetic(PathBuf),
}

/// How a training image becomes the views a method trains on.
enum Views {
    /// One view (MAE).
    One(TrainTransform),
    /// Two views of the same image (MoCo-v3: query view 1, key view 2).
    Two(SslViewTransform, SslViewTransform),
}

/// One image as the loader delivers it: its views, each 3·S·S normalised
/// values in CHW order (one view for MAE and for evaluation, two for MoCo-v3).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSample {
    /// The views, in order.
    pub views: Vec<Vec<f32>>,
}

/// Image files with the training transform; implements the loader's [`Dataset`].
pub struct PretrainImages {
    root: PathBuf,
    files: Vec<PathBuf>,
    train: Views,
    eval: EvalTransform,
}

impl std::fmt::Debug for PretrainImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainImages").field("root", &self.root).field("images", &self.files.len()).finish()
    }
}

impl PretrainImages {
    /// The folder the files were listed from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image files, in loader index order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Input side S of the samples.
    pub fn input_size(&self) -> usize {
        self.eval.size
    }

    /// Views per training sample (1 or 2).
    pub fn views_per_sample(&self) -> usize {
        match self.train {
            Views::One(_) => 1,
            Views::Two(..) => 2,
        }
    }
}

impl Dataset for PretrainImages {
    type Sample = ImageSample;

    fn len(&self) -> usize {
        self.files.len()
    }

    fn train_sample(&self, index: usize, rng: &mut ChaCha8Rng) -> vision::Result<ImageSample> {
        let path = &self.files[index];
        let image = vision::decode::decode_upright(path)?;
        let bad = |e: vision::transforms::TransformError| vision::Error::BadSample { path: path.clone(), reason: e.to_string() };
        let views = match &self.train {
            Views::One(t) => vec![t.apply(&image, rng).map_err(bad)?],
            Views::Two(query, key) => vec![query.apply(&image, rng).map_err(bad)?, key.apply(&image, rng).map_err(bad)?],
        };
        Ok(ImageSample { views })
    }

    /// The centre view (resize, centre crop, normalise), for pictures of the model's reconstructions.
    fn eval_sample(&self, index: usize) -> vision::Result<ImageSample> {
        let path = &self.files[index];
        let image = vision::decode::decode_upright(path)?;
        let view = eval_transform(&image, &self.eval).map_err(|e| vision::Error::BadSample { path: path.clone(), reason: e.to_string() })?;
        Ok(ImageSample { views: vec![view] })
    }
}

/// A batch ready for the model: (B, 3, S, S) normalised pixels per view.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// The pixels (the first view).
    pub images: Tensor,
    /// The second view of the same images, for two-view samples (MoCo-v3's key view).
    pub view2: Option<Tensor>,
}

impl ImageBatch {
    /// Stacks `samples` of side `size` on `device`, view by view.
    ///
    /// # Errors
    /// A view of another size, samples with different numbers of views or
    /// with none or more than two, or a tensor that cannot be created.
    pub fn from_samples(samples: &[ImageSample], size: usize, device: &Device) -> vision::Result<Self> {
        let views = samples.first().map_or(1, |s| s.views.len());
        if !(1..=2).contains(&views) || samples.iter().any(|s| s.views.len() != views) {
            let counts = samples.iter().map(|s| s.views.len()).collect();
            return Err(vision::Error::ShapeMismatch { what: "sample views", expected: "one or two views in every sample", found: counts });
        }
        let stack = |v: usize| stack_chw(&samples.iter().map(|s| s.views[v].as_slice()).collect::<Vec<_>>(), (3, size, size), device);
        let view2 = if views == 2 { Some(stack(1)?) } else { None };
        Ok(Self { images: stack(0)?, view2 })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch holds no image (all of its files failed to load).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The folder images are listed from: `dir/train` when it exists, else `dir`.
pub fn image_root(dir: &Path) -> PathBuf {
    let train = dir.join("train");
    if train.is_dir() {
        train
    } else {
        dir.to_path_buf()
    }
}

/// The pre-training images of `source` with `recipe`'s augmentation.
///
/// # Errors
/// A folder that is missing or holds no image (naming it), a synthetic set
/// that cannot be written, or a bad transform setting.
pub fn open_images(source: &DataSource, recipe: &Recipe) -> Result<Arc<PretrainImages>> {
    let dir = match source {
        DataSource::Folder(dir) => dir.clone(),
        DataSource::Synthetic(dir) => {
            generate_synthetic(recipe, dir)?;
            dir.clone()
        }
    };
    let root = image_root(&dir);
    let files = vision::list::list_images(&root, true)?;
    let size = recipe.data.input_size;
    let train = match recipe.method() {
        Method::Mae | Method::Distill => Views::One(recipe.train_transform().build().map_err(|e| Error::config("train.augment", e.to_string()))?),
        Method::Mocov3 => {
            let view = |v: u8| ssl_view(v, size).map_err(|e| Error::config("data.input_size", e.to_string()));
            Views::Two(view(1)?, view(2)?)
        }
    };
    let eval = eval_transform_of(recipe)?;
    Ok(Arc::new(PretrainImages { root, files, train, eval }))
}

/// timm's evaluation transform (resize, centre crop) at the recipe's input
/// size with its normalisation: the reconstruction pictures' view and the
/// k-NN monitor's.
///
/// # Errors
/// [`Error::Config`] for an invalid input size or normalisation.
pub fn eval_transform_of(recipe: &Recipe) -> Result<EvalTransform> {
    let a = &recipe.train.augment;
    let eval = EvalTransform { size: recipe.data.input_size, mean: a.mean, std: a.std, ..EvalTransform::default() };
    eval.validate().map_err(|e| Error::config("data", e.to_string()))?;
    Ok(eval)
}

/// Writes the recipe's synthetic set into `dir` unless it is there already.
fn generate_synthetic(recipe: &Recipe, dir: &Path) -> Result<()> {
    if dir.join("train").is_dir() && dir.join("val").is_dir() {
        return Ok(());
    }
    let cfg = recipe.data.synthetic.shapes_config(recipe.train.seed);
    coco::shapes::generate(&cfg, dir).map_err(|e| Error::config("data.synthetic", format!("generating {}: {e}", dir.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vision::loader::{train_batch, LoaderConfig, LoaderStats};

    fn write_png(path: &Path, shade: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(40, 30, image::Rgb([shade, 100, 200])).save(path).unwrap();
    }

    fn recipe() -> Recipe {
        let mut r = Recipe::default();
        r.data.input_size = 32;
        r
    }

    #[test]
    fn flat_folders_and_class_folders_are_both_read_and_train_wins() {
        let d = tempfile::tempdir().unwrap();
        let flat = d.path().join("flat");
        write_png(&flat.join("b.png"), 1);
        write_png(&flat.join("a.png"), 2);
        let images = open_images(&DataSource::Folder(flat.clone()), &recipe()).unwrap();
        assert_eq!(images.files(), &[flat.join("a.png"), flat.join("b.png")]);

        let tree = d.path().join("tree");
        write_png(&tree.join("train/cat/1.png"), 3);
        write_png(&tree.join("train/dog/2.png"), 4);
        write_png(&tree.join("val/cat/3.png"), 5);
        let images = open_images(&DataSource::Folder(tree.clone()), &recipe()).unwrap();
        assert_eq!(images.files(), &[tree.join("train/cat/1.png"), tree.join("train/dog/2.png")]);
        assert_eq!(images.root(), tree.join("train"));

        let e = open_images(&DataSource::Folder(d.path().join("missing")), &recipe()).unwrap_err();
        assert!(e.is_user_error() && e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn mocov3_samples_are_the_two_ssl_views_drawn_in_turn() {
        use rand::SeedableRng;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("g.png");
        image::RgbImage::from_fn(48, 40, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x + y) * 2) as u8])).save(&path).unwrap();
        let mut r = Recipe::released(Method::Mocov3);
        r.data.input_size = 32;
        let images = open_images(&DataSource::Folder(d.path().into()), &r).unwrap();
        assert_eq!(images.views_per_sample(), 2);
        let sample = images.train_sample(0, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let decoded = vision::decode::decode_upright(&path).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let query = ssl_view(1, 32).unwrap().apply(&decoded, &mut rng).unwrap();
        let key = ssl_view(2, 32).unwrap().apply(&decoded, &mut rng).unwrap();
        assert_eq!(sample.views, vec![query, key]);
        assert_ne!(sample.views[0], sample.views[1], "two different views");

        let batch = ImageBatch::from_samples(&[sample.clone(), sample.clone()], 32, &Device::Cpu).unwrap();
        assert_eq!(batch.images.dims(), &[2, 3, 32, 32]);
        let key_row: Vec<f32> = batch.view2.as_ref().unwrap().get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(key_row, sample.views[1]);
        let one = ImageSample { views: vec![sample.views[0].clone()] };
        assert!(ImageBatch::from_samples(&[sample, one.clone()], 32, &Device::Cpu).is_err(), "mixed view counts");
        assert!(ImageBatch::from_samples(&[one], 32, &Device::Cpu).unwrap().view2.is_none());
    }

    #[test]
    fn corrupt_images_are_skipped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        write_png(&d.path().join("good.png"), 1);
        std::fs::write(d.path().join("bad.png"), b"not a png").unwrap();
        let images = open_images(&DataSource::Folder(d.path().into()), &recipe()).unwrap();
        let stats = LoaderStats::default();
        let cfg = LoaderConfig { batch_size: 2, threads: 1, prefetch: 1, seed: 0 };
        let batch = train_batch(&*images, &cfg, 0, &stats);
        assert_eq!(batch.samples.len(), 1);
        assert_eq!(batch.samples[0].views.len(), 1);
        assert_eq!(batch.samples[0].views[0].len(), 3 * 32 * 32);
        assert_eq!(stats.skipped(), 1);
        assert!(stats.summary().unwrap().contains("bad.png"), "{:?}", stats.summary());
    }
}
