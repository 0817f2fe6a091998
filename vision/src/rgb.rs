//! The 8-bit RGB image every transform takes and returns: plain row-major
//! bytes, so resizing, cropping and normalising index it directly.

use crate::{Error, Result};

/// A row-major RGB image with 8 bits per channel (`data[(y * width + x) * 3 + c]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Takes over the pixels of an `image` crate buffer (no copy).
    pub fn from_buffer(buffer: image::RgbImage) -> Self {
        let (width, height) = (buffer.width() as usize, buffer.height() as usize);
        RgbImage { height, width, data: buffer.into_raw() }
    }

    /// Hands the pixels to an `image` crate buffer (no copy), for drawing
    /// or encoding.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `data` is not `height * width * 3` bytes
    /// long or a side does not fit in `u32`.
    pub fn into_buffer(self) -> Result<image::RgbImage> {
        let found = vec![self.data.len(), self.height, self.width];
        let sides = u32::try_from(self.width).ok().zip(u32::try_from(self.height).ok());
        sides
            .filter(|_| self.data.len() == self.height * self.width * 3)
            .and_then(|(w, h)| image::RgbImage::from_raw(w, h, self.data))
            .ok_or(Error::ShapeMismatch { what: "RGB image bytes", expected: "height * width * 3 bytes", found })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn buffers_convert_both_ways_without_reordering() {
        let buffer = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let img = RgbImage::from_buffer(buffer.clone());
        assert_eq!((img.height, img.width), (2, 3));
        assert_eq!(&img.data[(3 + 2) * 3..(3 + 2) * 3 + 3], &[2, 1, 7], "pixel (x 2, y 1)");
        assert_eq!(img.into_buffer().unwrap(), buffer);
        let short = RgbImage { height: 2, width: 3, data: vec![0; 17] };
        assert!(matches!(short.into_buffer(), Err(Error::ShapeMismatch { .. })));
    }
}
