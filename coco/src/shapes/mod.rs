//! The built-in synthetic dataset: filled shapes (circle, triangle, rectangle,
//! star, ellipse, hexagon) in random colours over textured backgrounds, written
//! in COCO layout (detection) or ImageFolder layout (classification).
//!
//! The folder layout (`vitdet data shapes --out DIR`) is spelled once, in
//! [`layout`]: detection writes `DIR/{train,val}/000000.png` and
//! `DIR/annotations/instances_{train,val}.json`; classification
//! (`--classification`) writes `DIR/{train,val}/<class>/000000.png`, one
//! dominant shape per image, classes balanced (`index % categories`).
//!
//! What the annotations promise (checked by `coco/tests/shapes.rs`):
//! - segmentations are exactly the drawn pixels: shapes are rasterised with the
//!   pycocotools-identical [`crate::mask::Rle::from_polygon`]; fully visible
//!   instances are stored as their polygon, partly occluded ones as a compressed
//!   RLE of their visible pixels, crowds as an uncompressed RLE (`iscrowd = 1`);
//! - `area` is the mask area and `bbox` the mask's box ([`crate::mask::Rle::to_bbox`]);
//! - with the default [`SceneParams`]: every object keeps at least 40% of its
//!   pixels visible (see [`scene`]); target areas cover COCO's small / medium /
//!   large ranges scaled to the image by `(size / 640)²`
//!   ([`scene::area_thresholds`]), and at the default 256 px also the unscaled
//!   ranges pycocotools reports; about 30% of images have a crowd region, a
//!   cluster of 12–30 tiny shapes of one category. [`SceneParams`] changes the
//!   kinds, instance counts and sizes, crowds and occlusion.
//!
//! Determinism: image `i` of split `s` draws from its own ChaCha8 stream
//! (seed = `seed`, stream = `split << 32 | i`), so the output is the same for
//! any thread count; images are rendered in parallel with rayon.

pub mod background;
pub mod kinds;
pub mod layout;
pub mod scene;

use std::fs;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use kinds::ShapeKind;
pub use scene::{area_thresholds, ClassificationStyle, Scene, SceneObject, SceneParams};

use crate::types::{AnnId, Annotation, Category, CategoryId, ImageId, ImageInfo, InstancesFile};
use crate::{Error, Split};

/// Smallest supported image side: shapes and crowds need room.
pub const MIN_SIZE: u32 = 32;
/// Largest supported image side (owner ids and memory stay small).
pub const MAX_SIZE: u32 = 4096;

/// Which dataset to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapesTask {
    /// COCO instances: many shapes per image, polygons / RLE, crowds.
    Detection,
    /// ImageFolder: one dominant shape per image, the class is its kind.
    Classification,
}

/// The split's RNG stream tag (the high word of every image's stream).
fn stream_tag(split: Split) -> u64 {
    match split {
        Split::Train => 0,
        Split::Val => 1,
    }
}

/// What to generate. `Default` is the CLI's defaults: 400 train and 100 val
/// detection images of 256 px, seed 0, the default scene mix (and the plain
/// classification style).
#[derive(Clone, Debug, PartialEq)]
pub struct ShapesConfig {
    /// Number of training images.
    pub train: usize,
    /// Number of validation images.
    pub val: usize,
    /// Image side in pixels (images are square).
    pub size: u32,
    /// Seed of every image's RNG stream.
    pub seed: u64,
    /// Detection (COCO) or classification (ImageFolder).
    pub task: ShapesTask,
    /// What an image contains: kinds, instances, sizes, crowds, occlusion
    /// (classification uses only its `categories`).
    pub scene: SceneParams,
    /// How a classification image looks (detection ignores it).
    pub style: ClassificationStyle,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        Self {
            train: 400,
            val: 100,
            size: 256,
            seed: 0,
            task: ShapesTask::Detection,
            scene: SceneParams::default(),
            style: ClassificationStyle::default(),
        }
    }
}

