//! A validated COCO instances file: [`Dataset::load`] parses, checks and
//! indexes it, and returns a [`LoadReport`] of the recoverable problems.
//!
//! What is checked, and how bad it is:
//!
//! | problem | outcome |
//! |---|---|
//! | unreadable file, malformed JSON, wrong field type | [`Error::Read`] / [`Error::Json`] (with line and column) |
//! | two images with one id | [`Warning::DuplicateImageId`]: the last entry is the image, evaluated once (pycocotools' `imgs` dict) |
//! | two categories with one id | [`Warning::DuplicateCategoryId`]: evaluated once (`COCOeval.evaluate` takes `np.unique`) |
//! | an annotation on an undeclared image or category | [`Warning::UnknownImage`] / [`Warning::UnknownCategory`]: never evaluated (pycocotools never lists it) |
//! | two annotations with one id | [`Warning::DuplicateAnnId`]: evaluation uses the last one in place of each ([`Dataset::evaluated_annotation`]) |
//! | an annotation with id 0 | [`Warning::ZeroAnnId`]: pycocotools' match arrays use 0 for "unmatched", so a detection matched to it counts as a false positive; the evaluator reproduces this |
//! | a box outside its image, or with w or h <= 0 | [`Warning::BboxOutsideImage`] / [`Warning::DegenerateBbox`] |
//! | no segmentation, or an empty one | [`Warning::EmptySegmentation`] |
//! | a segmentation pycocotools cannot rasterise (odd coordinate count, a first polygon of at most 4 numbers, an RLE whose size is not the image's or whose counts do not cover it) | [`Warning::MalformedSegmentation`]; a segm evaluation then fails on that annotation |
//! | an `ignore` flag that differs from `iscrowd` | [`Warning::IgnoreOverridden`] (pycocotools overwrites it, quirk D1) |
//! | image files missing from the image directory | [`Warning::MissingImageFiles`] |
//!
//! Every message names the file, the count and the first offending ids.
//! Ids are looked up as pycocotools' dicts look them up: the last entry with
//! an id is the one [`Dataset::image`] and [`Dataset::category`] return.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::types::{AnnId, Annotation, Category, CategoryId, ImageId, ImageInfo, InstancesFile, Segmentation};
use crate::Error;

/// A parsed, validated instances file with id lookups.
#[derive(Debug, Clone)]
pub struct Dataset {
    path: PathBuf,
    file: InstancesFile,
    image_index: HashMap<ImageId, usize>,
    category_index: HashMap<CategoryId, usize>,
    /// For each annotation, the last one with its id; `None` when ids are unique.
    last_with_id: Option<Vec<u32>>,
}

/// The recoverable problems found while loading; print them, then go on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// One entry per kind of problem, each with its count and first ids.
    pub warnings: Vec<Warning>,
}

