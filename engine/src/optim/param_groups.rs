//! Parameter groups from a model's naming rules: which parameters get
//! weight decay, and layer-wise learning-rate decay.
//!
//! Mirrors timm `optim/_param_groups.py::param_groups_layer_decay` and
//! MAE's `util/lr_decay.py::param_groups_lrd` (used by MAE-Lite's
//! fine-tuning and transfer recipes): with `L` transformer blocks, a
//! parameter with layer id `i` (0 for the patch embedding, cls token and
//! position embedding, `k + 1` for `blocks.k`, `L + 1` for everything after
//! the blocks) gets `lr_scale = layer_decay^(L + 1 - i)`.
//!
//! Which parameters skip weight decay differs between the recipes, hence
//! [`DecayRule`]: MoCo-v3 decays everything; MAE pre-training goes through
//! timm's `create_optimizer` without a model skip list (1-D and `.bias` skip,
//! cls/mask tokens decay); fine-tuning adds the model's `no_weight_decay`
//! names (`pos_embed`, `cls_token`); detectron2's ViTDet skips norm layers and
//! `pos_embed` but decays biases (`get_default_optimizer_params` with
//! `weight_decay_norm=0` and a `pos_embed` override).
//!
//! The model declares its own facts through [`ParamRules`] (the backbone's
//! ViT implements it); [`ViTNameRules`] implements the plain timm ViT naming.

use serde::{Deserialize, Serialize};

use candle_core::Var;

use super::ParamGroup;
use crate::{Error, Result};

/// Facts a model declares about its parameters for the optimizer (timm's
/// `no_weight_decay()` / `group_matcher()`, detectron2's
/// `get_vit_lr_decay_rate`).
pub trait ParamRules {
    /// Number of transformer blocks `L`.
    fn num_layers(&self) -> usize;
    /// Layer id of a parameter, in `0..=L + 1` (see the module docs).
    fn layer_id(&self, name: &str) -> usize;
    /// True for parameters the model exempts from weight decay by name
    /// (timm ViT: `pos_embed`, `cls_token`, `dist_token`).
    fn no_weight_decay(&self, name: &str) -> bool;
    /// True for parameters of normalisation layers (used only by
    /// [`DecayRule::SkipNormAndListed`]). The default recognises a module
    /// whose name contains `norm` (`norm1`, `fc_norm`, `norm`); models whose
    /// norm layers are named otherwise must override it.
    fn is_norm(&self, name: &str) -> bool {
        let mut parts = name.rsplit('.');
        parts.next();
        parts.next().is_some_and(|module| module.contains("norm"))
    }
    /// True for buffers that live in the variable map beside the parameters
    /// but are no parameters (normalisation running statistics): they never
    /// reach an optimizer. The default recognises PyTorch's BatchNorm
    /// buffer names ([`crate::ops::is_buffer_name`]).
    fn is_buffer(&self, name: &str) -> bool {
        crate::ops::is_buffer_name(name)
    }
}

/// Which parameters get weight decay 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayRule {
    /// Every parameter decays (MoCo-v3: `torch.optim.AdamW(model.parameters(), weight_decay=0.1)`).
    All,
    /// 1-D tensors and `.bias` skip decay; nothing else does (MAE
    /// pre-training through timm's `create_optimizer`).
    SkipOneDimAndBias,
    /// 1-D tensors, `.bias` and the model's `no_weight_decay` names skip
    /// decay (timm / MAE fine-tuning and transfer).
    #[default]
    SkipOneDimBiasAndListed,
    /// Norm-layer parameters and the model's `no_weight_decay` names skip
    /// decay; other biases decay (detectron2 ViTDet).
    SkipNormAndListed,
}

/// The plain timm ViT naming scheme, usable with an optional prefix
/// (`backbone.net.blocks.3...`): the first path component that is
/// `cls_token`, `reg_token`, `pos_embed`, `patch_embed`, `norm_pre` or
/// `dist_token` gives layer 0, `blocks.<k>` gives `k + 1`, anything else
/// `L + 1`. The `no_weight_decay` names are `pos_embed`, `cls_token`,
/// `reg_token` and `dist_token` (last component).
///
/// `tests/param_groups_reference.rs` proves the groups this gives on timm's
/// ViT-Tiny equal timm's `param_groups_layer_decay`, MAE's
/// `param_groups_lrd` and MAE-Lite's `get_parameter_groups`. One known
/// difference between those references: a final `norm` (cls-token models)
/// is in layer `L + 1` with the head for MAE and MAE-Lite, which this
/// follows, while timm ≥ 0.9 merges it into the last block's layer `L`.
/// (MAE-Lite also puts a `mask_token` in layer 0; fine-tuned models have
/// none, and pre-training uses no layer decay.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViTNameRules {
    /// Number of transformer blocks `L`.
    pub num_layers: usize,
}

