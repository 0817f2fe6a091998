//! Seeded initialisation of the detector's heads, following detectron2's
//! per-layer choices. candle's `Init` hints draw from an unseeded generator,
//! so the model is built first and then every non-backbone variable is set
//! here, visited in name order with one seeded generator: the same seed
//! gives the same model on every machine.
//!
//! | parameters | detectron2 init |
//! |---|---|
//! | `rpn.*` weights | normal, std 0.01 |
//! | `roi_heads.box_head.conv.*`, `roi_heads.mask_head.{conv,deconv}.*` weights | `c2_msra_fill`: normal, std sqrt(2 / fan_out) |
//! | `roi_heads.box_head.fc.*` weights | `c2_xavier_fill`: uniform ±sqrt(3 / fan_in) |
//! | `roi_heads.box_predictor.cls_score.weight` | normal, std 0.01 |
//! | `roi_heads.box_predictor.bbox_pred.weight`, `roi_heads.mask_head.predictor.weight` | normal, std 0.001 |
//! | pyramid conv weights | PyTorch's default: uniform ±1/sqrt(fan_in) |
//! | norm weights / every bias | 1 / 0 (PyTorch's default conv bias is replaced by 0 only in the heads) |

use candle_core::{Tensor, Var};
use rand::{Rng, SeedableRng};

/// How one variable is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fill {
    Zeros,
    Ones,
    Normal(f64),
    Uniform(f64),
}

/// Re-initialises `vars` (name, variable) from `seed`, skipping names that
/// start with `skip_prefix` (the backbone, initialised by its own rules).
///
/// # Errors
/// A variable cannot be set.
pub fn init_heads(vars: &[(String, Var)], skip_prefix: &str, seed: u64) -> candle_core::Result<()> {
    let mut sorted: Vec<&(String, Var)> = vars.iter().filter(|(n, _)| skip_prefix.is_empty() || !n.starts_with(skip_prefix)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in sorted {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f64> = match fill_for(name, &dims) {
            Fill::Zeros => vec![0.0; n],
            Fill::Ones => vec![1.0; n],
            Fill::Normal(std) => (0..n).map(|_| std * engine::rng::standard_normal(&mut rng)).collect(),
            Fill::Uniform(bound) => (0..n).map(|_| rng.gen_range(-bound..bound)).collect(),
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The detectron2 rule for a head variable (see the module table).
fn fill_for(name: &str, dims: &[usize]) -> Fill {
    if name.ends_with(".bias") {
        return Fill::Zeros;
    }
    if name.split('.').any(|p| p == "norm") {
        return Fill::Ones;
    }
    // fan_in / fan_out as PyTorch computes them: for a conv weight (out, in, k, k)
    // fan_in = in*k*k, fan_out = out*k*k; a transposed conv stores (in, out, k, k)
    // and PyTorch reads dims 1 and 0 the same way.
    let receptive: usize = dims.iter().skip(2).product();
    let fan_in = dims.get(1).copied().unwrap_or(1) * receptive;
    let fan_out = dims.first().copied().unwrap_or(1) * receptive;
    if name.starts_with("rpn.") || name.ends_with("cls_score.weight") {
        Fill::Normal(0.01)
    } else if name.ends_with("bbox_pred.weight") || name.ends_with("mask_head.predictor.weight") {
        Fill::Normal(0.001)
    } else if name.contains("box_head.fc.") {
        Fill::Uniform((3.0 / fan_in as f64).sqrt())
    } else if name.contains("box_head.conv.") || name.contains("mask_head.") {
        Fill::Normal((2.0 / fan_out as f64).sqrt())
    } else {
        Fill::Uniform(1.0 / (fan_in as f64).sqrt())
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_detectron2() {
        assert_eq!(fill_for("rpn.conv.0.weight", &[256, 256, 3, 3]), Fill::Normal(0.01));
        assert_eq!(fill_for("rpn.conv.0.bias", &[256]), Fill::Zeros);
        assert_eq!(fill_for("roi_heads.box_predictor.bbox_pred.weight", &[8, 64]), Fill::Normal(0.001));
        assert_eq!(fill_for("roi_heads.box_head.conv.1.norm.weight", &[256]), Fill::Ones);
        assert_eq!(fill_for("pyramid.p2.up.norm.weight", &[96]), Fill::Ones);
        assert_eq!(fill_for("roi_heads.mask_head.conv.0.weight", &[256, 256, 3, 3]), Fill::Normal((2.0f64 / (256.0 * 9.0)).sqrt()));
        assert_eq!(fill_for("roi_heads.box_head.fc.0.weight", &[1024, 12544]), Fill::Uniform((3.0f64 / 12544.0).sqrt()));
        assert_eq!(fill_for("pyramid.p4.lateral.weight", &[256, 192, 1, 1]), Fill::Uniform(1.0 / 192f64.sqrt()));
    }
}
