//! COCO's compressed RLE string decoder (`Rle::from_compressed`): any bytes
//! decode to counts or a typed error, and decoded counts written back decode
//! to the same counts.
#![no_main]

use coco::mask::Rle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (size, text) = data.split_at(data.len().min(2));
    let (h, w) = (u32::from(*size.first().unwrap_or(&0)), u32::from(*size.get(1).unwrap_or(&0)));
    let Ok(rle) = Rle::from_compressed(&String::from_utf8_lossy(text), h, w) else { return };
    assert_eq!(Rle::from_compressed(&rle.to_compressed(), h, w).ok().as_ref(), Some(&rle));
    if rle.check_counts_sum().is_ok() {
        let bits = rle.decode().unwrap_or_default();
        assert_eq!(bits.len(), (h * w) as usize);
        assert_eq!(Rle::encode(&bits, h, w).ok().map(|r| r.area()), Some(rle.area()));
    }
    let _ = rle.to_bbox();
});
