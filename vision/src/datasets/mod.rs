//! Readers for the classification datasets in their published on-disk
//! layouts: ImageNet and any class-per-folder tree, CIFAR-10/100 (python
//! and binary releases), Oxford Flowers-102, Oxford-IIIT Pets,
//! FGVC-Aircraft 2013b (variants), Stanford Cars (car196) and iNaturalist
//! 2018.
//!
//! [`open`] builds an index, `(image, label)` pairs plus class names, the
//! same as torchvision's dataset class for that release (MAE-Lite's
//! `mae_lite/data/datasets/*.py` where MAE-Lite defines the semantics:
//! Flowers' train split, iNat's class ids). Images are not decoded when
//! the index is built: [`ImageSource::load`] decodes a file or reads a CIFAR
//! record (kept in memory as the files store them, [`CifarImages`]) when the
//! loader asks for it. [`ClassificationSet`] pairs an index with its
//! transforms as the loader's [`crate::loader::Dataset`]; classification
//! fine-tuning and evaluation and pre-training's k-NN monitor read splits
//! through it.
//!
//! Every listed image file is checked to exist when the index is built (a
//! `stat` per file, run in parallel): an incomplete download is reported at
//! start-up, in one line naming the list file, rather than hours into a
//! run. Whether a file decodes is left to load time.
//!
//! Each reader's module documents its layout, its reference and any
//! deliberate difference; `vision/tests/datasets.rs` compares every
//! reader with torchvision's classes (or scipy plus MAE-Lite's logic) on
//! fixtures written by `tests/fixtures/make_dataset_fixtures.py`.

mod aircraft;
mod cars;
mod cifar;
mod error;
mod files;
mod flowers;
mod folder;
mod inat;
pub mod mat;
mod pets;
mod pickle;
mod set;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

pub use cifar::CifarImages;
pub use error::{DatasetError, Result};
pub use set::{ClassificationSet, ClsBatch, ClsSample};

/// The datasets the readers know, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// ImageNet-1k as ILSVRC2012 sorted into class folders: `train/`, `val/`.
    ImageNet,
    /// Any class-per-folder tree with `train/` and `val/` (torchvision's
    /// `ImageFolder`).
    Folder,
    /// CIFAR-10, python (`cifar-10-batches-py`) or binary (`-bin`) release.
    Cifar10,
    /// CIFAR-100 (fine labels), python (`cifar-100-python`) or binary release.
    Cifar100,
    /// Oxford Flowers-102 (`jpg/`, `imagelabels.mat`, `setid.mat`).
    Flowers,
    /// Oxford-IIIT Pets (`images/`, `annotations/{trainval,test}.txt`).
    Pets,
    /// FGVC-Aircraft 2013b at the variant level.
    Aircraft,
    /// Stanford Cars, the combined car196 release (`cars_annos.mat`, `car_ims/`).
    Cars,
    /// iNaturalist 2018 (`train2018.json`, `val2018.json`, `categories.json`).
    Inat18,
}

impl DatasetKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [DatasetKind; 9] = [
        Self::ImageNet,
        Self::Folder,
        Self::Cifar10,
        Self::Cifar100,
        Self::Flowers,
        Self::Pets,
        Self::Aircraft,
        Self::Cars,
        Self::Inat18,
    ];

    /// The command-line name (`--dataset NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ImageNet => "imagenet",
            Self::Folder => "folder",
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Flowers => "flowers",
            Self::Pets => "pets",
            Self::Aircraft => "aircraft",
            Self::Cars => "cars",
            Self::Inat18 => "inat18",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = DatasetError;

    /// Parses a command-line name.
    ///
    /// # Errors
    /// [`DatasetError::UnknownDataset`] listing the valid names.
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| DatasetError::UnknownDataset {
            name: s.to_owned(),
            valid: Self::ALL.map(Self::name).join(", "),
        })
    }
}

/// Recipes name a kind as the CLI does (`dataset = "flowers"`).
impl serde::Serialize for DatasetKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Parsed by [`DatasetKind::from_str`]: an unknown name lists the valid ones.
impl<'de> serde::Deserialize<'de> for DatasetKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Which split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (Flowers: `trnid` then `valid`; Pets, Aircraft:
    /// `trainval`).
    Train,
    /// The split each dataset is evaluated on: `val/` for folder trees,
    /// the test set for CIFAR, Flowers, Pets, Aircraft and Cars, `val2018`
    /// for iNat.
    Val,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
        })
    }
}

/// Where one image comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// An image file, to be decoded by the `vision` loader.
    File(PathBuf),
    /// Image `index` of an in-memory CIFAR split.
    Cifar {
        /// The split's pixels, shared by all its items.
        images: Arc<CifarImages>,
        /// Position within `images`.
        index: usize,
    },
}

impl ImageSource {
    /// What to call this image in messages: the file's path, or for CIFAR
    /// the batch file and the record within it (`.../data_batch_3[17]`).
    pub fn path_or_label(&self) -> String {
        match self {
            ImageSource::File(path) => path.display().to_string(),
            ImageSource::Cifar { images, index } => images.describe(*index),
        }
    }

    /// The image's pixels: the file decoded upright, or the CIFAR record.
    ///
    /// # Errors
    /// [`crate::Error::Decode`] for a file that cannot be read or decoded;
    /// [`crate::Error::BadSample`] for a CIFAR index past its split.
    pub fn load(&self) -> crate::Result<crate::RgbImage> {
        match self {
            ImageSource::File(path) => crate::decode::decode_upright(path),
            ImageSource::Cifar { images, index } => {
                images.image(*index).map_err(|e| crate::Error::BadSample { path: PathBuf::from(self.path_or_label()), reason: e.to_string() })
            }
        }
    }
}

/// A dataset split's index: every image with its class, and the class names.
#[derive(Debug, Clone)]
pub struct LabeledImages {
    /// `(image, class index)` in the reference's order.
    pub items: Vec<(ImageSource, usize)>,
    /// Class names; `items`' labels index this list.
    pub classes: Vec<String>,
    /// The dataset folder actually read (after resolving `--data`).
    pub root: PathBuf,
}

impl LabeledImages {
    /// Number of classes the model needs to predict.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
}

/// Reads the index of one split of a dataset stored at `root` in its
/// published layout (each reader also accepts the folder that torchvision
/// would be given, i.e. the parent of the extracted folder, where the two
/// differ).
///
/// # Errors
/// One [`DatasetError`] naming the file and what was expected there: a
/// missing file or folder, a malformed file, a label out of range, or
/// listed images that do not exist.
pub fn open(kind: DatasetKind, root: &Path, split: Split) -> Result<LabeledImages> {
    match kind {
        DatasetKind::ImageNet | DatasetKind::Folder => folder::open(root, split),
        DatasetKind::Cifar10 => cifar::open(cifar::Variant::Cifar10, root, split),
        DatasetKind::Cifar100 => cifar::open(cifar::Variant::Cifar100, root, split),
        DatasetKind::Flowers => flowers::open(root, split),
        DatasetKind::Pets => pets::open(root, split),
        DatasetKind::Aircraft => aircraft::open(root, split),
        DatasetKind::Cars => cars::open(root, split),
        DatasetKind::Inat18 => inat::open(root, split),
    }
}
