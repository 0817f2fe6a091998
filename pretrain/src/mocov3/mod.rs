//! MoCo-v3 pre-training of the ViT-Tiny (Chen, Xie & He 2021; MAE-Lite's
//! MoCo-v3-Tiny baseline, maelite-recipes.md §3): an online encoder (ViT +
//! projector) and predictor trained by gradient, a momentum encoder that
//! follows them by EMA, and a symmetric InfoNCE loss between the two
//! augmented views of each image (`vision::transforms::ssl_view` 1 and 2).
//!
//! Mirrors moco-v3 `moco/builder.py` (`MoCo_ViT`), `vits.py`
//! (`VisionTransformerMoCo`) and MAE-Lite `projects/mocov3/`. Deliberate
//! differences: one process (no SyncBatchNorm, no all-gather of the keys),
//! and the initialisation draws from a seeded Rust generator.
//! `tests/mocov3_reference.rs` checks the loss, every gradient, the
//! momentum update and the BatchNorm statistics against a PyTorch model
//! built as moco-v3 builds it (`tests/fixtures/make_mocov3_fixtures.py`).
//!
//! Use, per iteration `i` of `T`, as moco-v3's loop does:
//! ```text
//! let m = moco.momentum_at(i, T);
//! let loss = moco.loss(&view1, &view2, m, rng)?;   // EMA step, then the forward
//! LossTerms::new(loss.terms())
//! ```
//! or, in an `engine::trainer::TrainTask` (whose `losses` does not know the
//! iteration, and may run several micro-batches per step): `losses` calls
//! `moco.forward_loss(&view1, &view2, rng)` and `after_step(i)` calls
//! `moco.update_momentum(moco.momentum_at(i + 1, T))`. The EMA step then
//! lands between optimizer step i and key forward i + 1, the same sequence;
//! moco-v3's step before iteration 0 is omitted, a no-op on a fresh model
//! whose momentum encoder equals the online one. [`task`] is that task
//! (`vitdet pretrain --method mocov3`).

mod config;
mod error;
pub mod init;
pub mod loss;
pub mod model;
pub mod momentum;
pub mod recipe;
pub mod task;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{build_param_groups, DecayRule, ParamGroup, ViTNameRules};
use engine::trainer::TaskState;
use rand::{Rng, RngCore};

pub use config::MocoV3Config;
pub use error::{Error, Result};
pub use loss::MocoLoss;
pub use model::{BnMlp, Encoder};
pub use momentum::{momentum_at, MomentumEncoder};

use model::PREDICTOR_LAYERS;
use momentum::is_encoder_name;

/// Prefix of the momentum encoder's tensors in [`MocoV3::extra_state`]
/// (the released checkpoint's `module.momentum_encoder.`, without `module.`).
pub const MOMENTUM_PREFIX: &str = "momentum_encoder.";

/// The fixed position table: no gradient, never given to the optimizer.
const FROZEN: [&str; 1] = ["pos_embed"];

/// The MoCo-v3 model: online encoder, predictor and momentum encoder.
pub struct MocoV3 {
    cfg: MocoV3Config,
    varmap: VarMap,
    online: Encoder,
    predictor: BnMlp,
    momentum: MomentumEncoder,
}

