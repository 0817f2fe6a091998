//! COCO evaluation of a detector: run it over a split with the test
//! transform, map detections back to the original images (boxes rescaled,
//! masks pasted at full resolution), and score bbox and segm with the
//! built-in pycocotools-exact evaluator.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use coco::dataset::Dataset;
use coco::eval::{accumulate, evaluate as coco_evaluate, per_category_ap, summarize, CategoryAp, IouType, Params, Summary};
use coco::results::{write_results, Results};
use coco::types::{CategoryId, DetectionResult, ImageId, Segmentation};
use engine::progress::ItemProgress;

use crate::data::{eval_stream, DetectionDataset, DetectionSample, LoaderConfig, LsjConfig, Purpose, SplitFiles};
use crate::masks::paste_masks_in_image;
use crate::model::{ModelInputs, ViTDet};
use crate::structures::instances::Detections;
use crate::{Boxes, Result};

/// A split to evaluate on: its images for the network and its ground truth
/// (crowds included) for the evaluator.
#[derive(Debug, Clone)]
pub struct EvalSplit {
    /// Images in file order, test transform.
    pub data: Arc<DetectionDataset>,
    /// The annotation file as the evaluator reads it.
    pub gt: Arc<Dataset>,
}

impl EvalSplit {
    /// Loads a split's annotation file (once for each side) and checks its images.
    ///
    /// # Errors
    /// An unreadable or invalid annotation file, naming it.
    pub fn load(files: &SplitFiles) -> Result<Self> {
        let data = DetectionDataset::load(files, Purpose::Eval)?;
        let (gt, _) = Dataset::load(&files.annotations, None)?;
        Ok(Self { data: Arc::new(data), gt: Arc::new(gt) })
    }
}

/// Scores of one IoU type.
#[derive(Debug, Clone)]
pub struct TypeReport {
    /// The 12 COCO stats, as `COCOeval.stats`.
    pub stats: [f64; 12],
    /// The summary (for the 12-line printout).
    pub summary: Summary,
    /// AP of each category.
    pub per_category: Vec<CategoryAp>,
}

/// Scores of a detector on a split.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Boxes.
    pub bbox: TypeReport,
    /// Masks.
    pub segm: TypeReport,
    /// Images evaluated.
    pub images: usize,
    /// Detections produced.
    pub detections: usize,
    /// Inference images per second (model and post-processing, not the evaluator).
    pub img_s: f64,
    /// Validation images that could not be read and were skipped, summarised
    /// for a warning (`None`: all were read).
    pub skipped_images: Option<String>,
}

/// What [`predict_split`] returns.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// The detections in COCO result form.
    pub results: Vec<DetectionResult>,
    /// Inference images per second.
    pub img_s: f64,
    /// Images that could not be read and were skipped, summarised for a
    /// warning (`None`: all were read); the caller decides how to report it.
    pub skipped_images: Option<String>,
}

/// One image's detections in COCO result form: box (xywh) and mask (RLE)
/// in the original image's pixels, COCO category ids.
/// `category_ids[k]` is the COCO id of class index k.
pub fn to_coco_results(sample: &DetectionSample, det: &Detections, category_ids: &[i64]) -> Result<Vec<DetectionResult>> {
    let (oh, ow) = sample.original_hw;
    // detectron2 `detector_postprocess`: scale by output / input size per axis.
    let (fx, fy) = sample.input_to_original();
    let (sx, sy) = (fx as f32, fy as f32);
    let mut boxes = Boxes::new(det.boxes.as_slice().iter().map(|b| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]).collect());
    boxes.clip((oh, ow));
    let nonempty = boxes.nonempty(0.0);
    let keep: Vec<usize> = (0..boxes.len()).filter(|&i| nonempty[i]).collect();
    let boxes = boxes.into_inner();
    let kept_boxes: Vec<[f32; 4]> = keep.iter().map(|&i| boxes[i]).collect();
    let masks: Vec<f32> = keep.iter().flat_map(|&i| det.mask(i).unwrap_or(&[]).iter().copied()).collect();
    let rles = if masks.len() == keep.len() * det.mask_size * det.mask_size && !keep.is_empty() {
        paste_masks_in_image(&masks, det.mask_size, &kept_boxes, (oh, ow), 0.5)?
    } else {
        Vec::new()
    };
    Ok(keep
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let b = boxes[i];
            DetectionResult {
                image_id: ImageId(sample.image_id as i64),
                category_id: CategoryId(category_ids.get(det.classes[i]).copied().unwrap_or_default()),
                bbox: Some([b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64]),
                score: det.scores[i] as f64,
                segmentation: rles.get(k).map(|r| Segmentation::Compressed(r.to_compressed_rle())),
            }
        })
        .collect())
}

