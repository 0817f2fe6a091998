//! Feature extraction: every block's tokens for a batch of images (the
//! interface of the analysis tools and of external checks; keep it stable).

use candle_core::Tensor;
use rand::SeedableRng;

use crate::vit::{ForwardOptions, Vit};

/// Named outputs of [`extract_features`], each with the images along dim 0.
#[derive(Debug)]
pub struct Features {
    /// `block.{i}` (N, T, D) for i in 0..depth, then `norm` (N, T, D) when
    /// the model has a final norm, `pooled` (N, D), and `logits` (N, classes)
    /// when it has a head.
    pub tensors: Vec<(String, Tensor)>,
}

/// Runs `model` over `pixels` (N, 3, H, W), already normalised, in chunks of
/// `batch` images, in evaluation mode.
///
/// # Errors
/// Tensor errors (for example an image size that is not a multiple of the patch size).
pub fn extract_features(model: &Vit, pixels: &Tensor, batch: usize) -> candle_core::Result<Features> {
    let n = pixels.dim(0)?;
    let depth = model.config().depth;
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); depth + 3];
    let opts = ForwardOptions { train: false, keep_blocks: true, attn_logits: Vec::new() };
    // Evaluation mode draws no random numbers; the generator only satisfies the signature.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut start = 0;
    while start < n {
        let len = batch.max(1).min(n - start);
        let out = model.forward(&pixels.narrow(0, start, len)?, &opts, &mut rng)?;
        for (i, b) in out.blocks.into_iter().enumerate() {
            parts[i].push(b);
        }
        if model.has_final_norm() {
            parts[depth].push(out.tokens);
        }
        parts[depth + 1].push(out.pooled);
        if let Some(l) = out.logits {
            parts[depth + 2].push(l);
        }
        start += len;
    }
    let mut names: Vec<String> = (0..depth).map(|i| format!("block.{i}")).collect();
    names.extend(["norm".to_string(), "pooled".to_string(), "logits".to_string()]);
    let mut tensors = Vec::new();
    for (name, chunks) in names.into_iter().zip(parts) {
        if !chunks.is_empty() {
            tensors.push((name, Tensor::cat(&chunks, 0)?));
        }
    }
    Ok(Features { tensors })
}

/// The `k` most probable classes of each row of `logits` (N, classes):
/// (class index, softmax probability), most probable first.
///
/// # Errors
/// Tensor errors.
pub fn top_k(logits: &Tensor, k: usize) -> candle_core::Result<Vec<Vec<(usize, f32)>>> {
    let probs = engine::ops::softmax_last_dim(&logits.to_dtype(candle_core::DType::F32)?)?;
    let rows = probs.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|a, b| row[*b].total_cmp(&row[*a]).then(a.cmp(b)));
            idx.into_iter().take(k).map(|i| (i, row[i])).collect()
        })
        .collect())
}
