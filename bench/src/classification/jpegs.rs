//! Synthetic JPEGs of ImageNet's typical size for the data benchmark: 500 x
//! 375 (a quarter of them 375 x 500), quality 90, with varied content
//! (gradients, filled shapes, stripes and pixel noise, each image its own
//! mix) so that decoding costs about what a photograph of that size costs.
//! The layout is an ImageFolder training split, `DIR/train/class_K/NNNN.jpg`,
//! which torchvision's `ImageFolder(DIR/train)` and the `folder` reader both
//! read.

use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use classification::{Error, Result};

/// Classes (sub-folders) the images are spread over.
pub const CLASSES: usize = 4;
/// The landscape size of ImageNet's most common photographs (width, height).
pub const SIZE: (u32, u32) = (500, 375);
/// JPEG quality (ImageNet's files are mostly 75-95).
const QUALITY: u8 = 90;

/// Writes `count` JPEGs under `dir/train/` from `seed` (existing files of the
/// same names are replaced).
///
/// # Errors
/// [`Error::Io`] naming the file that cannot be written.
pub fn write_jpegs(dir: &Path, count: usize, seed: u64) -> Result<()> {
    for i in 0..count {
        let class_dir = dir.join("train").join(format!("class_{}", i % CLASSES));
        std::fs::create_dir_all(&class_dir).map_err(|e| Error::Io { path: class_dir.clone(), cause: e })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i as u64);
        let (w, h) = if i % 4 == 3 { (SIZE.1, SIZE.0) } else { SIZE };
        let pixels = render(w, h, &mut rng);
        let path = class_dir.join(format!("{i:04}.jpg"));
        let io = |e: std::io::Error| Error::Io { path: path.clone(), cause: e };
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        JpegEncoder::new_with_quality(&mut file, QUALITY)
            .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| io(std::io::Error::other(e)))?;
    }
    Ok(())
}

/// One image, RGB8 row-major: a two-colour gradient, 4-12 ellipses and
/// rectangles (some striped), then uniform noise of a per-image amplitude.
fn render(w: u32, h: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let colour = |rng: &mut ChaCha8Rng| [rng.gen_range(0.0..255.0), rng.gen_range(0.0..255.0), rng.gen_range(0.0..255.0f32)];
    let (top, bottom) = (colour(rng), colour(rng));
    let mut img = vec![0f32; w * h * 3];
    for y in 0..h {
        let t = y as f32 / h as f32;
        for x in 0..w {
            let s = 0.15 * (x as f32 / w as f32);
            for c in 0..3 {
                img[(y * w + x) * 3 + c] = top[c] * (1.0 - t) + bottom[c] * t + 255.0 * s;
            }
        }
    }
    for _ in 0..rng.gen_range(4..=12) {
        let fill = colour(rng);
        let (cx, cy) = (rng.gen_range(0..w) as f32, rng.gen_range(0..h) as f32);
        let (rx, ry) = (rng.gen_range(10.0..w as f32 / 3.0), rng.gen_range(10.0..h as f32 / 3.0));
        let ellipse = rng.gen_bool(0.5);
        let stripes = rng.gen_bool(0.4).then(|| rng.gen_range(2.0..12.0f32));
        for y in (cy - ry).max(0.0) as usize..((cy + ry) as usize).min(h) {
            for x in (cx - rx).max(0.0) as usize..((cx + rx) as usize).min(w) {
                let (dx, dy) = ((x as f32 - cx) / rx, (y as f32 - cy) / ry);
                if ellipse && dx * dx + dy * dy > 1.0 {
                    continue;
                }
                let shade = stripes.map_or(1.0, |p| 0.75 + 0.25 * ((x + y) as f32 / p).sin());
                for c in 0..3 {
                    img[(y * w + x) * 3 + c] = fill[c] * shade;
                }
            }
        }
    }
    let noise = rng.gen_range(4.0..24.0f32);
    img.iter().map(|v| (v + rng.gen_range(-noise..noise)).clamp(0.0, 255.0) as u8).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn jpegs_have_imagenet_size_and_an_image_folder_layout() {
        let dir = tempfile::tempdir().unwrap();
        write_jpegs(dir.path(), 5, 1).unwrap();
        let train = vision::datasets::open(vision::datasets::DatasetKind::Folder, dir.path(), vision::datasets::Split::Train);
        // Only a train/ split: the folder reader wants no val/ for Split::Train.
        let train = train.unwrap();
        assert_eq!(train.items.len(), 5);
        assert_eq!(train.classes, ["class_0", "class_1", "class_2", "class_3"]);
        let first = image::open(dir.path().join("train/class_0/0000.jpg")).unwrap();
        assert_eq!((first.width(), first.height()), SIZE);
        let portrait = image::open(dir.path().join("train/class_3/0003.jpg")).unwrap();
        assert_eq!((portrait.width(), portrait.height()), (SIZE.1, SIZE.0));
        let bytes = std::fs::metadata(dir.path().join("train/class_0/0000.jpg")).unwrap().len();
        assert!(bytes > 40_000, "a photograph-like file size, not a flat image: {bytes} bytes");
    }
}
