//! Shared flags for commands that load ViT weights, and the weight search
//! path (the one place the CLI reads `$VITDET_WEIGHTS` and `$HOME`).

use std::path::PathBuf;

use backbone::named::{default_cache_dir, resolve_backbone, BackboneSource, WeightSearch};

/// `--weights`, `--arch`, `--weights-dir`.
#[derive(clap::Args, Debug)]
pub struct WeightsArgs {
    /// Weights: a .pth / .pth.tar / .safetensors file, or a named backbone
    /// (deit_tiny, mae_tiny, mocov3_tiny, distilled_mae_tiny, mae_base).
    #[arg(long, value_name = "FILE_OR_NAME")]
    pub weights: String,
    /// Architecture for checkpoints that do not record one: tiny (12 heads), tiny3, small, base.
    #[arg(long, default_value = "tiny")]
    pub arch: String,
    /// Folder searched first for named backbones (then $VITDET_WEIGHTS, then ~/.cache/vitdet/weights).
    #[arg(long, value_name = "DIR")]
    pub weights_dir: Option<PathBuf>,
}

/// The folders searched for named weights.
pub fn weight_search(weights_dir: Option<&PathBuf>) -> WeightSearch {
    let mut dirs = Vec::new();
    if let Some(d) = weights_dir {
        dirs.push(("--weights-dir".to_string(), d.clone()));
    }
    if let Some(d) = std::env::var_os("VITDET_WEIGHTS") {
        dirs.push(("$VITDET_WEIGHTS".to_string(), PathBuf::from(d)));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(d) = default_cache_dir(home.as_deref()) {
        dirs.push(("default cache".to_string(), d));
    }
    WeightSearch { dirs }
}

/// Loads the ViT the flags name.
pub fn load(args: &WeightsArgs, device: &candle_core::Device) -> anyhow::Result<backbone::import::LoadedVit> {
    match resolve_backbone(&args.weights, &args.arch, &weight_search(args.weights_dir.as_ref()))? {
        BackboneSource::Scratch => Err(crate::exit::user("--weights scratch has no weights to load; pass a file or a pre-trained backbone name")),
        BackboneSource::File { path, arch } => {
            let loaded = backbone::import::load_vit(&path, &arch, device)?;
            eprintln!("{}: {}", path.display(), loaded.report);
            Ok(loaded)
        }
    }
}
