//! Placeholder until the foundation lands.

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {}

/// Runs the command.
pub fn run(_args: ImportArgs) -> anyhow::Result<()> {
    Err(crate::exit::user("not built yet"))
}
