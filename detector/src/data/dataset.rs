//! A COCO split as the detector sees it: contiguous class indices, image
//! paths and sizes, and per-image instances as polygons.
//!
//! Mirrors detectron2 `data/datasets/coco.py::load_coco_json` followed by the
//! training filters of `data/build.py` and `dataset_mapper.py`:
//! - category ids are sorted and mapped to `0..K` (`id_map`), and back with
//!   [`DetectionDataset::category_id`];
//! - crowd annotations (`iscrowd = 1`) are dropped (the mapper drops them for
//!   training; the evaluator reads crowds from the JSON itself, so the
//!   evaluation split drops them here too);
//! - polygon parts with an odd number of coordinates or fewer than 6 are
//!   dropped, and an annotation with no valid part is dropped and counted
//!   (`num_instances_without_valid_segmentation`);
//! - for training, images without any kept instance are dropped
//!   (`filter_empty=True`); for evaluation every image is kept.
//!
//! Deliberate deviation: a non-crowd annotation stored as RLE (COCO has a few;
//! the shapes dataset stores every partly occluded object so) is converted to
//! the exact union of pixel rectangles ([`super::rle_polygons`]) instead of
//! failing as detectron2's polygon mode does. Such conversions are counted in
//! [`DatasetReport::rle_converted`]. An RLE that cannot be decoded is dropped
//! and counted with the invalid segmentations.
//!
//! Image files are not decoded here (the loader does that and counts
//! failures); files missing from the image directory are dropped and counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coco::dataset::{Dataset, Warning};
use coco::mask::segmentation_to_rle;
use coco::types::{Annotation, CategoryId, Segmentation};

use super::layout::SplitFiles;
use super::rle_polygons::rle_to_rectangles;
use crate::{Error, Result};

/// What a split is loaded for: decides the image filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Training: images without a usable instance are dropped.
    Train,
    /// Evaluation: every image with a file is kept, in file order.
    Eval,
}

/// One object of an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Contiguous class index `0..K`.
    pub class: usize,
    /// Its parts `[x0, y0, x1, y1, ...]` in original-image pixels; the object
    /// is their union.
    pub polygons: Vec<Vec<f64>>,
}

/// One image of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRecord {
    /// COCO image id.
    pub image_id: u64,
    /// The image file.
    pub path: PathBuf,
    /// Height in pixels, from the JSON (checked against the file when decoded).
    pub height: usize,
    /// Width in pixels, from the JSON.
    pub width: usize,
    /// Its non-crowd objects with a usable segmentation.
    pub instances: Vec<Instance>,
}

/// Counts of what loading kept, dropped and converted, to print once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetReport {
    /// Images in the JSON.
    pub images_in_file: usize,
    /// Images whose file is missing (dropped), and the first such path.
    pub missing_files: (usize, Option<PathBuf>),
    /// Images dropped for training because no instance was left.
    pub images_without_instances: usize,
    /// Crowd annotations dropped.
    pub crowd_dropped: usize,
    /// Non-crowd annotations without a usable segmentation (dropped), and the
    /// first one's id.
    pub invalid_segmentation: (usize, Option<i64>),
    /// Non-crowd RLE annotations converted to pixel rectangles.
    pub rle_converted: usize,
    /// The recoverable problems `coco::dataset::Dataset::load` reported.
    pub coco_warnings: Vec<Warning>,
}

impl DatasetReport {
    /// One line per non-zero count, for the CLI's stderr.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.coco_warnings.iter().map(ToString::to_string).collect();
        if let (n @ 1.., Some(first)) = &self.missing_files {
            out.push(format!("skipped: {n} image(s) whose file is missing (first: {})", first.display()));
        }
        if let (n @ 1.., Some(first)) = self.invalid_segmentation {
            out.push(format!("skipped: {n} annotation(s) without a usable segmentation (first: id {first})"));
        }
        if self.images_without_instances > 0 {
            out.push(format!("skipped: {} training image(s) without annotations", self.images_without_instances));
        }
        if self.rle_converted > 0 {
            out.push(format!("converted: {} RLE annotation(s) to pixel-exact rectangle polygons", self.rle_converted));
        }
        out
    }
}

/// A loaded split: images with their instances, and the class mapping.
#[derive(Clone, Debug)]
pub struct DetectionDataset {
    images: Vec<ImageRecord>,
    /// COCO category id of each class index (sorted ascending).
    category_ids: Vec<i64>,
    /// Category name of each class index.
    category_names: Vec<String>,
    report: DatasetReport,
}

