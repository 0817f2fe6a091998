//! `vitdet bench vitdet`: images per second of a whole ViTDet for a
//! training step (forward, five losses, backward, AdamW) and for inference
//! (network, box decoding, NMS and masks, without mask pasting), on random
//! pixels with a few random objects per image, for any recipe's model.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use anyhow::Result;
use detector::model::{ModelConfig, ViTDet};
use detector::structures::instances::GroundTruth;
use detector::Boxes;

use crate::timing::{peak_rss_mb, reset_peak_rss, sync, time_iters};

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchVitDetOptions {
    /// The network (a recipe's `[model]`).
    pub model: ModelConfig,
    /// Number of object classes.
    pub num_classes: usize,
    /// Images per step.
    pub batch: usize,
    /// Timed iterations per phase (after one untimed warm-up).
    pub iters: usize,
    /// Random objects per image. Each becomes a foreground ROI of the mask
    /// head, so more objects give a trained model's late-training load
    /// (up to `batch_size_per_image * positive_fraction` an image).
    pub objects: usize,
}

/// One JSON line of results.
#[derive(Debug, Clone, Serialize)]
pub struct BenchVitDetResult {
    /// Input side in pixels.
    pub size: usize,
    /// Parameters of the model.
    pub params: usize,
    /// Device used.
    pub device: String,
    /// Worker threads.
    pub threads: usize,
    /// Batch size.
    pub batch: usize,
    /// Timed iterations per phase.
    pub iters: usize,
    /// Training-step images per second.
    pub train_img_s: f64,
    /// Inference images per second.
    pub infer_img_s: f64,
    /// Detections kept per image at inference (each one runs the mask
    /// head): with random weights it depends on the class count and the
    /// score threshold, so compare inference speeds only at equal values.
    pub detections_per_image: f64,
    /// Peak resident memory during training, MiB (0 if unknown).
    pub train_peak_rss_mb: f64,
    /// Peak resident memory during inference, MiB (0 if unknown).
    pub infer_peak_rss_mb: f64,
}

/// Random ground truth: `objects` per image, boxes of 1/8 to 1/2 the side,
/// each with its rectangle as polygon.
fn random_targets(batch: usize, objects: usize, size: usize, num_classes: usize, rng: &mut impl Rng) -> Vec<GroundTruth> {
    (0..batch)
        .map(|_| {
            let mut boxes = Vec::new();
            let mut classes = Vec::new();
            let mut polygons = Vec::new();
            for _ in 0..objects {
                let s = size as f32;
                let (w, h) = (rng.gen_range(s / 8.0..s / 2.0), rng.gen_range(s / 8.0..s / 2.0));
                let (x, y) = (rng.gen_range(0.0..s - w), rng.gen_range(0.0..s - h));
                boxes.push([x, y, x + w, y + h]);
                classes.push(rng.gen_range(0..num_classes));
                let (x0, y0, x1, y1) = (x as f64, y as f64, (x + w) as f64, (y + h) as f64);
                polygons.push(vec![vec![x0, y0, x1, y0, x1, y1, x0, y1]]);
            }
            GroundTruth { boxes: Boxes::new(boxes), classes, polygons }
        })
        .collect()
}

/// Runs both phases.
///
/// # Errors
/// An invalid model configuration, or a tensor or optimizer error.
pub fn bench_vitdet(opts: &BenchVitDetOptions, device: &Device) -> Result<BenchVitDetResult> {
    let varmap = VarMap::new();
    let model = ViTDet::new(&opts.model, opts.num_classes, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let named = engine::vars::named_vars(&varmap)?;
    detector::init::init_heads(&named, detector::model::BACKBONE_PREFIX, 0)?;
    let params: usize = named.iter().map(|(_, v)| v.elem_count()).sum();
    let size = opts.model.input_size();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<f32> = (0..opts.batch * 3 * size * size).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let images = Tensor::from_vec(pixels, (opts.batch, 3, size, size), device)?;
    let image_hw = vec![(size, size); opts.batch];
    let targets = random_targets(opts.batch, opts.objects, size, opts.num_classes, &mut rng);

    let frozen = detector::weights::inference_copy(&varmap, &opts.model, opts.num_classes, device)?;
    reset_peak_rss();
    let mut detections = 0;
    let infer_s = time_iters(opts.iters, || -> Result<()> {
        let det = frozen.predict(&images, &image_hw)?;
        detections = det.iter().map(|d| d.scores.len()).sum();
        std::hint::black_box(det);
        Ok(())
    })?;
    let infer_peak = peak_rss_mb();

    let groups = vec![ParamGroup { params: named.clone(), lr_scale: 1.0, weight_decay: 0.05 }];
    let mut adamw = AdamW::new(groups, AdamWConfig::default())?;
    reset_peak_rss();
    let train_s = time_iters(opts.iters, || {
        let losses = model.losses(&images, &image_hw, &targets, &mut rng)?;
        let total = losses.total()?;
        let grads = total.backward()?;
        adamw.step(&grads, 1e-4)?;
        sync(&total)
    })?;
    let train_peak = peak_rss_mb();

    let img = (opts.batch * opts.iters.max(1)) as f64;
    Ok(BenchVitDetResult {
        size,
        params,
        device: format!("{device:?}"),
        threads: candle_core::utils::get_num_threads(),
        batch: opts.batch,
        iters: opts.iters,
        train_img_s: img / train_s,
        infer_img_s: img / infer_s,
        detections_per_image: detections as f64 / opts.batch.max(1) as f64,
        train_peak_rss_mb: train_peak,
        infer_peak_rss_mb: infer_peak,
    })
}
