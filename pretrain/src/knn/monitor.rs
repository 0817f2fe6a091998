//! The k-NN monitor as the training loop sees it: the labelled dataset of
//! `--knn-data` opened once ([`open_knn_data`]), then at every evaluation
//! ([`KnnMonitor::evaluate`]) both splits embedded by the current encoder
//! and scored by [`super::classifier`].
//!
//! Shapes: B images a batch, S the pre-training input side, D the encoder
//! width, N / M the readable train / evaluation images.
//!
//! The feature of an image is what `vitdet features` reports as `pooled`
//! for the run's `model.safetensors`: the encoder in evaluation mode on the
//! whole image (no masking), the cls token after the final norm; then
//! L2-normalised (`torch.nn.functional.normalize`, norm floor 1e-12), so the
//! vote's dot products are cosine similarities. Images go through the
//! shared loader's evaluation stream with timm's evaluation transform at the
//! pre-training input size and normalisation (`crate::data::eval_transform_of`);
//! an unreadable image is skipped and counted (`knn_skipped` in the metrics
//! line, the loader's summary in [`KnnMonitor::skipped`]).

use std::path::Path;
use std::sync::Arc;

use backbone::{ForwardOptions, Vit};
use candle_core::{DType, Device, Tensor, D};
use engine::trainer::Evaluation;
use rand::SeedableRng;
use vision::datasets::{self, ClassificationSet, ClsBatch, Split};
use engine::progress::ItemProgress;
use vision::loader::{eval_stream, LoaderConfig};

use super::classifier::{knn_accuracy, KnnParams, SIMILARITY_CHUNK_ELEMS};
use super::KnnConfig;
use crate::recipe::Recipe;
use crate::{Error, Result};

/// Top-1 accuracy of the vote in `metrics.jsonl`, in percent (as
/// `finetune`'s `top1`).
pub const TOP1_FIELD: &str = "knn_top1";
/// Top-5 accuracy in `metrics.jsonl` (datasets of five classes or more).
pub const TOP5_FIELD: &str = "knn_top5";
/// Images of either split that could not be read, when there are any.
pub const SKIPPED_FIELD: &str = "knn_skipped";

/// Norm floor of the L2 normalisation, `torch.nn.functional.normalize`'s eps.
const NORM_EPS: f64 = 1e-12;

/// The monitor's dataset: both splits with the evaluation transform.
#[derive(Debug, Clone)]
pub struct KnnData {
    /// The split whose features vote.
    pub train: Arc<ClassificationSet>,
    /// The split that is scored (each dataset's evaluation split).
    pub val: Arc<ClassificationSet>,
}

/// Opens the dataset at `root` in the layout `recipe.knn.dataset`, with the
/// evaluation transform at `recipe`'s input size. Every listed file is
/// checked to exist here, before training starts.
///
/// # Errors
/// [`Error::KnnData`] naming the file or folder that is missing or
/// malformed; [`Error::Config`] when the two splits' classes differ or a
/// transform setting is invalid.
pub fn open_knn_data(root: &Path, recipe: &Recipe) -> Result<KnnData> {
    let kind = recipe.knn.dataset;
    let train = datasets::open(kind, root, Split::Train).map_err(Error::KnnData)?;
    let val = datasets::open(kind, root, Split::Val).map_err(Error::KnnData)?;
    if val.classes != train.classes {
        return Err(Error::config("--knn-data", format!("{}: the evaluation split's classes differ from the training split's", root.display())));
    }
    let eval = crate::data::eval_transform_of(recipe)?;
    Ok(KnnData { train: Arc::new(ClassificationSet::new(train, None, eval)), val: Arc::new(ClassificationSet::new(val, None, eval)) })
}

/// Scores encoders on one dataset (see the module doc).
#[derive(Debug)]
pub struct KnnMonitor {
    data: KnnData,
    params: KnnParams,
    batch_size: usize,
    device: Device,
    skipped: Option<String>,
}

/// One split's features.
struct Embedded {
    /// (N, D) L2-normalised features; `None` when no image could be read.
    features: Option<Tensor>,
    /// Their classes.
    labels: Vec<usize>,
    /// Images that could not be read.
    skipped: u64,
    /// The loader's `skipped: ...` line.
    summary: Option<String>,
}

