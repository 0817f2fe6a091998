//! CIFAR-10 and CIFAR-100 (fine labels), from either published release.
//!
//! Layouts (<https://www.cs.toronto.edu/~kriz/cifar.html>):
//! - python: `cifar-10-batches-py/{data_batch_1..5, test_batch,
//!   batches.meta}` and `cifar-100-python/{train, test, meta}`, pickled
//!   dicts (see [`super::pickle`]) with `data` an `(N, 3072)` uint8 array,
//!   labels in `labels` / `fine_labels`, class names in `label_names` /
//!   `fine_label_names`. Read as torchvision's `datasets/cifar.py` reads
//!   them (`pickle.load(f, encoding="latin1")`), which MAE-Lite uses as is.
//! - binary: `cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin,
//!   batches.meta.txt}`, records of 1 label byte + 3072 pixel bytes, and
//!   `cifar-100-binary/{train.bin, test.bin, fine_label_names.txt}`,
//!   records of a coarse and a fine label byte + 3072.
//!
//! Both store each image channel-planar: 1024 red bytes, then green, then
//! blue, each 32x32 row-major. `--data` may name the extracted folder or
//! its parent; where the parent holds both releases the python one is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::RgbImage;

use super::error::{parse_error, DatasetError, Result};
use super::files::{lines, read_bytes, read_text};
use super::{pickle, ImageSource, LabeledImages, Split};

/// Side of a CIFAR image in pixels.
const SIDE: usize = 32;
/// Bytes of one image: 3 planes of 32x32.
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// Which of the two datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Cifar10,
    Cifar100,
}

/// The file names of one release of one variant.
struct Release {
    folder: &'static str,
    train: &'static [&'static str],
    test: &'static str,
    /// Class-name file.
    meta: &'static str,
    /// Pickle key of the labels (python release).
    labels_key: &'static str,
    /// Pickle key of the class names (python release).
    names_key: &'static str,
    /// Label bytes before the pixels, and which of them is the label (binary).
    label_bytes: usize,
}

static CIFAR10_PY: Release = Release {
    folder: "cifar-10-batches-py",
    train: &["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
    test: "test_batch",
    meta: "batches.meta",
    labels_key: "labels",
    names_key: "label_names",
    label_bytes: 0,
};
static CIFAR10_BIN: Release = Release {
    folder: "cifar-10-batches-bin",
    train: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test: "test_batch.bin",
    meta: "batches.meta.txt",
    labels_key: "",
    names_key: "",
    label_bytes: 1,
};
static CIFAR100_PY: Release = Release {
    folder: "cifar-100-python",
    train: &["train"],
    test: "test",
    meta: "meta",
    labels_key: "fine_labels",
    names_key: "fine_label_names",
    label_bytes: 0,
};
static CIFAR100_BIN: Release = Release {
    folder: "cifar-100-binary",
    train: &["train.bin"],
    test: "test.bin",
    meta: "fine_label_names.txt",
    labels_key: "",
    names_key: "",
    label_bytes: 2,
};

impl Release {
    fn is_binary(&self) -> bool {
        self.label_bytes > 0
    }

    fn describe(&self) -> String {
        let mut files: Vec<&str> = self.train.to_vec();
        files.extend([self.test, self.meta]);
        format!("{}/ with {}", self.folder, files.join(", "))
    }
}

/// The pixels of one CIFAR split, as the files store them, plus which file
/// each image came from.
#[derive(Clone)]
pub struct CifarImages {
    /// `len * 3072` bytes: per image, the R, G and B planes, each 32x32
    /// row-major.
    planar: Vec<u8>,
    /// `(file, number of images)` in order, for messages.
    sources: Vec<(PathBuf, usize)>,
}

impl CifarImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.planar.len() / IMAGE_BYTES
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.planar.is_empty()
    }

    /// Image `index` as an interleaved 32x32 RGB image (what torchvision's
    /// `data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)` gives).
    ///
    /// # Errors
    /// [`DatasetError::CifarIndex`] if `index >= len()`.
    pub fn image(&self, index: usize) -> Result<RgbImage> {
        let planes = self.planar.get(index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES).ok_or_else(|| DatasetError::CifarIndex {
            index,
            len: self.len(),
            source_file: self.sources.first().and_then(|(p, _)| p.parent()).map(Path::to_path_buf).unwrap_or_default(),
        })?;
        let plane = SIDE * SIDE;
        let mut data = Vec::with_capacity(IMAGE_BYTES);
        for p in 0..plane {
            data.extend([planes[p], planes[plane + p], planes[2 * plane + p]]);
        }
        Ok(RgbImage { height: SIDE, width: SIDE, data })
    }

    /// `file[record]` for image `index`.
    pub(crate) fn describe(&self, index: usize) -> String {
        let mut start = 0;
        for (path, count) in &self.sources {
            if index < start + count {
                return format!("{}[{}]", path.display(), index - start);
            }
            start += count;
        }
        format!("CIFAR image {index} (past the end of {start})")
    }
}

/// Shows the size and the source files, not the pixels (150 MB for a
/// training split).
impl std::fmt::Debug for CifarImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CifarImages").field("len", &self.len()).field("sources", &self.sources).finish()
    }
}

