//! Distilled-MAE pre-training as a [`TrainTask`] of the shared loop, on the
//! MAE run's pieces ([`crate::task`]: run directory, optimizer, loop and
//! loader): the variables are the student MAE's plus the adapters (both
//! checkpointed and restored on `--resume`; the adapters get weight decay
//! as released), the teacher is no variable at all. The model file is the
//! student MAE alone, in the MAE layout ([`crate::weights`]), so every ViT
//! loader and `vitdet pretrain visualize` read it as they read an MAE's.

use std::path::Path;

use backbone::Vit;
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use engine::rng::TrainRng;
use engine::trainer::{LossTerms, TrainTask};

use super::{init_adapters, load_teacher, DistillConfig, DistillModel, Teacher, TeacherReport};
use crate::data::ImageBatch;
use crate::recipe::Recipe;
use crate::task::{build_mae, build_mae_optimizer, open_run, train_on_images, EncoderTask, PretrainRun, PretrainSummary};
use crate::{Error, Result};

/// The distillation objective as the training loop's task.
struct DistillTask {
    model: DistillModel,
    /// Student and adapter variables.
    named: Vec<(String, Var)>,
    /// The student's alone (the model file).
    student: Vec<(String, Var)>,
}

impl TrainTask for DistillTask {
    type Batch = ImageBatch;
    type Error = Error;

    fn variables(&self) -> Vec<(String, Var)> {
        self.named.clone()
    }

    fn losses(&mut self, batch: &ImageBatch, rng: &mut TrainRng) -> Result<LossTerms> {
        let masking = self.model.student().random_masking(batch.len(), rng)?;
        let losses = self.model.losses(&batch.images, &masking, rng)?;
        Ok(LossTerms::new(losses.terms())?)
    }

    fn is_empty(&self, batch: &ImageBatch) -> bool {
        batch.is_empty()
    }

    fn save_model(&self, path: &Path) -> Result<()> {
        crate::weights::save(path, &engine::checkpoint::var_tensors(&self.student), self.model.student().spec())
    }
}

impl EncoderTask for DistillTask {
    /// The student's encoder (the model file's), not the teacher.
    fn encoder(&self) -> &Vit {
        self.model.student().encoder()
    }
}

/// The recipe's `[distill]` table.
///
/// # Errors
/// [`Error::Config`] when the recipe has none.
pub fn distill_config(recipe: &Recipe) -> Result<&DistillConfig> {
    recipe.distill.as_ref().ok_or_else(|| Error::config("distill", "the recipe has no [distill] table (see configs/pretrain_distill_mae_tiny.toml)"))
}

/// Loads the teacher file `path` onto `device` for `recipe`'s student
/// (arch from `distill.teacher_arch` when the file records none).
///
/// # Errors
/// As [`load_teacher`]; a recipe without `[distill]`.
pub fn load_run_teacher(recipe: &Recipe, path: &Path, device: &Device) -> Result<(Teacher, TeacherReport)> {
    let cfg = distill_config(recipe)?;
    let arch = backbone::VitConfig::by_name(&cfg.teacher_arch).map_err(|e| Error::config("distill.teacher_arch", e.to_string()))?;
    load_teacher(path, &arch, &recipe.spec()?.encoder, device)
}

/// Builds the student MAE (MAE's seeded init, in `varmap`) and the
/// distillation model around it and `teacher`, its adapters in `adapters`
/// (PyTorch's default init from the same seed).
///
/// # Errors
/// An invalid recipe, or a teacher that does not fit the student.
pub fn build_distill(run: &PretrainRun, teacher: Teacher, varmap: &VarMap, adapters: &VarMap) -> Result<DistillModel> {
    let cfg = distill_config(&run.recipe)?;
    let seed = run.recipe.train.seed;
    let student = build_mae(&run.recipe.spec()?, seed, varmap, &run.device)?;
    let model = DistillModel::new(cfg, student, teacher, VarBuilder::from_varmap(adapters, DType::F32, &run.device))?;
    init_adapters(adapters, seed)?;
    Ok(model)
}

/// Pre-trains the student as `run` says, distilling from `teacher`
/// ([`load_run_teacher`]); writes what [`crate::task::pretrain_mae`]
/// writes, with `loss_attn` / `loss_hidden` in `metrics.jsonl` beside
/// `loss_mae`.
///
/// # Errors
/// A bad recipe or teacher, a run directory that contradicts `resume`,
/// unreadable data, divergence, or a failing tensor operation.
pub fn pretrain_distill(run: &PretrainRun, teacher: Teacher) -> Result<PretrainSummary> {
    run.recipe.validate()?;
    let (varmap, adapters) = (VarMap::new(), VarMap::new());
    let model = build_distill(run, teacher, &varmap, &adapters)?;
    let student = engine::vars::named_vars(&varmap)?;
    let mut named = student.clone();
    named.extend(engine::vars::named_vars(&adapters)?);
    let optimizer = build_mae_optimizer(&named, &model.student().encoder().param_rules(), &run.recipe)?;
    let (_, plan, dir) = open_run(run)?;
    let mut task = DistillTask { model, named, student };
    train_on_images(run, &plan, dir, &mut task, optimizer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mae::{DecoderConfig, MaeSpec};
    use candle_core::Device;

    #[test]
    fn adapters_train_with_the_student_and_get_weight_decay() {
        let arch = backbone::VitConfig { depth: 2, embed_dim: 16, num_heads: 4, patch_size: 8, ..backbone::VitConfig::tiny() };
        let spec = MaeSpec::new(&arch, 16, DecoderConfig { embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2.0 }, 0.5, true);
        let (student, adapters) = (VarMap::new(), VarMap::new());
        let mae = build_mae(&spec, 0, &student, &Device::Cpu).unwrap();
        let cfg = DistillConfig { attn_layers: vec![2], hidden_layers: vec![1], ..Default::default() };
        super::super::Adapters::new(&cfg, (4, 8), (16, 32), VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu)).unwrap();
        let mut named = engine::vars::named_vars(&student).unwrap();
        named.extend(engine::vars::named_vars(&adapters).unwrap());
        let optimizer = build_mae_optimizer(&named, &mae.encoder().param_rules(), &Recipe::default()).unwrap();
        let decay_of = |name: &str| optimizer.groups().iter().find(|g| g.params.iter().any(|(n, _)| n == name)).map(|g| g.weight_decay);
        assert_eq!(decay_of("attn_adapter.adapter1.weight"), Some(0.05));
        assert_eq!(decay_of("hidden_adapter.adapter1.weight"), Some(0.05));
        assert_eq!(decay_of("blocks.0.norm1.weight"), Some(0.0));
        assert_eq!(decay_of("pos_embed"), None, "the fixed sin-cos table is not trained");
    }
}
