//! `vitdet features`: every block's tokens for images or a pixel tensor.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};

use vision::eval_transform::{eval_transform, EvalTransform};

use super::weights::WeightsArgs;

/// Run the backbone and save `block.{i}` (each block's output tokens, cls
/// first), `norm` (after the final norm, for models that have one), `pooled`
/// and `logits` (when the checkpoint has a head) as safetensors, images along dim 0.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet features --weights mae_tiny --images photos/ --out feats.safetensors\n  \
vitdet features --weights vit.safetensors --pixels x.safetensors --out feats.safetensors\n\n\
--pixels takes a tensor named `pixels`, N x 3 x H x W f32, already normalised (no preprocessing).\n\
--images applies timm's eval transform (resize 256 bicubic, center crop 224, ImageNet mean/std);\n\
the image order (sorted file names) is stored in the output's metadata under `images`.")]
pub struct FeaturesArgs {
    #[command(flatten)]
    weights: WeightsArgs,
    /// An image file or a folder of images.
    #[arg(long, value_name = "DIR_OR_FILE", conflicts_with = "pixels", required_unless_present = "pixels")]
    images: Option<PathBuf>,
    /// A safetensors file with a `pixels` tensor (N, 3, H, W), already normalised.
    #[arg(long, value_name = "X.safetensors")]
    pixels: Option<PathBuf>,
    /// Output safetensors file.
    #[arg(long, value_name = "F.safetensors")]
    out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
}

/// Runs the extraction.
pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    super::check_output_file("--out", &args.out)?;
    let device = Device::Cpu;
    // Check the inputs before the (slower) weight loading.
    let given_pixels = args.pixels.as_deref().map(read_pixels).transpose()?;
    let files = args.images.as_ref().map(|d| vision::list::list_images(d, false)).transpose()?;
    let loaded = super::weights::load(&args.weights, &device)?;
    let mut meta = HashMap::new();
    let pixels = match (files, given_pixels) {
        (Some(files), _) => {
            let transform = EvalTransform { size: loaded.config.img_size, ..EvalTransform::default() };
            // An unreadable image is skipped and counted, never the end of the folder.
            let skipped = vision::loader::LoaderStats::default();
            let mut batch = Vec::with_capacity(files.len());
            let mut names = Vec::with_capacity(files.len());
            for f in &files {
                match vision::decode::decode_upright(f).and_then(|img| eval_transform(&img, &transform)) {
                    Ok(pixels) => {
                        batch.push(pixels);
                        names.push(f.display().to_string());
                    }
                    Err(e) if e.is_user_error() => skipped.skip(&e),
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(summary) = skipped.summary() {
                eprintln!("warning: {summary}");
            }
            if batch.is_empty() {
                return Err(crate::exit::user(format!("--images {}: no readable image", args.images.as_deref().unwrap_or(std::path::Path::new("")).display())));
            }
            meta.insert("images".to_string(), serde_json::to_string(&names)?);
            vision::loader::stack_chw(&batch, (3, transform.size, transform.size), &device)?
        }
        (None, Some(pixels)) => pixels,
        (None, None) => return Err(crate::exit::user("pass --images or --pixels")),
    };
    let (patch, (h, w)) = (loaded.config.patch_size, (pixels.dim(2)?, pixels.dim(3)?));
    if h % patch != 0 || w % patch != 0 {
        return Err(crate::exit::user(format!("pixels are {h}x{w}: height and width must be a multiple of the patch size {patch}")));
    }
    let features = backbone::features::extract_features(&loaded.model, &pixels, args.batch)
        .with_context(|| format!("running the backbone on {:?}", pixels.dims()))?;
    engine::checkpoint::write_safetensors_with_metadata(&args.out, &features.tensors, meta)?;
    let keys: Vec<&str> = features.tensors.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!("wrote {} tensors for {} images: {}", keys.len(), pixels.dim(0)?, keys.join(", "));
    println!("{}", args.out.display());
    Ok(())
}

/// Reads the `pixels` tensor and checks it is N x 3 x H x W.
fn read_pixels(path: &std::path::Path) -> anyhow::Result<Tensor> {
    let tensors = engine::checkpoint::read_safetensors(path, &Device::Cpu)?;
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let Some((_, t)) = tensors.iter().find(|(n, _)| n == "pixels") else {
        return Err(crate::exit::user(format!("{}: no tensor named `pixels` (found: {})", path.display(), names.join(", "))));
    };
    match t.dims() {
        [0, ..] => Err(crate::exit::user(format!("{}: `pixels` holds no image (N = 0)", path.display()))),
        [_, 3, _, _] => Ok(t.to_dtype(candle_core::DType::F32)?),
        other => Err(crate::exit::user(format!("{}: `pixels` has shape {other:?}, expected N x 3 x H x W", path.display()))),
    }
}