/// A recoverable problem of an instances file (see the module table).
#[derive(Debug, Clone, PartialEq)]
pub enum Warning {
    /// Images sharing an id with an earlier one (the last entry is used).
    DuplicateImageId {
        /// The instances file.
        path: PathBuf,
        /// How many entries repeat an earlier id.
        count: usize,
        /// The first repeated id.
        first: ImageId,
    },
    /// Categories sharing an id with an earlier one (evaluated once).
    DuplicateCategoryId {
        /// The instances file.
        path: PathBuf,
        /// How many entries repeat an earlier id.
        count: usize,
        /// The first repeated id.
        first: CategoryId,
    },
    /// Annotations on an image id that `images` does not declare.
    UnknownImage {
        /// The instances file.
        path: PathBuf,
        /// How many annotations.
        count: usize,
        /// The first one.
        ann_id: AnnId,
        /// Its image id.
        image_id: ImageId,
    },
    /// Annotations of a category id that `categories` does not declare.
    UnknownCategory {
        /// The instances file.
        path: PathBuf,
        /// How many annotations.
        count: usize,
        /// The first one.
        ann_id: AnnId,
        /// Its category id.
        category_id: CategoryId,
    },
    /// Annotations sharing an id with an earlier one.
    DuplicateAnnId {
        /// The instances file.
        path: PathBuf,
        /// How many repeat an earlier id.
        count: usize,
        /// The first repeated id.
        first: AnnId,
    },
    /// Annotations with id 0.
    ZeroAnnId {
        /// The instances file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// Image of the first one.
        first_image: ImageId,
    },
    /// Boxes that extend past their image.
    BboxOutsideImage {
        /// The instances file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first one.
        first: AnnId,
    },
    /// Boxes with width or height <= 0 (or not finite).
    DegenerateBbox {
        /// The instances file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first one.
        first: AnnId,
    },
    /// Annotations with no segmentation or an empty one.
    EmptySegmentation {
        /// The instances file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first one.
        first: AnnId,
    },
    /// Segmentations pycocotools cannot rasterise.
    MalformedSegmentation {
        /// The instances file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first one.
        first: AnnId,
        /// What is wrong with the first one.
        reason: String,
    },
    /// `ignore` flags that disagree with `iscrowd` (pycocotools uses `iscrowd`).
    IgnoreOverridden {
        /// The instances file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first one.
        first: AnnId,
    },
    /// Image files not found under the image directory.
    MissingImageFiles {
        /// The image directory.
        dir: PathBuf,
        /// How many.
        count: usize,
        /// The first missing file name.
        first: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::DuplicateImageId { path, count, first } => write!(
                f,
                "{}: {count} duplicate image id(s), first: {first}; the last entry of each is used, as pycocotools does",
                path.display()
            ),
            Warning::DuplicateCategoryId { path, count, first } => write!(
                f,
                "{}: {count} duplicate category id(s), first: {first}; each id is evaluated once, as pycocotools does",
                path.display()
            ),
            Warning::UnknownImage { path, count, ann_id, image_id } => write!(
                f,
                "{}: {count} annotation(s) on undeclared images, first: annotation {ann_id} -> image {image_id}; \
                 they are not evaluated, as pycocotools does not",
                path.display()
            ),
            Warning::UnknownCategory { path, count, ann_id, category_id } => write!(
                f,
                "{}: {count} annotation(s) of undeclared categories, first: annotation {ann_id} -> category {category_id}; \
                 they are not evaluated, as pycocotools does not",
                path.display()
            ),
            Warning::DuplicateAnnId { path, count, first } => write!(
                f,
                "{}: {count} duplicate annotation id(s), first: {first}; as in pycocotools, the last annotation \
                 with an id is evaluated in place of each earlier one",
                path.display()
            ),
            Warning::ZeroAnnId { path, count, first_image } => write!(
                f,
                "{}: {count} annotation(s) with id 0 (first on image {first_image}); pycocotools counts \
                 a detection matched to them as a false positive, and so does this evaluator",
                path.display()
            ),
            Warning::BboxOutsideImage { path, count, first } => {
                write!(f, "{}: {count} bbox(es) extend outside their image, first: annotation {first}", path.display())
            }
            Warning::DegenerateBbox { path, count, first } => {
                write!(f, "{}: {count} bbox(es) with width or height <= 0, first: annotation {first}", path.display())
            }
            Warning::EmptySegmentation { path, count, first } => {
                write!(f, "{}: {count} annotation(s) without a segmentation, first: annotation {first}", path.display())
            }
            Warning::MalformedSegmentation { path, count, first, reason } => write!(
                f,
                "{}: {count} malformed segmentation(s), first: annotation {first} ({reason}); segm evaluation will fail on it",
                path.display()
            ),
            Warning::IgnoreOverridden { path, count, first } => write!(
                f,
                "{}: {count} `ignore` flag(s) differ from `iscrowd`, first: annotation {first}; \
                 evaluation uses `iscrowd`, as pycocotools does",
                path.display()
            ),
            Warning::MissingImageFiles { dir, count, first } => {
                write!(f, "{}: {count} image file(s) missing, first: {first}", dir.display())
            }
        }
    }
}

