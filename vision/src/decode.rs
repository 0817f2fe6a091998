//! Image files to upright 8-bit RGB.
//!
//! Mirrors detectron2's `data/detection_utils.py::read_image`, which applies
//! the EXIF orientation (`_apply_exif_orientation`) before converting to RGB,
//! so phone photos are seen, annotated and predicted on as people see them.
//! (timm's and torchvision's folder readers do not turn images; their
//! datasets are stored upright, so the two agree there.)

use std::path::Path;

use crate::{Error, Result, RgbImage};

/// Reads and decodes an image file to 8-bit RGB, upright: an EXIF
/// orientation tag is applied. Grey images are replicated to three channels
/// and alpha is dropped, as PIL's `convert("RGB")` does; 16-bit images are
/// scaled to 8 bits.
///
/// # Errors
/// [`Error::Decode`] naming the file if it cannot be opened or decoded
/// (including formats this build cannot decode).
pub fn decode_upright(path: &Path) -> Result<RgbImage> {
    use image::ImageDecoder as _;
    let fail = |e: &dyn std::fmt::Display| Error::Decode { path: path.to_path_buf(), reason: e.to_string() };
    let mut decoder = image::ImageReader::open(path)
        .map_err(|e| fail(&e))?
        .with_guessed_format()
        .map_err(|e| fail(&e))?
        .into_decoder()
        .map_err(|e| fail(&e))?;
    // An unreadable EXIF block is no reason to lose the pixels.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).map_err(|e| fail(&e))?;
    decoded.apply_orientation(orientation);
    Ok(RgbImage::from_buffer(decoded.into_rgb8()))
}
