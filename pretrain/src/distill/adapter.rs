//! The learnable maps from the student's shapes to the teacher's, and the
//! distillation losses through them.
//!
//! Shapes: B images, T tokens (cls + visible patches), H_s / H_t student /
//! teacher heads, D_s / D_t widths.
//!
//! - `attn_adapter.adapter{idx-1}.weight` (H_t, H_s, 1, 1): the released
//!   Conv2d(H_s, H_t, 1, bias=False) over (B, H_s, T, T) logits, i.e. out[b,
//!   o] = sum_h W[o, h] x[b, h], computed as one batched matmul;
//! - `hidden_adapter.adapter{i}.weight` (D_t, D_s): Linear(D_s, D_t,
//!   bias=False) over (B, T, D_s) representations.
//!
//! Initial values are PyTorch's defaults for both modules
//! (`kaiming_uniform_(a=sqrt(5))`: uniform in ±1/sqrt(fan_in), fan_in =
//! H_s or D_s), drawn by [`init_adapters`] from a seeded generator.

use candle_core::Tensor;
use candle_nn::{VarBuilder, VarMap};
use engine::ops::Linear;
use rand::{Rng, SeedableRng};

use super::DistillConfig;
use crate::{Error, Result};

/// ChaCha stream of the adapters' initial values (MAE's init draws from
/// stream 0 of the same seed).
const ADAPTER_STREAM: u64 = 1;

/// The attention and hidden-state adapters of one distillation setup.
#[derive(Debug, Clone)]
pub struct Adapters {
    /// (layer idx, 1-based; weight (H_t, H_s, 1, 1)).
    attn: Vec<(usize, Tensor)>,
    /// (representation i; Linear D_s -> D_t).
    hidden: Vec<(usize, Linear)>,
}

impl Adapters {
    /// Builds the adapters `cfg` asks for under `vb` with the released names
    /// (`attn_adapter.adapter{idx-1}`, `hidden_adapter.adapter{i}`), mapping
    /// `student_heads` to `teacher_heads` and `student_dim` to `teacher_dim`.
    ///
    /// # Errors
    /// `vb` holds a tensor of another shape.
    pub fn new(cfg: &DistillConfig, (student_heads, teacher_heads): (usize, usize), (student_dim, teacher_dim): (usize, usize), vb: VarBuilder) -> Result<Self> {
        let hint = candle_nn::Init::Const(0.0);
        let attn = cfg
            .attn_layers
            .iter()
            .map(|&idx| Ok((idx, vb.pp("attn_adapter").pp(format!("adapter{}", idx - 1)).get_with_hints((teacher_heads, student_heads, 1, 1), "weight", hint)?)))
            .collect::<Result<Vec<_>>>()?;
        let hidden = cfg
            .hidden_layers
            .iter()
            .map(|&i| Ok((i, Linear::new(student_dim, teacher_dim, false, vb.pp("hidden_adapter").pp(format!("adapter{i}")))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { attn, hidden })
    }

    /// Sum over the attention layers of `MSE(adapter(student), teacher)`,
    /// `student` / `teacher` holding `(block, logits)` with 0-based blocks
    /// (the encoder's taps); `None` without attention layers.
    ///
    /// # Errors
    /// [`Error::Shape`] when a layer's logits are missing or the shapes
    /// disagree.
    pub fn attn_loss(&self, student: &[(usize, Tensor)], teacher: &[(usize, Tensor)]) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for (idx, weight) in &self.attn {
            let (s, t) = (tap(student, idx - 1, "student attention logits")?, tap(teacher, idx - 1, "teacher attention logits")?);
            let (b, heads, n, m) = s.dims4()?;
            let (out_heads, in_heads, _, _) = weight.dims4()?;
            if in_heads != heads || t.dims() != [b, out_heads, n, m] {
                return Err(Error::Shape { what: "teacher attention logits", expected: format!("({b}, {out_heads}, {n}, {m}) for student logits {:?}", s.dims()), found: t.dims().to_vec() });
            }
            let mixed = weight.reshape((out_heads, in_heads))?.broadcast_matmul(&s.reshape((b, heads, n * m))?)?.reshape((b, out_heads, n, m))?;
            total = Some(add(total, mse(&mixed, &t.detach())?)?);
        }
        Ok(total)
    }

    /// Sum over the hidden layers of `MSE(adapter(student), teacher)` with
    /// the cls token, `student` / `teacher` holding `(i, (B, T, D))`
    /// representations; `None` without hidden layers.
    ///
    /// # Errors
    /// [`Error::Shape`] when a representation is missing or the shapes disagree.
    pub fn hidden_loss(&self, student: &[(usize, Tensor)], teacher: &[(usize, Tensor)]) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for (i, linear) in &self.hidden {
            let mapped = linear.forward(tap(student, *i, "student representations")?)?;
            let t = tap(teacher, *i, "teacher representations")?;
            if mapped.dims() != t.dims() {
                return Err(Error::Shape { what: "teacher representations", expected: format!("{:?}", mapped.dims()), found: t.dims().to_vec() });
            }
            total = Some(add(total, mse(&mapped, &t.detach())?)?);
        }
        Ok(total)
    }
}

/// The tensor tapped at `key`.
fn tap<'a>(taps: &'a [(usize, Tensor)], key: usize, what: &'static str) -> Result<&'a Tensor> {
    taps.iter().find(|(k, _)| *k == key).map(|(_, t)| t).ok_or_else(|| Error::Shape { what, expected: format!("a tap at index {key}"), found: taps.iter().map(|(k, _)| *k).collect() })
}

