//! `vitdet bench cka`: times the CKA estimator alone on features from a
//! safetensors file (`bench::cka`), for `bench/cka_vs_numpy.sh`, which
//! runs the NumPy estimator on the same file. Prints one JSON line.

use std::path::PathBuf;

use candle_core::Device;

/// Arguments of `vitdet bench cka`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  ~/.venvs/fx/bin/python bench/cka_numpy.py --write /tmp/cka_features.safetensors\n  \
vitdet bench cka --features /tmp/cka_features.safetensors --batch 128\n\n\
The file holds one (N, P) or (N, T, D) tensor per layer; layers are taken in name order and\n\
compared with each other (an L x L matrix), the last N mod --batch images dropped.")]
pub struct BenchCkaArgs {
    /// The features (safetensors).
    #[arg(long, value_name = "F.safetensors")]
    features: PathBuf,
    /// Images per minibatch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed rounds; the median is reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// Runs the timing.
pub fn run(args: BenchCkaArgs) -> anyhow::Result<()> {
    let mut tensors = engine::checkpoint::read_safetensors(&args.features, &Device::Cpu)?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let layers: Vec<_> = tensors.into_iter().map(|(_, t)| t).collect();
    let timing = bench::cka::time_cka(&layers, args.batch, args.rounds).map_err(|e| if e.is_user_error() { crate::exit::user(e.to_string()) } else { e.into() })?;
    println!("{}", serde_json::to_string(&timing)?);
    Ok(())
}
