//! The detector's samples for `vision::loader`: a COCO split paired with
//! ViTDet's LSJ training transform and long-side test transform, and the
//! streams, batches and tensors built from them.
//!
//! The shuffling, per-sample randomness (ChaCha8 streams of (seed,
//! position)), parallel decoding, prefetching and skipped-image counting are
//! `vision::loader`'s; its module doc states the exact formula, which keeps a
//! batch a pure function of (seed, iteration) and `--resume` exact.
//!
//! Shapes: B images per batch, S the square input side; each sample's pixels
//! are (3, S, S) and [`pixels_to_tensor`] stacks a batch into (B, 3, S, S).

use std::borrow::Borrow;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use vision::decode::decode_upright;
use vision::loader::{stack_chw, Dataset};
use vision::RgbImage;

use super::dataset::{DetectionDataset, ImageRecord};
use super::transforms::{apply_lsj, apply_test, draw_lsj, DetectionSample, LsjConfig};
use crate::{Error, Result};

pub use vision::loader::LoaderStats;

/// A batch of detection samples (`vision::loader::Batch`).
pub type Batch = vision::loader::Batch<DetectionSample>;
/// A prefetched stream of detection batches (`vision::loader::BatchStream`).
pub type BatchStream = vision::loader::BatchStream<DetectionSample>;

/// Loader settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch B.
    pub batch_size: usize,
    /// Worker threads decoding and transforming images.
    pub threads: usize,
    /// Batches prepared ahead of the consumer (queue bound, at least 1).
    pub prefetch: usize,
    /// Seed of the shuffles and augmentations.
    pub seed: u64,
    /// LSJ settings (training) and input side S (both streams).
    pub lsj: LsjConfig,
}

impl LoaderConfig {
    /// The settings `vision::loader` needs.
    fn stream(&self) -> vision::loader::LoaderConfig {
        vision::loader::LoaderConfig { batch_size: self.batch_size, threads: self.threads, prefetch: self.prefetch, seed: self.seed }
    }

    /// Checks the settings (the stream's and LSJ's).
    fn validate(&self) -> Result<()> {
        self.stream().validate()?;
        let bad = |key, msg: &str| Err(Error::Config { key, msg: msg.to_owned() });
        let lsj = &self.lsj;
        if lsj.image_size == 0 {
            return bad("data.image_size", "must be >= 1");
        }
        if !(lsj.min_scale > 0.0 && lsj.min_scale <= lsj.max_scale && lsj.max_scale.is_finite()) {
            return bad("data.lsj_scale", "needs 0 < min_scale <= max_scale < inf");
        }
        if !(0.0..=1.0).contains(&lsj.flip_prob) {
            return bad("data.flip_prob", "must be in [0, 1]");
        }
        Ok(())
    }
}

/// The upright image of `record` ([`vision::decode::decode_upright`]),
/// checked against the annotation entry's size.
///
/// # Errors
/// [`Error::Vision`] naming the file if it cannot be opened or decoded
/// ([`vision::Error::Decode`]), or if its upright size differs from
/// `record`'s ([`vision::Error::BadSample`]).
pub fn load_image(record: &ImageRecord) -> Result<RgbImage> {
    Ok(load_checked(record)?)
}

/// [`load_image`] with vision's error, as the loader wants it.
fn load_checked(record: &ImageRecord) -> vision::Result<RgbImage> {
    let image = decode_upright(&record.path)?;
    if (image.height, image.width) != (record.height, record.width) {
        return Err(vision::Error::BadSample {
            path: record.path.clone(),
            reason: format!(
                "decoded size {}x{} (EXIF orientation applied) differs from the annotation file's {}x{}",
                image.height, image.width, record.height, record.width
            ),
        });
    }
    Ok(image)
}

/// A split (owned, shared or borrowed) with the detector's transforms: LSJ
/// for training, the long-side resize for evaluation, both at side S.
struct DetectionSamples<D> {
    dataset: D,
    lsj: LsjConfig,
}

impl<D: Borrow<DetectionDataset> + Send + Sync> Dataset for DetectionSamples<D> {
    type Sample = DetectionSample;

    fn len(&self) -> usize {
        self.dataset.borrow().len()
    }

    fn train_sample(&self, index: usize, rng: &mut ChaCha8Rng) -> vision::Result<DetectionSample> {
        let record = &self.dataset.borrow().images()[index];
        let image = load_checked(record)?;
        let params = draw_lsj(image.height, image.width, &self.lsj, rng);
        Ok(apply_lsj(record, &image, &params, self.lsj.image_size))
    }

    fn eval_sample(&self, index: usize) -> vision::Result<DetectionSample> {
        let record = &self.dataset.borrow().images()[index];
        Ok(apply_test(record, &load_checked(record)?, self.lsj.image_size))
    }
}

/// The training batch of iteration `iteration`: a pure function of
/// (`cfg.seed`, `iteration`, B, the dataset). Runs on the current rayon pool.
/// An empty dataset gives an empty batch.
pub fn train_batch(dataset: &DetectionDataset, cfg: &LoaderConfig, iteration: u64, stats: &LoaderStats) -> Batch {
    vision::loader::train_batch(&DetectionSamples { dataset, lsj: cfg.lsj }, &cfg.stream(), iteration, stats)
}

/// The infinite training stream from iteration `start` on (`--resume`).
///
/// # Errors
/// [`Error::Config`] for invalid settings or for a dataset without images
/// (the stream would never yield a sample); [`Error::Vision`] if the
/// threads cannot start.
pub fn train_stream(dataset: Arc<DetectionDataset>, cfg: LoaderConfig, start: u64) -> Result<BatchStream> {
    if dataset.is_empty() {
        return Err(Error::Config { key: "data", msg: "the training split has no image with a usable annotation".into() });
    }
    cfg.validate()?;
    Ok(vision::loader::train_stream(Arc::new(DetectionSamples { dataset, lsj: cfg.lsj }), cfg.stream(), start)?)
}

/// The finite evaluation stream over all images in order.
///
/// # Errors
/// [`Error::Config`] for invalid settings; [`Error::Vision`] if the threads
/// cannot start.
pub fn eval_stream(dataset: Arc<DetectionDataset>, cfg: LoaderConfig) -> Result<BatchStream> {
    cfg.validate()?;
    Ok(vision::loader::eval_stream(Arc::new(DetectionSamples { dataset, lsj: cfg.lsj }), cfg.stream())?)
}

/// Stacks the samples' pixels into a (B, 3, S, S) f32 tensor on `device`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the samples' `input_hw` differ;
/// [`Error::Vision`] if a pixel buffer is not 3·S·S long or the tensor
/// cannot be created.
pub fn pixels_to_tensor(samples: &[DetectionSample], device: &Device) -> Result<Tensor> {
    let (h, w) = samples.first().map_or((0, 0), |s| s.input_hw);
    if let Some(s) = samples.iter().find(|s| s.input_hw != (h, w)) {
        return Err(Error::ShapeMismatch {
            what: "sample pixels",
            expected: "(3, S, S) with one S for the batch",
            found: vec![s.pixels.len(), s.input_hw.0, s.input_hw.1],
        });
    }
    let pixels: Vec<&[f32]> = samples.iter().map(|s| s.pixels.as_slice()).collect();
    Ok(stack_chw(&pixels, (3, h, w), device)?)
}
