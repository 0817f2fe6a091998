//! The results files' contents (`cka.json`, `attention.json`,
//! `fourier.json`): the numbers and every setting that produced them.

use serde::Serialize;

use crate::attention::DistanceUnit;
use crate::fourier::FourierProfile;

/// A checkpoint as the results name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The legend label.
    pub label: String,
    /// Where the weights came from (the file).
    pub file: String,
    /// The model's depth (blocks).
    pub depth: usize,
    /// Its width.
    pub embed_dim: usize,
}

/// The images an analysis ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagesInfo {
    /// What they are (files or synthetic scenes).
    pub source: String,
    /// Images used in the numbers.
    pub used: usize,
    /// Images left out at the end (CKA's ragged last minibatch).
    pub dropped: usize,
    /// Unreadable images skipped.
    pub skipped: u64,
    /// Side of the square input after the eval transform, in pixels.
    pub image_size: usize,
    /// "timm eval transform: resize shorter side to floor(S / 0.875) bicubic, center crop S, ImageNet mean/std".
    pub transform: String,
}

/// `cka.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CkaReport {
    /// The estimator, in words.
    pub method: String,
    /// What representation `i` of each model is (row and column names).
    pub representations: Vec<String>,
    /// Images per minibatch.
    pub batch: usize,
    /// Minibatches averaged.
    pub minibatches: usize,
    /// The images.
    pub images: ImagesInfo,
    /// The reference model (rows of every matrix).
    pub a: ModelInfo,
    /// One entry per compared model.
    pub pairs: Vec<CkaPair>,
}

/// CKA between the reference and one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CkaPair {
    /// The compared model (columns).
    pub b: ModelInfo,
    /// `matrix[i][j]` = CKA(representation i of a, representation j of b).
    pub matrix: Vec<Vec<f64>>,
    /// `matrix[i][i]` for the layers both have.
    pub diagonal: Vec<f64>,
}

/// `attention.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionReport {
    /// The measure, in words.
    pub method: String,
    /// The unit of `distance`.
    pub distance_unit: DistanceUnit,
    /// Grid distance x this = the reported distance.
    pub distance_scale: f64,
    /// The eps of `-Σ p ln(p + eps)` (0: exact; 1e-6: the released code).
    pub entropy_eps: f64,
    /// The patch grid (h, w).
    pub grid: [usize; 2],
    /// Patch side in pixels.
    pub patch_size: usize,
    /// The images.
    pub images: ImagesInfo,
    /// One entry per model.
    pub models: Vec<AttentionModel>,
}

/// One model's attention statistics, `[layer][head]` (layer = block index).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionModel {
    /// The model.
    pub model: ModelInfo,
    /// Mean attention distance.
    pub distance: Vec<Vec<f64>>,
    /// Mean attention entropy, nats.
    pub entropy: Vec<Vec<f64>>,
}

/// `fourier.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FourierReport {
    /// The measure, in words.
    pub method: String,
    /// The patch grid (h, w).
    pub grid: [usize; 2],
    /// The images.
    pub images: ImagesInfo,
    /// One entry per model.
    pub models: Vec<FourierModel>,
}

/// One model's profiles, in forward order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FourierModel {
    /// The model.
    pub model: ModelInfo,
    /// The points of the residual stream.
    pub points: Vec<FourierPoint>,
}

/// One point of the residual stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FourierPoint {
    /// `embedding`, `blocks.{i}.attn` or `blocks.{i}.mlp`.
    pub name: String,
    /// The x of the plot: 0 for the embedding, i + 0.5 after block i's
    /// attention, i + 1 after its MLP.
    pub depth: f64,
    /// The spectrum along the diagonal and its Δ.
    #[serde(flatten)]
    pub profile: FourierProfile,
}