impl KnnMonitor {
    /// The monitor of `data` with `cfg`'s vote, embedding `batch_size`
    /// images at a time on `device`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad `k` or temperature, a batch size of 0 or
    /// a dataset without classes.
    pub fn new(data: KnnData, cfg: &KnnConfig, batch_size: usize, device: Device) -> Result<Self> {
        let params = KnnParams { k: cfg.k, temperature: cfg.temperature, num_classes: data.train.images().num_classes() };
        params.validate()?;
        if batch_size == 0 {
            return Err(Error::config("train.batch_size", "the k-NN monitor embeds at least one image a batch"));
        }
        Ok(Self { data, params, batch_size, device, skipped: None })
    }

    /// k-NN top-1 (and top-5 with five classes or more) of `encoder`'s
    /// features; `Ok(None)` when either split has no readable image.
    ///
    /// # Errors
    /// A loader that cannot start or a failing tensor operation.
    pub fn evaluate(&mut self, encoder: &Vit) -> Result<Option<Evaluation>> {
        let train = self.embed(encoder, &self.data.train)?;
        let val = self.embed(encoder, &self.data.val)?;
        let summaries: Vec<String> = [("train", &train.summary), ("val", &val.summary)].iter().filter_map(|(split, s)| s.as_ref().map(|s| format!("{split} split: {s}"))).collect();
        self.skipped = (!summaries.is_empty()).then(|| summaries.join("; "));
        let (Some(train_features), Some(val_features)) = (&train.features, &val.features) else {
            return Ok(None);
        };
        let acc = knn_accuracy(train_features, &train.labels, val_features, &val.labels, &self.params, SIMILARITY_CHUNK_ELEMS)?;
        let mut metrics = vec![(TOP1_FIELD.to_string(), 100.0 * acc.top1)];
        if let Some(top5) = acc.top5 {
            metrics.push((TOP5_FIELD.to_string(), 100.0 * top5));
        }
        let skipped = train.skipped + val.skipped;
        if skipped > 0 {
            metrics.push((SKIPPED_FIELD.to_string(), skipped as f64));
        }
        Ok(Some(Evaluation::new(metrics)))
    }

    /// The last evaluation's unreadable images, per split, if any.
    pub fn skipped(&self) -> Option<&str> {
        self.skipped.as_deref()
    }

    /// Every readable image of `set` through `encoder`, in order.
    fn embed(&self, encoder: &Vit, set: &Arc<ClassificationSet>) -> Result<Embedded> {
        let cfg = LoaderConfig { batch_size: self.batch_size, threads: rayon::current_num_threads(), prefetch: 2, seed: 0 };
        let mut stream = eval_stream(Arc::clone(set), cfg)?;
        let opts = ForwardOptions { train: false, ..ForwardOptions::default() };
        // Evaluation mode draws no random number; the generator only fills the signature.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (mut chunks, mut labels) = (Vec::new(), Vec::new());
        let mut progress = ItemProgress::new("k-NN: embedding", vision::loader::Dataset::len(&**set));
        for batch in stream.by_ref() {
            if batch.samples.is_empty() {
                continue;
            }
            let batch = ClsBatch::from_samples(&batch.samples, set.input_size(), &self.device)?;
            // Detached: the features must not keep the batch's graph alive.
            let pooled = encoder.forward(&batch.images, &opts, &mut rng)?.pooled.detach();
            chunks.push(l2_normalize(&pooled.to_dtype(DType::F32)?)?);
            labels.extend(batch.labels.iter().map(|&l| l as usize));
            progress.advance(batch.labels.len());
        }
        progress.finish();
        let features = if chunks.is_empty() { None } else { Some(Tensor::cat(&chunks, 0)?) };
        Ok(Embedded { features, labels, skipped: stream.stats().skipped(), summary: stream.stats().summary() })
    }
}