/// Runs `model` over the split with the test transform and returns its
/// detections in COCO result form (each with `bbox` and `segmentation`, as
/// detectron2 writes them), the inference images per second and the images
/// it had to skip.
///
/// # Errors
/// Unreadable images or a failing tensor operation.
pub fn predict_split(model: &ViTDet, split: &EvalSplit, input_size: usize, batch_size: usize, device: &Device) -> Result<Predictions> {
    let began = std::time::Instant::now();
    let mut results = Vec::new();
    let mut images = 0;
    let cfg = LoaderConfig { batch_size, threads: rayon::current_num_threads(), prefetch: 2, seed: 0, lsj: LsjConfig::vitdet(input_size) };
    let category_ids: Vec<i64> = (0..split.data.num_classes()).map(|k| split.data.category_id(k).unwrap_or_default()).collect();
    let mut stream = eval_stream(split.data.clone(), cfg)?;
    let mut progress = ItemProgress::new("predicting", split.data.len());
    for batch in stream.by_ref() {
        if batch.samples.is_empty() {
            continue;
        }
        let inputs = ModelInputs::from_samples(&batch.samples, device)?;
        let detections = model.predict(&inputs.images, &inputs.image_hw)?;
        for (s, d) in batch.samples.iter().zip(&detections) {
            results.extend(to_coco_results(s, d, &category_ids)?);
        }
        images += batch.samples.len();
        progress.advance(batch.samples.len());
    }
    progress.finish();
    let img_s = images as f64 / began.elapsed().as_secs_f64().max(1e-9);
    Ok(Predictions { results, img_s, skipped_images: stream.stats().summary() })
}

/// The detections as the evaluator should read them for `iou_type`: boxes
/// only for bbox; masks only for segm, as detectron2's evaluator does, so
/// `loadRes` takes each detection's area from its mask rather than its box.
pub fn results_for(iou_type: IouType, results: &[DetectionResult]) -> Results {
    let detections = match iou_type {
        IouType::Bbox => results.iter().map(|r| DetectionResult { segmentation: None, ..r.clone() }).collect(),
        IouType::Segm => results.iter().filter(|r| r.segmentation.is_some()).map(|r| DetectionResult { bbox: None, ..r.clone() }).collect(),
    };
    Results { path: "<predictions>".into(), detections }
}

/// Runs `model` over the split and scores bbox and segm. With
/// `results_out`, also writes the detections as a COCO results file.
///
/// # Errors
/// Unreadable images, a failing tensor operation, or an evaluator error.
pub fn evaluate(model: &ViTDet, split: &EvalSplit, input_size: usize, batch_size: usize, device: &Device, results_out: Option<&Path>) -> Result<EvalReport> {
    let Predictions { results, img_s, skipped_images } = predict_split(model, split, input_size, batch_size, device)?;
    if let Some(path) = results_out {
        write_results(path, &results)?;
    }
    Ok(EvalReport {
        bbox: score(&split.gt, &results, IouType::Bbox)?,
        segm: score(&split.gt, &results, IouType::Segm)?,
        images: split.data.len(),
        detections: results.len(),
        img_s,
        skipped_images,
    })
}

/// Scores `results` against the split's ground truth. For segm the boxes
/// are dropped first, as detectron2's evaluator does, so `loadRes` takes
/// each detection's area from its mask.
fn score(gt: &Dataset, results: &[DetectionResult], iou_type: IouType) -> Result<TypeReport> {
    // No detection at all (a short training run, a high score threshold) is
    // scored too, as COCOeval scores an empty detection set: AP 0 where there
    // is ground truth, -1 elsewhere (`tests/empty_evaluation.rs`).
    let grid = coco_evaluate(gt, &results_for(iou_type, results), iou_type, &Params::default())?;
    let acc = accumulate(&grid);
    let summary = summarize(&acc)?;
    Ok(TypeReport { stats: summary.stats, per_category: per_category_ap(&acc), summary })
}
