//! `vitdet selftest`: every model's tiny forward and backward on a device,
//! compared with the CPU's fused kernels (engine::selftest).

use engine::selftest::{Case, DEFAULT_TOLERANCE};

/// Runs a tiny forward and backward of every model (ViT, ViTDet backbone,
/// detector, classifier, MAE, MoCo-v3, distillation) on the device and on
/// the CPU with the fused kernels, compares outputs, losses and every
/// parameter gradient, and prints a table (stdout). Exits 1 when a
/// comparison is out of tolerance. With `--device cpu` the CPU runs the
/// composed kernels, the code a GPU runs, so a machine without a GPU
/// checks it too.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    vitdet selftest                            # the GPU's code path (composed kernels) on the CPU, a few seconds\n  \
    vitdet selftest --device cuda              # the first thing to run on a GPU machine\n  \
    vitdet selftest --device cuda:1 --tolerance 1e-3\n\n\
    Errors are relative to the largest value of each tensor: max |device - cpu| / max |cpu|.")]
pub struct SelftestArgs {
    /// Device under test: cpu (composed kernels), cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Largest relative error allowed for any tensor (see below).
    #[arg(long, value_name = "REL", default_value_t = DEFAULT_TOLERANCE, value_parser = parse_tolerance)]
    tolerance: f64,
}

/// A tolerance: a finite number >= 0.
fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a finite number >= 0, e.g. 1e-4".into()),
    }
}

/// Every model's cases, in the table's order.
fn all_cases() -> Vec<Case> {
    [backbone::selftest::cases(), detector::selftest::cases(), classification::selftest::cases(), pretrain::selftest::cases()].concat()
}

/// Runs the self-test.
pub fn run(args: SelftestArgs) -> anyhow::Result<()> {
    let device = engine::device::parse_device(&args.device)?;
    let report = engine::selftest::run(&all_cases(), &device, args.tolerance)?;
    println!("{report}");
    if !report.passed() {
        anyhow::bail!("selftest on {}: {} of {} comparisons out of tolerance (table above)", args.device, report.failures(), report.rows.len());
    }
    Ok(())
}
