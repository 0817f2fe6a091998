//! `vitdet predict`: detections on arbitrary image files, as COCO results
//! and as pictures.

use std::path::{Path, PathBuf};

use candle_core::Device;
use coco::mask::Rle;
use coco::types::DetectionResult;

use crate::data::transforms::apply_test;
use crate::data::ImageRecord;
use crate::draw::{draw_detections, DrawnDetection};
use crate::evaluate::to_coco_results;
use crate::model::ModelInputs;
use crate::weights::TrainedDetector;
use crate::Result;
use vision::decode::decode_upright;

/// Detections of one image file.
#[derive(Debug, Clone)]
pub struct FilePrediction {
    /// The image.
    pub path: PathBuf,
    /// Its upright size (EXIF orientation applied), which the results refer to.
    pub width: usize,
    /// See `width`.
    pub height: usize,
    /// Its detections in COCO result form (image id = its position in the list).
    pub results: Vec<DetectionResult>,
}

/// Shortest side, in pixels after the test resize, that the detector can
/// look at: one patch of the backbone.
const MIN_RESIZED_SIDE: usize = 16;

/// Runs the detector on each file (one at a time), keeping detections
/// scoring at least `min_score`. A file that cannot be read, or whose image
/// is too thin to detect on once resized, is recorded in `skipped` (naming
/// it) and left out; the other files are still predicted.
///
/// # Errors
/// A failing tensor operation.
pub fn predict_files(
    detector: &TrainedDetector,
    files: &[PathBuf],
    min_score: f64,
    device: &Device,
    skipped: &vision::loader::LoaderStats,
) -> Result<Vec<FilePrediction>> {
    let size = detector.config.input_size();
    let mut out = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let upright = match decode_upright(path) {
            Ok(image) => image,
            Err(e) if e.is_user_error() => {
                skipped.skip(&e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (_, (new_h, new_w)) = crate::data::transforms::test_resize_size(upright.height, upright.width, size);
        if new_h.min(new_w) < MIN_RESIZED_SIDE {
            let reason = format!(
                "a {}x{} image is too thin to detect on (its short side becomes {} px at input size {size}, under one {MIN_RESIZED_SIDE}-px patch)",
                upright.width,
                upright.height,
                new_h.min(new_w)
            );
            skipped.skip(&vision::Error::BadSample { path: path.clone(), reason });
            continue;
        }
        out.push({
            let (width, height) = (upright.width, upright.height);
            let record = ImageRecord { image_id: i as u64, path: path.clone(), height, width, instances: Vec::new() };
            let sample = apply_test(&record, &upright, size);
            let inputs = ModelInputs::from_samples(std::slice::from_ref(&sample), device)?;
            let detections = detector.model.predict(&inputs.images, &inputs.image_hw)?;
            let mut results = Vec::new();
            for d in &detections {
                results.extend(to_coco_results(&sample, d, &detector.class_ids())?);
            }
            results.retain(|r| r.score >= min_score);
            FilePrediction { path: path.clone(), width, height, results }
        });
    }
    Ok(out)
}

/// Draws a prediction over its image into `out` (PNG).
///
/// # Errors
/// An unreadable image or an unwritable output.
pub fn draw_prediction(detector: &TrainedDetector, prediction: &FilePrediction, out: &Path) -> Result<()> {
    let image = decode_upright(&prediction.path)?.into_buffer()?;
    let drawn: Vec<DrawnDetection> = prediction
        .results
        .iter()
        .map(|r| {
            let class = detector.classes.iter().position(|c| c.id == r.category_id.0).unwrap_or(0);
            let name = detector.classes.get(class).map_or("?", |c| c.name.as_str());
            let mask = match &r.segmentation {
                Some(coco::types::Segmentation::Compressed(c)) => Rle::from_compressed_rle(c).ok(),
                _ => None,
            };
            DrawnDetection { bbox: r.bbox.unwrap_or_default(), class, label: format!("{name} {:.2}", r.score), mask }
        })
        .collect();
    draw_detections(&image, &drawn, out)
}
