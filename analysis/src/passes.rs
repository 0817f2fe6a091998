//! The three analyses as passes over images: each batch goes through every
//! model once, a [`TapVisitor`] reduces the tensors it asks for as they are
//! computed (a Gram matrix, per-head sums, diagonal spectra), and only those
//! small sums outlive the batch.

use backbone::{Tap, TapVisitor, Vit};
use candle_core::Tensor;
use vision::eval_transform::EvalTransform;

use crate::attention::{head_sums, AttentionSums, DistanceUnit};
use crate::cka::{Gram, MinibatchCka, MIN_BATCH};
use crate::fourier::{diagonal_sums, FourierSums, GridFft};
use crate::images::{for_each_batch, ImageSource, PassStats};
use crate::report::{AttentionModel, AttentionReport, CkaPair, CkaReport, FourierModel, FourierPoint, FourierReport, ImagesInfo, ModelInfo};
use crate::{Error, Result};

/// A checkpoint to analyse.
#[derive(Debug)]
pub struct Subject {
    /// Legend label.
    pub label: String,
    /// The weights file it came from.
    pub file: String,
    /// The model.
    pub model: Vit,
}

impl Subject {
    fn info(&self) -> ModelInfo {
        let cfg = self.model.config();
        ModelInfo { label: self.label.clone(), file: self.file.clone(), depth: cfg.depth, embed_dim: cfg.embed_dim }
    }
}

/// Images and how to batch them.
#[derive(Debug, Clone)]
pub struct PassInput<'a> {
    /// The images.
    pub source: &'a ImageSource,
    /// The eval transform (its size is the models' input size).
    pub transform: EvalTransform,
    /// Images per forward pass (CKA: per minibatch).
    pub batch: usize,
}

/// The names of a depth-`depth` model's CKA representations.
pub fn cka_representations(depth: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..depth)
        .map(|i| if i == 0 { "0: blocks.0.norm1 (LayerNorm of patch + position embedding)".to_string() } else { format!("{i}: blocks.{i}.norm1") })
        .collect();
    names.push(format!("{depth}: last block output through the final norm (norm, or fc_norm per token)"));
    names
}

/// Runs `model` with `taps`, returning the visitor's own error over the
/// message-only tensor error it stopped the forward pass with.
fn run_taps<V: TapVisitor + Failing>(model: &Vit, pixels: &Tensor, taps: &mut V) -> Result<()> {
    let outcome = model.forward_with_taps(pixels, taps);
    if let Some(e) = taps.take_error() {
        return Err(e);
    }
    Ok(outcome?)
}

/// A visitor that may keep the typed error it failed with.
trait Failing {
    fn take_error(&mut self) -> Option<Error>;
}

/// Keeps `result`'s error in `slot` and stops the forward pass with a plain tensor error.
fn keep_error(slot: &mut Option<Error>, result: Result<()>) -> candle_core::Result<()> {
    result.map_err(|e| {
        let msg = e.to_string();
        *slot = Some(e);
        candle_core::Error::Msg(msg)
    })
}

/// Gram matrices of the CKA representations of one batch.
struct GramTaps {
    depth: usize,
    grams: Vec<Option<Gram>>,
    error: Option<Error>,
}

impl TapVisitor for GramTaps {
    fn wants(&self, tap: Tap) -> bool {
        matches!(tap, Tap::Norm1(_) | Tap::FinalNorm)
    }
    fn visit(&mut self, tap: Tap, tensor: &Tensor) -> candle_core::Result<()> {
        let slot = match tap {
            Tap::Norm1(i) => i,
            _ => self.depth,
        };
        let result = Gram::from_tokens(tensor).map(|g| self.grams[slot] = Some(g));
        keep_error(&mut self.error, result)
    }
}

impl Failing for GramTaps {
    fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }
}

fn grams_of(model: &Vit, pixels: &Tensor) -> Result<Vec<Gram>> {
    let depth = model.config().depth;
    let mut taps = GramTaps { depth, grams: vec![None; depth + 1], error: None };
    run_taps(model, pixels, &mut taps)?;
    taps.grams.into_iter().enumerate().map(|(i, g)| g.ok_or_else(|| Error::ShapeMismatch { what: "CKA representations".into(), expected: format!("representation {i}"), found: "none".into() })).collect()
}

fn images_info(input: &PassInput, stats: &PassStats) -> ImagesInfo {
    let t = &input.transform;
    ImagesInfo {
        source: input.source.describe(),
        used: stats.images,
        dropped: stats.dropped,
        skipped: stats.skipped.skipped(),
        image_size: t.size,
        transform: format!("timm eval transform: shorter side to {} ({:?}), center crop {}, mean {:?}, std {:?}", t.scale_size(), t.interpolation, t.size, t.mean, t.std),
    }
}