impl DetectionDataset {
    /// Loads a split's annotation file and checks its image files.
    ///
    /// # Errors
    /// [`Error::Coco`] for an unreadable or invalid JSON (naming the file);
    /// [`Error::DataLayout`] for a negative image id.
    pub fn load(files: &SplitFiles, purpose: Purpose) -> Result<Self> {
        let (dataset, warnings) = Dataset::load(&files.annotations, None)?;
        let mut out = Self::from_coco(&dataset, &files.images, purpose)?;
        out.report.coco_warnings = warnings.warnings;
        Ok(out)
    }

    /// Builds the split from an already loaded COCO dataset whose `file_name`s
    /// are relative to `image_dir`.
    ///
    /// # Errors
    /// [`Error::DataLayout`] for a negative image id (the detector's ids are
    /// unsigned).
    pub fn from_coco(dataset: &Dataset, image_dir: &Path, purpose: Purpose) -> Result<Self> {
        let mut category_ids: Vec<i64> = dataset.categories().iter().map(|c| c.id.0).collect();
        category_ids.sort_unstable();
        category_ids.dedup(); // a repeated id is one class (the file's loader warned)
        let class_of: HashMap<i64, usize> = category_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let category_names = category_ids
            .iter()
            .map(|&id| dataset.category(CategoryId(id)).map(|c| c.name.clone()).unwrap_or_default())
            .collect();

        let mut report = DatasetReport { images_in_file: dataset.images().len(), ..DatasetReport::default() };
        let mut per_image: HashMap<i64, Vec<Instance>> = HashMap::new();
        for ann in dataset.annotations() {
            if ann.iscrowd {
                report.crowd_dropped += 1;
                continue;
            }
            let Some(&class) = class_of.get(&ann.category_id.0) else { continue };
            let Some(image) = dataset.image(ann.image_id) else { continue };
            match instance_polygons(ann, image.height, image.width) {
                Some((polygons, from_rle)) => {
                    report.rle_converted += usize::from(from_rle);
                    per_image.entry(ann.image_id.0).or_default().push(Instance { class, polygons });
                }
                None => {
                    report.invalid_segmentation.0 += 1;
                    report.invalid_segmentation.1.get_or_insert(ann.id.0);
                }
            }
        }

        let mut images = Vec::with_capacity(dataset.images().len());
        for info in dataset.images() {
            if !dataset.image(info.id).is_some_and(|last| std::ptr::eq(last, info)) {
                continue; // a repeated id: its last entry is the image, as in pycocotools
            }
            let image_id = u64::try_from(info.id.0).map_err(|_| Error::DataLayout {
                path: dataset.path().to_path_buf(),
                expected: format!("image id {} is negative; expected ids >= 0", info.id.0),
            })?;
            let path = image_dir.join(&info.file_name);
            if !path.is_file() {
                report.missing_files.0 += 1;
                report.missing_files.1.get_or_insert(path);
                continue;
            }
            let instances = per_image.remove(&info.id.0).unwrap_or_default();
            if purpose == Purpose::Train && instances.is_empty() {
                report.images_without_instances += 1;
                continue;
            }
            images.push(ImageRecord {
                image_id,
                path,
                height: info.height as usize,
                width: info.width as usize,
                instances,
            });
        }
        Ok(DetectionDataset { images, category_ids, category_names, report })
    }

    /// The kept images, in file order.
    pub fn images(&self) -> &[ImageRecord] {
        &self.images
    }

    /// Number of kept images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when no image was kept.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Number of classes K (categories in the file).
    pub fn num_classes(&self) -> usize {
        self.category_ids.len()
    }

    /// The COCO category id of class `index` (for writing results).
    pub fn category_id(&self, index: usize) -> Option<i64> {
        self.category_ids.get(index).copied()
    }

    /// The class index of a COCO category id.
    pub fn class_index(&self, category_id: i64) -> Option<usize> {
        self.category_ids.binary_search(&category_id).ok()
    }

    /// Category names by class index (for drawing).
    pub fn class_names(&self) -> &[String] {
        &self.category_names
    }

    /// What loading kept, dropped and converted.
    pub fn report(&self) -> &DatasetReport {
        &self.report
    }
}

/// The polygons of a non-crowd annotation, and whether they came from an RLE;
/// `None` when nothing usable is left (detectron2 drops such annotations).
fn instance_polygons(ann: &Annotation, height: u32, width: u32) -> Option<(Vec<Vec<f64>>, bool)> {
    match ann.segmentation.as_ref()? {
        Segmentation::Polygons(parts) => {
            let valid: Vec<Vec<f64>> =
                parts.iter().filter(|p| p.len() % 2 == 0 && p.len() >= 6).cloned().collect();
            (!valid.is_empty()).then_some((valid, false))
        }
        rle_form => {
            let rle = segmentation_to_rle(rle_form, height, width).ok()?;
            let rectangles = rle_to_rectangles(&rle);
            (!rectangles.is_empty()).then_some((rectangles, true))
        }
    }
}