impl std::fmt::Debug for MocoV3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // VarMap has no Debug; the networks' Debug would print every tensor.
        f.debug_struct("MocoV3").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl MocoV3 {
    /// Builds the online encoder and predictor as variables of `varmap`
    /// (which should hold nothing else), initialises them as MoCo-v3 does
    /// ([`init::init_mocov3`], drawing from `rng`) and copies the encoder
    /// into the momentum encoder. To resume, restore the variables and
    /// [`MocoV3::restore_extra_state`] afterwards.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config; a tensor error.
    pub fn new(cfg: &MocoV3Config, varmap: &VarMap, dtype: DType, device: &Device, rng: &mut impl Rng) -> Result<Self> {
        cfg.validate()?;
        let vb = VarBuilder::from_varmap(varmap, dtype, device);
        let online = Encoder::new(cfg, vb.clone())?;
        let predictor = BnMlp::new(PREDICTOR_LAYERS, cfg.dim, cfg.mlp_dim, cfg.dim, vb.pp("predictor"))?;
        let vars = engine::vars::named_vars(varmap)?;
        init::init_mocov3(&vars, cfg, rng)?;
        let momentum = MomentumEncoder::new(cfg, &vars)?;
        Ok(Self { cfg: cfg.clone(), varmap: varmap.clone(), online, predictor, momentum })
    }

    /// The configuration.
    pub fn config(&self) -> &MocoV3Config {
        &self.cfg
    }

    /// Every variable of the online model, sorted by name: the ViT under
    /// timm's names (`cls_token`, `pos_embed`, `patch_embed.proj.*`,
    /// `blocks.N.*`, `norm.*`), the projector `head.*` and the predictor
    /// `predictor.*`, BatchNorm running statistics included (the released
    /// checkpoint's `base_encoder.*` and `predictor.*`). What a checkpoint
    /// saves and a resume restores.
    ///
    /// # Errors
    /// The variable map's lock is poisoned.
    pub fn variables(&self) -> Result<Vec<(String, Var)>> {
        Ok(engine::vars::named_vars(&self.varmap)?)
    }

    /// The optimizer's parameter groups: one group, `weight_decay` on every
    /// parameter (moco-v3's `AdamW(model.parameters(), weight_decay=0.1)`),
    /// without the fixed position table and the BatchNorm buffers.
    ///
    /// # Errors
    /// [`Error::Engine`] for a negative `weight_decay`.
    pub fn param_groups(&self, weight_decay: f64) -> Result<Vec<ParamGroup>> {
        let trainable: Vec<(String, Var)> = self.variables()?.into_iter().filter(|(n, _)| !FROZEN.contains(&n.as_str())).collect();
        let rules = ViTNameRules { num_layers: self.cfg.vit.depth };
        Ok(build_param_groups(&trainable, &rules, weight_decay, None, DecayRule::All)?)
    }

    /// The momentum for 0-based iteration `iter` of `total_iters`
    /// ([`momentum_at`] from the config's `base_momentum`).
    pub fn momentum_at(&self, iter: usize, total_iters: usize) -> f64 {
        momentum_at(iter, total_iters, self.cfg.base_momentum)
    }

    /// The momentum encoder.
    pub fn momentum_encoder(&self) -> &MomentumEncoder {
        &self.momentum
    }

    /// The online encoder (ViT and projector).
    pub fn encoder(&self) -> &Encoder {
        &self.online
    }

    /// One EMA step of the momentum encoder towards the online encoder
    /// ([`MomentumEncoder::update`]).
    ///
    /// # Errors
    /// As [`MomentumEncoder::update`].
    pub fn update_momentum(&mut self, momentum: f64) -> Result<()> {
        self.momentum.update(&self.variables()?, momentum)
    }

    /// moco-v3's training forward on two views (B, 3, S, S) of the same
    /// images: the EMA step with `momentum`, then
    /// [`MocoV3::forward_loss`]. Call it once per optimizer step (with
    /// gradient accumulation, update once and use
    /// [`MocoV3::forward_loss`] for the other micro-batches).
    ///
    /// # Errors
    /// As [`MocoV3::update_momentum`] and [`MocoV3::forward_loss`].
    pub fn loss(&mut self, view1: &Tensor, view2: &Tensor, momentum: f64, rng: &mut dyn RngCore) -> Result<MocoLoss> {
        self.update_momentum(momentum)?;
        self.forward_loss(view1, view2, rng)
    }

    /// The symmetric loss without an EMA step: queries
    /// `q = predictor(projector(vit(x)))` of both views with their graph,
    /// keys `k` from the momentum encoder without one, and
    /// `loss(q1, k2) + loss(q2, k1)`. Training mode throughout: every
    /// BatchNorm uses its view's batch statistics and moves its running
    /// statistics.
    ///
    /// # Errors
    /// Views of different batch sizes, a batch of one, wrong image sizes.
    pub fn forward_loss(&mut self, view1: &Tensor, view2: &Tensor, rng: &mut dyn RngCore) -> Result<MocoLoss> {
        if view1.dim(0)? != view2.dim(0)? {
            return Err(Error::Config(format!("the two views hold {} and {} images", view1.dim(0)?, view2.dim(0)?)));
        }
        let (z1, z2) = self.online.forward_views(view1, view2, true, rng)?;
        let q1 = self.predictor.forward_t(&z1, true)?;
        let q2 = self.predictor.forward_t(&z2, true)?;
        let (k1, k2) = self.momentum.forward(view1, view2, rng)?;
        MocoLoss::new(&q1, &q2, &k1, &k2, self.cfg.temperature)
    }

    /// The momentum encoder's tensors (parameters and BatchNorm running
    /// statistics) as named copies under [`MOMENTUM_PREFIX`]: the state a
    /// resume needs beyond [`MocoV3::variables`].
    ///
    /// # Errors
    /// A copy fails.
    pub fn extra_state(&self) -> Result<TaskState> {
        let tensors = self.momentum.tensors()?.into_iter().map(|(n, t)| (format!("{MOMENTUM_PREFIX}{n}"), t)).collect();
        Ok(TaskState { tensors, json: serde_json::Value::Null })
    }

    /// Restores what [`MocoV3::extra_state`] saved.
    ///
    /// # Errors
    /// [`Error::State`] for a tensor without [`MOMENTUM_PREFIX`], JSON
    /// state, or tensors that do not fit the momentum encoder; nothing
    /// changes then.
    pub fn restore_extra_state(&mut self, state: TaskState) -> Result<()> {
        if !state.json.is_null() {
            return Err(Error::State(format!("unexpected JSON state {}", state.json)));
        }
        let tensors = state
            .tensors
            .into_iter()
            .map(|(n, t)| match n.strip_prefix(MOMENTUM_PREFIX) {
                Some(name) => Ok((name.to_string(), t)),
                None => Err(Error::State(format!("tensor {n} is not under {MOMENTUM_PREFIX}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        self.momentum.load(&tensors)
    }

    /// Copies of the online ViT's tensors under timm's names (no projector,
    /// no predictor): the pre-trained backbone `vitdet finetune --backbone`
    /// and `vitdet train --backbone` load.
    ///
    /// # Errors
    /// A copy fails.
    pub fn encoder_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.variables()?
            .into_iter()
            .filter(|(n, _)| is_encoder_name(n) && !n.starts_with("head."))
            .map(|(n, v)| Ok((n, v.as_tensor().detach().copy()?)))
            .collect()
    }
}