impl ShapesConfig {
    /// Checks the size range and the scene parameters.
    ///
    /// # Errors
    /// [`Error::ShapesConfig`] if `size` is outside [`MIN_SIZE`]..=[`MAX_SIZE`]
    /// or a [`SceneParams`] field is out of range.
    pub fn validate(&self) -> Result<(), Error> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(Error::ShapesConfig {
                field: "size",
                reason: format!("{} is outside {MIN_SIZE}..={MAX_SIZE}", self.size),
            });
        }
        self.scene.validate(self.size)
    }

    /// Number of images of a split.
    pub fn count(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train,
            Split::Val => self.val,
        }
    }

    /// The RNG of image `index` of `split`: independent of thread count and of
    /// the other images.
    pub fn image_rng(&self, split: Split, index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream_tag(split) << 32 | index as u64);
        rng
    }
}

/// Counts of what [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ShapesSummary {
    /// Images written, `[train, val]`.
    pub images: [usize; 2],
    /// Annotations written (detection only), `[train, val]`.
    pub annotations: [usize; 2],
    /// Crowd annotations among them, `[train, val]`.
    pub crowd: [usize; 2],
}

/// Renders detection image `index` of `split` (what [`generate`] writes as
/// `DIR/<split>/<index>.png`, [`layout`]), for callers that want the data in memory.
///
/// # Errors
/// [`Error::ShapesConfig`] for an invalid config.
pub fn render_detection(cfg: &ShapesConfig, split: Split, index: usize) -> Result<Scene, Error> {
    cfg.validate()?;
    scene::detection_scene(&mut cfg.image_rng(split, index), &cfg.scene, cfg.size)
}

/// Renders classification image `index` of `split` and its class
/// (`categories[index % categories.len()]`).
///
/// # Errors
/// [`Error::ShapesConfig`] for an invalid config.
pub fn render_classification(cfg: &ShapesConfig, split: Split, index: usize) -> Result<(ShapeKind, Scene), Error> {
    cfg.validate()?;
    let categories = &cfg.scene.categories;
    let kind = categories[index % categories.len()];
    Ok((kind, scene::classification_scene(&mut cfg.image_rng(split, index), cfg.size, kind, categories, cfg.style)?))
}

/// A recipe's `[data.synthetic]` table: the built-in synthetic
/// classification set (`vitdet data shapes --classification` layout, one
/// dominant shape per image, its kind the class), as classification and
/// pre-training recipes generate it when no `--data` is given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticClassification {
    /// Training images (balanced over the classes).
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Square image side in pixels.
    pub size: u32,
    /// The shape kinds, one class folder each.
    pub categories: Vec<ShapeKind>,
    /// `plain` (white silhouettes on black, learnable from scratch) or
    /// `textured` (random colours, textures and distractors).
    pub style: ClassificationStyle,
}

impl Default for SyntheticClassification {
    fn default() -> Self {
        Self { train: 600, val: 180, size: 72, categories: ShapeKind::ALL.to_vec(), style: ClassificationStyle::Plain }
    }
}

impl SyntheticClassification {
    /// The generator settings for this table and a seed.
    pub fn shapes_config(&self, seed: u64) -> ShapesConfig {
        let scene = SceneParams { categories: self.categories.clone(), ..Default::default() };
        ShapesConfig {
            train: self.train,
            val: self.val,
            size: self.size,
            seed,
            task: ShapesTask::Classification,
            scene,
            style: self.style,
        }
    }
}

/// The file name of image `index` (`000042.png`).
pub fn file_name(index: usize) -> String {
    format!("{index:06}.png")
}

