//! The images every analysis runs on, streamed in batches through timm's
//! evaluation transform ([`vision::eval_transform`]): image files (sorted, as
//! [`vision::list::list_images`] returns them) or, when none are given, the
//! built-in synthetic shapes scenes ([`coco::shapes`], detection style:
//! textured backgrounds and several shapes, rendered in memory at
//! [`SYNTHETIC_SIZE`] px, seed [`SYNTHETIC_SEED`]). Only one batch of pixels is
//! alive at a time. An unreadable file is skipped and counted, and the next
//! images fill its place, so batches stay full.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use vision::eval_transform::{eval_transform, EvalTransform};
use vision::loader::LoaderStats;

use crate::Result;

/// Side of the synthetic scenes before the eval transform (resize to 256 and
/// center-crop 224 leaves a 224-px crop, as for ImageNet photos).
pub const SYNTHETIC_SIZE: u32 = 256;
/// Seed of the synthetic scenes (`vitdet data shapes`' default).
pub const SYNTHETIC_SEED: u64 = 0;

/// Where the images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Image files, in this order.
    Files(Vec<PathBuf>),
    /// `count` synthetic shapes scenes (validation split of [`coco::shapes`]).
    Synthetic {
        /// How many.
        count: usize,
    },
}

impl ImageSource {
    /// At most `max` images of this source (the first ones).
    pub fn truncated(self, max: usize) -> Self {
        match self {
            ImageSource::Files(mut f) => {
                f.truncate(max);
                ImageSource::Files(f)
            }
            ImageSource::Synthetic { count } => ImageSource::Synthetic { count: count.min(max) },
        }
    }

    /// Number of images (before any is skipped).
    pub fn len(&self) -> usize {
        match self {
            ImageSource::Files(f) => f.len(),
            ImageSource::Synthetic { count } => *count,
        }
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the images are, for the results JSON.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::Files(f) => format!("{} image files", f.len()),
            ImageSource::Synthetic { count } => format!("{count} synthetic shapes scenes ({SYNTHETIC_SIZE} px, seed {SYNTHETIC_SEED})"),
        }
    }

    /// Image `index` transformed: (3, S, S) f32.
    fn load(&self, index: usize, transform: &EvalTransform) -> Result<Vec<f32>> {
        let img = match self {
            ImageSource::Files(f) => vision::decode::decode_upright(&f[index])?,
            ImageSource::Synthetic { .. } => {
                let cfg = coco::shapes::ShapesConfig { size: SYNTHETIC_SIZE, seed: SYNTHETIC_SEED, ..Default::default() };
                vision::RgbImage::from_buffer(coco::shapes::render_detection(&cfg, coco::Split::Val, index)?.image)
            }
        };
        Ok(eval_transform(&img, transform)?)
    }
}

/// What a pass over the images saw.
#[derive(Debug, Default)]
pub struct PassStats {
    /// Images handed to the caller.
    pub images: usize,
    /// Images left at the end that did not fill a batch (`drop_last` only).
    pub dropped: usize,
    /// Unreadable images skipped.
    pub skipped: LoaderStats,
}

/// Calls `visit` with batches of `batch` normalised images (b, 3, S, S), S =
/// `transform.size`, in source order. With `drop_last` a last batch smaller
/// than `batch` is not visited (its images are counted as dropped).
///
/// # Errors
/// An image that fails for another reason than being unreadable (a user
/// error is skipped and counted), or the first error of `visit`.
pub fn for_each_batch(source: &ImageSource, transform: &EvalTransform, batch: usize, drop_last: bool, mut visit: impl FnMut(&Tensor) -> Result<()>) -> Result<PassStats> {
    let batch = batch.max(1);
    let stats = PassStats::default();
    let (mut images, mut pending) = (0, Vec::with_capacity(batch));
    let mut next = 0;
    let total = source.len();
    let chw = (3, transform.size, transform.size);
    while next < total {
        let want = (batch - pending.len()).min(total - next);
        let loaded: Vec<Result<Vec<f32>>> = (next..next + want).into_par_iter().map(|i| source.load(i, transform)).collect();
        next += want;
        for result in loaded {
            match result {
                Ok(pixels) => pending.push(pixels),
                Err(crate::Error::Vision(e)) if e.is_user_error() => stats.skipped.skip(&e),
                Err(e) => return Err(e),
            }
        }
        if pending.len() == batch {
            visit(&vision::loader::stack_chw(&pending, chw, &Device::Cpu)?)?;
            images += pending.len();
            pending.clear();
        }
    }
    let mut stats = stats;
    if !pending.is_empty() {
        if drop_last {
            stats.dropped = pending.len();
        } else {
            visit(&vision::loader::stack_chw(&pending, chw, &Device::Cpu)?)?;
            images += pending.len();
        }
    }
    stats.images = images;
    Ok(stats)
}