/// `nn.MSELoss()`: the mean over every element of the squared difference.
fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.mean_all()?)
}

fn add(acc: Option<Tensor>, term: Tensor) -> Result<Tensor> {
    Ok(match acc {
        Some(acc) => (acc + term)?,
        None => term,
    })
}

/// Sets every adapter variable of `varmap` (which should hold only
/// adapters) to PyTorch's default initial values, uniform in
/// ±1/sqrt(fan_in) with fan_in the product of the dimensions after the
/// first, drawn from `seed` in name order.
///
/// # Errors
/// [`Error::Config`] for a variable that is not an adapter weight.
pub fn init_adapters(varmap: &VarMap, seed: u64) -> Result<()> {
    let vars = engine::vars::named_vars(varmap)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(ADAPTER_STREAM);
    for (name, var) in &vars {
        let dims = var.dims();
        let is_adapter = (name.starts_with("attn_adapter.") || name.starts_with("hidden_adapter.")) && name.ends_with(".weight");
        if !is_adapter || dims.len() < 2 {
            return Err(Error::config("distill", format!("no adapter initialisation rule for variable {name} {dims:?}")));
        }
        let fan_in: usize = dims[1..].iter().product();
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let values: Vec<f32> = (0..var.elem_count()).map(|_| rng.gen_range(-bound..bound) as f32).collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{DType, Device};

    fn adapters(cfg: &DistillConfig, varmap: &VarMap) -> Adapters {
        Adapters::new(cfg, (4, 8), (24, 32), VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu)).unwrap()
    }

    #[test]
    fn adapters_have_the_released_names_and_pytorchs_default_range() {
        let varmap = VarMap::new();
        let cfg = DistillConfig { attn_layers: vec![2, 1], hidden_layers: vec![0, 2], ..Default::default() };
        adapters(&cfg, &varmap);
        init_adapters(&varmap, 7).unwrap();
        let named = engine::vars::named_vars(&varmap).unwrap();
        let shapes: Vec<(&str, Vec<usize>)> = named.iter().map(|(n, v)| (n.as_str(), v.dims().to_vec())).collect();
        assert_eq!(
            shapes,
            vec![
                ("attn_adapter.adapter0.weight", vec![8, 4, 1, 1]),
                ("attn_adapter.adapter1.weight", vec![8, 4, 1, 1]),
                ("hidden_adapter.adapter0.weight", vec![32, 24]),
                ("hidden_adapter.adapter2.weight", vec![32, 24]),
            ]
        );
        // Uniform in ±1/sqrt(fan_in): bounded, spread over the range, mean near 0.
        for (name, var, fan_in) in [(&named[0].0, &named[0].1, 4.0f32), (&named[2].0, &named[2].1, 24.0)] {
            let v = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bound = 1.0 / fan_in.sqrt();
            let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(max <= bound && max > 0.8 * bound, "{name}: max |w| {max}, bound {bound}");
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            assert!(mean.abs() < 0.25 * bound, "{name}: mean {mean}");
        }
        // Seeded: the same seed gives the same values, another seed others.
        let again = VarMap::new();
        adapters(&cfg, &again);
        init_adapters(&again, 7).unwrap();
        let a = named[3].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = engine::vars::named_vars(&again).unwrap()[3].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        init_adapters(&again, 8).unwrap();
        let c = engine::vars::named_vars(&again).unwrap()[3].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn attention_adapter_mixes_heads_as_a_1x1_convolution() {
        let varmap = VarMap::new();
        let cfg = DistillConfig { attn_layers: vec![1], ..Default::default() };
        let a = Adapters::new(&cfg, (2, 3), (4, 4), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        // W = [[1, 0], [0, 2], [1, -1]]: out0 = x0, out1 = 2 x1, out2 = x0 - x1.
        let w = Tensor::new(&[1f32, 0.0, 0.0, 2.0, 1.0, -1.0], &Device::Cpu).unwrap().reshape((3, 2, 1, 1)).unwrap();
        engine::vars::named_vars(&varmap).unwrap()[0].1.set(&w).unwrap();
        let x = Tensor::new(&[1f32, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0], &Device::Cpu).unwrap().reshape((1, 2, 2, 2)).unwrap();
        let want = Tensor::new(&[1f32, 2.0, 3.0, 4.0, 20.0, 40.0, 60.0, 80.0, -9.0, -18.0, -27.0, -36.0], &Device::Cpu).unwrap().reshape((1, 3, 2, 2)).unwrap();
        // The teacher equal to the mapped logits: zero loss; shifted by 1 everywhere: loss 1.
        let zero = a.attn_loss(&[(0, x.clone())], &[(0, want.clone())]).unwrap().unwrap();
        assert_eq!(zero.to_scalar::<f32>().unwrap(), 0.0);
        let one = a.attn_loss(&[(0, x.clone())], &[(0, (want + 1.0).unwrap())]).unwrap().unwrap();
        assert_eq!(one.to_scalar::<f32>().unwrap(), 1.0);
        // A teacher with other heads or a missing tap is a shape error.
        assert!(a.attn_loss(&[(0, x.clone())], &[(0, x.clone())]).is_err());
        assert!(a.attn_loss(&[(1, x.clone())], &[(0, x)]).is_err());
        assert!(a.hidden_loss(&[], &[]).unwrap().is_none());
    }
}
