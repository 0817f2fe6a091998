//! Stanford Cars, the combined car196 release
//! (<https://ai.stanford.edu/~jkrause/cars/car_dataset.html>).
//!
//! Layout: `cars_annos.mat` and the `car_ims/` folder of `car_ims.tgz`. The
//! MAT-file holds `annotations`, a 1 x 16185 struct array with fields
//! `relative_im_path` (`car_ims/000001.jpg`), `bbox_x1..bbox_y2`, `class`
//! (1-based) and `test` (1 for the test split), and `class_names`, a
//! 1 x 196 cell array of names. As MAE-Lite's `stanford_cars.py`: train is
//! every annotation with `test == 0`, the evaluation split those with
//! `test != 0`, label = `class - 1`, in file order. MAE-Lite picks the
//! fields by position (first, second-to-last, last); they are read here by
//! name, which is the same on the release.
//!
//! torchvision's `StanfordCars` reads the separate train/test release
//! (`cars_train/`, devkit), which is not this layout.

use std::path::Path;

use super::error::{parse_error, DatasetError, Result};
use super::files::{check_images_exist, find_root, whole_number};
use super::mat::{MatArray, MatFile};
use super::{ImageSource, LabeledImages, Split};

const LAYOUT: &str = "the Stanford Cars (car196) folder: cars_annos.mat and car_ims/";

/// Reads one split of Stanford Cars.
pub(crate) fn open(root: &Path, split: Split) -> Result<LabeledImages> {
    let dir = find_root(root, &[], "cars_annos.mat", LAYOUT)?;
    let path = dir.join("cars_annos.mat");
    let mat = MatFile::read(&path)?;
    let classes: Vec<String> = {
        let names = mat.get("class_names")?;
        let cells = names.cells().ok_or_else(|| parse_error(&path, "variable `class_names`", "a cell array of class names"))?;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| c.text().ok_or_else(|| parse_error(&path, format!("`class_names` cell {}", i + 1), "a char row")))
            .collect::<Result<_>>()?
    };
    let annotations = mat.get("annotations")?;
    if annotations.field_names().is_none() {
        return Err(parse_error(&path, "variable `annotations`", "a struct array"));
    }
    let want_test = split == Split::Val;
    let mut items = Vec::new();
    for i in 0..annotations.numel() {
        let location = |field: &str| format!("`annotations({})`.{field}", i + 1);
        let field = |name: &str| annotations.field(i, name).ok_or_else(|| parse_error(&path, location(name), "the field to exist"));
        let scalar = |name: &str| -> Result<i64> {
            field(name)?
                .numbers()
                .and_then(|v| match v {
                    [x] => whole_number(*x),
                    _ => None,
                })
                .ok_or_else(|| parse_error(&path, location(name), "one whole number"))
        };
        if (scalar("test")? != 0) != want_test {
            continue;
        }
        let class = scalar("class")?;
        let label = usize::try_from(class)
            .ok()
            .filter(|c| (1..=classes.len()).contains(c))
            .ok_or_else(|| DatasetError::LabelOutOfRange {
                path: path.clone(),
                location: location("class"),
                label: class,
                range: format!("1..={} (the number of `class_names`)", classes.len()),
            })?;
        let relative = field("relative_im_path").map(MatArray::text)?.ok_or_else(|| parse_error(&path, location("relative_im_path"), "a char row"))?;
        items.push((ImageSource::File(dir.join(relative)), label - 1));
    }
    check_images_exist(&path, &items)?;
    Ok(LabeledImages { items, classes, root: dir })
}
