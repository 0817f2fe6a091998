//! Oxford Flowers-102 (<https://www.robots.ox.ac.uk/~vgg/data/flowers/102/>).
//!
//! Layout: `jpg/image_%05d.jpg` (from `102flowers.tgz`), `imagelabels.mat`
//! (`labels`: 1 x 8189, the 1-based class of image id i at position i) and
//! `setid.mat` (`trnid`, `valid`, `tstid`: image ids). As MAE-Lite's
//! `oxford_flowers.py`: train is `trnid` followed by `valid`, the
//! evaluation split is `tstid`, label = `labels[id - 1] - 1`, 102 classes.
//! torchvision's `Flowers102` reads the same files (its `train` and `val`
//! splits are `trnid` and `valid` separately). `--data` may also be the
//! folder torchvision is given, holding `flowers-102/`.
//!
//! The release has no class names (torchvision carries a list of its own),
//! so the classes are named by their number in `imagelabels.mat`, `"1"` to
//! `"102"`.

use std::path::Path;

use super::error::{parse_error, DatasetError, Result};
use super::files::{check_images_exist, find_root, require, whole_number};
use super::mat::MatFile;
use super::{ImageSource, LabeledImages, Split};

/// Number of classes of the release.
const NUM_CLASSES: usize = 102;
const LAYOUT: &str = "the Flowers-102 folder: jpg/, imagelabels.mat, setid.mat";

/// Reads one split of Flowers-102.
pub(crate) fn open(root: &Path, split: Split) -> Result<LabeledImages> {
    let dir = find_root(root, &["flowers-102"], "imagelabels.mat", LAYOUT)?;
    let labels_path = dir.join("imagelabels.mat");
    let setid_path = dir.join("setid.mat");
    require(&setid_path, "setid.mat (trnid, valid, tstid) beside imagelabels.mat")?;
    let images_dir = dir.join("jpg");
    require(&images_dir, "the jpg/ folder of 102flowers.tgz")?;

    let labels_mat = MatFile::read(&labels_path)?;
    let labels = integers(&labels_mat, "labels")?;
    let setid = MatFile::read(&setid_path)?;
    let ids: Vec<i64> = match split {
        Split::Train => [integers(&setid, "trnid")?, integers(&setid, "valid")?].concat(),
        Split::Val => integers(&setid, "tstid")?,
    };
    let mut items = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let label = usize::try_from(id)
            .ok()
            .and_then(|id| id.checked_sub(1))
            .and_then(|index| labels.get(index))
            .ok_or_else(|| DatasetError::LabelOutOfRange {
                path: setid_path.clone(),
                location: format!("{} id number {}", if split == Split::Train { "trnid/valid" } else { "tstid" }, i + 1),
                label: id,
                range: format!("an image id in 1..={} (the length of `labels` in imagelabels.mat)", labels.len()),
            })?;
        let class = usize::try_from(*label).ok().filter(|l| (1..=NUM_CLASSES).contains(l)).ok_or_else(|| DatasetError::LabelOutOfRange {
            path: labels_path.clone(),
            location: format!("`labels` of image {id}"),
            label: *label,
            range: format!("1..={NUM_CLASSES}"),
        })?;
        items.push((ImageSource::File(images_dir.join(format!("image_{id:05}.jpg"))), class - 1));
    }
    check_images_exist(&setid_path, &items)?;
    let classes = (1..=NUM_CLASSES).map(|c| c.to_string()).collect();
    Ok(LabeledImages { items, classes, root: dir })
}

/// The whole-number values of numeric variable `name`.
fn integers(file: &MatFile, name: &str) -> Result<Vec<i64>> {
    let values = file
        .get(name)?
        .numbers()
        .ok_or_else(|| parse_error(&file.path, format!("variable `{name}`"), "a numeric array"))?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| whole_number(v).ok_or_else(|| parse_error(&file.path, format!("variable `{name}`, element {}", i + 1), format!("a whole number, found {v}"))))
        .collect()
}
