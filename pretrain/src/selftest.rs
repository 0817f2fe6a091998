//! Pre-training's `vitdet selftest` cases ([`engine::selftest`]), each on
//! the backbone's tiny ViT (2 blocks, width 32, 32 px, 16 patches):
//! - `mae`: masking 0.75, encoder on the visible patches, a 1-block decoder
//!   of width 16, the normalised-pixel loss, backward;
//! - `mocov3`: an EMA step, both views through the online encoder,
//!   projector and predictor (BatchNorm MLPs of width 32 → 16) and the
//!   momentum encoder, the symmetric InfoNCE loss, backward;
//! - `distill`: the MAE student with a 2-block, width-48, 3-head teacher,
//!   attention (through the head adapter) and hidden-state distillation of
//!   the last block, backward.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::rng::TrainRng;
use engine::testing::random_images;
use engine::selftest::{build_on, copy_vars, BoxError, Case, CaseResult, CaseRun, SEED};
use engine::trainer::TaskState;
use rand::SeedableRng;

use backbone::{Vit, VitConfig};

use crate::distill::{init_adapters, DistillConfig, DistillModel, Teacher};
use crate::encoder::EncoderTaps;
use crate::mae::{DecoderConfig, MaeSpec};
use crate::masking::Masking;
use crate::mocov3::{MocoV3, MocoV3Config};
use crate::task::build_mae;

/// Images per case.
const BATCH: usize = 2;
/// Images per MoCo-v3 view: its BatchNorms normalise over the batch, and
/// over two images they map every feature to about ±1 whatever its value,
/// an ill-conditioned function that turns rounding differences into
/// visible ones.
const MOCO_BATCH: usize = 8;
/// MAE's mask ratio.
const MASK_RATIO: f64 = 0.75;
/// The momentum of the case's EMA step (MoCo-v3's first value).
const MOMENTUM: f64 = 0.99;

/// Pre-training's cases: `mae`, `mocov3`, `distill`.
pub fn cases() -> Vec<Case> {
    vec![Case { model: "mae", run: mae }, Case { model: "mocov3", run: mocov3 }, Case { model: "distill", run: distill }]
}

/// The MAE of the cases: the tiny ViT with a 1-block decoder of width 16.
fn tiny_mae() -> MaeSpec {
    let arch = backbone::selftest::tiny_vit();
    MaeSpec::new(&arch, arch.img_size, DecoderConfig { embed_dim: 16, depth: 1, num_heads: 2, mlp_ratio: 4.0 }, MASK_RATIO, true)
}

fn images(device: &Device, side: usize) -> Result<Tensor, BoxError> {
    Ok(random_images(BATCH, side, &mut rand_chacha::ChaCha8Rng::seed_from_u64(SEED), device)?)
}

fn mae(device: &Device) -> CaseResult {
    let spec = tiny_mae();
    let (varmap, model) = build_on(device, |vm, dev| Ok(build_mae(&spec, SEED, vm, dev)?))?;
    let mut rng = TrainRng::seed_from_u64(SEED);
    let masking = Masking::random(BATCH, spec.num_patches(), spec.mask_ratio, &mut rng)?;
    let out = model.forward(&images(device, spec.encoder.img_size)?, &masking, &EncoderTaps::default(), &mut rng)?;
    let grads = out.loss.backward()?;
    Ok(CaseRun::new(vec![("pred", out.pred), ("loss", out.loss)], &[("", &varmap)], &grads)?)
}

