//! The plain ViT: patch embedding, pre-norm transformer blocks, and a
//! classifier on the cls token or on pooled patch tokens. Parameter names are
//! timm's, so released checkpoints load without a rename table.
//!
//! The same blocks serve ViTDet ([`crate::vitdet`]): an [`AttentionLayout`]
//! gives a block window attention and decomposed relative positions, and
//! [`Block::forward_grid`] runs it over a token map without a cls token.
//!
//! Shapes: B batch, N tokens (1 cls + h*w patches), D width, H heads,
//! d = D / H head width.

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;
use engine::ops::{self, LayerNorm, Linear};
use rand::RngCore;

use crate::config::{Pool, PosEmbedKind, VitConfig};
use crate::pos_embed::{resize_pos_embed, square_grid};
use crate::rel_pos::fold_rel_pos;
use crate::window::{window_partition, window_unpartition};

/// Options of one forward pass.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// Training mode (drop path active).
    pub train: bool,
    /// Keep every block's output tokens in [`VitOutput::blocks`].
    pub keep_blocks: bool,
    /// Blocks (0-based) whose pre-softmax attention logits to return.
    pub attn_logits: Vec<usize>,
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// Each block's output (B, N, D), cls first; empty unless `keep_blocks`.
    pub blocks: Vec<Tensor>,
    /// The last block's output after the final `norm` (B, N, D); for
    /// [`Pool::Avg`] models, which have no final norm, the last block's output.
    pub tokens: Tensor,
    /// The image representation before the head (B, D): the normalised cls
    /// token, or the mean patch token after `fc_norm`.
    pub pooled: Tensor,
    /// Classifier outputs (B, classes) when the model has a head.
    pub logits: Option<Tensor>,
    /// `(block, logits)` for each requested block, logits (B, H, N, N) scaled
    /// and before softmax, in the order requested.
    pub attn_logits: Vec<(usize, Tensor)>,
}

/// What [`Vit::forward_blocks`] returns.
#[derive(Debug, Clone)]
pub struct BlocksOutput {
    /// The last block's output (B, N, D).
    pub last: Tensor,
    /// Every block's output; empty unless `keep_blocks`.
    pub blocks: Vec<Tensor>,
    /// `(block, logits)` for each requested block, in the order requested.
    pub attn_logits: Vec<(usize, Tensor)>,
}

/// 16x16 patches to tokens: a stride-16 convolution written as one GEMM over
/// the flattened patches (identical result, and a plain matmul backward).
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    /// (D, C, P, P), timm's `patch_embed.proj.weight`.
    weight: Tensor,
    bias: Tensor,
    patch: usize,
}

impl PatchEmbed {
    pub(crate) fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let (p, c, dim) = (cfg.patch_size, cfg.in_chans, cfg.embed_dim);
        let weight = vb.get_with_hints((dim, c, p, p), "weight", candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, patch: p })
    }

    /// (B, C, H, W) pixels to (B, h*w, D) tokens, row-major; returns (h, w) too.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (b, c, height, width) = x.dims4()?;
        let p = self.patch;
        if height % p != 0 || width % p != 0 {
            return Err(candle_core::Error::Msg(format!("image {height}x{width} is not a multiple of the patch size {p}")));
        }
        let (h, w) = (height / p, width / p);
        let patches = x
            .reshape((b, c, h, p, w, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, h * w, c * p * p))?;
        let dim = self.weight.dim(0)?;
        let tokens = ops::linear(&patches, &self.weight.reshape((dim, c * p * p))?, Some(&self.bias))?;
        Ok((tokens, (h, w)))
    }
}

/// How a block's attention sees the token map. The plain ViT uses the
/// default (global attention, no relative positions); ViTDet sets both per
/// block (detectron2 `vit.py` `Block(window_size, use_rel_pos, input_size)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttentionLayout {
    /// Side S of the square windows attention runs in; 0 for global attention.
    pub window_size: usize,
    /// The grid (h, w) the relative-position tables are sized for, giving
    /// `rel_pos_h` (2h-1, d) and `rel_pos_w` (2w-1, d); `None` for none.
    pub rel_pos_size: Option<(usize, usize)>,
}

/// Decomposed relative-position tables of one attention layer (zero at
/// initialisation, as detectron2's `rel_pos_zero_init`).
#[derive(Debug, Clone)]
struct RelPos {
    /// (2h-1, d), `blocks.{i}.attn.rel_pos_h`.
    h: Tensor,
    /// (2w-1, d), `blocks.{i}.attn.rel_pos_w`.
    w: Tensor,
}

