//! Finding a detection dataset on disk: which annotation file and which image
//! directory belong to each split.
//!
//! Two layouts are recognised under `--data DIR`:
//!
//! | layout | annotations | images |
//! |---|---|---|
//! | COCO 2017 | `DIR/annotations/instances_{train,val}2017.json` | `DIR/{train,val}2017/` |
//! | `vitdet data shapes` ([`coco::shapes::layout`]) | `DIR/annotations/instances_{train,val}.json` | `DIR/{train,val}/` |
//!
//! A layout may hold only one of the two splits (an evaluation-only copy of
//! COCO val); asking for the missing one is an error that names the file
//! looked for. Explicit annotation / image-directory pairs bypass discovery
//! ([`SplitFiles::explicit`]). Every failure is an [`Error::DataLayout`] naming
//! the path and what was expected there (a user error: exit code 2).

use std::path::{Path, PathBuf};

use coco::shapes::layout as shapes_layout;
use coco::Split;

use crate::{Error, Result};

/// Which on-disk convention a dataset directory follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutKind {
    /// COCO 2017 (`instances_train2017.json`, `train2017/`).
    Coco2017,
    /// What `vitdet data shapes` writes (`instances_train.json`, `train/`).
    Shapes,
}

impl LayoutKind {
    /// The split's annotation file and image directory under `dir`.
    fn paths(self, dir: &Path, split: Split) -> SplitFiles {
        match self {
            LayoutKind::Coco2017 => {
                let stem = format!("{}2017", split.name());
                SplitFiles {
                    annotations: dir.join("annotations").join(format!("instances_{stem}.json")),
                    images: dir.join(stem),
                }
            }
            LayoutKind::Shapes => SplitFiles {
                annotations: shapes_layout::annotations_file(dir, split),
                images: shapes_layout::images_dir(dir, split),
            },
        }
    }
}

/// The annotation file and image directory of one split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitFiles {
    /// The COCO instances JSON.
    pub annotations: PathBuf,
    /// The directory the JSON's `file_name`s are relative to.
    pub images: PathBuf,
}

impl SplitFiles {
    /// An explicit pair (`--train-json` / `--train-images` style flags),
    /// checked to exist.
    ///
    /// # Errors
    /// [`Error::DataLayout`] if `annotations` is not a file or `images` not a
    /// directory.
    pub fn explicit(annotations: &Path, images: &Path) -> Result<Self> {
        let files = SplitFiles { annotations: annotations.to_path_buf(), images: images.to_path_buf() };
        files.check()?;
        Ok(files)
    }

    /// Both paths exist with the right kinds.
    fn check(&self) -> Result<()> {
        if !self.annotations.is_file() {
            return Err(Error::DataLayout {
                path: self.annotations.clone(),
                expected: "expected a COCO instances JSON file; not found".into(),
            });
        }
        if !self.images.is_dir() {
            return Err(Error::DataLayout {
                path: self.images.clone(),
                expected: format!(
                    "expected the image directory of {}; not found",
                    self.annotations.display()
                ),
            });
        }
        Ok(())
    }
}

/// A discovered dataset directory: its convention and the splits present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLayout {
    /// The directory given.
    pub root: PathBuf,
    /// The convention it follows.
    pub kind: LayoutKind,
    /// The training split, if its annotation file exists.
    pub train: Option<SplitFiles>,
    /// The validation split, if its annotation file exists.
    pub val: Option<SplitFiles>,
}

impl DataLayout {
    /// Tells the COCO 2017 layout from the shapes layout under `dir` (see the
    /// module doc). A split counts as present when its annotation file exists;
    /// its image directory must then exist too.
    ///
    /// # Errors
    /// [`Error::DataLayout`] if `dir` is not a directory, if neither layout's
    /// annotation files are there, or if a present split lacks its image
    /// directory.
    pub fn discover(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::DataLayout { path: dir.to_path_buf(), expected: "expected a dataset directory; not found".into() });
        }
        for kind in [LayoutKind::Coco2017, LayoutKind::Shapes] {
            let present = |split| {
                let files = kind.paths(dir, split);
                files.annotations.is_file().then_some(files)
            };
            let (train, val) = (present(Split::Train), present(Split::Val));
            if train.is_none() && val.is_none() {
                continue;
            }
            for files in train.iter().chain(val.iter()) {
                files.check()?;
            }
            return Ok(DataLayout { root: dir.to_path_buf(), kind, train, val });
        }
        Err(Error::DataLayout {
            path: dir.to_path_buf(),
            expected: "expected annotations/instances_{train,val}2017.json with {train,val}2017/ (COCO 2017) \
                       or annotations/instances_{train,val}.json with {train,val}/ (vitdet data shapes)"
                .into(),
        })
    }

    /// The files of one split.
    ///
    /// # Errors
    /// [`Error::DataLayout`] naming the annotation file that was looked for if
    /// the split is absent.
    pub fn split(&self, split: Split) -> Result<&SplitFiles> {
        let found = match split {
            Split::Train => self.train.as_ref(),
            Split::Val => self.val.as_ref(),
        };
        found.ok_or_else(|| Error::DataLayout {
            path: self.kind.paths(&self.root, split).annotations,
            expected: format!("expected the {} split's annotation file; not found", split.name()),
        })
    }
}
