//! torchvision's `ToTensor` + `Normalize` for 8-bit RGB images: channels
//! first, values scaled to 0..1, then `(x - mean) / std` per channel, all in
//! f32 in torch's order of operations, so the result is bit-for-bit
//! torch's (pinned by `tests/eval_transform.rs` against
//! `fixtures/make_eval_fixtures.py`).
//!
//! Shapes: H, W the image's height and width; the output is (3, H, W)
//! row-major, `out[c * H * W + y * W + x]`.

use crate::RgbImage;

/// ImageNet channel means (RGB, 0..1 scale), timm's `IMAGENET_DEFAULT_MEAN`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, 0..1 scale), timm's `IMAGENET_DEFAULT_STD`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `Normalize(mean, std)(ToTensor()(img))`: (3, H, W) f32 where pixel value
/// `v` of channel `c` becomes `(v / 255 - mean[c]) / std[c]`.
pub fn to_chw_normalized(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    // The result depends on the byte only: one table of 256 values per channel.
    let table: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (f32::from(v as u8) / 255.0 - mean[c]) / std[c]));
    let mut out = Vec::with_capacity(3 * img.height * img.width);
    for (c, table) in table.iter().enumerate() {
        out.extend(img.data.chunks_exact(3).map(|px| table[usize::from(px[c])]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_planes_in_rgb_order() {
        // 1 x 2: pixel 0 = (255, 0, 51), pixel 1 = (0, 255, 102).
        let img = RgbImage { height: 1, width: 2, data: vec![255, 0, 51, 0, 255, 102] };
        let out = to_chw_normalized(&img, [0.5, 0.0, 0.2], [0.5, 1.0, 0.2]);
        assert_eq!(out, vec![1.0, -1.0, 0.0, 1.0, 0.0, 1.0]);
    }
}
