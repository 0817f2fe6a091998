//! MAE with attention distillation, the paper's method (MAE-Lite Section 5,
//! "D-MAE"; maelite-recipes.md §4): a frozen MAE-Base teacher sees exactly
//! the student's visible patches, and the student's pre-softmax attention
//! logits of chosen layers, mixed across heads by a learnable 1x1 map, are
//! pulled to the teacher's by MSE, added to the MAE loss.
//!
//! Mirrors `projects/mae_lite/mae_lite_distill_exp.py` (`MAE_distill`) with
//! the catchers of `projects/eval_tools/util/forward_hook.py`:
//! - layers are 1-based as released (`distill_attn_idx = (12,)`: block 11,
//!   the last); the attention adapter of layer `idx` is
//!   `attn_adapter.adapter{idx-1}`, a Conv2d(H_s, H_t, 1, bias=False) over
//!   the heads of the (B, H_s, T, T) logits (released `use_attn_adapter =
//!   True`: always present);
//! - the hidden-state variant (`distill_hidden_idx = ()`: off by default)
//!   compares representation `i` in 0..=depth (the LayerNormed input of
//!   block i, or the final norm's output for i = depth, see
//!   [`crate::encoder::EncoderTaps::reps`]) through
//!   `hidden_adapter.adapter{i}`, a Linear(D_s, D_t, bias=False), cls
//!   token included;
//! - each layer's MSE (mean over every element) is summed over the layers,
//!   times its alpha (1.0), and added to the MAE loss; the adapters train
//!   with the student and get weight decay;
//! - the teacher ([`teacher`]) is built from plain tensors (no variables, so
//!   no gradient graph), runs in eval mode on the student's [`Masking`].
//!
//! Deliberate differences: the teacher is not part of the checkpoint (the
//! released one stores `module.tch_model.*`); a resume reloads it from
//! `--teacher`. The logged terms are the weighted ones, so they sum to the
//! loss (`loss_mae`, `loss_attn`, `loss_hidden`; released alpha 1.0, so
//! the same numbers). Parity of the loss, each term and every gradient
//! with a PyTorch model of the released code: `tests/distill_reference.rs`.
//!
//! [`Masking`]: crate::masking::Masking

mod adapter;
mod model;
pub mod task;
pub mod teacher;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use adapter::{init_adapters, Adapters};
pub use model::{DistillLosses, DistillModel};
pub use teacher::{load_teacher, Teacher, TeacherReport};

/// Name of the attention-distillation term in `metrics.jsonl`.
pub const ATTN_TERM: &str = "loss_attn";
/// Name of the hidden-state-distillation term in `metrics.jsonl`.
pub const HIDDEN_TERM: &str = "loss_hidden";

/// The recipe's `[distill]` table: the teacher and what is distilled
/// (defaults: the released `mae_lite_distill_exp.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// The teacher: a named backbone (`mae_base`, the released
    /// `mae_base_1600e.pth.tar`) or a path to any ViT checkpoint `vitdet
    /// import` reads (`--teacher` overrides it).
    pub teacher: String,
    /// The teacher's architecture for a file that does not record its
    /// config (a `.pth`): fixes the number of heads (`base`: 12).
    pub teacher_arch: String,
    /// Blocks whose attention logits are distilled, 1-based as released
    /// (`distill_attn_idx`; `[12]`: the last block of a 12-block ViT).
    pub attn_layers: Vec<usize>,
    /// Weight of the attention term (`distill_attn_alpha`).
    pub attn_alpha: f64,
    /// Representations distilled, 0..=depth (`distill_hidden_idx`; empty:
    /// the hidden variant is off).
    pub hidden_layers: Vec<usize>,
    /// Weight of the hidden-state term (`distill_hidden_alpha`).
    pub hidden_alpha: f64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self { teacher: "mae_base".into(), teacher_arch: "base".into(), attn_layers: vec![12], attn_alpha: 1.0, hidden_layers: Vec::new(), hidden_alpha: 1.0 }
    }
}

