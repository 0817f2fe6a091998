//! The polygon rasteriser (`Rle::from_polygon`, pycocotools `rleFrPoly`):
//! any coordinates (NaN, infinities, far outside) give counts that cover the
//! mask, in time bounded by the image, not by the coordinates.
#![no_main]

use coco::mask::Rle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (size, rest) = data.split_at(data.len().min(2));
    let (h, w) = (u32::from(*size.first().unwrap_or(&0)), u32::from(*size.get(1).unwrap_or(&0)));
    let poly: Vec<f64> = rest.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    let rle = Rle::from_polygon(&poly, h, w);
    if h > 0 && w > 0 {
        assert!(rle.check_counts_sum().is_ok(), "{poly:?} on {h}x{w}: {rle:?}");
    }
});
