//! `vitdet analyze {cka,attention,fourier}`: parses the flags, loads the
//! checkpoints and images, and hands them to the `analysis` crate, which
//! computes, writes nothing itself and draws the plots.

use std::path::{Path, PathBuf};

use analysis::attention::{DistanceUnit, RELEASED_ENTROPY_EPS};
use analysis::images::ImageSource;
use analysis::passes::{run_attention, run_cka, run_fourier, AttentionSettings, PassInput, Subject};
use analysis::plots::{plot_attention, plot_cka_diagonals, plot_cka_heatmap, plot_fourier, AttentionMetric};
use candle_core::Device;
use engine::progress::ItemProgress;
use vision::eval_transform::EvalTransform;

use super::weights::WeightsArgs;

/// The paper's analyses (section 4) on any checkpoints vitdet loads.
#[derive(clap::Subcommand, Debug)]
pub enum AnalyzeCommand {
    /// Layer-by-layer minibatch linear CKA between a reference and other checkpoints (Figs. 1, 6).
    Cka(CkaArgs),
    /// Mean attention distance and entropy per layer and head (Fig. 5).
    Attention(AttentionArgs),
    /// Δ log amplitude of the token maps' Fourier spectra per layer (Fig. 3).
    Fourier(FourierArgs),
}

/// Flags every analysis takes.
#[derive(clap::Args, Debug)]
struct CommonArgs {
    /// An image file or a folder of images, searched recursively (an ImageFolder such as ImageNet val works; torchvision order). Default: the built-in synthetic shapes scenes.
    #[arg(long, value_name = "DIR_OR_FILE")]
    images: Option<PathBuf>,
    /// Use at most this many images (the first ones).
    #[arg(long, default_value_t = 1024)]
    max_images: usize,
    /// Architecture for checkpoints that do not record one: tiny (12 heads), tiny3, small, base.
    #[arg(long, default_value = "tiny")]
    arch: String,
    /// Folder searched first for named backbones (then $VITDET_WEIGHTS, then ~/.cache/vitdet/weights).
    #[arg(long, value_name = "DIR")]
    weights_dir: Option<PathBuf>,
    /// Output folder (created): the JSON results and the PNGs.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

const WEIGHTS_HELP: &str = "Checkpoints: a .pth / .pth.tar / .safetensors file (released, imported, `vitdet pretrain` or \
`vitdet finetune` output) or a named backbone (deit_tiny, mae_tiny, mocov3_tiny, distilled_mae_tiny, mae_base); \
LABEL=CHECKPOINT sets the legend label (default: the name or the file stem).";

/// Minibatch linear CKA with the unbiased HSIC estimator (Nguyen et al.), HSIC terms averaged over
/// minibatches before the ratio, as MAE-Lite releases it. Representations: the output of each block's
/// norm1 (0 = LayerNorm of the patch embedding) and the final norm's output, patch tokens without cls
/// flattened per image. Writes cka.json, one heat map per compared checkpoint and the diagonals.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet analyze cka --a deit_tiny --b deit_tiny --b mae_tiny --b mocov3_tiny --images imagenet/val --out runs/cka\n  \
vitdet analyze cka --a DeiT=deit_tiny_300e.pth.tar --b MAE=runs/mae/model.safetensors --out runs/cka   # synthetic images\n\n\
Minibatches hold exactly --batch images: the images left after the last full minibatch are dropped\n\
(reported in cka.json). CKA depends on the batch size: compare results at the same --batch. The\n\
released run used 9 batches of 128 (1152 images): --max-images 1152 reproduces it.")]
pub struct CkaArgs {
    /// The reference checkpoint (rows of every matrix). See --b for the forms accepted.
    #[arg(long, value_name = "CHECKPOINT")]
    a: String,
    /// A checkpoint to compare with the reference (columns); repeat to overlay several.
    #[arg(long, value_name = "CHECKPOINT", required = true, long_help = WEIGHTS_HELP)]
    b: Vec<String>,
    /// Images per minibatch (at least 4; the released analysis used 128).
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[command(flatten)]
    common: CommonArgs,
}

/// Mean attention distance and entropy per layer and head: the patch-to-patch part of the scaled
/// logits (cls removed) re-softmaxed over the patches, averaged over query tokens and images.
/// Writes attention.json, attention_distance.png and attention_entropy.png.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet analyze attention --weights deit_tiny --weights mae_tiny --weights mocov3_tiny --out runs/attn\n  \
vitdet analyze attention --weights mae_tiny --released --images imagenet/val --max-images 1152 --out runs/attn\n\n\
Distance: Euclidean distance between patch positions x patch size, in pixels of the input\n\
(--distance-unit patches for grid units; released for the released figures' x14). Entropy in\n\
nats, -sum p ln p; --released uses the released ln(p + 1e-6) and the x14 scale.")]
pub struct AttentionArgs {
    /// A checkpoint; repeat to overlay several.
    #[arg(long, value_name = "CHECKPOINT", required = true, long_help = WEIGHTS_HELP)]
    weights: Vec<String>,
    /// Unit of the attention distance.
    #[arg(long, value_enum, default_value = "pixels")]
    distance_unit: UnitArg,
    /// Reproduce the released figures: distance x14 and entropy -sum p ln(p + 1e-6).
    #[arg(long, conflicts_with = "distance_unit")]
    released: bool,
    /// Images per forward pass (does not change the results).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    common: CommonArgs,
}

/// Relative log amplitude (Park & Kim): each point of the residual stream (patch embedding, after
/// every attention and MLP sub-block) as a token grid without cls, 2-D FFT, ln amplitude averaged over
/// channels and images; Δ = highest frequency minus frequency 0 along the diagonal. Writes
/// fourier.json and fourier.png.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet analyze fourier --weights deit_tiny --weights mae_tiny --weights mocov3_tiny --out runs/fourier\n  \
vitdet analyze fourier --weights MAE=runs/mae/model.safetensors --images photos/ --out runs/fourier")]
pub struct FourierArgs {
    /// A checkpoint; repeat to overlay several.
    #[arg(long, value_name = "CHECKPOINT", required = true, long_help = WEIGHTS_HELP)]
    weights: Vec<String>,
    /// Images per forward pass (does not change the results).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    common: CommonArgs,
}

/// `--distance-unit`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum UnitArg {
    /// Grid distance x patch size.
    Pixels,
    /// Grid distance.
    Patches,
    /// Grid distance x 14, the released figures' scale.
    Released,
}

/// Runs the command.
pub fn run(command: AnalyzeCommand) -> anyhow::Result<()> {
    match command {
        AnalyzeCommand::Cka(args) => cka(args),
        AnalyzeCommand::Attention(args) => attention(args),
        AnalyzeCommand::Fourier(args) => fourier(args),
    }
}

/// Maps the analysis crate's user errors to exit code 2.
fn lift(e: analysis::Error) -> anyhow::Error {
    if e.is_user_error() {
        crate::exit::user(e.to_string())
    } else {
        e.into()
    }
}

/// `LABEL=CHECKPOINT` or `CHECKPOINT` (labelled by its name or file stem).
fn split_label(spec: &str) -> (String, String) {
    if let Some((label, rest)) = spec.split_once('=') {
        if !label.is_empty() && !rest.is_empty() && !Path::new(spec).exists() {
            return (label.to_string(), rest.to_string());
        }
    }
    let name = Path::new(spec).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| spec.to_string());
    let stem = [".safetensors", ".pth.tar", ".pth", ".pt", ".tar"].iter().find_map(|ext| name.strip_suffix(ext)).unwrap_or(&name).to_string();
    (stem, spec.to_string())
}