/// Multi-head self-attention with a fused qkv projection (timm layout: rows
/// 0..D are q, D..2D k, 2D..3D v; head h uses rows h*d..(h+1)*d of each),
/// optionally with decomposed relative positions (ViTDet).
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    rel_pos: Option<RelPos>,
    num_heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &VitConfig, rel_pos_size: Option<(usize, usize)>, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        let rel_pos = match rel_pos_size {
            Some((h, w)) => {
                let zero = candle_nn::Init::Const(0.0);
                let d = cfg.head_dim();
                Some(RelPos { h: vb.get_with_hints((2 * h - 1, d), "rel_pos_h", zero)?, w: vb.get_with_hints((2 * w - 1, d), "rel_pos_w", zero)? })
            }
            None => None,
        };
        Ok(Self {
            qkv: Linear::new(dim, 3 * dim, cfg.qkv_bias, vb.pp("qkv"))?,
            proj: Linear::new(dim, dim, true, vb.pp("proj"))?,
            rel_pos,
            num_heads: cfg.num_heads,
            scale: (cfg.head_dim() as f64).powf(-0.5),
        })
    }

    /// q, k, v as (B, H, N, d) each from (B, N, D) tokens.
    fn split_heads(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, n, dim) = x.dims3()?;
        let heads = self.num_heads;
        let qkv = self.qkv.forward(x)?.reshape((b, n, 3, heads, dim / heads))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
        Ok((qkv.get(0)?, qkv.get(1)?, qkv.get(2)?))
    }

    /// (B, N, D) tokens forming an (h, w) grid, row-major and without a cls
    /// token, to (B, N, D): attention over all N tokens, plus the
    /// decomposed relative-position term when the layer has tables
    /// (detectron2 `vit.py` `Attention.forward`), folded into q and k
    /// ([`crate::rel_pos::fold_rel_pos`]) so the fused kernel runs it.
    pub fn forward_grid(&self, x: &Tensor, hw: (usize, usize)) -> Result<Tensor> {
        let Some(rel) = &self.rel_pos else {
            return self.forward(x, false).map(|(out, _)| out);
        };
        let (b, n, dim) = x.dims3()?;
        let (q, k, v) = self.split_heads(x)?;
        let (q, k) = fold_rel_pos(&q, &k, self.scale, &rel.h, &rel.w, hw, hw)?;
        let att = ops::attention(&q, &k, &v, None, 1.0, false)?;
        self.proj.forward(&att.out.transpose(1, 2)?.reshape((b, n, dim))?)
    }

    /// (B, N, D) -> (B, N, D) without relative positions (the plain ViT's
    /// layers have none); with `keep_logits`, also the scaled pre-softmax
    /// logits (B, H, N, N).
    pub fn forward(&self, x: &Tensor, keep_logits: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (b, n, dim) = x.dims3()?;
        if !keep_logits {
            // One op from the qkv projection to the heads' outputs (fused on
            // the CPU: no permute/transpose copies, one d(qkv) buffer).
            let out = ops::self_attention(&self.qkv.forward(x)?, self.num_heads, self.scale)?;
            return Ok((self.proj.forward(&out)?, None));
        }
        let (q, k, v) = self.split_heads(x)?;
        let att = ops::attention(&q, &k, &v, None, self.scale, keep_logits)?;
        let out = att.out.transpose(1, 2)?.reshape((b, n, dim))?;
        Ok((self.proj.forward(&out)?, att.logits))
    }
}

/// fc1 -> exact GELU -> fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.mlp_hidden();
        Ok(Self { fc1: Linear::new(cfg.embed_dim, hidden, true, vb.pp("fc1"))?, fc2: Linear::new(hidden, cfg.embed_dim, true, vb.pp("fc2"))? })
    }

    /// (..., D) -> (..., D).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&ops::gelu(&self.fc1.forward(x)?)?)
    }
}

/// Pre-norm transformer block: `x + dp(attn(norm1(x)))`, then `x + dp(mlp(norm2(x)))`.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    drop_path: f64,
    window_size: usize,
}

