//! The COCO ground-truth parser (`Dataset::from_slice`), on both of its
//! paths: the bytes as given (serde) and padded past 1 MiB with whitespace
//! (the parallel fast path), which must agree; a file that loads is then
//! evaluated against itself as detections (bbox and segm).
#![no_main]

use std::path::Path;

use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate, summarize, IouType, Params};
use coco::results::Results;
use coco::types::DetectionResult;
use libfuzzer_sys::fuzz_target;

/// The size from which the instances parser takes its fast path.
const FAST_PATH_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("gt.json");
    let small = Dataset::from_slice(data, path, None);
    let mut padded = data.to_vec();
    padded.resize(FAST_PATH_BYTES + 1, b' ');
    let large = Dataset::from_slice(&padded, path, None);
    assert_eq!(small.as_ref().ok().map(|d| d.0.instances()), large.as_ref().ok().map(|d| d.0.instances()));
    let Ok((gt, _)) = small else { return };
    let detections: Vec<DetectionResult> = gt
        .annotations()
        .iter()
        .map(|a| DetectionResult { image_id: a.image_id, category_id: a.category_id, bbox: Some(a.bbox), score: a.area, segmentation: a.segmentation.clone() })
        .collect();
    if detections.is_empty() {
        return;
    }
    let results = Results { path: "dt.json".into(), detections };
    for iou_type in [IouType::Bbox, IouType::Segm] {
        if let Ok(grid) = evaluate(&gt, &results, iou_type, &Params::default()) {
            let _ = summarize(&accumulate(&grid));
        }
    }
});