/// Writes the whole dataset under `out` (see the module doc for the layout),
/// overwriting files of the same names.
///
/// # Errors
/// [`Error::ShapesConfig`] for an invalid config, [`Error::Write`] /
/// [`Error::ImageWrite`] (with the path) when a file cannot be written.
pub fn generate(cfg: &ShapesConfig, out: &Path) -> Result<ShapesSummary, Error> {
    cfg.validate()?;
    let mut summary = ShapesSummary::default();
    for (slot, split) in Split::ALL.into_iter().enumerate() {
        match cfg.task {
            ShapesTask::Detection => {
                let dir = layout::images_dir(out, split);
                create_dir(&dir)?;
                let file = write_detection_split(cfg, split, &dir)?;
                summary.annotations[slot] = file.annotations.len();
                summary.crowd[slot] = file.annotations.iter().filter(|a| a.iscrowd).count();
                create_dir(&layout::annotations_dir(out))?;
                crate::results::write_json_atomic(&layout::annotations_file(out, split), &file)?;
            }
            ShapesTask::Classification => {
                for &kind in &cfg.scene.categories {
                    create_dir(&layout::class_dir(out, split, kind))?;
                }
                (0..cfg.count(split)).into_par_iter().try_for_each(|i| {
                    let (kind, scene) = render_classification(cfg, split, i)?;
                    write_png(&layout::class_dir(out, split, kind).join(file_name(i)), &scene.image)
                })?;
            }
        }
        summary.images[slot] = cfg.count(split);
    }
    Ok(summary)
}

/// Renders and writes a detection split's PNGs; returns its instances file.
fn write_detection_split(cfg: &ShapesConfig, split: Split, dir: &Path) -> Result<InstancesFile, Error> {
    let per_image: Vec<Vec<SceneObject>> = (0..cfg.count(split))
        .into_par_iter()
        .map(|i| {
            let scene = render_detection(cfg, split, i)?;
            write_png(&dir.join(file_name(i)), &scene.image)?;
            Ok(scene.objects)
        })
        .collect::<Result<_, Error>>()?;
    Ok(instances_file(cfg, split, &per_image))
}

/// Assembles the COCO instances file: image ids `index + 1`, annotation ids
/// counting from 1 in image order.
pub fn instances_file(cfg: &ShapesConfig, split: Split, per_image: &[Vec<SceneObject>]) -> InstancesFile {
    let images = (0..per_image.len())
        .map(|i| ImageInfo { id: ImageId(i as i64 + 1), file_name: file_name(i), width: cfg.size, height: cfg.size })
        .collect();
    let annotations = per_image
        .iter()
        .enumerate()
        .flat_map(|(i, objects)| objects.iter().map(move |o| (i, o)))
        .enumerate()
        .map(|(k, (i, o))| Annotation {
            id: AnnId(k as i64 + 1),
            image_id: ImageId(i as i64 + 1),
            category_id: CategoryId(o.kind.category_id()),
            segmentation: Some(o.segmentation.clone()),
            area: o.mask.area() as f64,
            bbox: o.mask.to_bbox(),
            iscrowd: o.iscrowd,
            ignore: None,
        })
        .collect();
    let categories = cfg
        .scene
        .categories
        .iter()
        .map(|k| Category { id: CategoryId(k.category_id()), name: k.name().into(), supercategory: Some("shape".into()) })
        .collect();
    let info = serde_json::json!({
        "description": "vitdet synthetic shapes",
        "split": split.name(),
        "seed": cfg.seed,
        "size": cfg.size,
        "scene": cfg.scene,
    });
    InstancesFile { info: Some(info), licenses: None, images, annotations, categories }
}

/// Creates a directory and its parents.
fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

/// Encodes a PNG with fast compression (the dataset is regenerated, not archived).
fn write_png(path: &Path, image: &image::RgbImage) -> Result<(), Error> {
    let file = fs::File::create(path).map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
    let encoder = PngEncoder::new_with_quality(BufWriter::new(file), CompressionType::Fast, FilterType::Adaptive);
    image.write_with_encoder(encoder).map_err(|source| Error::ImageWrite { path: path.to_path_buf(), source })
}
