//! iNaturalist 2018 (<https://github.com/visipedia/inat_comp/tree/master/2018>).
//!
//! Layout: `train2018.json`, `val2018.json` (COCO-style: `images` with
//! `file_name` such as `train_val2018/Plantae/7477/abc.jpg`, `annotations`
//! with `category_id`), `categories.json` (a list of categories, each with
//! a `name`) and the extracted `train_val2018/` tree. Semantics are
//! MAE-Lite's `INatDataset` (`inaturalist.py`, the DeiT loader):
//! - class ids: walking `train2018.json`'s `annotations` in order, the name
//!   `categories[category_id]["name"]` gets the next id the first time it
//!   appears (so ids follow first appearance in the train annotations, and
//!   the val split uses the same mapping);
//! - each image's category is the third `/`-separated part of its
//!   `file_name`, mapped through `categories[...]["name"]`;
//! - `categories.json` is indexed by position, as MAE-Lite indexes it.
//!
//! The JSON files are parsed into typed structs holding only these fields
//! (everything else is skipped unparsed), from one read of each file.

use std::collections::HashMap;
use std::path::Path;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::error::{parse_error, DatasetError, Result};
use super::files::{check_images_exist, find_root, read_bytes};
use super::{ImageSource, LabeledImages, Split};

const LAYOUT: &str = "the iNaturalist 2018 folder: train2018.json, val2018.json, categories.json and train_val2018/";

/// The parts of a COCO-style annotation file read here; `I`/`A` are
/// [`IgnoredAny`] where a field is not needed.
#[derive(Deserialize)]
struct AnnotationFile<I, A> {
    #[serde(default)]
    images: I,
    #[serde(default)]
    annotations: A,
}

#[derive(Deserialize)]
struct Image {
    file_name: String,
}

#[derive(Deserialize)]
struct Annotation {
    category_id: u64,
}

#[derive(Deserialize)]
struct Category {
    name: String,
}

/// Reads one split of iNaturalist 2018.
pub(crate) fn open(root: &Path, split: Split) -> Result<LabeledImages> {
    let dir = find_root(root, &[], "train2018.json", LAYOUT)?;
    let train_path = dir.join("train2018.json");
    let categories_path = dir.join("categories.json");
    let categories: Vec<Category> = parse_json(&categories_path)?;
    let (images_path, images, annotations) = match split {
        Split::Train => {
            let file: AnnotationFile<Vec<Image>, Vec<Annotation>> = parse_json(&train_path)?;
            (train_path.clone(), file.images, file.annotations)
        }
        Split::Val => {
            let train: AnnotationFile<IgnoredAny, Vec<Annotation>> = parse_json(&train_path)?;
            let val_path = dir.join("val2018.json");
            let val: AnnotationFile<Vec<Image>, IgnoredAny> = parse_json(&val_path)?;
            (val_path, val.images, train.annotations)
        }
    };
    let name_of = |id: u64, path: &Path, location: String| -> Result<&str> {
        usize::try_from(id).ok().and_then(|i| categories.get(i)).map(|c| c.name.as_str()).ok_or_else(|| DatasetError::LabelOutOfRange {
            path: path.to_path_buf(),
            location,
            label: id as i64,
            range: format!("a position in {} (0..{})", categories_path.display(), categories.len()),
        })
    };
    let mut class_ids: HashMap<&str, usize> = HashMap::new();
    let mut classes: Vec<String> = Vec::new();
    for (i, annotation) in annotations.iter().enumerate() {
        let name = name_of(annotation.category_id, &train_path, format!("annotations[{i}].category_id"))?;
        class_ids.entry(name).or_insert_with(|| {
            classes.push(name.to_owned());
            classes.len() - 1
        });
    }
    let mut items = Vec::with_capacity(images.len());
    for (i, image) in images.iter().enumerate() {
        let location = || format!("images[{i}].file_name `{}`", image.file_name);
        let category: u64 = image
            .file_name
            .split('/')
            .nth(2)
            .and_then(|part| part.trim().parse().ok())
            .ok_or_else(|| parse_error(&images_path, location(), "a path whose third part is the category id (`train_val2018/KINGDOM/ID/FILE.jpg`)"))?;
        let name = name_of(category, &images_path, location())?;
        let label = *class_ids.get(name).ok_or_else(|| {
            parse_error(&images_path, location(), format!("a category whose name (`{name}`) appears in the annotations of {}", train_path.display()))
        })?;
        items.push((ImageSource::File(dir.join(&image.file_name)), label));
    }
    check_images_exist(&images_path, &items)?;
    Ok(LabeledImages { items, classes, root: dir })
}

/// Parses a whole JSON file into `T`.
fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = read_bytes(path, LAYOUT)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        parse_error(path, format!("line {}, column {}", e.line(), e.column()), format!("the iNaturalist JSON layout ({message})"))
    })
}