impl DistillConfig {
    /// Checks the table against a student of `depth` blocks.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: an empty teacher, an unknown
    /// `teacher_arch`, a layer outside 1..=depth (attention) or 0..=depth
    /// (hidden) or listed twice, nothing to distil, or a negative or
    /// non-finite alpha.
    pub fn validate(&self, depth: usize) -> Result<()> {
        if self.teacher.trim().is_empty() {
            return Err(Error::config("distill.teacher", "must name a teacher (mae_base or a checkpoint path)"));
        }
        backbone::VitConfig::by_name(&self.teacher_arch).map_err(|e| Error::config("distill.teacher_arch", e.to_string()))?;
        check_layers("distill.attn_layers", &self.attn_layers, 1, depth)?;
        check_layers("distill.hidden_layers", &self.hidden_layers, 0, depth)?;
        if self.attn_layers.is_empty() && self.hidden_layers.is_empty() {
            return Err(Error::config("distill.attn_layers", "nothing to distil: attn_layers and hidden_layers are both empty (that is --method mae)"));
        }
        for (key, alpha) in [("distill.attn_alpha", self.attn_alpha), ("distill.hidden_alpha", self.hidden_alpha)] {
            if !(alpha >= 0.0 && alpha.is_finite()) {
                return Err(Error::config(key, format!("must be a finite weight >= 0, got {alpha}")));
            }
        }
        Ok(())
    }
}

fn check_layers(key: &str, layers: &[usize], low: usize, depth: usize) -> Result<()> {
    for (k, &i) in layers.iter().enumerate() {
        if i < low || i > depth {
            return Err(Error::config(key, format!("layer {i} is outside {low}..={depth} for a {depth}-block student")));
        }
        if layers[..k].contains(&i) {
            return Err(Error::config(key, format!("layer {i} is listed twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use engine::recipe_file::RecipeFile as _;

    #[test]
    fn defaults_are_the_released_distill_exp() {
        let d = DistillConfig::default();
        assert_eq!((d.teacher.as_str(), d.teacher_arch.as_str()), ("mae_base", "base"));
        assert_eq!((d.attn_layers.clone(), d.attn_alpha), (vec![12], 1.0));
        assert_eq!((d.hidden_layers.len(), d.hidden_alpha), (0, 1.0));
        d.validate(12).unwrap();
    }

    #[test]
    fn bad_layers_and_weights_name_their_key() {
        let bad = |d: DistillConfig| d.validate(12).unwrap_err().to_string();
        assert!(bad(DistillConfig { attn_layers: vec![0], ..Default::default() }).contains("distill.attn_layers"));
        assert!(bad(DistillConfig { attn_layers: vec![13], ..Default::default() }).contains("1..=12"));
        assert!(bad(DistillConfig { attn_layers: vec![12, 12], ..Default::default() }).contains("twice"));
        assert!(bad(DistillConfig { hidden_layers: vec![13], ..Default::default() }).contains("distill.hidden_layers"));
        assert!(bad(DistillConfig { attn_layers: vec![], ..Default::default() }).contains("nothing to distil"));
        assert!(bad(DistillConfig { attn_alpha: -1.0, ..Default::default() }).contains("distill.attn_alpha"));
        assert!(bad(DistillConfig { teacher_arch: "huge".into(), ..Default::default() }).contains("distill.teacher_arch"));
        assert!(bad(DistillConfig { teacher: " ".into(), ..Default::default() }).contains("distill.teacher"));
        // The hidden variant reaches the final norm's output (index = depth) and block 0's input.
        DistillConfig { attn_layers: vec![], hidden_layers: vec![0, 12], ..Default::default() }.validate(12).unwrap();
    }

    #[test]
    fn built_in_distill_recipes_are_the_mae_recipes_plus_the_released_table() {
        use crate::Recipe;
        let released = Recipe::load_or_builtin("pretrain_distill_mae_tiny").unwrap();
        assert_eq!(released, Recipe { distill: Some(DistillConfig::default()), ..Recipe::default() });
        let shapes = Recipe::load_or_builtin("pretrain_distill_shapes_tiny").unwrap();
        let mae_shapes = Recipe::load_or_builtin("pretrain_mae_shapes_tiny").unwrap();
        let table = shapes.distill.clone().unwrap();
        assert_eq!(Recipe { distill: None, ..shapes }, mae_shapes);
        assert_eq!(table, DistillConfig { teacher: "runs/mae_shapes/model.safetensors".into(), ..DistillConfig::default() });
        // A bad table is an error of the recipe, naming the key.
        let e = Recipe::parse("[distill]\nattn_layers = [13]\n", std::path::Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("distill.attn_layers"), "{e}");
        let e = Recipe::parse("[distill]\nlayers = [1]\n", std::path::Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("layers"), "{e}");
    }
}
