//! `vitdet pretrain visualize`: an MAE's reconstructions of a few images as
//! one PNG grid (rows original / masked / reconstruction).

use std::path::PathBuf;

use candle_core::Device;
use engine::rng::TrainRng;
use pretrain::masking::Masking;
use pretrain::visualize::{grid_image, reconstruct};
use vision::eval_transform::{eval_transform, EvalTransform};

/// Arguments of `vitdet pretrain visualize`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet pretrain visualize --weights runs/mae_shapes/model.safetensors --images runs/mae_shapes/data/val/star --out grid.png\n  \
    vitdet pretrain visualize --weights runs/mae/model.safetensors --images photos/ --count 4 --mask-ratio 0.5 --out grid.png\n\n\
    Images get the evaluation view at the model's input size (resize, centre crop). Under norm_pix_loss\n\
    each predicted patch is de-normalised with the mean and variance of the same patch of the original.")]
pub struct VisualizeArgs {
    /// A model written by `vitdet pretrain --method mae` (OUT/model.safetensors).
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// An image file or a folder of images (the first --count in name order).
    #[arg(long, value_name = "DIR_OR_FILE")]
    images: PathBuf,
    /// Output PNG.
    #[arg(long, value_name = "PNG")]
    out: PathBuf,
    /// Images to draw (columns).
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// Mask ratio (default: the model's).
    #[arg(long)]
    mask_ratio: Option<f64>,
    /// Seed of the masking.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs the command.
pub fn run(args: VisualizeArgs) -> anyhow::Result<()> {
    super::check_output_file("--out", &args.out)?;
    let device = Device::Cpu;
    if args.count == 0 {
        return Err(crate::exit::user("--count must be at least 1"));
    }
    let files = vision::list::list_images(&args.images, false)?;
    let mae = pretrain::weights::load(&args.weights, &device)?;
    let spec = mae.spec().clone();
    let transform = EvalTransform { size: spec.encoder.img_size, ..EvalTransform::default() };
    let pixels = files
        .iter()
        .take(args.count)
        .map(|f| eval_transform(&vision::decode::decode_upright(f)?, &transform))
        .collect::<vision::Result<Vec<Vec<f32>>>>()?;
    let images = vision::loader::stack_chw(&pixels, (3, transform.size, transform.size), &device)?;
    let ratio = args.mask_ratio.unwrap_or(spec.mask_ratio);
    let masking = Masking::random(pixels.len(), spec.num_patches(), ratio, &mut TrainRng::seed_from_u64(args.seed))?;
    let rec = reconstruct(&mae, &images, &masking)?;
    let picture = grid_image(&rec, spec.encoder.patch_size, transform.mean, transform.std)?;
    picture.save(&args.out).map_err(|e| crate::exit::user(format!("cannot write {}: {e}", args.out.display())))?;
    eprintln!("{} images, mask ratio {ratio} ({} of {} patches visible)", pixels.len(), masking.len_keep(), spec.num_patches());
    println!("{}", args.out.display());
    Ok(())
}