fn load(spec: &str, common: &CommonArgs) -> anyhow::Result<Subject> {
    let (label, weights) = split_label(spec);
    let args = WeightsArgs { weights: weights.clone(), arch: common.arch.clone(), weights_dir: common.weights_dir.clone() };
    let loaded = super::weights::load(&args, &Device::Cpu)?;
    Ok(Subject { label, file: weights, model: loaded.model })
}

/// Checks the flags and lists the images, before any checkpoint is loaded.
fn prepare(common: &CommonArgs) -> anyhow::Result<ImageSource> {
    super::check_output_dir("--out", &common.out)?;
    if common.max_images == 0 {
        return Err(crate::exit::user("--max-images must be at least 1"));
    }
    let source = match &common.images {
        Some(dir) => ImageSource::Files(vision::list::list_images(dir, true)?),
        None => ImageSource::Synthetic { count: common.max_images },
    };
    Ok(source.truncated(common.max_images))
}

fn input<'a>(source: &'a ImageSource, first: &Subject, batch: usize) -> PassInput<'a> {
    PassInput { source, transform: EvalTransform { size: first.model.config().img_size, ..EvalTransform::default() }, batch }
}

/// Runs `pass` with a progress bar over the images.
fn with_progress<T>(label: &str, total: usize, pass: impl FnOnce(&mut dyn FnMut(usize)) -> analysis::Result<T>) -> anyhow::Result<T> {
    let mut progress = ItemProgress::new(label, total);
    let out = pass(&mut |n| progress.advance(n)).map_err(lift);
    progress.finish();
    out
}

