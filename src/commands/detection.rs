//! Flags shared by the detection commands (`train`, `eval coco --weights`,
//! `demo`): recipes by path or built-in name, and where the data is.

use std::path::{Path, PathBuf};

use coco::Split;
use detector::data::{DataLayout, SplitFiles};
use detector::recipe::Recipe;

/// The recipes compiled into the binary, by name.
const BUILTIN_RECIPES: [(&str, &str); 2] = [
    ("vitdet_tiny_shapes", include_str!("../../configs/vitdet_tiny_shapes.toml")),
    ("vitdet_tiny_coco", include_str!("../../configs/vitdet_tiny_coco.toml")),
];

/// Reads `--config`: a TOML file, or the name of a built-in recipe
/// (`vitdet_tiny_shapes`, `vitdet_tiny_coco`, also as `configs/NAME.toml`
/// when no such file exists).
pub fn load_recipe(config: &str) -> anyhow::Result<Recipe> {
    let path = Path::new(config);
    if path.is_file() {
        return Ok(Recipe::load(path)?);
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(config);
    match BUILTIN_RECIPES.iter().find(|(name, _)| *name == stem) {
        Some((name, text)) => Ok(Recipe::parse(text, Path::new(&format!("<built-in {name}>")))?),
        None => Err(crate::exit::user(format!(
            "--config {config}: no such file, and not a built-in recipe (vitdet_tiny_shapes, vitdet_tiny_coco)"
        ))),
    }
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
