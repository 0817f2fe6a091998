//! Placeholder until the foundation lands.

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct BenchVitArgs {}

/// Runs the command.
pub fn run(_args: BenchVitArgs) -> anyhow::Result<()> {
    Err(crate::exit::user("not built yet"))
}