fn write_json<T: serde::Serialize>(out: &Path, name: &str, value: &T) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).map_err(|e| crate::exit::user(format!("--out {}: {e}", out.display())))?;
    let path = out.join(name);
    engine::checkpoint::write_atomic(&path, format!("{}\n", serde_json::to_string_pretty(value)?).as_bytes())?;
    Ok(path)
}

/// A file-name-safe form of a label.
fn slug(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn cka(args: CkaArgs) -> anyhow::Result<()> {
    if args.batch < analysis::cka::MIN_BATCH {
        return Err(crate::exit::user(format!("--batch {}: minibatch CKA needs at least {} images per minibatch", args.batch, analysis::cka::MIN_BATCH)));
    }
    let source = prepare(&args.common)?;
    if source.len() < args.batch {
        return Err(crate::exit::user(format!("{} images cannot fill one minibatch of --batch {}: lower --batch or add images", source.len(), args.batch)));
    }
    let a = load(&args.a, &args.common)?;
    let bs = args.b.iter().map(|s| load(s, &args.common)).collect::<anyhow::Result<Vec<_>>>()?;
    let input = input(&source, &a, args.batch);
    let report = with_progress("cka", source.len(), |on_batch| run_cka(&a, &bs, &input, on_batch))?;
    let out = &args.common.out;
    let mut written = vec![write_json(out, "cka.json", &report)?];
    for (k, pair) in report.pairs.iter().enumerate() {
        let path = out.join(format!("cka_{k}_{}_vs_{}.png", slug(&a.label), slug(&pair.b.label)));
        plot_cka_heatmap(pair, &a.label, &path).map_err(lift)?;
        written.push(path);
    }
    let path = out.join("cka_diagonal.png");
    plot_cka_diagonals(&report.pairs, &a.label, &path).map_err(lift)?;
    written.push(path);
    eprintln!("CKA over {} images ({} minibatches of {}; {} dropped)", report.images.used, report.minibatches, report.batch, report.images.dropped);
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
}

fn attention(args: AttentionArgs) -> anyhow::Result<()> {
    let source = prepare(&args.common)?;
    let models = args.weights.iter().map(|s| load(s, &args.common)).collect::<anyhow::Result<Vec<_>>>()?;
    let settings = if args.released {
        AttentionSettings { distance_unit: DistanceUnit::Released, entropy_eps: RELEASED_ENTROPY_EPS }
    } else {
        let distance_unit = match args.distance_unit {
            UnitArg::Pixels => DistanceUnit::Pixels,
            UnitArg::Patches => DistanceUnit::Patches,
            UnitArg::Released => DistanceUnit::Released,
        };
        AttentionSettings { distance_unit, entropy_eps: 0.0 }
    };
    let first = models.first().ok_or_else(|| crate::exit::user("pass --weights"))?;
    let input = input(&source, first, args.batch.max(1));
    let report = with_progress("attention", source.len(), |on_batch| run_attention(&models, &input, settings, on_batch))?;
    let out = &args.common.out;
    let mut written = vec![write_json(out, "attention.json", &report)?];
    for (metric, name) in [(AttentionMetric::Distance, "attention_distance.png"), (AttentionMetric::Entropy, "attention_entropy.png")] {
        let path = out.join(name);
        plot_attention(&report, metric, &path).map_err(lift)?;
        written.push(path);
    }
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
}

fn fourier(args: FourierArgs) -> anyhow::Result<()> {
    let source = prepare(&args.common)?;
    let models = args.weights.iter().map(|s| load(s, &args.common)).collect::<anyhow::Result<Vec<_>>>()?;
    let first = models.first().ok_or_else(|| crate::exit::user("pass --weights"))?;
    let input = input(&source, first, args.batch.max(1));
    let report = with_progress("fourier", source.len(), |on_batch| run_fourier(&models, &input, on_batch))?;
    let out = &args.common.out;
    let json = write_json(out, "fourier.json", &report)?;
    let path = out.join("fourier.png");
    plot_fourier(&report, &path).map_err(lift)?;
    println!("{}\n{}", json.display(), path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_label;

    #[test]
    fn labels_come_from_the_flag_or_the_file_stem() {
        assert_eq!(split_label("MAE=runs/mae/model.safetensors"), ("MAE".into(), "runs/mae/model.safetensors".into()));
        assert_eq!(split_label("runs/x/deit_tiny_300e.pth.tar"), ("deit_tiny_300e".into(), "runs/x/deit_tiny_300e.pth.tar".into()));
        assert_eq!(split_label("mae_tiny"), ("mae_tiny".into(), "mae_tiny".into()));
    }
}