/// Counts the entries that fail one check and remembers the first.
struct Tally<T> {
    count: usize,
    first: Option<T>,
}

impl<T> Tally<T> {
    fn new() -> Self {
        Tally { count: 0, first: None }
    }

    fn hit(&mut self, item: impl FnOnce() -> T) {
        if self.first.is_none() {
            self.first = Some(item());
        }
        self.count += 1;
    }
}

impl Dataset {
    /// Reads, validates and indexes an instances file. `image_dir`, when given,
    /// is checked for every `file_name` (evaluation does not need images).
    ///
    /// # Errors
    /// [`Error::Read`], [`Error::Json`] (with line and column), and the fatal
    /// problems of the module table, each naming the file and the first entry.
    pub fn load(annotations: &Path, image_dir: Option<&Path>) -> Result<(Dataset, LoadReport), Error> {
        let bytes = crate::input::read(annotations)?;
        Dataset::from_slice(&bytes, annotations, image_dir)
    }

    /// Parses, validates and indexes instances JSON; `annotations` names it
    /// in messages (the file the bytes came from). The parser the fuzz
    /// targets and property tests drive without a file.
    ///
    /// # Errors
    /// As [`Dataset::load`], less the read error.
    pub fn from_slice(bytes: &[u8], annotations: &Path, image_dir: Option<&Path>) -> Result<(Dataset, LoadReport), Error> {
        let file: InstancesFile = match crate::instances_json::parse(bytes) {
            Some(file) => file,
            // One serde pass over the whole file: its value, or its error with line and column.
            None if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => {
                return Err(Error::Json {
                    path: annotations.to_path_buf(),
                    line: 1,
                    column: 1,
                    message: "a JSON list, not a COCO instances file (an object with `images`, `annotations` and \
                              `categories`); a results file goes to --dt"
                        .into(),
                })
            }
            None => serde_json::from_slice(bytes).map_err(|e| Error::json(annotations, &e))?,
        };
        Dataset::from_instances(file, annotations, image_dir)
    }

    /// Validates and indexes an already parsed instances file; `path` names it
    /// in messages.
    ///
    /// # Errors
    /// The fatal problems of the module table.
    pub fn from_instances(
        file: InstancesFile,
        path: &Path,
        image_dir: Option<&Path>,
    ) -> Result<(Dataset, LoadReport), Error> {
        let p = || path.to_path_buf();
        let mut report = LoadReport::default();
        let (image_index, dup_images) = index_last(file.images.iter().map(|im| im.id));
        if let Some(first) = dup_images.first {
            report.warnings.push(Warning::DuplicateImageId { path: p(), count: dup_images.count, first });
        }
        let (category_index, dup_categories) = index_last(file.categories.iter().map(|c| c.id));
        if let Some(first) = dup_categories.first {
            report.warnings.push(Warning::DuplicateCategoryId { path: p(), count: dup_categories.count, first });
        }
        report.warnings.extend(reference_warnings(&file.annotations, &image_index, &category_index, path));
        let (ann_index, dup_anns) = index_last(file.annotations.iter().map(|a| a.id));
        let last_with_id =
            dup_anns.first.is_some().then(|| file.annotations.iter().map(|a| ann_index[&a.id] as u32).collect());
        report.warnings.extend(annotation_warnings(&file, &image_index, path));
        if let Some(dir) = image_dir {
            let mut missing = Tally::new();
            for image in &file.images {
                if !dir.join(&image.file_name).is_file() {
                    missing.hit(|| image.file_name.clone());
                }
            }
            if let Some(first) = missing.first {
                report.warnings.push(Warning::MissingImageFiles { dir: dir.to_path_buf(), count: missing.count, first });
            }
        }
        let dataset = Dataset { path: path.to_path_buf(), file, image_index, category_index, last_with_id };
        Ok((dataset, report))
    }

    /// The file the dataset was read from (or the name given to [`Dataset::from_instances`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Images, in file order.
    pub fn images(&self) -> &[ImageInfo] {
        &self.file.images
    }

