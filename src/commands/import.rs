//! `vitdet import`: convert a checkpoint once into a fast-loading safetensors file.

use std::path::PathBuf;

use backbone::import::{default_import_path, load_vit, save_vit};

/// Convert a PyTorch (.pth, .pth.tar) or safetensors ViT checkpoint into a
/// vitdet safetensors file (timm names, config in the metadata).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  vitdet import --from mae_tiny_400e.pth.tar --out mae_tiny_400e.safetensors\n\n\
The released prefixes (module.model., module.base_encoder., ...) are stripped and decoder,\n\
teacher and momentum-encoder weights dropped; missing and unexpected keys are reported.")]
pub struct ImportArgs {
    /// Checkpoint to read.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// File to write (default: next to --from, with the .safetensors extension).
    #[arg(long, value_name = "FILE.safetensors")]
    out: Option<PathBuf>,
    /// Architecture: tiny (12 heads, the paper's), tiny3, small, base.
    #[arg(long, default_value = "tiny")]
    arch: String,
}

/// Runs the conversion.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| default_import_path(&args.from));
    let loaded = load_vit(&args.from, &args.arch, &candle_core::Device::Cpu)?;
    super::check_output_file("--out", &out)?;
    eprintln!("{}: {}", args.from.display(), loaded.report);
    save_vit(&loaded.varmap, &loaded.config, &out)?;
    println!("{}", out.display());
    Ok(())
}
