//! Distilled-MAE parity with a PyTorch model of MAE-Lite's
//! `mae_lite_distill_exp.py` (`tests/fixtures/make_distill_fixtures.py`,
//! computed in f64): with the same student weights, adapters, images and
//! masking noise, and the teacher read from a `.pth.tar` in the released
//! layout (decoder keys included), the loss, each term and the gradient of
//! every student and adapter parameter agree, for the attention variant
//! (case a) and the hidden-state variant (case b). The teacher loads with
//! its decoder dropped, receives no gradient and is unchanged by an
//! optimizer step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use backbone::VitConfig;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::optim::{build_param_groups, AdamW, AdamWConfig, DecayRule, Optimizer, ViTNameRules};
use pretrain::distill::{load_teacher, DistillConfig, DistillModel, Teacher};
use pretrain::encoder::{encode_visible, EncoderTaps};
use pretrain::mae::{DecoderConfig, Mae, MaeSpec};
use pretrain::masking::Masking;

/// Values and gradients: f32 arithmetic against an f64 reference.
const TOL: f32 = 1e-4;
/// Relative error of a whole gradient tensor (small gradients are checked too).
const REL_NORM_TOL: f32 = 1e-4;
/// The teacher file's decoder tensors: mask_token, decoder_pos_embed,
/// decoder_embed (2), one decoder block (12), decoder_norm (2), decoder_pred (2).
const TEACHER_DECODER_KEYS: usize = 20;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn fixture() -> HashMap<String, Tensor> {
    engine::checkpoint::read_safetensors(&fixture_path("distill_reference.safetensors"), &Device::Cpu).unwrap().into_iter().collect()
}

/// The student: width 24, 4 heads, depth 2; decoder 8 wide, 2 heads, depth 1; 8-px patches, 32 px.
fn student_spec() -> MaeSpec {
    let arch = VitConfig { patch_size: 8, embed_dim: 24, depth: 2, num_heads: 4, ..VitConfig::tiny() };
    MaeSpec::new(&arch, 32, DecoderConfig { embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 4.0 }, 0.75, true)
}

/// What the teacher file's shapes cannot say: 8 heads.
fn teacher_arch() -> VitConfig {
    VitConfig { patch_size: 8, embed_dim: 32, depth: 2, num_heads: 8, ..VitConfig::tiny() }
}

fn teacher() -> Teacher {
    load_teacher(&fixture_path("distill_teacher.pth.tar"), &teacher_arch(), &student_spec().encoder, &Device::Cpu).unwrap().0
}

fn masking(fx: &HashMap<String, Tensor>) -> Masking {
    let noise = fx["noise"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    Masking::from_noise(&noise, 2, 16, 0.75).unwrap()
}

/// Sets every variable of `varmap` from the fixture's `{prefix}NAME`; the
/// names must be exactly the fixture's.
fn set_from_fixture(varmap: &VarMap, fx: &HashMap<String, Tensor>, prefix: &str) {
    let data = varmap.data().lock().unwrap();
    let ours: BTreeSet<String> = data.keys().cloned().collect();
    let theirs: BTreeSet<String> = fx.keys().filter_map(|k| k.strip_prefix(prefix)).filter(|k| !k.contains("param.")).map(str::to_string).collect();
    assert_eq!(ours, theirs, "parameter names under {prefix}");
    for (name, var) in data.iter() {
        var.set(&fx[&format!("{prefix}{name}")]).unwrap();
    }
}

struct Case {
    model: DistillModel,
    student: VarMap,
    adapters: VarMap,
}

fn case(fx: &HashMap<String, Tensor>, name: &str, cfg: &DistillConfig) -> Case {
    let student = VarMap::new();
    let spec = student_spec();
    let mae = Mae::new(&spec, VarBuilder::from_varmap(&student, DType::F32, &Device::Cpu)).unwrap();
    pretrain::init::init_mae(&student, &spec, 0).unwrap();
    set_from_fixture(&student, fx, "param.");
    let adapters = VarMap::new();
    let model = DistillModel::new(cfg, mae, teacher(), VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu)).unwrap();
    set_from_fixture(&adapters, fx, &format!("{name}.param."));
    Case { model, student, adapters }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let max = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max <= tol, "{what}: max |diff| {max} > {tol}");
    let norm = w.iter().map(|v| v * v).sum::<f32>().sqrt();
    let diff = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
    assert!(diff <= REL_NORM_TOL * norm.max(1e-3), "{what}: relative error {} (norm {norm})", diff / norm.max(1e-30));
}

