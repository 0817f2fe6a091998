//! Placeholder until the foundation lands.

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {}

/// Runs the command.
pub fn run(_args: ClassifyArgs) -> anyhow::Result<()> {
    Err(crate::exit::user("not built yet"))
}
