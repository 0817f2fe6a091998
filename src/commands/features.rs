//! Placeholder until the foundation lands.

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct FeaturesArgs {}

/// Runs the command.
pub fn run(_args: FeaturesArgs) -> anyhow::Result<()> {
    Err(crate::exit::user("not built yet"))
}