    /// Categories, in file order.
    pub fn categories(&self) -> &[Category] {
        &self.file.categories
    }

    /// Annotations, in file order.
    pub fn annotations(&self) -> &[Annotation] {
        &self.file.annotations
    }

    /// The annotation pycocotools evaluates in place of annotation `index`
    /// (file order): the last one in the file with the same id. Its `anns`
    /// dict keeps the last, while `getAnnIds` lists every occurrence, so
    /// `loadAnns` returns that one once per occurrence.
    pub fn evaluated_annotation(&self, index: usize) -> usize {
        self.last_with_id.as_ref().map_or(index, |last| last[index] as usize)
    }

    /// Whether two annotations share an id (see [`Dataset::evaluated_annotation`]).
    pub fn has_duplicate_annotation_ids(&self) -> bool {
        self.last_with_id.is_some()
    }

    /// The image with this id (the last entry with it).
    pub fn image(&self, id: ImageId) -> Option<&ImageInfo> {
        self.image_index.get(&id).and_then(|&i| self.file.images.get(i))
    }

    /// The category with this id (the last entry with it).
    pub fn category(&self, id: CategoryId) -> Option<&Category> {
        self.category_index.get(&id).and_then(|&i| self.file.categories.get(i))
    }

    /// The whole parsed file (for writing it back or converting it).
    pub fn instances(&self) -> &InstancesFile {
        &self.file
    }
}

/// Maps each id to the position of its last entry (a Python dict built in
/// file order), and counts the entries that repeat an earlier id.
fn index_last<T: Copy + Eq + std::hash::Hash>(ids: impl Iterator<Item = T>) -> (HashMap<T, usize>, Tally<T>) {
    let mut index = HashMap::new();
    let mut dup = Tally::new();
    for (i, id) in ids.enumerate() {
        if index.insert(id, i).is_some() {
            dup.hit(|| id);
        }
    }
    (index, dup)
}

/// Warns about annotations whose image or category is not declared.
fn reference_warnings(
    anns: &[Annotation],
    images: &HashMap<ImageId, usize>,
    categories: &HashMap<CategoryId, usize>,
    path: &Path,
) -> Vec<Warning> {
    let mut bad_image = Tally::new();
    let mut bad_category = Tally::new();
    for a in anns {
        if !images.contains_key(&a.image_id) {
            bad_image.hit(|| (a.id, a.image_id));
        }
        if !categories.contains_key(&a.category_id) {
            bad_category.hit(|| (a.id, a.category_id));
        }
    }
    let mut out = Vec::new();
    if let Some((ann_id, image_id)) = bad_image.first {
        out.push(Warning::UnknownImage { path: path.to_path_buf(), count: bad_image.count, ann_id, image_id });
    }
    if let Some((ann_id, category_id)) = bad_category.first {
        out.push(Warning::UnknownCategory { path: path.to_path_buf(), count: bad_category.count, ann_id, category_id });
    }
    out
}

