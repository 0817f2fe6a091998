//! Image preprocessing for the backbone: timm's evaluation transform.

use candle_core::{Device, Tensor};
use image::imageops::FilterType;

/// ImageNet channel means (RGB, 0..1 scale).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, 0..1 scale).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// timm's default center-crop fraction: resize to size / 0.875, crop size.
pub const CROP_PCT: f64 = 0.875;

/// timm's eval transform: resize the shorter side to `floor(size / 0.875)`
/// (bicubic), center-crop `size` x `size`, scale to 0..1, normalise with the
/// ImageNet mean and std. Returns (3, size, size) f32.
///
/// The bicubic filter is the `image` crate's Catmull-Rom (PIL's bicubic
/// kernel); pixel values can differ from PIL's by a rounding step.
pub fn eval_transform(img: &image::DynamicImage, size: usize, device: &Device) -> candle_core::Result<Tensor> {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let short = (size as f64 / CROP_PCT).floor() as u32;
    let (nw, nh) = if w <= h {
        (short, ((h as f64 * short as f64 / w as f64).round() as u32).max(short))
    } else {
        (((w as f64 * short as f64 / h as f64).round() as u32).max(short), short)
    };
    let resized = image::imageops::resize(&rgb, nw, nh, FilterType::CatmullRom);
    let size32 = size as u32;
    let left = (nw - size32) / 2;
    let top = (nh - size32) / 2;
    let mut data = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel(left + x as u32, top + y as u32);
            for c in 0..3 {
                data[c * size * size + y * size + x] = (f32::from(p[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    Tensor::from_vec(data, (3, size, size), device)
}

/// The ImageNet-1k class names in class-index order (first WordNet lemma of
/// each synset; made by `scripts/make_imagenet_classes.py`).
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uniform_image_normalises_to_the_expected_constant() {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(300, 200, image::Rgb([255, 0, 128])));
        let t = eval_transform(&img, 224, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 224, 224]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expect = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128.0 / 255.0 - 0.406) / 0.225];
        for c in 0..3 {
            assert!((v[c * 224 * 224 + 1000] - expect[c]).abs() < 1e-5);
        }
    }

    #[test]
    fn class_names_are_in_index_order() {
        let names = imagenet_classes();
        assert_eq!(names.len(), 1000);
        assert_eq!((names[0], names[207]), ("tench", "golden retriever"));
    }
}
