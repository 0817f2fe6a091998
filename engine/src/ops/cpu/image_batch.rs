//! How a batch of per-image work (a convolution's GEMMs) shares the threads:
//! whole images on each thread when the batch is many small maps (a mask
//! head's ROIs), else image after image with each image's work split over
//! all threads. Splitting a 14x14 map's GEMM and copies over the threads
//! costs more in synchronisation than it saves.

use std::ops::Range;

use candle_core::Result;
use rayon::prelude::*;

use super::{threads, Real};

/// Images each thread takes when a batch of `images` runs whole images on
/// each thread, or `None` when it runs image after image with every image's
/// work split over the threads. Whole images per thread need the images to
/// share out about evenly.
pub(crate) fn images_per_thread(images: usize) -> Option<usize> {
    let t = threads();
    (t > 1 && images >= t && (images.is_multiple_of(t) || images >= 4 * t)).then(|| images.div_ceil(t))
}

/// Runs `work(images, dst, par)` over a batch whose image i owns
/// `dst[i * image_len..(i + 1) * image_len]`: once per group of
/// [`images_per_thread`] images with `par` = 1, the groups in parallel, or
/// once for the whole batch with `par` = every thread. `dst` holds exactly
/// the images of the range it comes with.
///
/// # Errors
/// The first error `work` returns.
pub(crate) fn for_each_image_group<T: Send>(dst: &mut [T], image_len: usize, images: usize, work: impl Fn(Range<usize>, &mut [T], usize) -> Result<()> + Sync) -> Result<()> {
    match images_per_thread(images) {
        Some(group) => dst.par_chunks_mut((group * image_len).max(1)).enumerate().try_for_each(|(g, dst_g)| {
            let first = g * group;
            work(first..(first + group).min(images), dst_g, 1)
        }),
        None => work(0..images, dst, threads()),
    }
}

/// A sum over the batch written into `out` (which must start zeroed):
/// `work(images, acc, par)` adds the contributions of `images` to `acc`.
/// With whole images per thread each group sums into its own partial and
/// the partials are added in group order, so the result is the same from
/// run to run whichever thread ran a group.
///
/// # Errors
/// The first error `work` returns.
pub(crate) fn sum_over_image_groups<T: Real>(out: &mut [T], images: usize, work: impl Fn(Range<usize>, &mut [T], usize) -> Result<()> + Sync) -> Result<()> {
    let Some(group) = images_per_thread(images) else {
        return work(0..images, out, threads());
    };
    let len = out.len().max(1);
    let mut partial = vec![T::zero(); images.div_ceil(group) * len];
    partial.par_chunks_mut(len).enumerate().try_for_each(|(g, acc)| {
        let first = g * group;
        work(first..(first + group).min(images), &mut acc[..out.len()], 1)
    })?;
    for part in partial.chunks(len) {
        out.iter_mut().zip(part).for_each(|(d, p)| *d += *p);
    }
    Ok(())
}

/// `f(i, chunk)` for each `len`-element chunk of `data`, in parallel when
/// `par` > 1: the planes of one image, inside or outside a group's thread.
pub(crate) fn for_each_chunk<T: Send>(data: &mut [T], len: usize, par: usize, f: impl Fn((usize, &mut [T])) + Sync + Send) {
    if par > 1 {
        data.par_chunks_mut(len.max(1)).enumerate().for_each(f);
    } else {
        data.chunks_mut(len.max(1)).enumerate().for_each(f);
    }
}