/// Loss, each term and every gradient of case `name` against the fixture.
fn check_case(name: &str, cfg: &DistillConfig, terms: &[&str]) {
    let fx = fixture();
    let c = case(&fx, name, cfg);
    let mut rng = rand::rngs::mock::StepRng::new(0, 0);
    let losses = c.model.losses(&fx["images"], &masking(&fx), &mut rng).unwrap();
    let got: Vec<String> = losses.terms().into_iter().map(|(n, _)| n).collect();
    assert_eq!(got, terms, "terms");
    for (term, value) in losses.terms() {
        assert_close(&format!("{name}.{term}"), &value, &fx[&format!("{name}.{term}")], TOL);
    }
    let total = losses.total().unwrap();
    assert_close(&format!("{name}.loss"), &total, &fx[&format!("{name}.loss")], TOL);

    let grads = total.backward().unwrap();
    let mut checked = 0;
    for varmap in [&c.student, &c.adapters] {
        for (var_name, var) in varmap.data().lock().unwrap().iter() {
            let want = fx.get(&format!("{name}.grad.{var_name}"));
            match (want, grads.get(var.as_tensor())) {
                (Some(w), Some(g)) => {
                    assert_close(&format!("{name} grad {var_name}"), g, w, TOL);
                    checked += 1;
                }
                (None, None) if var_name.ends_with("pos_embed") => {}
                (w, g) => panic!("{var_name}: reference gradient {}, ours {}", w.is_some(), g.is_some()),
            }
        }
    }
    assert_eq!(checked, fx.keys().filter(|k| k.starts_with(&format!("{name}.grad."))).count());
    for (t_name, t) in c.model.teacher().tensors() {
        assert!(grads.get(t).is_none(), "teacher tensor {t_name} received a gradient");
    }
}

#[test]
fn attention_distillation_matches_pytorch_loss_terms_and_every_gradient() {
    let cfg = DistillConfig { attn_layers: vec![2], attn_alpha: 1.0, hidden_layers: vec![], ..Default::default() };
    check_case("a", &cfg, &["loss_mae", "loss_attn"]);
}

#[test]
fn hidden_state_distillation_matches_pytorch_loss_terms_and_every_gradient() {
    let cfg = DistillConfig { attn_layers: vec![1], attn_alpha: 0.3, hidden_layers: vec![0, 1, 2], hidden_alpha: 0.5, ..Default::default() };
    check_case("b", &cfg, &["loss_mae", "loss_attn", "loss_hidden"]);
}

