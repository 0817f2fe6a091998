//! Flags shared by the detection commands (`train`, `eval coco --weights`,
//! `demo`): recipes by path or built-in name, and where the data is.

use std::path::PathBuf;

use coco::Split;
use detector::data::{DataLayout, SplitFiles};
use detector::recipe::Recipe;
use engine::recipe_file::RecipeFile as _;

/// Reads `--config` with its bases: a TOML file, or the name of a built-in
/// recipe (`vitdet_tiny_shapes`, `vitdet_tiny_coco`, also as
/// `configs/NAME.toml` when no such file exists). `train` adds its `--set`
/// overrides through [`Recipe::resolve`].
pub fn load_recipe(config: &str) -> anyhow::Result<Recipe> {
    Ok(Recipe::resolve(config, &[])?)
}

/// Where the training and validation data are.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Dataset folder: the COCO 2017 layout (annotations/instances_{train,val}2017.json,
    /// {train,val}2017/) or the one `vitdet data shapes` writes; told apart automatically.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Training annotations (instead of --data).
    #[arg(long, value_name = "JSON", requires = "train_images")]
    pub train_json: Option<PathBuf>,
    /// Training images folder (with --train-json).
    #[arg(long, value_name = "DIR", requires = "train_json")]
    pub train_images: Option<PathBuf>,
    /// Validation annotations (instead of --data).
    #[arg(long, value_name = "JSON", requires = "val_images")]
    pub val_json: Option<PathBuf>,
    /// Validation images folder (with --val-json).
    #[arg(long, value_name = "DIR", requires = "val_json")]
    pub val_images: Option<PathBuf>,
}

impl DataArgs {
    /// True when no data flag was given.
    pub fn is_empty(&self) -> bool {
        self.data.is_none() && self.train_json.is_none() && self.val_json.is_none()
    }

    /// The files of `split`, from the explicit flags or the discovered layout;
    /// `None` when that split was not given.
    pub fn split(&self, split: Split) -> anyhow::Result<Option<SplitFiles>> {
        let explicit = match split {
            Split::Train => self.train_json.as_ref().zip(self.train_images.as_ref()),
            Split::Val => self.val_json.as_ref().zip(self.val_images.as_ref()),
        };
        if let Some((json, images)) = explicit {
            return Ok(Some(SplitFiles::explicit(json, images)?));
        }
        match &self.data {
            Some(dir) => {
                let layout = DataLayout::discover(dir)?;
                Ok(match split {
                    Split::Train => layout.train,
                    Split::Val => layout.val,
                })
            }
            None => Ok(None),
        }
    }
}
