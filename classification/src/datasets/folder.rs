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

use std::path::{Path, PathBuf};

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
        let mut files = list_images(&class_dir, true)?;
        if files.is_empty() {
            return Err(DatasetError::Layout {
                path: class_dir,
                expected: format!("image files ({}) in every class folder", IMAGE_EXTENSIONS.join(", ")),
            });
        }
        sort_like_os_walk(&mut files);
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

/// Orders files as `sorted(os.walk(top))` visits them: by their directory
/// compared as a string (so `a/b-c` precedes `a/b/d`), then by file name.
fn sort_like_os_walk(files: &mut [PathBuf]) {
    let key = |p: &PathBuf| {
        let dir = p.parent().map(|d| d.as_os_str().as_encoded_bytes().to_vec()).unwrap_or_default();
        let name = p.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
        (dir, name)
    };
    files.sort_by_cached_key(key);
}

/// torchvision's `IMG_EXTENSIONS`, compared case-insensitively.
const IMAGE_EXTENSIONS: [&str; 9] = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"];

// Stand-in for `vision::list::{list_images, is_image_file}` (branch
// vision-core): replace both with those once they land on main.
/// Whether `path`'s name ends in one of torchvision's image extensions.
fn is_image_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    IMAGE_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

// Stand-in for `vision::list::list_images` (see `is_image_file`).
/// The image files in `dir` (and below it if `recursive`), links followed,
/// in no particular order.
fn list_images(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(read_error(&current))? {
            let path = entry.map_err(read_error(&current))?.path();
            if path.is_dir() {
                if recursive {
                    pending.push(path);
                }
            } else if is_image_file(&path) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn os_walk_order_compares_directories_as_strings() {
        let mut files: Vec<PathBuf> = ["c/b/d/1.jpg", "c/b-c/0.jpg", "c/z.jpg", "c/b/2.jpg", "c/a.jpg"].iter().map(PathBuf::from).collect();
        sort_like_os_walk(&mut files);
        let got: Vec<_> = files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(got, ["c/a.jpg", "c/z.jpg", "c/b/2.jpg", "c/b-c/0.jpg", "c/b/d/1.jpg"]);
    }

    #[test]
    fn extensions_match_case_insensitively() {
        assert!(is_image_file(Path::new("x/IMG.JPEG")));
        assert!(is_image_file(Path::new("x/a.WebP")));
        assert!(!is_image_file(Path::new("x/a.gif")));
        assert!(!is_image_file(Path::new("x/jpg")));
    }
}