/// Names timm's ViT puts in the embedding stage (layer id 0): its
/// `group_matcher` stem `cls_token|reg_token|pos_embed|patch_embed|norm_pre`,
/// plus DeiT's `dist_token`.
const STEM_NAMES: [&str; 6] = ["cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre", "dist_token"];

/// timm `VisionTransformer.no_weight_decay()`.
const NO_WEIGHT_DECAY_NAMES: [&str; 4] = ["pos_embed", "cls_token", "reg_token", "dist_token"];

impl ParamRules for ViTNameRules {
    fn num_layers(&self) -> usize {
        self.num_layers
    }

    fn layer_id(&self, name: &str) -> usize {
        let parts: Vec<&str> = name.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            if STEM_NAMES.contains(part) {
                return 0;
            }
            if *part == "blocks" {
                if let Some(k) = parts.get(i + 1).and_then(|s| s.parse::<usize>().ok()) {
                    return k + 1;
                }
            }
        }
        self.num_layers + 1
    }

    fn no_weight_decay(&self, name: &str) -> bool {
        name.rsplit('.')
            .next()
            .is_some_and(|last| NO_WEIGHT_DECAY_NAMES.contains(&last))
    }
}

/// Splits `named` into parameter groups by weight decay and layer-wise lr
/// scale. Groups with the same `(lr_scale, weight_decay)` are merged; groups
/// are sorted by `lr_scale`, then `weight_decay` (ascending), and parameters
/// keep their input order within a group.
///
/// `layer_decay = None` gives every group `lr_scale` 1.
///
/// Buffers ([`ParamRules::is_buffer`]: BatchNorm running statistics) are
/// left out of every group. Frozen parameters are the caller's to leave
/// out: a linear probe passes only the head's (`head.*`) variables, as
/// PyTorch's builders skip `requires_grad=False` parameters.
///
/// # Errors
/// [`Error::Config`] for a negative or non-finite `weight_decay`, a
/// `layer_decay` that is not a positive finite number, or a `layer_id`
/// beyond `L + 1` (a bug in the model's rules, named in the message).
pub fn build_param_groups(
    named: &[(String, Var)],
    rules: &dyn ParamRules,
    weight_decay: f64,
    layer_decay: Option<f64>,
    rule: DecayRule,
) -> Result<Vec<ParamGroup>> {
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(Error::Config(format!(
            "weight_decay must be >= 0, got {weight_decay}"
        )));
    }
    if let Some(d) = layer_decay {
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::Config(format!("layer_decay must be > 0, got {d}")));
        }
    }
    let top = rules.num_layers() + 1;
    let mut groups: Vec<ParamGroup> = Vec::new();
    for (name, var) in named {
        if rules.is_buffer(name) {
            continue;
        }
        let one_dim_or_bias = var.rank() <= 1 || name.ends_with(".bias");
        let skip = match rule {
            DecayRule::All => false,
            DecayRule::SkipOneDimAndBias => one_dim_or_bias,
            DecayRule::SkipOneDimBiasAndListed => one_dim_or_bias || rules.no_weight_decay(name),
            DecayRule::SkipNormAndListed => rules.is_norm(name) || rules.no_weight_decay(name),
        };
        let wd = if skip { 0.0 } else { weight_decay };
        let lr_scale = match layer_decay {
            None => 1.0,
            Some(d) => {
                let id = rules.layer_id(name);
                if id > top {
                    return Err(Error::Config(format!(
                        "{name}: layer id {id} exceeds num_layers + 1 = {top}"
                    )));
                }
                // powf, as Python's `decay ** (L + 1 - id)`.
                d.powf((top - id) as f64)
            }
        };
        let entry = (name.clone(), var.clone());
        match groups.iter_mut().find(|g| {
            g.lr_scale.to_bits() == lr_scale.to_bits() && g.weight_decay.to_bits() == wd.to_bits()
        }) {
            Some(g) => g.params.push(entry),
            None => groups.push(ParamGroup {
                params: vec![entry],
                lr_scale,
                weight_decay: wd,
            }),
        }
    }
    groups.sort_by(|a, b| {
        a.lr_scale
            .total_cmp(&b.lr_scale)
            .then(a.weight_decay.total_cmp(&b.weight_decay))
    });
    Ok(groups)
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use candle_core::{DType, Device};

    /// A depth-2 timm ViT's parameter names and shapes (MAE naming).
    fn vit_params() -> Vec<(String, Var)> {
        let shapes: &[(&str, &[usize])] = &[
            ("cls_token", &[1, 1, 4]),
            ("pos_embed", &[1, 5, 4]),
            ("patch_embed.proj.weight", &[4, 3, 2, 2]),
            ("patch_embed.proj.bias", &[4]),
            ("blocks.0.norm1.weight", &[4]),
            ("blocks.0.attn.qkv.weight", &[12, 4]),
            ("blocks.0.attn.qkv.bias", &[12]),
            ("blocks.1.mlp.fc1.weight", &[8, 4]),
            ("fc_norm.weight", &[4]),
            ("head.weight", &[10, 4]),
            ("head.bias", &[10]),
        ];
        shapes
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    Var::zeros(*s, DType::F32, &Device::Cpu).unwrap(),
                )
            })
            .collect()
    }

    fn summary(groups: &[ParamGroup]) -> Vec<(f64, f64, Vec<String>)> {
        groups
            .iter()
            .map(|g| {
                (
                    g.lr_scale,
                    g.weight_decay,
                    g.params.iter().map(|(n, _)| n.clone()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn vit_layer_ids_follow_mae_lr_decay() {
        let r = ViTNameRules { num_layers: 12 };
        assert_eq!(r.layer_id("cls_token"), 0);
        assert_eq!(r.layer_id("pos_embed"), 0);
        assert_eq!(r.layer_id("patch_embed.proj.weight"), 0);
        assert_eq!(r.layer_id("blocks.0.attn.qkv.weight"), 1);
        assert_eq!(r.layer_id("blocks.11.mlp.fc2.bias"), 12);
        assert_eq!(r.layer_id("fc_norm.weight"), 13);
        assert_eq!(r.layer_id("head.weight"), 13);
        assert_eq!(r.layer_id("backbone.net.blocks.3.attn.rel_pos_h"), 4);
        assert_eq!(r.layer_id("backbone.net.pos_embed"), 0);
        assert_eq!(r.layer_id("decoder_blocks.0.norm1.weight"), 13);
        assert_eq!(r.layer_id("reg_token"), 0);
        assert_eq!(r.layer_id("norm_pre.weight"), 0);
        assert_eq!(r.layer_id("norm.weight"), 13);
        assert!(r.no_weight_decay("reg_token"));
        assert!(r.no_weight_decay("pos_embed") && r.no_weight_decay("backbone.net.pos_embed"));
        assert!(!r.no_weight_decay("decoder_pos_embed") && !r.no_weight_decay("head.weight"));
        assert!(r.is_norm("blocks.0.norm1.weight") && r.is_norm("fc_norm.bias"));
        assert!(!r.is_norm("blocks.0.attn.qkv.weight") && !r.is_norm("norm_weight_alone"));
    }

    /// MAE-Lite fine-tuning: layer decay 0.85 over L = 2, so scales are
    /// 0.85^3 (stem), 0.85^2 (block 0), 0.85 (block 1), 1 (head).
    #[test]
    fn fine_tuning_groups_by_layer_and_decay() {
        let g = build_param_groups(
            &vit_params(),
            &ViTNameRules { num_layers: 2 },
            0.05,
            Some(0.85),
            DecayRule::SkipOneDimBiasAndListed,
        )
        .unwrap();
        let d3 = 0.85f64.powf(3.0);
        let d2 = 0.85f64.powf(2.0);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summary(&g),
            vec![
                (
                    d3,
                    0.0,
                    s(&["cls_token", "pos_embed", "patch_embed.proj.bias"])
                ),
                (d3, 0.05, s(&["patch_embed.proj.weight"])),
                (
                    d2,
                    0.0,
                    s(&["blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"])
                ),
                (d2, 0.05, s(&["blocks.0.attn.qkv.weight"])),
                (0.85, 0.05, s(&["blocks.1.mlp.fc1.weight"])),
                (1.0, 0.0, s(&["fc_norm.weight", "head.bias"])),
                (1.0, 0.05, s(&["head.weight"])),
            ]
        );
    }

    #[test]
    fn decay_rules_choose_the_exempt_parameters() {
        let names = |rule| {
            let g = build_param_groups(
                &vit_params(),
                &ViTNameRules { num_layers: 2 },
                0.1,
                None,
                rule,
            )
            .unwrap();
            assert!(g.iter().all(|g| g.lr_scale == 1.0));
            g.iter()
                .find(|g| g.weight_decay == 0.0)
                .map(|g| g.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert!(names(DecayRule::All).is_empty());
        assert_eq!(
            names(DecayRule::SkipOneDimAndBias),
            vec![
                "patch_embed.proj.bias",
                "blocks.0.norm1.weight",
                "blocks.0.attn.qkv.bias",
                "fc_norm.weight",
                "head.bias"
            ]
        );
        assert_eq!(
            names(DecayRule::SkipOneDimBiasAndListed),
            vec![
                "cls_token",
                "pos_embed",
                "patch_embed.proj.bias",
                "blocks.0.norm1.weight",
                "blocks.0.attn.qkv.bias",
                "fc_norm.weight",
                "head.bias"
            ]
        );
        assert_eq!(
            names(DecayRule::SkipNormAndListed),
            vec![
                "cls_token",
                "pos_embed",
                "blocks.0.norm1.weight",
                "fc_norm.weight"
            ]
        );
    }

    /// BatchNorm running statistics live in the VarMap but never reach an
    /// optimizer, under any rule, with or without layer decay.
    #[test]
    fn batch_norm_buffers_are_left_out_of_every_group() {
        let mut named = vit_params();
        for (n, s) in [("head.0.running_mean", 4), ("head.0.running_var", 4), ("head.0.num_batches_tracked", 1), ("head.0.weight", 4)] {
            named.push((n.to_string(), Var::zeros(s, DType::F32, &Device::Cpu).unwrap()));
        }
        for rule in [DecayRule::All, DecayRule::SkipOneDimAndBias, DecayRule::SkipOneDimBiasAndListed, DecayRule::SkipNormAndListed] {
            for decay in [None, Some(0.75)] {
                let g = build_param_groups(&named, &ViTNameRules { num_layers: 2 }, 0.05, decay, rule).unwrap();
                let names: Vec<String> = g.iter().flat_map(|g| g.params.iter().map(|(n, _)| n.clone())).collect();
                assert_eq!(names.len(), 12, "{rule:?} {decay:?}: {names:?}");
                assert!(names.iter().all(|n| !n.contains("running") && !n.contains("batches")), "{names:?}");
                assert!(names.iter().any(|n| n == "head.0.weight"), "the BN weight is a parameter");
            }
        }
    }

    #[test]
    fn zero_weight_decay_merges_everything_into_one_group() {
        let g = build_param_groups(
            &vit_params(),
            &ViTNameRules { num_layers: 2 },
            0.0,
            Some(1.0),
            DecayRule::default(),
        )
        .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].params.len(), 11);
    }

    #[test]
    fn invalid_inputs_are_config_errors() {
        struct Broken;
        impl ParamRules for Broken {
            fn num_layers(&self) -> usize {
                1
            }
            fn layer_id(&self, _: &str) -> usize {
                5
            }
            fn no_weight_decay(&self, _: &str) -> bool {
                false
            }
        }
        let p = vit_params();
        let e = build_param_groups(&p, &Broken, 0.1, Some(0.9), DecayRule::All).unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("cls_token")),
            "{e}"
        );
        assert!(
            build_param_groups(&p, &Broken, 0.1, None, DecayRule::All).is_ok(),
            "layer ids unused without decay"
        );
        assert!(build_param_groups(&p, &Broken, -0.1, None, DecayRule::All).is_err());
        assert!(build_param_groups(&p, &Broken, 0.1, Some(0.0), DecayRule::All).is_err());
    }
}
