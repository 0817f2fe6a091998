//! Placeholder: the COCO toolkit issue fills this module in.

/// Arguments (to be defined by the COCO toolkit).
#[derive(clap::Args, Debug)]
pub struct DataShapesArgs {}

/// Runs the command.
pub fn run(_args: DataShapesArgs) -> anyhow::Result<()> {
    Err(crate::exit::user("not built yet"))
}
