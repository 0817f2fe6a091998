//! Which optimizer settings each ViT parameter gets, by name, as in the
//! paper's code (MAE-Lite `util/lr_decay.py`, timm `param_groups_layer_decay`).

/// Layer index for layer-wise lr decay: 0 for `cls_token`, `pos_embed` and
/// `patch_embed.*`; i + 1 for `blocks.i.*`; `depth + 1` for everything else
/// (final norm, `fc_norm`, head, and any task head built on the backbone).
pub fn layer_id(name: &str, depth: usize) -> usize {
    if name == "cls_token" || name == "pos_embed" || name.starts_with("patch_embed.") {
        return 0;
    }
    if let Some(rest) = name.strip_prefix("blocks.") {
        if let Some(i) = rest.split('.').next().and_then(|i| i.parse::<usize>().ok()) {
            return i + 1;
        }
    }
    depth + 1
}

/// Parameters the ViT never decays beyond the generic "1-D or bias" rule:
/// its position table and cls token (timm's `no_weight_decay()`).
pub fn no_weight_decay(name: &str) -> bool {
    matches!(name, "pos_embed" | "cls_token" | "dist_token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_follow_the_papers_scheme() {
        assert_eq!(layer_id("cls_token", 12), 0);
        assert_eq!(layer_id("pos_embed", 12), 0);
        assert_eq!(layer_id("patch_embed.proj.weight", 12), 0);
        assert_eq!(layer_id("blocks.0.attn.qkv.weight", 12), 1);
        assert_eq!(layer_id("blocks.11.mlp.fc2.bias", 12), 12);
        assert_eq!(layer_id("fc_norm.weight", 12), 13);
        assert_eq!(layer_id("head.bias", 12), 13);
        assert!(no_weight_decay("pos_embed") && no_weight_decay("cls_token") && !no_weight_decay("head.weight"));
    }
}
