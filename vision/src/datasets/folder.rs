//! Class-per-folder trees (`DIR/train/CLASS/**/IMAGE`, `DIR/val/...`):
//! ImageNet sorted into class folders, and any dataset laid out that way.
//!
//! Mirrors torchvision's `datasets/folder.py`: the classes are the sorted
//! names of the split folder's subfolders (`find_classes`); the images are
//! every file under a class folder, recursively and following links, whose
//! name ends in one of `IMG_EXTENSIONS` (case-insensitive); they are listed
//! in `sorted(os.walk(class_dir))` order, i.e. grouped by directory with
//! directories compared as path strings and files sorted by name
//! (`make_dataset`); a class folder without images is an error.
//!
//! One deliberate difference: `val/` takes its class list from `train/`
//! when `train/` exists, so a validation folder that lacks a class keeps
//! the training indices (torchvision, given `val/` alone, would renumber
//! every class after the missing one). A `val/` class that `train/` lacks
//! is an error. With the same class folders in both, as in ImageNet, the
//! result is torchvision's exactly.

use std::path::Path;

use crate::list::{is_image_file, list_images, IMAGE_EXTENSIONS};

use super::error::{read_error, DatasetError, Result};
use super::{ImageSource, LabeledImages, Split};

/// How the layout is described in errors.
const LAYOUT: &str = "`train/` and `val/` folders, each with one subfolder of images per class";

/// Reads `root/train` or `root/val`.
pub(crate) fn open(root: &Path, split: Split) -> Result<LabeledImages> {
    let split_dir = root.join(split.to_string());
    if !split_dir.is_dir() {
        return Err(DatasetError::Missing { path: split_dir, expected: LAYOUT.into() });
    }
    let own_classes = class_folders(&split_dir)?;
    let train_dir = root.join(Split::Train.to_string());
    let classes = if split == Split::Val && train_dir.is_dir() {
        let train_classes = class_folders(&train_dir)?;
        if let Some(extra) = own_classes.iter().find(|c| !train_classes.contains(c)) {
            return Err(DatasetError::Layout {
                path: split_dir.join(extra),
                expected: format!("only class folders that {} also has", train_dir.display()),
            });
        }
        train_classes
    } else {
        own_classes.clone()
    };
    let mut items = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = split_dir.join(class);
        if !own_classes.contains(class) {
            continue;
        }
        // vision's lister walks the folder in torchvision's make_dataset order.
        let files = list_images(&class_dir, true).map_err(|e| match e {
            crate::Error::NoImages { .. } => DatasetError::Layout {
                path: class_dir.clone(),
                expected: format!("image files (.{}) in every class folder", IMAGE_EXTENSIONS.join(", .")),
            },
            crate::Error::ReadDir { path, source } => DatasetError::Read { path, source },
            other => DatasetError::Layout { path: class_dir.clone(), expected: other.to_string() },
        })?;
        items.extend(files.into_iter().map(|f| (ImageSource::File(f), label)));
    }
    Ok(LabeledImages { items, classes, root: root.to_path_buf() })
}

/// The sorted names of the subfolders of `dir` (links followed).
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    let mut loose_images = false;
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let path = entry.map_err(read_error(dir))?.path();
        if path.is_dir() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            classes.push(name);
        } else if is_image_file(&path) {
            loose_images = true;
        }
    }
    if classes.is_empty() {
        let hint = if loose_images {
            " (it holds images directly: sort them into class folders first, e.g. ImageNet's validation images by their synset)"
        } else {
            ""
        };
        return Err(DatasetError::Layout { path: dir.to_path_buf(), expected: format!("one subfolder of images per class{hint}") });
    }
    // Python sorts str by code point, which is UTF-8 byte order.
    classes.sort_unstable();
    Ok(classes)
}
