//! The COCO results parser (`Results::from_slice`) on both of its paths:
//! the bytes as given and padded past 1 MiB with whitespace (the parallel
//! scanner), which must read the same detections.
#![no_main]

use std::path::Path;

use coco::results::Results;
use libfuzzer_sys::fuzz_target;

/// The size from which the results parser takes its parallel path.
const FAST_PATH_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("dt.json");
    let small = Results::from_slice(data, path).map(|r| r.detections);
    let mut padded = data.to_vec();
    padded.resize(FAST_PATH_BYTES + 1, b' ');
    let large = Results::from_slice(&padded, path).map(|r| r.detections);
    assert_eq!(small.ok(), large.ok());
});
