//! FGVC-Aircraft 2013b at the variant level
//! (<https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/>).
//!
//! Layout: `fgvc-aircraft-2013b/data/` with `images/*.jpg`,
//! `images_variant_{trainval,test}.txt` (`IMAGE_ID VARIANT NAME`, the name
//! possibly with spaces) and `variants.txt` (one variant per line). Train is
//! `trainval`, the evaluation split `test`. `--data` may be the dataset
//! folder, its `data/` folder or the folder holding `fgvc-aircraft-2013b/`
//! (torchvision's root).
//!
//! Class indices are torchvision's `FGVCAircraft`: positions in
//! `variants.txt`. MAE-Lite's `fgvc_aircraft.py` instead sorts the distinct
//! names of the split read (`np.unique`); on the published release the two
//! agree, because `variants.txt` is in sorted order and every variant
//! occurs in both splits. Reading `variants.txt` keeps train and test
//! indices the same on any subset.

use std::collections::HashMap;
use std::path::Path;

use super::error::{parse_error, DatasetError, Result};
use super::files::{check_images_exist, find_root, lines, read_text};
use super::{ImageSource, LabeledImages, Split};

const LAYOUT: &str = "the FGVC-Aircraft 2013b folder: data/images/, data/variants.txt, data/images_variant_{trainval,test}.txt";

/// Reads one split of FGVC-Aircraft (variants).
pub(crate) fn open(root: &Path, split: Split) -> Result<LabeledImages> {
    let data = find_root(root, &["data", "fgvc-aircraft-2013b/data"], "variants.txt", LAYOUT)?;
    let variants_path = data.join("variants.txt");
    let classes: Vec<String> = lines(&read_text(&variants_path, LAYOUT)?).map(|(_, l)| l.to_owned()).collect();
    let mut index = HashMap::with_capacity(classes.len());
    for (i, name) in classes.iter().enumerate() {
        if index.insert(name.as_str(), i).is_some() {
            return Err(parse_error(&variants_path, format!("variant `{name}`"), "each variant once"));
        }
    }
    let list_path = data.join(match split {
        Split::Train => "images_variant_trainval.txt",
        Split::Val => "images_variant_test.txt",
    });
    let images_dir = data.join("images");
    let mut items = Vec::new();
    for (n, line) in lines(&read_text(&list_path, LAYOUT)?) {
        let (id, variant) = line
            .split_once(' ')
            .map(|(id, v)| (id, v.trim()))
            .filter(|(id, v)| !id.is_empty() && !v.is_empty())
            .ok_or_else(|| parse_error(&list_path, format!("line {n}"), "`IMAGE_ID VARIANT NAME`"))?;
        let label = *index.get(variant).ok_or_else(|| DatasetError::Parse {
            path: list_path.clone(),
            location: format!("line {n}"),
            expected: format!("a variant listed in {}, found `{variant}`", variants_path.display()),
        })?;
        items.push((ImageSource::File(images_dir.join(format!("{id}.jpg"))), label));
    }
    check_images_exist(&list_path, &items)?;
    Ok(LabeledImages { items, classes, root: data.parent().unwrap_or(&data).to_path_buf() })
}