/// The per-annotation warnings of the module table (references are [`reference_warnings`]'s).
fn annotation_warnings(file: &InstancesFile, images: &HashMap<ImageId, usize>, path: &Path) -> Vec<Warning> {
    let mut seen = HashSet::with_capacity(file.annotations.len());
    let mut dup = Tally::new();
    let mut zero = Tally::new();
    let mut outside = Tally::new();
    let mut degenerate = Tally::new();
    let mut empty = Tally::new();
    let mut malformed = Tally::new();
    let mut ignore = Tally::new();
    for a in &file.annotations {
        if !seen.insert(a.id) {
            dup.hit(|| a.id);
        }
        if a.id.0 == 0 {
            zero.hit(|| a.image_id);
        }
        if a.ignore.is_some_and(|ig| ig != a.iscrowd) {
            ignore.hit(|| a.id);
        }
        let Some(image) = images.get(&a.image_id).and_then(|&i| file.images.get(i)) else {
            continue;
        };
        let [x, y, w, h] = a.bbox;
        if !(w > 0.0 && h > 0.0 && x.is_finite() && y.is_finite()) {
            degenerate.hit(|| a.id);
        } else if x < 0.0 || y < 0.0 || x + w > f64::from(image.width) || y + h > f64::from(image.height) {
            outside.hit(|| a.id);
        }
        match &a.segmentation {
            None => empty.hit(|| a.id),
            Some(seg) if segmentation_is_empty(seg) => empty.hit(|| a.id),
            Some(seg) => {
                if let Some(reason) = segmentation_problem(seg, image) {
                    malformed.hit(|| (a.id, reason));
                }
            }
        }
    }
    let p = || path.to_path_buf();
    let mut out = Vec::new();
    if let Some(first) = dup.first {
        out.push(Warning::DuplicateAnnId { path: p(), count: dup.count, first });
    }
    if let Some(first_image) = zero.first {
        out.push(Warning::ZeroAnnId { path: p(), count: zero.count, first_image });
    }
    if let Some(first) = outside.first {
        out.push(Warning::BboxOutsideImage { path: p(), count: outside.count, first });
    }
    if let Some(first) = degenerate.first {
        out.push(Warning::DegenerateBbox { path: p(), count: degenerate.count, first });
    }
    if let Some(first) = empty.first {
        out.push(Warning::EmptySegmentation { path: p(), count: empty.count, first });
    }
    if let Some((first, reason)) = malformed.first {
        out.push(Warning::MalformedSegmentation { path: p(), count: malformed.count, first, reason });
    }
    if let Some(first) = ignore.first {
        out.push(Warning::IgnoreOverridden { path: p(), count: ignore.count, first });
    }
    out
}

/// No polygon, only empty polygons, or an RLE of an empty canvas.
fn segmentation_is_empty(seg: &Segmentation) -> bool {
    match seg {
        Segmentation::Polygons(parts) => parts.iter().all(Vec::is_empty),
        Segmentation::Compressed(rle) => rle.counts.is_empty(),
        Segmentation::Uncompressed(rle) => rle.counts.is_empty(),
    }
}