/// Minibatch CKA between reference `a` and each of `bs` (see [`crate::cka`]):
/// representations are each block's `norm1` output and the final norm,
/// tokens without cls flattened per image. Minibatches have exactly
/// `input.batch` images; the ragged rest is dropped (reported in the
/// results). `on_batch` is called with the images of each finished batch.
///
/// # Errors
/// [`Error::Setting`] for a batch below [`MIN_BATCH`] or fewer images than
/// one batch; model and image errors.
pub fn run_cka(a: &Subject, bs: &[Subject], input: &PassInput, on_batch: &mut dyn FnMut(usize)) -> Result<CkaReport> {
    if input.batch < MIN_BATCH {
        return Err(Error::setting("--batch", format!("minibatch CKA needs at least {MIN_BATCH} images per minibatch, got {}", input.batch)));
    }
    if input.source.len() < input.batch {
        return Err(Error::setting("--batch", format!("{} images cannot fill one minibatch of {}: lower --batch or add images", input.source.len(), input.batch)));
    }
    let rows = a.model.config().depth + 1;
    let mut sums: Vec<MinibatchCka> = bs.iter().map(|b| MinibatchCka::new(rows, b.model.config().depth + 1)).collect();
    let stats = for_each_batch(input.source, &input.transform, input.batch, true, |pixels| {
        let ga = grams_of(&a.model, pixels)?;
        for (b, s) in bs.iter().zip(sums.iter_mut()) {
            s.add(&ga, &grams_of(&b.model, pixels)?)?;
        }
        on_batch(pixels.dim(0)?);
        Ok(())
    })?;
    let mut pairs = Vec::with_capacity(bs.len());
    for (b, s) in bs.iter().zip(&sums) {
        let matrix = s.matrix()?;
        let diagonal = (0..matrix.len().min(matrix.first().map_or(0, Vec::len))).map(|i| matrix[i][i]).collect();
        pairs.push(CkaPair { b: b.info(), matrix, diagonal });
    }
    Ok(CkaReport {
        method: "minibatch linear CKA with the unbiased HSIC estimator (Nguyen et al. 2020, Eq. 3): HSIC(K,L), HSIC(K,K), HSIC(L,L) averaged over minibatches of equal size before the ratio (MAE-Lite rep_cmp_analyzer); K = X X^T, X = patch tokens without cls flattened per image".into(),
        representations: cka_representations(a.model.config().depth),
        batch: input.batch,
        minibatches: sums.first().map_or(0, MinibatchCka::batches),
        images: images_info(input, &stats),
        a: a.info(),
        pairs,
    })
}

/// Per-head attention sums of one model.
struct AttentionTaps {
    hw: (usize, usize),
    eps: f64,
    sums: AttentionSums,
    error: Option<Error>,
}

impl TapVisitor for AttentionTaps {
    fn wants(&self, tap: Tap) -> bool {
        matches!(tap, Tap::AttnLogits(_))
    }
    fn visit(&mut self, tap: Tap, tensor: &Tensor) -> candle_core::Result<()> {
        let Tap::AttnLogits(layer) = tap else { return Ok(()) };
        let result = head_sums(tensor, self.hw, self.eps).and_then(|(e, d)| self.sums.add_layer(layer, &e, &d));
        keep_error(&mut self.error, result)
    }
}

impl Failing for AttentionTaps {
    fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }
}

/// How attention statistics are reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSettings {
    /// The unit of distances.
    pub distance_unit: DistanceUnit,
    /// The eps of the entropy's log (0, or the released 1e-6).
    pub entropy_eps: f64,
}

/// The patch grid of `transform.size`-px images for `model`.
fn grid_of(model: &Vit, transform: &EvalTransform) -> Result<(usize, usize)> {
    let p = model.config().patch_size;
    if !transform.size.is_multiple_of(p) {
        return Err(Error::setting("image size", format!("{} px is not a multiple of the patch size {p}", transform.size)));
    }
    Ok((transform.size / p, transform.size / p))
}

fn no_images(stats: &PassStats) -> Result<()> {
    if stats.images == 0 {
        return Err(Error::setting("--images", match stats.skipped.summary() { Some(s) => format!("no readable image ({s})"), None => "no image".into() }));
    }
    Ok(())
}