impl Block {
    /// Builds a block of `cfg`'s width, heads and MLP under `vb` (timm
    /// names `norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`,
    /// `mlp.fc2`); MAE's decoder reuses it at its own width.
    ///
    /// # Errors
    /// `vb` holds a tensor of another shape.
    pub fn new(cfg: &VitConfig, drop_path: f64, layout: AttentionLayout, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(cfg.embed_dim, cfg.ln_eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, layout.rel_pos_size, vb.pp("attn"))?,
            norm2: LayerNorm::new(cfg.embed_dim, cfg.ln_eps, vb.pp("norm2"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            drop_path,
            window_size: layout.window_size,
        })
    }

    /// Runs the block over (B, N, D) tokens (cls first) with global
    /// attention; returns the attention logits when `keep_logits`.
    pub fn forward(&self, x: &Tensor, train: bool, keep_logits: bool, rng: &mut dyn RngCore) -> Result<(Tensor, Option<Tensor>)> {
        let (a, logits) = self.attn.forward(&self.norm1.forward(x)?, keep_logits)?;
        Ok((self.residuals(x, &a, train, rng)?, logits))
    }

    /// Runs the block over (B, h*w, D) tokens forming an (h, w) map, no cls
    /// token (ViTDet): after `norm1` the map is split into zero-padded
    /// windows when the block has a window size, attention runs inside each
    /// window (or over the whole map), and the windows are put back and
    /// cropped before the residual (detectron2 `vit.py` `Block.forward`).
    pub fn forward_grid(&self, x: &Tensor, hw: (usize, usize), train: bool, rng: &mut dyn RngCore) -> Result<Tensor> {
        let y = self.norm1.forward(x)?;
        let a = if self.window_size > 0 {
            let s = self.window_size;
            let (windows, padded) = window_partition(&y, hw, s)?;
            window_unpartition(&self.attn.forward_grid(&windows, (s, s))?, s, padded, hw)?
        } else {
            self.attn.forward_grid(&y, hw)?
        };
        self.residuals(x, &a, train, rng)
    }

    /// `x + dp(a)`, then the MLP branch with its residual.
    fn residuals(&self, x: &Tensor, a: &Tensor, train: bool, rng: &mut dyn RngCore) -> Result<Tensor> {
        let x = (x + ops::drop_path(a, self.drop_path, train, rng)?)?;
        let m = self.mlp.forward(&self.norm2.forward(&x)?)?;
        &x + ops::drop_path(&m, self.drop_path, train, rng)?
    }

    /// The block's first norm (the analysis tools read its output).
    pub fn norm1(&self) -> &LayerNorm {
        &self.norm1
    }

    /// [`Block::forward`] in evaluation mode that shows block `index`'s
    /// [`Tap::Norm1`], [`Tap::AttnLogits`], [`Tap::AfterAttn`] and
    /// [`Tap::AfterMlp`] to `taps` as they are computed.
    fn forward_tapped(&self, index: usize, x: &Tensor, taps: &mut dyn TapVisitor) -> Result<Tensor> {
        let y = self.norm1.forward(x)?;
        if taps.wants(Tap::Norm1(index)) {
            taps.visit(Tap::Norm1(index), &y)?;
        }
        let (a, logits) = self.attn.forward(&y, taps.wants(Tap::AttnLogits(index)))?;
        if let Some(logits) = logits {
            taps.visit(Tap::AttnLogits(index), &logits)?;
        }
        let x = (x + a)?;
        if taps.wants(Tap::AfterAttn(index)) {
            taps.visit(Tap::AfterAttn(index), &x)?;
        }
        let out = (&x + self.mlp.forward(&self.norm2.forward(&x)?)?)?;
        if taps.wants(Tap::AfterMlp(index)) {
            taps.visit(Tap::AfterMlp(index), &out)?;
        }
        Ok(out)
    }
}

/// A point of the forward pass [`Vit::forward_with_taps`] can show to a
/// [`TapVisitor`] (the analysis tools' hook). Token tensors are (B, N, D)
/// with cls first; `i` is the 0-based block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tap {
    /// Patch tokens plus position embedding, cls prepended: block 0's input.
    Embedding,
    /// The output of `blocks.i.norm1` (the LayerNormed input of block i).
    Norm1(usize),
    /// Block i's scaled pre-softmax attention logits (B, H, N, N).
    AttnLogits(usize),
    /// The residual stream after block i's attention branch, `x + attn(norm1(x))`.
    AfterAttn(usize),
    /// Block i's output (after its MLP branch).
    AfterMlp(usize),
    /// The last block's output through the final norm, token by token:
    /// `norm` for cls-pooled models, `fc_norm` applied to every token for
    /// mean-pooled ones (which otherwise apply it only to the pooled mean).
    FinalNorm,
}

