//! Seeded initialisation of a ViT's variables, following timm's
//! `init_weights` for the ViT (and MAE's for the patch embedding).
//!
//! candle's own `Init::Randn` draws from an unseeded generator, so a model
//! built through a `VarMap` is re-initialised here from a seed: the same
//! seed gives the same model on every machine.

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use engine::rng::standard_normal;

use crate::config::{PosEmbedKind, VitConfig};
use crate::import::strip_var_prefix;
use crate::pos_embed::sincos_2d;

/// timm's std for linear weights, cls token and learned position tables.
const INIT_STD: f64 = 0.02;

/// Re-initialises every variable of a ViT built in `varmap`:
/// - linear weights ~ N(0, 0.02²) (timm's `trunc_normal_(std=.02)`, whose
///   absolute cut at ±2 never binds), biases 0;
/// - `patch_embed.proj.weight`: Xavier-uniform on its (D, C·P·P) view (MAE);
/// - LayerNorm weights 1, biases 0;
/// - `cls_token` ~ N(0, 0.02²); `pos_embed` ~ N(0, 0.02²), or the fixed
///   sin-cos table for [`PosEmbedKind::SinCos`];
/// - ViTDet's relative-position tables `rel_pos_h` / `rel_pos_w`: 0
///   (detectron2's `rel_pos_zero_init`).
///
/// Variables are visited in name order with one generator, so the result
/// depends only on `seed` and the set of names.
///
/// # Errors
/// Fails if a variable cannot be set (a shape error would be a bug).
pub fn init_weights(varmap: &VarMap, cfg: &VitConfig, seed: u64) -> crate::Result<()> {
    init_weights_under(varmap, "", cfg, seed)
}

/// [`init_weights`] for a ViT built under `prefix` in a larger `varmap` (a
/// detector's `backbone.net`): only the variables below `prefix` change,
/// and the rules see their names without it.
///
/// # Errors
/// As [`init_weights`].
pub fn init_weights_under(varmap: &VarMap, prefix: &str, cfg: &VitConfig, seed: u64) -> crate::Result<()> {
    let named = engine::vars::named_vars(varmap)?;
    let names: Vec<(&str, &Var)> = named.iter().filter_map(|(n, v)| Some((strip_var_prefix(n, prefix)?, v))).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in names {
        let value = initial_value(name, var, cfg, &mut rng)?;
        var.set(&value)?;
    }
    Ok(())
}

fn initial_value(name: &str, var: &Var, cfg: &VitConfig, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    let dims = var.dims().to_vec();
    let n: usize = dims.iter().product();
    let dev = var.device();
    let dtype = var.dtype();
    let from = |v: Vec<f64>| Tensor::from_vec(v, dims.as_slice(), dev)?.to_dtype(dtype);
    let is_norm = name.contains("norm"); // norm1, norm2, norm, fc_norm
    if name.ends_with(".bias") {
        return from(vec![0.0; n]);
    }
    if is_norm && name.ends_with(".weight") {
        return from(vec![1.0; n]);
    }
    if name.ends_with(".rel_pos_h") || name.ends_with(".rel_pos_w") {
        return from(vec![0.0; n]);
    }
    if name == "pos_embed" && cfg.pos_embed == PosEmbedKind::SinCos {
        return sincos_2d(cfg.embed_dim, cfg.grid_size(), dev)?.to_dtype(dtype);
    }
    if name == "patch_embed.proj.weight" {
        let fan_out = dims[0] as f64;
        let fan_in = (n / dims[0].max(1)) as f64;
        let bound = (6.0 / (fan_in + fan_out)).sqrt();
        return from((0..n).map(|_| rng.gen_range(-bound..bound)).collect());
    }
    from((0..n).map(|_| INIT_STD * standard_normal(rng)).collect())
}