/// Each row of `x` (B, D) divided by its L2 norm, floored at [`NORM_EPS`].
fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(NORM_EPS, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_nn::VarMap;
    use vision::eval_transform::{eval_transform, EvalTransform};

    /// Two classes of 3 train and 2 val images of varied content, plus a corrupt val image.
    fn write_dataset(root: &Path) {
        for (c, class) in ["a", "b"].iter().enumerate() {
            for (split, n) in [("train", 3), ("val", 2)] {
                let dir = root.join(split).join(class);
                std::fs::create_dir_all(&dir).unwrap();
                for i in 0..n {
                    let k = (c * 5 + i + 1) as u32;
                    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * k) as u8, (y * 3 * k) as u8, ((x + y) * (7 - k % 7)) as u8])).save(dir.join(format!("{i}.png"))).unwrap();
                }
            }
        }
        std::fs::write(root.join("val/a/corrupt.png"), b"not a png").unwrap();
    }

    #[test]
    fn features_are_the_pooled_output_of_vitdet_features_normalised() {
        let d = tempfile::tempdir().unwrap();
        write_dataset(d.path());
        let mut recipe = Recipe::default();
        recipe.data.input_size = 32;
        let data = open_knn_data(d.path(), &recipe).unwrap();
        let arch = backbone::VitConfig { depth: 2, embed_dim: 16, num_heads: 2, patch_size: 8, ..backbone::VitConfig::tiny() };
        let spec = crate::mae::MaeSpec::new(&arch, 32, crate::mae::DecoderConfig { embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2.0 }, 0.75, true);
        let mae = crate::task::build_mae(&spec, 3, &VarMap::new(), &Device::Cpu).unwrap();
        let cfg = KnnConfig { k: 3, ..KnnConfig::default() };
        let mut monitor = KnnMonitor::new(data.clone(), &cfg, 2, Device::Cpu).unwrap();

        // What `vitdet features` computes: timm's eval transform, then `pooled`.
        let reference = |set: &ClassificationSet| {
            let transform = EvalTransform { size: 32, ..EvalTransform::default() };
            let mut pixels = Vec::new();
            let mut labels = Vec::new();
            for (source, label) in &set.images().items {
                if let Ok(image) = source.load() {
                    pixels.push(eval_transform(&image, &transform).unwrap());
                    labels.push(*label);
                }
            }
            let x = vision::loader::stack_chw(&pixels, (3, 32, 32), &Device::Cpu).unwrap();
            let f = backbone::features::extract_features(mae.encoder(), &x, 8).unwrap();
            let pooled = f.tensors.into_iter().find(|(n, _)| n == "pooled").unwrap().1;
            let rows: Vec<Vec<f32>> = pooled.to_vec2().unwrap();
            let normed: Vec<Vec<f32>> = rows.iter().map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
                r.iter().map(|v| v / norm).collect()
            }).collect();
            (normed, labels)
        };
        for (set, readable) in [(&data.train, 6), (&data.val, 4)] {
            let got = monitor.embed(mae.encoder(), set).unwrap();
            let (want, labels) = reference(set);
            assert_eq!((got.labels.clone(), labels.len()), (labels, readable));
            let rows: Vec<Vec<f32>> = got.features.unwrap().to_vec2().unwrap();
            for (g, w) in rows.iter().flatten().zip(want.iter().flatten()) {
                assert!((g - w).abs() < 1e-5, "{g} vs {w}");
            }
            assert_eq!(got.skipped, u64::from(readable == 4));
        }

        // The scores are the vote over those features, the corrupt image counted.
        let eval = monitor.evaluate(mae.encoder()).unwrap().unwrap();
        let (train, train_labels) = reference(&data.train);
        let (val, val_labels) = reference(&data.val);
        let t = |rows: Vec<Vec<f32>>| Tensor::new(rows, &Device::Cpu).unwrap();
        let params = KnnParams { k: 3, temperature: 0.07, num_classes: 2 };
        let want = knn_accuracy(&t(train), &train_labels, &t(val), &val_labels, &params, SIMILARITY_CHUNK_ELEMS).unwrap();
        assert_eq!(eval.metrics, vec![(TOP1_FIELD.to_string(), 100.0 * want.top1), (SKIPPED_FIELD.to_string(), 1.0)]);
        assert!(monitor.skipped().unwrap().starts_with("val split: skipped: 1"), "{:?}", monitor.skipped());
    }

    #[test]
    fn rows_get_unit_length_and_zero_rows_stay_zero() {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let y = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