/// Receives the tensors of the [`Tap`]s it wants during
/// [`Vit::forward_with_taps`], one batch at a time, so a caller reduces each
/// one as it comes instead of keeping every layer.
pub trait TapVisitor {
    /// Whether to compute and show `tap` (asking for [`Tap::AttnLogits`]
    /// switches that block to the unfused attention that keeps logits).
    fn wants(&self, tap: Tap) -> bool;
    /// Called once per wanted tap, in forward order.
    ///
    /// # Errors
    /// Whatever the visitor fails with; the forward pass stops there.
    fn visit(&mut self, tap: Tap, tensor: &Tensor) -> Result<()>;
}

/// A plain ViT.
#[derive(Debug, Clone)]
pub struct Vit {
    cfg: VitConfig,
    patch_embed: PatchEmbed,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: Option<LayerNorm>,
    fc_norm: Option<LayerNorm>,
    head: Option<Linear>,
}

impl Vit {
    /// Builds the model's parameters under `vb` with timm's names. Initial
    /// values come from `vb`'s hints; [`crate::init::init_weights`] replaces
    /// them with the seeded timm initialisation.
    ///
    /// # Errors
    /// Fails on an invalid config or when `vb` holds a tensor of the wrong shape.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let dim = cfg.embed_dim;
        let grid = cfg.grid_size();
        let normal = candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let cls_token = vb.get_with_hints((1, 1, dim), "cls_token", normal)?;
        let pos_embed = vb.get_with_hints((1, 1 + grid * grid, dim), "pos_embed", normal)?;
        let blocks = drop_path_rates(cfg.drop_path_rate, cfg.depth)
            .into_iter()
            .enumerate()
            .map(|(i, rate)| Block::new(cfg, rate, AttentionLayout::default(), vb.pp("blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let (norm, fc_norm) = match cfg.pool {
            Pool::Cls => (Some(LayerNorm::new(dim, cfg.ln_eps, vb.pp("norm"))?), None),
            Pool::Avg => (None, Some(LayerNorm::new(dim, cfg.ln_eps, vb.pp("fc_norm"))?)),
        };
        let head = if cfg.num_classes > 0 { Some(Linear::new(dim, cfg.num_classes, true, vb.pp("head"))?) } else { None };
        Ok(Self { cfg: cfg.clone(), patch_embed: PatchEmbed::new(cfg, vb.pp("patch_embed").pp("proj"))?, cls_token, pos_embed, blocks, norm, fc_norm, head })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// The transformer blocks.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The position table (1, 1 + grid², D); fixed sin-cos tables come back detached.
    pub fn pos_embed(&self) -> Tensor {
        match self.cfg.pos_embed {
            PosEmbedKind::Learned => self.pos_embed.clone(),
            PosEmbedKind::SinCos => self.pos_embed.detach(),
        }
    }

    /// Patch tokens with their position embedding added, no cls token:
    /// (B, h*w, D) and (h, w). The table is resized bicubically when the
    /// image's token grid differs from the configured one.
    pub fn embed_patches(&self, x: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (tokens, hw) = self.patch_embed.forward(x)?;
        let pos = self.pos_embed();
        let grid = self.cfg.grid_size();
        let patch_pos = resize_pos_embed(&pos, (grid, grid), 1, hw, true)?;
        Ok((tokens.broadcast_add(&patch_pos)?, hw))
    }

    /// Prepends `cls_token + pos_embed[:, :1]` to (B, M, D) tokens.
    pub fn prepend_cls(&self, tokens: &Tensor) -> Result<Tensor> {
        let b = tokens.dim(0)?;
        let cls = self.cls_token.broadcast_add(&self.pos_embed().narrow(1, 0, 1)?)?;
        let dim = self.cfg.embed_dim;
        Tensor::cat(&[&cls.broadcast_as((b, 1, dim))?.contiguous()?, tokens], 1)
    }

    /// Runs the blocks over (B, N, D) tokens: the last output, every block's
    /// output when `opts.keep_blocks`, and the requested attention logits.
    pub fn forward_blocks(&self, x: &Tensor, opts: &ForwardOptions, rng: &mut dyn RngCore) -> Result<BlocksOutput> {
        let mut x = x.clone();
        let mut outs = Vec::new();
        let mut logits: Vec<(usize, Tensor)> = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let keep = opts.attn_logits.contains(&i);
            let (y, l) = block.forward(&x, opts.train, keep, rng)?;
            if let Some(l) = l {
                logits.push((i, l));
            }
            if opts.keep_blocks {
                outs.push(y.clone());
            }
            x = y;
        }
        // Hand the logits back in the order they were asked for.
        logits.sort_by_key(|(i, _)| opts.attn_logits.iter().position(|j| j == i));
        Ok(BlocksOutput { last: x, blocks: outs, attn_logits: logits })
    }

    /// The full forward: pixels (B, C, H, W), normalised, to [`VitOutput`].
    pub fn forward(&self, x: &Tensor, opts: &ForwardOptions, rng: &mut dyn RngCore) -> Result<VitOutput> {
        let (patches, _) = self.embed_patches(x)?;
        let tokens = self.prepend_cls(&patches)?;
        let BlocksOutput { last, blocks, attn_logits } = self.forward_blocks(&tokens, opts, rng)?;
        let (tokens, pooled) = self.pool(&last)?;
        let logits = match &self.head {
            Some(head) => Some(head.forward(&pooled)?),
            None => None,
        };
        Ok(VitOutput { blocks, tokens, pooled, logits, attn_logits })
    }

    /// The forward pass in evaluation mode over normalised pixels (B, C, H,
    /// W), showing `taps` every [`Tap`] it wants; nothing is kept once shown.
    /// The classifier head is not run.
    ///
    /// # Errors
    /// Tensor errors, or the first error `taps` returns.
    pub fn forward_with_taps(&self, x: &Tensor, taps: &mut dyn TapVisitor) -> Result<()> {
        let (patches, _) = self.embed_patches(x)?;
        let mut x = self.prepend_cls(&patches)?;
        if taps.wants(Tap::Embedding) {
            taps.visit(Tap::Embedding, &x)?;
        }
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_tapped(i, &x, taps)?;
        }
        if taps.wants(Tap::FinalNorm) {
            let normed = match (&self.norm, &self.fc_norm) {
                (Some(norm), _) => norm.forward(&x)?,
                (None, Some(fc_norm)) => fc_norm.forward(&x)?,
                (None, None) => return Err(candle_core::Error::Msg("ViT has neither norm nor fc_norm".into())),
            };
            taps.visit(Tap::FinalNorm, &normed)?;
        }
        Ok(())
    }

