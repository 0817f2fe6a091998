//! Placeholder: the COCO toolkit issue fills this module in.

/// Arguments (to be defined by the COCO toolkit).
#[derive(clap::Args, Debug)]
pub struct BenchCocoArgs {}

/// Runs the command.
pub fn run(_args: BenchCocoArgs) -> anyhow::Result<()> {
    Err(crate::exit::user("not built yet"))
}