/// Reads one split of CIFAR-10 or CIFAR-100.
pub(crate) fn open(variant: Variant, root: &Path, split: Split) -> Result<LabeledImages> {
    let (py, bin) = match variant {
        Variant::Cifar10 => (&CIFAR10_PY, &CIFAR10_BIN),
        Variant::Cifar100 => (&CIFAR100_PY, &CIFAR100_BIN),
    };
    let (release, dir) = locate(root, py, bin)?;
    let meta_path = dir.join(release.meta);
    let classes = if release.is_binary() { text_names(&meta_path, release)? } else { pickled_names(&meta_path, release)? };
    let files: Vec<&str> = match split {
        Split::Train => release.train.to_vec(),
        Split::Val => vec![release.test],
    };
    let mut planar = Vec::new();
    let mut labels = Vec::new();
    let mut sources = Vec::new();
    for name in files {
        let path = dir.join(name);
        let bytes = read_bytes(&path, &format!("a CIFAR batch file of {}", release.describe()))?;
        let before = labels.len();
        if release.is_binary() {
            read_binary(&path, &bytes, release.label_bytes, &mut planar, &mut labels)?;
        } else {
            read_pickled(&path, &bytes, release.labels_key, &mut planar, &mut labels)?;
        }
        for (record, &label) in labels[before..].iter().enumerate() {
            if label >= classes.len() {
                return Err(DatasetError::LabelOutOfRange {
                    path: path.clone(),
                    location: format!("image {record}"),
                    label: label as i64,
                    range: format!("0..{} ({} class names in {})", classes.len(), classes.len(), release.meta),
                });
            }
        }
        sources.push((path, labels.len() - before));
    }
    let images = Arc::new(CifarImages { planar, sources });
    let items = labels.into_iter().enumerate().map(|(index, label)| (ImageSource::Cifar { images: images.clone(), index }, label)).collect();
    Ok(LabeledImages { items, classes, root: dir })
}

/// Finds the release folder: `root` itself, `root/<python folder>` or
/// `root/<binary folder>`, python first. A folder counts as a release once
/// it holds any of the release's files, so an incomplete one is reported by
/// the file it lacks.
fn locate(root: &Path, py: &'static Release, bin: &'static Release) -> Result<(&'static Release, PathBuf)> {
    for dir in [root.to_path_buf(), root.join(py.folder), root.join(bin.folder)] {
        for release in [py, bin] {
            if release.train.iter().chain([&release.test, &release.meta]).any(|name| dir.join(name).is_file()) {
                return Ok((release, dir));
            }
        }
    }
    Err(DatasetError::Missing {
        path: root.join(py.folder),
        expected: format!("{} (python release) or {} (binary release)", py.describe(), bin.describe()),
    })
}

/// Appends the images and labels of one binary batch file.
fn read_binary(path: &Path, bytes: &[u8], label_bytes: usize, planar: &mut Vec<u8>, labels: &mut Vec<usize>) -> Result<()> {
    let record = label_bytes + IMAGE_BYTES;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(parse_error(
            path,
            format!("size {} bytes", bytes.len()),
            format!("a whole number of {record}-byte records ({label_bytes} label byte(s) + {IMAGE_BYTES} pixels); the file is truncated or not of this release"),
        ));
    }
    planar.reserve(bytes.len() / record * IMAGE_BYTES);
    for chunk in bytes.chunks_exact(record) {
        // CIFAR-100 records hold the coarse label, then the fine one.
        labels.push(usize::from(chunk[label_bytes - 1]));
        planar.extend_from_slice(&chunk[label_bytes..]);
    }
    Ok(())
}

/// Appends the images and labels of one pickled batch.
fn read_pickled(path: &Path, bytes: &[u8], labels_key: &str, planar: &mut Vec<u8>, labels: &mut Vec<usize>) -> Result<()> {
    let batch = pickle::load(path, bytes)?;
    let data = batch.get("data").ok_or_else(|| parse_error(path, "key `data`", "a pickled dict with `data`"))?;
    let (shape, pixels) = data.u8_array().map_err(|found| parse_error(path, "key `data`", found))?;
    let count = match shape.as_slice() {
        [n, IMAGE_BYTES] => *n,
        _ => return Err(parse_error(path, "key `data`", format!("an array of shape (N, {IMAGE_BYTES}), found {shape:?}"))),
    };
    let label_values = batch
        .get(labels_key)
        .and_then(pickle::Value::items)
        .ok_or_else(|| parse_error(path, format!("key `{labels_key}`"), "a list of labels"))?;
    if label_values.len() != count {
        return Err(parse_error(path, format!("key `{labels_key}`"), format!("{count} labels, one per row of `data`, found {}", label_values.len())));
    }
    for (i, v) in label_values.iter().enumerate() {
        let label = v.int().ok_or_else(|| parse_error(path, format!("key `{labels_key}`, item {i}"), "an int"))?;
        let label = usize::try_from(label).map_err(|_| DatasetError::LabelOutOfRange {
            path: path.to_path_buf(),
            location: format!("image {i}"),
            label,
            range: "a non-negative class index".into(),
        })?;
        labels.push(label);
    }
    planar.extend_from_slice(&pixels);
    Ok(())
}

/// Class names from a pickled meta file.
fn pickled_names(path: &Path, release: &Release) -> Result<Vec<String>> {
    let bytes = read_bytes(path, &format!("the class names of {}", release.describe()))?;
    let meta = pickle::load(path, &bytes)?;
    let key = release.names_key;
    let names = meta.get(key).and_then(pickle::Value::items).ok_or_else(|| parse_error(path, format!("key `{key}`"), "a list of class names"))?;
    names
        .iter()
        .enumerate()
        .map(|(i, n)| n.text().ok_or_else(|| parse_error(path, format!("key `{key}`, item {i}"), "a string")))
        .collect()
}

/// Class names from a binary release's text file: one per non-blank line.
fn text_names(path: &Path, release: &Release) -> Result<Vec<String>> {
    let text = read_text(path, &format!("the class names of {}", release.describe()))?;
    let names: Vec<String> = lines(&text).map(|(_, l)| l.to_owned()).collect();
    if names.is_empty() {
        return Err(parse_error(path, "line 1", "one class name per line"));
    }
    Ok(names)
}
