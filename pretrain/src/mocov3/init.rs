//! MoCo-v3's fixed position table and initialisation (moco-v3 `vits.py`
//! `VisionTransformerMoCo.__init__` and `build_2d_sincos_position_embedding`;
//! `moco/builder.py` `_build_mlp` for the projector and predictor, which
//! keep PyTorch's default `nn.Linear` / `nn.BatchNorm1d` initialisation).
//!
//! Deviation: draws come from the caller's seeded generator, not PyTorch's,
//! so the values differ from a PyTorch run; the distributions are the same
//! (`tests/mocov3_init.rs`).

use engine::rng::standard_normal as normal;
use backbone::pos_embed::sincos_2d;
use candle_core::{Device, Tensor, Var};
use rand::Rng;

use super::{Error, MocoV3Config, Result};

/// Standard deviation of the cls token (`nn.init.normal_(cls_token, std=1e-6)`).
const CLS_TOKEN_STD: f64 = 1e-6;

/// MoCo-v3's 2-D sin-cos table with temperature 10⁴ and a zero cls slot,
/// (1, 1 + grid², D): for patch (row, col), with ω_d = 10⁴^(-d / (D/4)),
/// `[sin(row ω), cos(row ω), sin(col ω), cos(col ω)]`. `torch.meshgrid`'s
/// 'ij' indexing puts the *row* in the first half, where MAE's table
/// ([`backbone::pos_embed::sincos_2d`]) has the column, so this is MAE's
/// table with its two halves swapped.
///
/// # Errors
/// `embed_dim` is not divisible by 4.
pub fn mocov3_sincos_2d(embed_dim: usize, grid: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mae = sincos_2d(embed_dim, grid, device)?;
    let half = embed_dim / 2;
    Tensor::cat(&[mae.narrow(2, half, half)?, mae.narrow(2, 0, half)?], 2)
}

/// Sets every variable of a MoCo-v3 model (online encoder and predictor,
/// names as [`super::MocoV3::variables`]) to its initial value:
///
/// - `blocks.*.attn.qkv.weight`: U(±√(6 / (D_out/3 + D_in))), q, k and v
///   treated as three matrices;
/// - other linear weights of the blocks: Xavier-uniform U(±√(6 / (D_in + D_out)));
/// - `patch_embed.proj.weight`: U(±√(6 / (C·P² + D))) (moco-v3 writes
///   `3·P²`, the same for RGB input);
/// - every bias 0; LayerNorm and BatchNorm weights 1;
/// - `cls_token` ~ N(0, 10⁻¹²); `pos_embed`: [`mocov3_sincos_2d`];
/// - projector (`head.*`) and predictor (`predictor.*`) linear weights:
///   PyTorch's default `kaiming_uniform_(a=√5)`, i.e. U(±1/√D_in);
/// - BatchNorm running means 0, running variances 1.
///
/// Variables are visited in name order with `rng`, so the result depends
/// only on the generator's state and the set of names.
///
/// # Errors
/// [`Error::Config`] for a variable no rule covers (a model change this
/// function does not know); a tensor error.
pub fn init_mocov3(vars: &[(String, Var)], cfg: &MocoV3Config, rng: &mut impl Rng) -> Result<()> {
    let mut sorted: Vec<&(String, Var)> = vars.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in sorted {
        let value = initial_value(name, var, cfg, rng)?;
        var.set(&value)?;
    }
    Ok(())
}

/// One variable's initial value, drawn from `rng` where it is random.
fn initial_value(name: &str, var: &Var, cfg: &MocoV3Config, rng: &mut impl Rng) -> Result<Tensor> {
    let dims = var.dims().to_vec();
    let n: usize = dims.iter().product();
    let (dev, dtype) = (var.device(), var.dtype());
    let from = |v: Vec<f64>| -> Result<Tensor> { Ok(Tensor::from_vec(v, dims.as_slice(), dev)?.to_dtype(dtype)?) };
    let last = name.rsplit('.').next().unwrap_or(name);
    let in_mlp_head = name.starts_with("head.") || name.starts_with("predictor.");
    // (out, in) of a linear weight.
    let fans = || -> Result<(f64, f64)> {
        match dims.as_slice() {
            [out, inp] => Ok((*out as f64, *inp as f64)),
            other => Err(Error::Config(format!("{name}: expected a 2-D linear weight, found shape {other:?}"))),
        }
    };
    match last {
        "bias" | "running_mean" => from(vec![0.0; n]),
        "running_var" => from(vec![1.0; n]),
        "cls_token" => from((0..n).map(|_| CLS_TOKEN_STD * normal(rng)).collect()),
        "pos_embed" => Ok(mocov3_sincos_2d(cfg.vit.embed_dim, cfg.vit.grid_size(), dev)?.to_dtype(dtype)?),
        "weight" if dims.len() == 1 => from(vec![1.0; n]), // LayerNorm / BatchNorm scale
        "weight" if name == "patch_embed.proj.weight" => {
            let v = &cfg.vit;
            let fan_in = (v.in_chans * v.patch_size * v.patch_size) as f64;
            from(uniform(rng, n, (6.0 / (fan_in + v.embed_dim as f64)).sqrt()))
        }
        "weight" if in_mlp_head => {
            let (_, fan_in) = fans()?;
            from(uniform(rng, n, 1.0 / fan_in.sqrt()))
        }
        "weight" if name.starts_with("blocks.") => {
            let (out, inp) = fans()?;
            let bound = if name.ends_with(".attn.qkv.weight") { (6.0 / (out / 3.0 + inp)).sqrt() } else { (6.0 / (out + inp)).sqrt() };
            from(uniform(rng, n, bound))
        }
        _ => Err(Error::Config(format!("no MoCo-v3 initialisation rule for variable {name} {dims:?}"))),
    }
}

/// `n` draws from U(-bound, bound).
fn uniform(rng: &mut impl Rng, n: usize, bound: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sincos_puts_the_row_first_and_leaves_cls_zero() {
        let t = mocov3_sincos_2d(8, 3, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 10, 8]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v[..8].iter().all(|x| *x == 0.0), "cls slot is zero");
        // token (row 2, col 1) = 1 + 2*3 + 1 = 8; D/4 = 2, omega = [1, 1e-2].
        let row = &v[8 * 8..9 * 8];
        let expect = [2f64.sin(), 0.02f64.sin(), 2f64.cos(), 0.02f64.cos(), 1f64.sin(), 0.01f64.sin(), 1f64.cos(), 0.01f64.cos()];
        for (a, e) in row.iter().zip(expect) {
            assert!((f64::from(*a) - e).abs() < 1e-7, "{a} vs {e}");
        }
    }
}