    /// Final norm and pooling of the last block's output: (tokens, pooled).
    fn pool(&self, last: &Tensor) -> Result<(Tensor, Tensor)> {
        match (&self.norm, &self.fc_norm) {
            (Some(norm), _) => {
                let tokens = norm.forward(last)?;
                let cls = tokens.narrow(1, 0, 1)?.squeeze(1)?;
                Ok((tokens, cls))
            }
            (None, Some(fc_norm)) => {
                let n = last.dim(1)?;
                let mean = last.narrow(1, 1, n - 1)?.mean(D::Minus2)?;
                Ok((last.clone(), fc_norm.forward(&mean)?))
            }
            (None, None) => Err(candle_core::Error::Msg("ViT has neither norm nor fc_norm".into())),
        }
    }

    /// The optimizer rules of this model's parameter names: layer ids for
    /// layer-wise lr decay (0 for the stem, i + 1 for `blocks.i`, depth + 1
    /// for the rest) and the names exempt from weight decay.
    pub fn param_rules(&self) -> engine::optim::ViTNameRules {
        engine::optim::ViTNameRules { num_layers: self.cfg.depth }
    }

    /// Whether the model has a final `norm` (cls pooling) over its tokens.
    pub fn has_final_norm(&self) -> bool {
        self.norm.is_some()
    }

    /// The final `norm` over all tokens ([`Pool::Cls`] models; MAE's
    /// encoder applies it to the visible tokens).
    pub fn final_norm(&self) -> Option<&LayerNorm> {
        self.norm.as_ref()
    }
}

/// Stochastic-depth rate of each of `depth` blocks: growing linearly from 0
/// to `rate` over the blocks (timm's and detectron2's `linspace(0, rate, depth)`).
pub(crate) fn drop_path_rates(rate: f64, depth: usize) -> Vec<f64> {
    (0..depth).map(|i| if depth > 1 { rate * i as f64 / (depth - 1) as f64 } else { rate }).collect()
}

/// Token-grid side of a position table of (1, 1 + n, D), if square.
pub fn pos_grid(pos: &Tensor) -> Option<usize> {
    pos.dim(1).ok().and_then(|n| n.checked_sub(1)).and_then(square_grid)
}
