//! `vitdet bench convs`: the ViTDet pyramid's convolution work (3x3, 1x1 and
//! stride-2 transposed convolutions, by default at 256 channels over 64x64..8x8 maps),
//! forward and forward + backward, through the op layer
//! (`bench::convs`).

use bench::convs::{bench_convs, BenchConvsOptions};

/// Milliseconds of the ViTDet convolution workload, forward and forward +
/// backward, in total and per op and map size. Prints one JSON line.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet bench convs --iters 5\n  vitdet bench convs --composed   # candle's primitives, the \"before\"\n  \
    vitdet bench convs --batch 24 --channels 128 --sizes 28,14   # a mask head's ROIs\n  \
    bench/convs_vs_torch.sh   # side by side with PyTorch (BENCHMARKS.md)")]
pub struct BenchConvsArgs {
    /// Images per map.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Timed runs per op and map size, after one warm-up; the median is reported.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Channels of every map and convolution.
    #[arg(long, default_value_t = 256)]
    channels: usize,
    /// Map sides, comma-separated (each even: the transposed convolution reads the half-size map).
    #[arg(long, value_delimiter = ',', default_value = "64,32,16,8")]
    sizes: Vec<usize>,
    /// Time candle's own conv primitives instead of vitdet's kernels.
    #[arg(long)]
    composed: bool,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the benchmark.
pub fn run(args: BenchConvsArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.iters == 0 || args.channels == 0 {
        return Err(crate::exit::user("--batch, --iters and --channels must be at least 1"));
    }
    if let Some(side) = args.sizes.iter().find(|&&s| s == 0 || s % 2 != 0) {
        return Err(crate::exit::user(format!("--sizes: {side} is not a positive even map side")));
    }
    let device = engine::device::parse_device(&args.device)?;
    let opts = BenchConvsOptions { batch: args.batch, iters: args.iters, channels: args.channels, sizes: args.sizes, composed: args.composed };
    let result = bench_convs(&opts, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