/// Why pycocotools could not rasterise this segmentation, if it could not.
fn segmentation_problem(seg: &Segmentation, image: &ImageInfo) -> Option<String> {
    let size = [image.height, image.width];
    match seg {
        Segmentation::Polygons(parts) => {
            if parts.first().is_some_and(|p| p.len() <= 4) {
                return Some("first polygon has at most 4 numbers (pycocotools reads it as a box)".into());
            }
            if let Some(p) = parts.iter().find(|p| p.len() % 2 == 1) {
                return Some(format!("polygon with an odd number of coordinates ({})", p.len()));
            }
            if parts.iter().flatten().any(|v| !v.is_finite()) {
                return Some("polygon with a non-finite coordinate".into());
            }
            None
        }
        Segmentation::Compressed(rle) if rle.size != size => Some(format!(
            "RLE size {}x{} differs from the image's {}x{}",
            rle.size[0], rle.size[1], size[0], size[1]
        )),
        Segmentation::Compressed(_) => None,
        Segmentation::Uncompressed(rle) => {
            if rle.size != size {
                return Some(format!(
                    "RLE size {}x{} differs from the image's {}x{}",
                    rle.size[0], rle.size[1], size[0], size[1]
                ));
            }
            let sum: u64 = rle.counts.iter().map(|&c| u64::from(c)).sum();
            let pixels = u64::from(size[0]) * u64::from(size[1]);
            (sum != pixels).then(|| format!("RLE counts sum to {sum}, the image has {pixels} pixels"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn file(annotations: &str) -> String {
        format!(
            r#"{{"images": [{{"id": 1, "file_name": "a.png", "width": 10, "height": 8}},
                           {{"id": 2, "file_name": "b.png", "width": 10, "height": 8}}],
               "categories": [{{"id": 5, "name": "cat"}}],
               "annotations": [{annotations}]}}"#
        )
    }

    fn ann(id: i64, image: i64, cat: i64, bbox: &str, seg: &str) -> String {
        format!(
            r#"{{"id": {id}, "image_id": {image}, "category_id": {cat}, "bbox": {bbox}, "area": 4, "iscrowd": 0, "segmentation": {seg}}}"#
        )
    }

    fn load_str(text: &str) -> Result<(Dataset, LoadReport), Error> {
        let dir = std::env::temp_dir().join(format!("coco-dataset-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("gt-{:x}.json", text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()));
        std::fs::write(&path, text).unwrap();
        let out = Dataset::load(&path, None);
        std::fs::remove_file(&path).unwrap();
        out
    }

    const POLY: &str = "[[1, 1, 3, 1, 3, 3]]";

    #[test]
    fn clean_file_loads_without_warnings() {
        let (ds, report) = load_str(&file(&ann(1, 1, 5, "[1, 1, 2, 2]", POLY))).unwrap();
        assert_eq!(report.warnings, vec![]);
        assert_eq!(ds.annotations().len(), 1);
        assert_eq!(ds.image(ImageId(2)).unwrap().file_name, "b.png");
        assert_eq!(ds.category(CategoryId(5)).unwrap().name, "cat");
        assert!(ds.image(ImageId(3)).is_none());
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = load_str("{\"images\": [\n  {\"id\": 1,, }]}").unwrap_err();
        let Error::Json { line, column, .. } = &err else { panic!("{err}") };
        assert_eq!((*line, *column), (2, 12), "{err}");
        assert!(err.to_string().contains(".json:2:12:"), "{err}");
    }

    #[test]
    fn a_list_is_not_an_instances_file() {
        let err = load_str("  [{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1}]").unwrap_err();
        assert!(err.to_string().contains("a JSON list, not a COCO instances file"), "{err}");
    }

    #[test]
    fn wrong_field_type_is_a_json_error_naming_the_field() {
        let err = load_str(&file(r#"{"id": 1, "image_id": "one", "category_id": 5, "bbox": [0,0,1,1], "area": 1}"#)).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err}");
        assert!(err.to_string().contains("string \"one\""), "{err}");
    }

    #[test]
    fn duplicate_image_and_category_ids_warn_and_the_last_entry_wins() {
        let text = r#"{"images": [{"id": 3, "file_name": "a", "width": 1, "height": 1},
                                 {"id": 3, "file_name": "b", "width": 2, "height": 1},
                                 {"id": 4, "file_name": "c", "width": 1, "height": 1},
                                 {"id": 4, "file_name": "d", "width": 1, "height": 1}],
                      "categories": [{"id": 5, "name": "x"}, {"id": 5, "name": "y"}], "annotations": []}"#;
        let (dataset, report) = load_str(text).unwrap();
        assert!(matches!(report.warnings[0], Warning::DuplicateImageId { count: 2, first: ImageId(3), .. }), "{:?}", report.warnings);
        assert!(matches!(report.warnings[1], Warning::DuplicateCategoryId { count: 1, first: CategoryId(5), .. }));
        assert_eq!(dataset.image(ImageId(3)).unwrap().file_name, "b");
        assert_eq!(dataset.category(CategoryId(5)).unwrap().name, "y");
    }

    #[test]
    fn dangling_references_warn_naming_the_annotation() {
        let anns = [ann(1, 1, 5, "[1,1,2,2]", POLY), ann(2, 9, 5, "[1,1,2,2]", POLY), ann(3, 8, 6, "[1,1,2,2]", POLY)].join(",");
        let (_, report) = load_str(&file(&anns)).unwrap();
        assert!(
            matches!(report.warnings[0], Warning::UnknownImage { count: 2, ann_id: AnnId(2), image_id: ImageId(9), .. }),
            "{:?}",
            report.warnings
        );
        let w = &report.warnings[1];
        assert!(matches!(w, Warning::UnknownCategory { count: 1, ann_id: AnnId(3), category_id: CategoryId(6), .. }), "{w}");
        assert!(w.to_string().contains("annotation 3 -> category 6"), "{w}");
    }

    #[test]
    fn a_repeated_annotation_id_evaluates_as_its_last_occurrence() {
        let anns = [ann(1, 1, 5, "[1,1,2,2]", POLY), ann(2, 1, 5, "[1,1,2,2]", POLY), ann(1, 1, 5, "[2,2,2,2]", POLY)].join(",");
        let (dataset, _) = load_str(&file(&anns)).unwrap();
        assert!(dataset.has_duplicate_annotation_ids());
        assert_eq!((0..3).map(|i| dataset.evaluated_annotation(i)).collect::<Vec<_>>(), [2, 1, 2]);
        let anns = [ann(1, 1, 5, "[1,1,2,2]", POLY), ann(2, 1, 5, "[1,1,2,2]", POLY)].join(",");
        let (dataset, _) = load_str(&file(&anns)).unwrap();
        assert!(!dataset.has_duplicate_annotation_ids());
        assert_eq!(dataset.evaluated_annotation(1), 1);
    }

    #[test]
    fn recoverable_problems_are_counted_warnings() {
        let anns = [
            ann(0, 2, 5, "[1,1,2,2]", POLY),                      // id 0
            ann(7, 1, 5, "[8,1,4,2]", POLY),                      // outside (x + w = 12 > 10)
            ann(7, 1, 5, "[1,1,0,2]", "[]"),                      // duplicate id, degenerate, empty
            ann(8, 1, 5, "[1,1,2,2]", "[[1, 1, 3, 1, 3]]"),       // odd coordinate count
            ann(9, 1, 5, r#"[1,1,2,2]"#, r#"{"size": [8, 10], "counts": [3, 77]}"#), // counts sum 80 ok
            ann(10, 1, 5, r#"[1,1,2,2]"#, r#"{"size": [8, 10], "counts": [3, 7]}"#), // counts sum 10
        ]
        .join(",");
        let (_, report) = load_str(&file(&anns)).unwrap();
        let text: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(report.warnings.len(), 6, "{text:#?}");
        assert!(matches!(report.warnings[0], Warning::DuplicateAnnId { count: 1, first: AnnId(7), .. }));
        assert!(matches!(report.warnings[1], Warning::ZeroAnnId { count: 1, first_image: ImageId(2), .. }));
        assert!(matches!(report.warnings[2], Warning::BboxOutsideImage { count: 1, first: AnnId(7), .. }));
        assert!(matches!(report.warnings[3], Warning::DegenerateBbox { count: 1, first: AnnId(7), .. }));
        assert!(matches!(report.warnings[4], Warning::EmptySegmentation { count: 1, first: AnnId(7), .. }));
        assert!(matches!(report.warnings[5], Warning::MalformedSegmentation { count: 2, first: AnnId(8), .. }));
        assert!(text[5].contains("odd number of coordinates (5)"), "{}", text[5]);
    }

    #[test]
    fn ignore_flag_disagreeing_with_iscrowd_warns() {
        let a = r#"{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1,1,2,2], "area": 4, "iscrowd": 0, "ignore": 1, "segmentation": [[1,1,3,1,3,3]]}"#;
        let (_, report) = load_str(&file(a)).unwrap();
        assert!(matches!(report.warnings[..], [Warning::IgnoreOverridden { count: 1, first: AnnId(1), .. }]));
    }

    #[test]
    fn missing_image_files_are_counted() {
        let dir = std::env::temp_dir().join(format!("coco-dataset-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.png"), b"x").unwrap();
        let parsed: InstancesFile = serde_json::from_str(&file("")).unwrap();
        let (_, report) = Dataset::from_instances(parsed, Path::new("gt.json"), Some(&dir)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(&report.warnings[..], [Warning::MissingImageFiles { count: 1, first, .. }] if first == "b.png"),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let err = Dataset::load(Path::new("/nonexistent/gt.json"), None).unwrap_err();
        assert!(matches!(err, Error::Read { .. }));
        assert_eq!(err.to_string(), "failed to read /nonexistent/gt.json");
        assert!(err.is_user_error());
    }
}
