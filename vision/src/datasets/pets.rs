//! Oxford-IIIT Pets (<https://www.robots.ox.ac.uk/~vgg/data/pets/>).
//!
//! Layout: `images/*.jpg` and `annotations/{trainval,test}.txt`, one image
//! per line as `NAME CLASS SPECIES BREED` (`CLASS` 1..=37), `#` lines being
//! comments (as in the release's `list.txt`). As MAE-Lite's
//! `oxford_pets.py` and torchvision's `OxfordIIITPet`: train is
//! `trainval.txt`, the evaluation split `test.txt`, label = `CLASS - 1`,
//! image `images/NAME.jpg`. `--data` may also be the folder torchvision is
//! given, holding `oxford-iiit-pet/`.
//!
//! Class names are torchvision's: the image name without its trailing
//! `_NUMBER`, its `_`-separated words title-cased and joined by spaces
//! (`american_pit_bull_terrier_12` -> `American Pit Bull Terrier`). They are
//! taken from both list files, so both splits get the same list and every
//! class 1..=max has a name; torchvision takes them from the split read,
//! which is the same list on the published release (every breed is in both).

use std::path::{Path, PathBuf};

use super::error::{parse_error, DatasetError, Result};
use super::files::{check_images_exist, find_root, lines, read_text};
use super::{ImageSource, LabeledImages, Split};

const LAYOUT: &str = "the Oxford-IIIT Pets folder: images/, annotations/trainval.txt, annotations/test.txt";
const LINE_FORMAT: &str = "`NAME CLASS SPECIES BREED` with CLASS a whole number >= 1";

/// One parsed list line.
struct Entry {
    name: String,
    class: usize,
}

/// Reads one split of Oxford-IIIT Pets.
pub(crate) fn open(root: &Path, split: Split) -> Result<LabeledImages> {
    let dir = find_root(root, &["oxford-iiit-pet"], "annotations/trainval.txt", LAYOUT)?;
    let annotations = dir.join("annotations");
    let trainval_path = annotations.join("trainval.txt");
    let test_path = annotations.join("test.txt");
    let trainval = read_list(&trainval_path)?;
    let test = read_list(&test_path)?;
    let classes = class_names(&[(&trainval_path, &trainval), (&test_path, &test)])?;
    let (list_path, entries) = match split {
        Split::Train => (trainval_path, trainval),
        Split::Val => (test_path, test),
    };
    let images_dir = dir.join("images");
    let items: Vec<(ImageSource, usize)> =
        entries.into_iter().map(|(_, e)| (ImageSource::File(images_dir.join(format!("{}.jpg", e.name))), e.class - 1)).collect();
    check_images_exist(&list_path, &items)?;
    Ok(LabeledImages { items, classes, root: dir })
}

/// Parses a list file.
fn read_list(path: &Path) -> Result<Vec<(usize, Entry)>> {
    let text = read_text(path, LAYOUT)?;
    lines(&text)
        .filter(|(_, l)| !l.starts_with('#'))
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, class, _species, _breed] = fields.as_slice() else {
                return Err(parse_error(path, format!("line {n}"), LINE_FORMAT));
            };
            let class: i64 = class.parse().map_err(|_| parse_error(path, format!("line {n}"), LINE_FORMAT))?;
            let class = usize::try_from(class).ok().filter(|&c| c >= 1).ok_or_else(|| DatasetError::LabelOutOfRange {
                path: path.to_path_buf(),
                location: format!("line {n}"),
                label: class,
                range: "a class >= 1".into(),
            })?;
            Ok((n, Entry { name: (*name).to_owned(), class }))
        })
        .collect()
}

/// Names classes 1..=max from the image names of every list.
fn class_names(lists: &[(&PathBuf, &Vec<(usize, Entry)>)]) -> Result<Vec<String>> {
    let count = lists.iter().flat_map(|(_, l)| l.iter().map(|(_, e)| e.class)).max().unwrap_or(0);
    let mut names: Vec<Option<String>> = vec![None; count];
    for (path, entries) in lists {
        for (n, entry) in entries.iter() {
            let breed = entry.name.rsplit_once('_').map_or(entry.name.as_str(), |(breed, _)| breed);
            let name = breed.split('_').map(title_case).collect::<Vec<_>>().join(" ");
            match &names[entry.class - 1] {
                Some(existing) if *existing != name => {
                    return Err(parse_error(
                        *path,
                        format!("line {n}"),
                        format!("class {} to be `{existing}` as on earlier lines, found an image of `{name}`", entry.class),
                    ))
                }
                Some(_) => {}
                None => names[entry.class - 1] = Some(name),
            }
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            n.ok_or_else(|| DatasetError::Layout {
                path: lists[0].0.parent().map(Path::to_path_buf).unwrap_or_default(),
                expected: format!("an image of every class 1..={count} in trainval.txt or test.txt (class {} has none)", i + 1),
            })
        })
        .collect()
}

/// Python's `str.title` for one word: a letter is upper-cased after a
/// non-letter and lower-cased after a letter.
fn title_case(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut after_letter = false;
    for c in word.chars() {
        if c.is_alphabetic() {
            if after_letter {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            after_letter = true;
        } else {
            out.push(c);
            after_letter = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn title_case_matches_python() {
        assert_eq!(title_case("british"), "British");
        assert_eq!(title_case("SHORThair"), "Shorthair");
        assert_eq!(title_case("a1b"), "A1B");
    }
}
