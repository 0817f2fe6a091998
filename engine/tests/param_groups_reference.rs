//! Layer-decay parameter groups on a real timm ViT-Tiny (MAE-Lite's: 12
//! heads, mean pooling through `fc_norm`) against three references, each
//! parameter's (lr_scale, weight_decay): timm `param_groups_layer_decay`,
//! MAE `util/lr_decay.py::param_groups_lrd` and MAE-Lite's
//! `create_optimizer` with `LayerDecayValueAssigner`. Cases: the improved
//! fine-tuning recipe (decay 0.85), decay 0.75, transfer (no weight decay),
//! no layer decay, MAE's linear probe (BatchNorm1d(affine=False) + Linear
//! head, the rest frozen), a cls-token ViT with a final `norm`, and timm's
//! register tokens / pre-norm. Fixtures from
//! `tests/fixtures/make_cls_fixtures.py`.
//!
//! The Rust side gets every state-dict entry, buffers included (the probe's
//! `head.0.running_mean`, `running_var`, `num_batches_tracked`), minus the
//! frozen parameters for the probe, and must produce exactly the
//! references' groups. Where a reference knowingly differs (timm puts a
//! final `norm` with the last block, MAE and MAE-Lite with the head, which
//! vitdet follows), that parameter is checked against the other references.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::{DType, Device, Var};
use engine::optim::{build_param_groups, DecayRule, ViTNameRules};
use serde::Deserialize;

/// Python's `decay ** k` and Rust's `powf` both call the C library's `pow`;
/// allow 2 ulps should a platform's `pow` round differently.
const SCALE_REL: f64 = 4.5e-16;

#[derive(Deserialize)]
struct Case {
    name: String,
    num_layers: usize,
    weight_decay: f64,
    layer_decay: Option<f64>,
    state: Vec<(String, Vec<usize>)>,
    trainable: Vec<String>,
    optimize_prefix: Option<String>,
    references: BTreeMap<String, HashMap<String, (f64, f64)>>,
    deviations: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/param_groups_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Our (lr_scale, weight_decay) per parameter for a case, given what a
/// recipe hands the builder: every state-dict entry, or for the linear
/// probe only those under `head.` (its BatchNorm buffers included, which
/// the builder must drop).
fn ours(case: &Case) -> HashMap<String, (f64, f64)> {
    let prefix = case.optimize_prefix.as_deref().unwrap_or("");
    let named: Vec<(String, Var)> = case
        .state
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, shape)| (n.clone(), Var::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap()))
        .collect();
    let groups = build_param_groups(&named, &ViTNameRules { num_layers: case.num_layers }, case.weight_decay, case.layer_decay, DecayRule::SkipOneDimBiasAndListed).unwrap();
    let mut table = HashMap::new();
    for g in groups {
        for (n, _) in g.params {
            assert!(table.insert(n.clone(), (g.lr_scale, g.weight_decay)).is_none(), "{n} in two groups");
        }
    }
    table
}

#[test]
fn groups_equal_timm_mae_and_mae_lite_on_vit_tiny() {
    let f = fixture();
    let names: Vec<&str> = f.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["finetune", "finetune_075", "transfer", "no_layer_decay", "linear_probe", "linear_probe_decay", "token_pool", "timm_extras"]);
    for case in &f.cases {
        let ours = ours(case);
        let mut trainable: Vec<&String> = case.trainable.iter().collect();
        let mut got: Vec<&String> = ours.keys().collect();
        trainable.sort();
        got.sort();
        assert_eq!(got, trainable, "{}: the optimized parameters", case.name);
        for (reference, table) in &case.references {
            let deviating = case.deviations.get(reference).cloned().unwrap_or_default();
            assert_eq!(table.len(), ours.len(), "{} / {reference}: parameter count", case.name);
            for (name, &(scale, wd)) in table {
                if deviating.contains(name) {
                    continue;
                }
                let (our_scale, our_wd) = ours[name];
                assert!((our_scale - scale).abs() <= SCALE_REL * scale, "{} / {reference}: {name} lr_scale {our_scale} vs {scale}", case.name);
                assert_eq!(our_wd, wd, "{} / {reference}: {name} weight_decay", case.name);
            }
        }
        // A deviation is only tolerated where another reference pins the value.
        for (reference, names) in &case.deviations {
            for name in names {
                let pinned = case.references.iter().filter(|(r, _)| *r != reference).map(|(_, t)| t[name]).next();
                if let Some((scale, wd)) = pinned {
                    assert_eq!(ours[name], (scale, wd), "{}: {name} follows MAE / MAE-Lite", case.name);
                }
            }
        }
    }
}

/// The facts the comparison rests on, spelled out for ViT-Tiny at decay 0.85
/// (MAE-Lite's improved recipe): 0.85^13 for the embeddings, 0.85^(12 - k)
/// for block k, 1 for fc_norm and head; no decay for 1-D tensors and the
/// cls token / position embedding.
#[test]
fn fine_tuning_scales_follow_the_layer_index() {
    let f = fixture();
    let case = f.cases.iter().find(|c| c.name == "finetune").unwrap();
    let ours = ours(case);
    assert_eq!(ours.len(), 152);
    let close = |name: &str, scale: f64, wd: f64| {
        let (s, w) = ours[name];
        assert!((s - scale).abs() < 1e-15 && w == wd, "{name}: ({s}, {w}) vs ({scale}, {wd})");
    };
    close("cls_token", 0.85f64.powi(13), 0.0);
    close("pos_embed", 0.85f64.powi(13), 0.0);
    close("patch_embed.proj.weight", 0.85f64.powi(13), 0.05);
    close("blocks.0.attn.qkv.weight", 0.85f64.powi(12), 0.05);
    close("blocks.11.mlp.fc2.bias", 0.85, 0.0);
    close("fc_norm.weight", 1.0, 0.0);
    close("head.weight", 1.0, 0.05);
}
