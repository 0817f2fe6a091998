//! MAE's seeded initialisation (`models_mae.py::initialize_weights`):
//! - every linear weight: Xavier-uniform, bound `sqrt(6 / (fan_in + fan_out))`;
//! - `patch_embed.proj.weight`: Xavier-uniform on its (D, C·p·p) view;
//! - biases 0, LayerNorm weights 1;
//! - `cls_token`, `mask_token`: N(0, 0.02²) (plain `normal_`, not truncated);
//! - `pos_embed`, `decoder_pos_embed`: the fixed 2-D sin-cos tables.
//!
//! Variables are visited in name order with one ChaCha8 generator, so the
//! result depends only on the seed and the names. A variable none of the
//! rules covers is an error rather than left at a hint's value.

use backbone::pos_embed::sincos_2d;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

use crate::mae::MaeSpec;
use crate::{Error, Result};

/// Standard deviation of the cls and mask tokens.
const TOKEN_STD: f64 = 0.02;

/// Sets every variable of an MAE built in `varmap` to MAE's initial values
/// drawn from `seed` (see the module doc).
///
/// # Errors
/// [`Error::Config`] for a variable no rule covers; tensor errors.
pub fn init_mae(varmap: &VarMap, spec: &MaeSpec, seed: u64) -> Result<()> {
    let named = engine::vars::named_vars(varmap)?;
    let vars: Vec<(&String, &Var)> = named.iter().map(|(n, v)| (n, v)).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in vars {
        var.set(&initial_value(name, var, spec, &mut rng)?)?;
    }
    Ok(())
}

fn initial_value(name: &str, var: &Var, spec: &MaeSpec, rng: &mut impl Rng) -> Result<Tensor> {
    let dims = var.dims().to_vec();
    let n: usize = dims.iter().product();
    let device = var.device();
    let from = |v: Vec<f64>| -> Result<Tensor> { Ok(Tensor::from_vec(v, dims.as_slice(), device)?.to_dtype(var.dtype())?) };
    let grid = spec.encoder.grid_size();
    let xavier = |rng: &mut dyn rand::RngCore| {
        let fan_out = dims[0] as f64;
        let fan_in = (n / dims[0].max(1)) as f64;
        let bound = (6.0 / (fan_in + fan_out)).sqrt();
        (0..n).map(|_| rng.gen_range(-bound..bound)).collect::<Vec<f64>>()
    };
    match name {
        "pos_embed" => Ok(sincos_2d(spec.encoder.embed_dim, grid, device)?.to_dtype(var.dtype())?),
        "decoder_pos_embed" => Ok(sincos_2d(spec.decoder.embed_dim, grid, device)?.to_dtype(var.dtype())?),
        "cls_token" | "mask_token" => from((0..n).map(|_| TOKEN_STD * engine::rng::standard_normal(rng)).collect()),
        "patch_embed.proj.weight" => from(xavier(rng)),
        _ if name.ends_with(".bias") => from(vec![0.0; n]),
        _ if name.ends_with(".weight") && dims.len() == 1 => from(vec![1.0; n]),
        _ if name.ends_with(".weight") && dims.len() == 2 => from(xavier(rng)),
        _ => Err(Error::config("model", format!("no MAE initialisation rule for variable {name} {dims:?}"))),
    }
}
