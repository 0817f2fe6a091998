//! A run's classification splits: a dataset index (`vision::datasets`) or
//! the built-in synthetic set, paired with timm's training and evaluation
//! transforms as a [`ClassificationSet`] each. Decoding, parallelism,
//! prefetching, per-sample randomness and skipped-image counting are the
//! `vision` loader's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vision::datasets::{self, ClassificationSet, DatasetKind, Split};
use vision::eval_transform::EvalTransform;

use crate::recipe::Recipe;
use crate::{Error, Result};

/// Where a run's images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A dataset in its published layout.
    Published {
        /// Which reader.
        kind: DatasetKind,
        /// The folder as published.
        root: PathBuf,
    },
    /// The built-in synthetic set of the recipe's `[data.synthetic]`,
    /// generated into this folder once (an existing one is reused).
    Synthetic(PathBuf),
}

/// The training split with the recipe's augmentation and the evaluation
/// split with its evaluation transform.
///
/// # Errors
/// A dataset that is missing or malformed (naming the file), a synthetic
/// set that cannot be written, or a bad transform setting.
pub fn open_splits(source: &DataSource, recipe: &Recipe) -> Result<(Arc<ClassificationSet>, Arc<ClassificationSet>)> {
    let (kind, root) = match source {
        DataSource::Published { kind, root } => (*kind, root.clone()),
        DataSource::Synthetic(dir) => {
            generate_synthetic(recipe, dir)?;
            (DatasetKind::Folder, dir.clone())
        }
    };
    let train = datasets::open(kind, &root, Split::Train)?;
    let val = datasets::open(kind, &root, Split::Val)?;
    if val.classes != train.classes {
        return Err(Error::Config { key: "--data".into(), msg: format!("{}: the evaluation split's classes differ from the training split's", root.display()) });
    }
    let augment = recipe.train_transform().build().map_err(|e| Error::Config { key: "train.augment".into(), msg: e.to_string() })?;
    let eval = eval_transform_of(recipe.data.input_size, recipe.data.crop_pct, recipe.data.eval_interpolation)?;
    Ok((Arc::new(ClassificationSet::new(train, Some(augment), eval)), Arc::new(ClassificationSet::new(val, None, eval))))
}

/// timm's evaluation transform at `size` with `crop_pct` and `interpolation`.
///
/// # Errors
/// [`Error::Config`] for an invalid setting.
pub fn eval_transform_of(size: usize, crop_pct: f64, interpolation: vision::resize::Filter) -> Result<EvalTransform> {
    let eval = EvalTransform { size, crop_pct, interpolation, ..EvalTransform::default() };
    eval.validate().map_err(|e| Error::Config { key: "data".into(), msg: e.to_string() })?;
    Ok(eval)
}

/// Writes the recipe's synthetic set into `dir` unless it is there already.
fn generate_synthetic(recipe: &Recipe, dir: &Path) -> Result<()> {
    if dir.join("train").is_dir() && dir.join("val").is_dir() {
        return Ok(());
    }
    let cfg = recipe.data.synthetic.shapes_config(recipe.train.seed);
    coco::shapes::generate(&cfg, dir).map_err(|e| Error::Config { key: "data.synthetic".into(), msg: format!("generating {}: {e}", dir.display()) })?;
    Ok(())
}