fn mocov3(device: &Device) -> CaseResult {
    let arch = backbone::selftest::tiny_vit();
    let cfg = MocoV3Config { vit: MocoV3Config::encoder_vit(&arch, arch.img_size), mlp_dim: 32, dim: 16, ..MocoV3Config::default() };
    let build = |vm: &VarMap, dev: &Device| MocoV3::new(&cfg, vm, DType::F32, dev, &mut rand_chacha::ChaCha8Rng::seed_from_u64(SEED));
    let cpu_vars = VarMap::new();
    let cpu_model = build(&cpu_vars, &Device::Cpu)?;
    // The momentum encoder holds copies outside the variables: copy it too.
    let (varmap, mut model) = if device.is_cpu() {
        (cpu_vars, cpu_model)
    } else {
        let varmap = VarMap::new();
        let mut model = build(&varmap, device)?;
        copy_vars(&cpu_vars, &varmap)?;
        let state = cpu_model.extra_state()?;
        let tensors = state.tensors.into_iter().map(|(n, t)| Ok((n, t.to_device(device)?))).collect::<candle_core::Result<Vec<_>>>()?;
        model.restore_extra_state(TaskState { tensors, json: state.json })?;
        (varmap, model)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let view1 = random_images(MOCO_BATCH, arch.img_size, &mut rng, device)?;
    let view2 = random_images(MOCO_BATCH, arch.img_size, &mut rng, device)?;
    let loss = model.loss(&view1, &view2, MOMENTUM, &mut rng)?.total()?;
    let grads = loss.backward()?;
    Ok(CaseRun::new(vec![("loss", loss)], &[("", &varmap)], &grads)?)
}

/// The student's MAE, its adapters and the distillation model, built on
/// `device` (weights drawn from the seeds, on the host).
fn distill_model(device: &Device, spec: &MaeSpec, teacher_tensors: &HashMap<String, Tensor>, teacher_cfg: &VitConfig) -> Result<(VarMap, VarMap, DistillModel), BoxError> {
    let (student_vars, adapter_vars) = (VarMap::new(), VarMap::new());
    let student = build_mae(spec, SEED, &student_vars, device)?;
    let on_device = teacher_tensors.iter().map(|(n, t)| Ok((n.clone(), t.to_device(device)?))).collect::<candle_core::Result<HashMap<_, _>>>()?;
    let (teacher, _) = Teacher::from_tensors(teacher_cfg, on_device, device)?;
    let depth = spec.encoder.depth;
    let cfg = DistillConfig { attn_layers: vec![depth], hidden_layers: vec![depth], ..DistillConfig::default() };
    let model = DistillModel::new(&cfg, student, teacher, VarBuilder::from_varmap(&adapter_vars, DType::F32, device))?;
    init_adapters(&adapter_vars, SEED)?;
    Ok((student_vars, adapter_vars, model))
}

fn distill(device: &Device) -> CaseResult {
    let spec = tiny_mae();
    let teacher_cfg = VitConfig { embed_dim: 48, num_heads: 3, ..spec.encoder.clone() };
    let teacher_vars = VarMap::new();
    Vit::new(&teacher_cfg, VarBuilder::from_varmap(&teacher_vars, DType::F32, &Device::Cpu))?;
    backbone::init::init_weights(&teacher_vars, &teacher_cfg, SEED + 1)?;
    let teacher: HashMap<String, Tensor> = engine::vars::named_vars(&teacher_vars)?.into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();

    let (cpu_student, cpu_adapters, cpu_model) = distill_model(&Device::Cpu, &spec, &teacher, &teacher_cfg)?;
    let (student_vars, adapter_vars, model) = if device.is_cpu() {
        (cpu_student, cpu_adapters, cpu_model)
    } else {
        let (s, a, m) = distill_model(device, &spec, &teacher, &teacher_cfg)?;
        copy_vars(&cpu_student, &s)?;
        copy_vars(&cpu_adapters, &a)?;
        (s, a, m)
    };
    let mut rng = TrainRng::seed_from_u64(SEED);
    let masking = Masking::random(BATCH, spec.num_patches(), spec.mask_ratio, &mut rng)?;
    let losses = model.losses(&images(device, spec.encoder.img_size)?, &masking, &mut rng)?;
    let total = losses.total()?;
    let grads = total.backward()?;
    let mut outputs = vec![("loss_mae", losses.mae.clone())];
    outputs.extend(losses.attn.iter().map(|t| ("loss_attn", t.clone())));
    outputs.extend(losses.hidden.iter().map(|t| ("loss_hidden", t.clone())));
    outputs.push(("loss", total));
    Ok(CaseRun::new(outputs, &[("student.", &student_vars), ("adapter.", &adapter_vars)], &grads)?)
}
