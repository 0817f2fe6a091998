//! `Vit::forward_with_taps` shows the same tensors the plain forward computes:
//! block outputs, attention logits, the final norm (cls and mean-pooled
//! models), and norm1 / mid-block residuals consistent with them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use backbone::{ForwardOptions, Pool, Tap, TapVisitor, Vit, VitConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;

#[derive(Default)]
struct Keep(HashMap<Tap, Tensor>);

impl TapVisitor for Keep {
    fn wants(&self, tap: Tap) -> bool {
        !matches!(tap, Tap::AttnLogits(0))
    }
    fn visit(&mut self, tap: Tap, tensor: &Tensor) -> candle_core::Result<()> {
        assert!(self.0.insert(tap, tensor.clone()).is_none(), "{tap:?} shown twice");
        Ok(())
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check(pool: Pool) {
    let cfg = VitConfig { embed_dim: 48, num_heads: 4, depth: 2, img_size: 32, num_classes: 5, pool, ..VitConfig::tiny() };
    let varmap = VarMap::new();
    let model = Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let opts = ForwardOptions { train: false, keep_blocks: true, attn_logits: vec![1] };
    let out = model.forward(&x, &opts, &mut rng).unwrap();
    let mut keep = Keep::default();
    model.forward_with_taps(&x, &mut keep).unwrap();
    let taps = keep.0;
    assert!(!taps.contains_key(&Tap::AttnLogits(0)), "an unwanted tap was shown");
    for i in 0..2 {
        assert_eq!(max_diff(&taps[&Tap::AfterMlp(i)], &out.blocks[i]), 0.0, "block {i}");
        let input = if i == 0 { &taps[&Tap::Embedding] } else { &taps[&Tap::AfterMlp(i - 1)] };
        let norm1 = model.blocks()[i].norm1().forward(input).unwrap();
        assert_eq!(max_diff(&taps[&Tap::Norm1(i)], &norm1), 0.0, "norm1 {i}");
        // The mid-block residual lies between the block's input and output.
        assert_eq!(taps[&Tap::AfterAttn(i)].dims(), out.blocks[i].dims());
    }
    assert!(max_diff(&taps[&Tap::AttnLogits(1)], &out.attn_logits[0].1) < 1e-5);
    // At initialisation the final norm (`norm` or `fc_norm`) has weight 1
    // and bias 0: every token of the last block's output, standardised.
    let last = &out.blocks[1];
    let mean = last.mean_keepdim(2).unwrap();
    let centred = last.broadcast_sub(&mean).unwrap();
    let var = centred.sqr().unwrap().mean_keepdim(2).unwrap();
    let standardised = centred.broadcast_div(&(var + cfg.ln_eps).unwrap().sqrt().unwrap()).unwrap();
    assert!(max_diff(&taps[&Tap::FinalNorm], &standardised) < 1e-4);
    if pool == Pool::Cls {
        assert_eq!(max_diff(&taps[&Tap::FinalNorm], &out.tokens), 0.0);
    }
}

#[test]
fn taps_match_the_plain_forward_for_a_cls_model() {
    check(Pool::Cls);
}

#[test]
fn taps_match_the_plain_forward_for_a_mean_pooled_model() {
    check(Pool::Avg);
}