/// Mean attention distance and entropy per layer and head of each model
/// (see [`crate::attention`]). All models must share the patch size.
///
/// # Errors
/// Model and image errors; [`Error::Setting`] when no image could be read.
pub fn run_attention(models: &[Subject], input: &PassInput, settings: AttentionSettings, on_batch: &mut dyn FnMut(usize)) -> Result<AttentionReport> {
    let first = models.first().ok_or_else(|| Error::setting("--weights", "no model given"))?;
    let hw = grid_of(&first.model, &input.transform)?;
    let mut taps: Vec<AttentionTaps> = Vec::with_capacity(models.len());
    for m in models {
        if grid_of(&m.model, &input.transform)? != hw {
            return Err(Error::setting("--weights", format!("{} has another patch size than {}", m.label, first.label)));
        }
        let cfg = m.model.config();
        taps.push(AttentionTaps { hw, eps: settings.entropy_eps, sums: AttentionSums::new(cfg.depth, cfg.num_heads), error: None });
    }
    let stats = for_each_batch(input.source, &input.transform, input.batch, false, |pixels| {
        let n = pixels.dim(0)?;
        for (m, t) in models.iter().zip(taps.iter_mut()) {
            run_taps(&m.model, pixels, t)?;
            t.sums.count(n);
        }
        on_batch(n);
        Ok(())
    })?;
    no_images(&stats)?;
    let patch = first.model.config().patch_size;
    let scale = settings.distance_unit.scale(patch);
    let out = models
        .iter()
        .zip(&taps)
        .map(|(m, t)| {
            let (entropy, distance) = t.sums.means(scale);
            AttentionModel { model: m.info(), distance, entropy }
        })
        .collect();
    Ok(AttentionReport {
        method: "per block and head: the scaled pre-softmax logits sliced to patch-to-patch (cls removed) and re-softmaxed over the patches; entropy -sum p ln(p + eps) in nats, distance sum p d with d the Euclidean grid distance x distance_scale; averaged over query tokens and images".into(),
        distance_unit: settings.distance_unit,
        distance_scale: scale,
        entropy_eps: settings.entropy_eps,
        grid: [hw.0, hw.1],
        patch_size: patch,
        images: images_info(input, &stats),
        models: out,
    })
}

/// Diagonal spectra of the residual stream of one model.
struct FourierTaps {
    depth: usize,
    fft: GridFft,
    sums: FourierSums,
    error: Option<Error>,
}

impl FourierTaps {
    /// The point index of `tap`: 0 embedding, 2i + 1 after attention, 2i + 2 after the MLP.
    fn point(tap: Tap) -> Option<usize> {
        match tap {
            Tap::Embedding => Some(0),
            Tap::AfterAttn(i) => Some(2 * i + 1),
            Tap::AfterMlp(i) => Some(2 * i + 2),
            _ => None,
        }
    }
}

impl TapVisitor for FourierTaps {
    fn wants(&self, tap: Tap) -> bool {
        Self::point(tap).is_some()
    }
    fn visit(&mut self, tap: Tap, tensor: &Tensor) -> candle_core::Result<()> {
        let Some(point) = Self::point(tap) else { return Ok(()) };
        let result = diagonal_sums(tensor, &self.fft).and_then(|(s, _)| self.sums.add_layer(point, &s));
        keep_error(&mut self.error, result)
    }
}

impl Failing for FourierTaps {
    fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }
}

/// The names and plot depths of a depth-`depth` model's Fourier points.
pub fn fourier_points(depth: usize) -> Vec<(String, f64)> {
    let mut points = vec![("embedding".to_string(), 0.0)];
    for i in 0..depth {
        points.push((format!("blocks.{i}.attn"), i as f64 + 0.5));
        points.push((format!("blocks.{i}.mlp"), i as f64 + 1.0));
    }
    points
}

/// Δ log amplitude of the residual stream (patch embedding, then after each
/// attention and MLP sub-block) of each model (see [`crate::fourier`]).
///
/// # Errors
/// Model and image errors; [`Error::Setting`] when no image could be read.
pub fn run_fourier(models: &[Subject], input: &PassInput, on_batch: &mut dyn FnMut(usize)) -> Result<FourierReport> {
    let first = models.first().ok_or_else(|| Error::setting("--weights", "no model given"))?;
    let hw = grid_of(&first.model, &input.transform)?;
    let mut taps = Vec::with_capacity(models.len());
    for m in models {
        let depth = m.model.config().depth;
        let hw = grid_of(&m.model, &input.transform)?;
        taps.push(FourierTaps { depth, fft: GridFft::new(hw.0, hw.1), sums: FourierSums::new(2 * depth + 1, hw.0, hw.1), error: None });
    }
    let stats = for_each_batch(input.source, &input.transform, input.batch, false, |pixels| {
        for (m, t) in models.iter().zip(taps.iter_mut()) {
            run_taps(&m.model, pixels, t)?;
            t.sums.count(pixels.dim(0)? * m.model.config().embed_dim);
        }
        on_batch(pixels.dim(0)?);
        Ok(())
    })?;
    no_images(&stats)?;
    let out = models
        .iter()
        .zip(&taps)
        .map(|(m, t)| FourierModel {
            model: m.info(),
            points: fourier_points(t.depth).into_iter().zip(t.sums.profiles()).map(|((name, depth), profile)| FourierPoint { name, depth, profile }).collect(),
        })
        .collect();
    Ok(FourierReport {
        method: "per point of the residual stream: patch tokens (cls dropped) on their grid, ln(|FFT2| + 1e-6) per channel, averaged over channels and images; the diagonal kx = ky of the centred spectrum from frequency 0 to the highest (pi for even grids); delta = highest minus 0 (delta_park_kim: the notebook's half-diagonal end, one step below pi for even grids)".into(),
        grid: [hw.0, hw.1],
        images: images_info(input, &stats),
        models: out,
    })
}
