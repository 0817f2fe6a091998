//! The folder layout of the shapes dataset, spelled once: [`super::generate`]
//! writes it, the detector's data discovery reads it, and the CLI probes for
//! an already generated copy with [`has_detection_dataset`].
//!
//! ```text
//! detection:       DIR/annotations/instances_{train,val}.json
//!                  DIR/{train,val}/000000.png ...
//! classification:  DIR/{train,val}/<class>/000000.png ...
//! ```

use std::path::{Path, PathBuf};

use super::ShapeKind;
use crate::Split;

/// The folder of the instances files under the dataset root.
const ANNOTATIONS_DIR: &str = "annotations";

/// The COCO instances file of a detection split: `DIR/annotations/instances_<split>.json`.
pub fn annotations_file(root: &Path, split: Split) -> PathBuf {
    annotations_dir(root).join(format!("instances_{}.json", split.name()))
}

/// The folder holding the instances files: `DIR/annotations`.
pub fn annotations_dir(root: &Path) -> PathBuf {
    root.join(ANNOTATIONS_DIR)
}

/// The image folder of a split (`DIR/<split>`): the detection images, or the
/// class folders of a classification set.
pub fn images_dir(root: &Path, split: Split) -> PathBuf {
    root.join(split.name())
}

/// The folder of one class of a classification split: `DIR/<split>/<class>`.
pub fn class_dir(root: &Path, split: Split, kind: ShapeKind) -> PathBuf {
    images_dir(root, split).join(kind.name())
}

/// Whether `root` already holds a generated detection dataset (its training
/// annotations exist), so a caller can reuse it instead of generating again.
pub fn has_detection_dataset(root: &Path) -> bool {
    annotations_file(root, Split::Train).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let root = Path::new("d");
        assert_eq!(annotations_file(root, Split::Val), Path::new("d/annotations/instances_val.json"));
        assert_eq!(images_dir(root, Split::Train), Path::new("d/train"));
        assert_eq!(class_dir(root, Split::Val, ShapeKind::Star), Path::new("d/val/star"));
    }
}
