//! The distillation objective on one batch: the student MAE's forward and
//! loss, the frozen teacher on the same visible patches, and the adapted
//! distances between their attention logits and representations
//! (`MAE_distill.forward` of the release).

use backbone::VitConfig;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use rand::RngCore;

use super::{Adapters, DistillConfig, Teacher, ATTN_TERM, HIDDEN_TERM};
use crate::encoder::{encode_visible, EncoderTaps};
use crate::mae::Mae;
use crate::masking::Masking;
use crate::task::LOSS_TERM;
use crate::{Error, Result};

/// Student MAE, frozen teacher and the adapters between them.
#[derive(Debug, Clone)]
pub struct DistillModel {
    cfg: DistillConfig,
    student: Mae,
    teacher: Teacher,
    adapters: Adapters,
    taps: EncoderTaps,
}

/// The weighted loss terms of one batch (each a scalar).
#[derive(Debug, Clone)]
pub struct DistillLosses {
    /// The student's MAE reconstruction loss.
    pub mae: Tensor,
    /// `attn_alpha` x the summed attention MSEs, when layers are distilled.
    pub attn: Option<Tensor>,
    /// `hidden_alpha` x the summed representation MSEs, when the hidden variant is on.
    pub hidden: Option<Tensor>,
}

impl DistillLosses {
    /// The named terms for the training loop (`loss_mae`, `loss_attn`,
    /// `loss_hidden`, the ones present), whose sum is the loss.
    pub fn terms(&self) -> Vec<(String, Tensor)> {
        let mut terms = vec![(LOSS_TERM.to_string(), self.mae.clone())];
        if let Some(t) = &self.attn {
            terms.push((ATTN_TERM.into(), t.clone()));
        }
        if let Some(t) = &self.hidden {
            terms.push((HIDDEN_TERM.into(), t.clone()));
        }
        terms
    }

    /// The loss to differentiate: the sum of the terms.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn total(&self) -> Result<Tensor> {
        let mut total = self.mae.clone();
        for t in self.attn.iter().chain(&self.hidden) {
            total = (total + t)?;
        }
        Ok(total)
    }
}

impl DistillModel {
    /// Puts the pieces together, building the adapters `cfg` asks for under
    /// `vb` (see [`super::init_adapters`] for their initial values).
    ///
    /// # Errors
    /// [`Error::Config`] (`distill.*`) when a distilled layer is beyond the
    /// teacher's depth or the representation at the teacher's depth is
    /// asked of a teacher without a final norm; the config's own checks.
    pub fn new(cfg: &DistillConfig, student: Mae, teacher: Teacher, vb: VarBuilder) -> Result<Self> {
        let s: &VitConfig = &student.spec().encoder;
        let t: &VitConfig = teacher.config();
        cfg.validate(s.depth)?;
        if let Some(&idx) = cfg.attn_layers.iter().find(|&&i| i > t.depth) {
            return Err(Error::config("distill.attn_layers", format!("layer {idx} is beyond the teacher's {} blocks", t.depth)));
        }
        if let Some(&i) = cfg.hidden_layers.iter().find(|&&i| i > t.depth || (i == t.depth && !teacher.vit().has_final_norm())) {
            return Err(Error::config("distill.hidden_layers", format!("representation {i} does not exist in the teacher ({} blocks, final norm: {})", t.depth, teacher.vit().has_final_norm())));
        }
        let adapters = Adapters::new(cfg, (s.num_heads, t.num_heads), (s.embed_dim, t.embed_dim), vb)?;
        let taps = EncoderTaps { attn_logits: cfg.attn_layers.iter().map(|i| i - 1).collect(), hidden: Vec::new(), reps: cfg.hidden_layers.clone() };
        Ok(Self { cfg: cfg.clone(), student, teacher, adapters, taps })
    }

    /// The student.
    pub fn student(&self) -> &Mae {
        &self.student
    }

    /// The teacher.
    pub fn teacher(&self) -> &Teacher {
        &self.teacher
    }

    /// The loss terms on `images` (B, C, S, S, normalised) with `masking`:
    /// the student's MAE loss, and the teacher, in eval mode, on exactly the
    /// student's visible patches.
    ///
    /// # Errors
    /// [`Error::Shape`] for images of another size or batch than `masking`.
    pub fn losses(&self, images: &Tensor, masking: &Masking, rng: &mut dyn RngCore) -> Result<DistillLosses> {
        let student = self.student.forward(images, masking, &self.taps, rng)?;
        let teacher = encode_visible(self.teacher.vit(), images, masking, &self.taps, false, rng)?;
        let weighted = |loss: Option<Tensor>, alpha: f64| -> Result<Option<Tensor>> { Ok(match loss { Some(l) => Some((l * alpha)?), None => None }) };
        let attn = weighted(self.adapters.attn_loss(&student.encoder.attn_logits, &teacher.attn_logits)?, self.cfg.attn_alpha)?;
        let hidden = weighted(self.adapters.hidden_loss(&student.encoder.reps, &teacher.reps)?, self.cfg.hidden_alpha)?;
        Ok(DistillLosses { mae: student.loss, attn, hidden })
    }
}