#[test]
fn released_layout_teacher_loads_without_its_decoder_and_sees_the_students_patches() {
    let fx = fixture();
    let path = fixture_path("distill_teacher.pth.tar");
    let (teacher, report) = load_teacher(&path, &teacher_arch(), &student_spec().encoder, &Device::Cpu).unwrap();
    assert_eq!(report.ignored, TEACHER_DECODER_KEYS, "{report}");
    // cls_token, pos_embed, patch_embed (2), 2 blocks x 12, norm (2).
    assert_eq!((report.loaded, report.unused.len(), report.resized), (30, 0, None), "{report}");
    assert!(teacher.tensors().iter().all(|(n, _)| !n.starts_with("decoder") && n != "mask_token"));
    let c = teacher.config();
    assert_eq!((c.embed_dim, c.depth, c.num_heads, c.mlp_ratio, c.num_classes), (32, 2, 8, 4.0, 0));

    // On the student's masking, its logits and latent are the reference teacher's.
    let taps = EncoderTaps { attn_logits: vec![1], ..Default::default() };
    let mut rng = rand::rngs::mock::StepRng::new(0, 0);
    let out = encode_visible(teacher.vit(), &fx["images"], &masking(&fx), &taps, false, &mut rng).unwrap();
    assert_close("teacher logits", &out.attn_logits[0].1, &fx["teacher.attn_logits.1"], TOL);
    assert_close("teacher latent", &out.latent, &fx["teacher.latent"], TOL);

    // The teacher's width must match teacher_arch when the file records no config.
    let e = load_teacher(&path, &VitConfig::base(), &student_spec().encoder, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("distill_teacher.pth.tar") && e.contains("teacher_arch") && e.contains("32 wide"), "{e}");
    // It must cut the student's patches.
    let other = VitConfig { patch_size: 16, ..student_spec().encoder };
    let e = load_teacher(&path, &teacher_arch(), &other, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("8-px patches") && e.contains("16-px"), "{e}");
    // A missing file is named.
    let e = load_teacher(Path::new("/nonexistent/teacher.pth"), &teacher_arch(), &student_spec().encoder, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/teacher.pth"), "{e}");
}

#[test]
fn teacher_gets_no_gradient_and_an_optimizer_step_leaves_it_unchanged() {
    let fx = fixture();
    let cfg = DistillConfig { attn_layers: vec![2], hidden_layers: vec![2], ..Default::default() };
    let c = case_with_random_adapters(&fx, &cfg);
    let before: Vec<(String, Vec<f32>)> = c.model.teacher().tensors().iter().map(|(n, t)| (n.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    assert_eq!(before.len(), 30);

    let mut named = engine::vars::named_vars(&c.student).unwrap();
    named.extend(engine::vars::named_vars(&c.adapters).unwrap());
    named.retain(|(n, _)| pretrain::task::is_trained(n));
    let groups = build_param_groups(&named, &ViTNameRules { num_layers: 2 }, 0.05, None, DecayRule::SkipOneDimAndBias).unwrap();
    let mut opt = AdamW::new(groups, AdamWConfig { betas: [0.9, 0.95], eps: 1e-8 }).unwrap();
    let adapter_before = named.iter().find(|(n, _)| n == "attn_adapter.adapter1.weight").unwrap().1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();

    let mut rng = rand::rngs::mock::StepRng::new(0, 0);
    let total = c.model.losses(&fx["images"], &masking(&fx), &mut rng).unwrap().total().unwrap();
    let grads = total.backward().unwrap();
    for (n, t) in c.model.teacher().tensors() {
        assert!(grads.get(t).is_none(), "teacher tensor {n} has a gradient");
    }
    opt.step(&grads, 1e-2).unwrap();

    for ((name, want), (_, t)) in before.iter().zip(c.model.teacher().tensors()) {
        assert_eq!(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want, "teacher tensor {name} changed");
    }
    // The student and the adapters did move.
    let adapter_after = named.iter().find(|(n, _)| n == "attn_adapter.adapter1.weight").unwrap().1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(adapter_before, adapter_after);
    // And the teacher still computes what it did: its latent is the reference's.
    let out = encode_visible(c.model.teacher().vit(), &fx["images"], &masking(&fx), &EncoderTaps::default(), false, &mut rng).unwrap();
    assert_close("teacher latent after a step", &out.latent, &fx["teacher.latent"], TOL);
}

/// The fixture's student and teacher with adapters at their seeded init.
fn case_with_random_adapters(fx: &HashMap<String, Tensor>, cfg: &DistillConfig) -> Case {
    let student = VarMap::new();
    let spec = student_spec();
    let mae = Mae::new(&spec, VarBuilder::from_varmap(&student, DType::F32, &Device::Cpu)).unwrap();
    set_from_fixture(&student, fx, "param.");
    let adapters = VarMap::new();
    let model = DistillModel::new(cfg, mae, teacher(), VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu)).unwrap();
    pretrain::distill::init_adapters(&adapters, 0).unwrap();
    Case { model, student, adapters }
}
