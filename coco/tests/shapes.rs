//! The synthetic shapes dataset: determinism, exact segmentations, size ranges,
//! crowds, and the on-disk layout.
//!
//! The pixel check works from the written PNG alone: shapes are saturated
//! (channel spread ≥ `SHAPE_MIN_SPREAD`), backgrounds muted (≤
//! `BACKGROUND_MAX_SPREAD`), so "annotations == drawn pixels" means: the
//! decoded annotation masks are disjoint, each is one flat colour, and every
//! pixel outside all of them is background.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};

use coco::mask::segmentation_to_rle;
use coco::shapes::background::{spread, BACKGROUND_MAX_SPREAD, SHAPE_MIN_SPREAD};
use coco::shapes::{area_thresholds, generate, ClassificationStyle, SceneParams, ShapeKind, ShapesConfig, ShapesTask};
use coco::types::{InstancesFile, Segmentation};

/// A fresh, empty directory under the target dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small_cfg(seed: u64) -> ShapesConfig {
    ShapesConfig { train: 24, val: 8, size: 256, seed, task: ShapesTask::Detection, ..ShapesConfig::default() }
}

fn read_instances(dir: &Path, split: &str) -> (String, InstancesFile) {
    let text = std::fs::read_to_string(dir.join(format!("annotations/instances_{split}.json"))).unwrap();
    let file = serde_json::from_str(&text).unwrap();
    (text, file)
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (a, b, c) = (scratch("shapes_det_a"), scratch("shapes_det_b"), scratch("shapes_det_c"));
    let summary = generate(&small_cfg(5), &a).unwrap();
    // A different thread count must not change anything.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| generate(&small_cfg(5), &b)).unwrap();
    generate(&small_cfg(6), &c).unwrap();
    assert_eq!(summary.images, [24, 8]);
    for split in ["train", "val"] {
        assert_eq!(read_instances(&a, split).0, read_instances(&b, split).0, "{split} json");
        assert_ne!(read_instances(&a, split).0, read_instances(&c, split).0, "{split} json, other seed");
    }
    for name in ["train/000000.png", "train/000023.png", "val/000007.png"] {
        assert_eq!(std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap(), "{name}");
    }
    assert_ne!(std::fs::read(a.join("train/000000.png")).unwrap(), std::fs::read(c.join("train/000000.png")).unwrap());
}

#[test]
fn annotations_are_exactly_the_drawn_pixels() {
    let dir = scratch("shapes_det_pixels");
    let cfg = small_cfg(0);
    let summary = generate(&cfg, &dir).unwrap();
    let (_, file) = read_instances(&dir, "train");
    assert_eq!(file.images.len(), 24);
    assert_eq!(file.annotations.len(), summary.annotations[0]);
    assert_eq!(file.categories.len(), 6);

    let [small, large] = area_thresholds(cfg.size);
    let (mut buckets, mut coco_buckets) = ([0usize; 3], [0usize; 3]);
    let (mut polygons, mut rles, mut crowds) = (0, 0, 0);
    for image in &file.images {
        let png = image::open(dir.join("train").join(&image.file_name)).unwrap().to_rgb8();
        let (w, h) = png.dimensions();
        assert_eq!((w, h), (image.width, image.height));
        let mut owner = vec![0usize; (w * h) as usize];
        for ann in file.annotations.iter().filter(|a| a.image_id == image.id) {
            let seg = ann.segmentation.as_ref().unwrap();
            match seg {
                Segmentation::Polygons(_) => polygons += 1,
                Segmentation::Compressed(_) => rles += 1,
                Segmentation::Uncompressed(_) => {}
            }
            if ann.iscrowd {
                crowds += 1;
                assert!(matches!(seg, Segmentation::Uncompressed(_)), "crowd {:?} must be uncompressed RLE", ann.id);
            }
            let mask = segmentation_to_rle(seg, h, w).unwrap();
            assert_eq!(mask.area() as f64, ann.area, "annotation {:?}: area", ann.id);
            assert_eq!(mask.to_bbox(), ann.bbox, "annotation {:?}: bbox", ann.id);
            assert!(mask.area() > 0);
            let pixels = mask.decode_row_major().unwrap();
            let mut colour = None;
            for (p, _) in pixels.iter().enumerate().filter(|(_, &v)| v == 1) {
                assert_eq!(owner[p], 0, "annotations {} and {:?} overlap", owner[p], ann.id);
                owner[p] = ann.id.0 as usize;
                let c = png.get_pixel(p as u32 % w, p as u32 / w).0;
                assert_eq!(*colour.get_or_insert(c), c, "annotation {:?} is not one flat colour", ann.id);
            }
            assert!(spread(colour.unwrap()) >= SHAPE_MIN_SPREAD);
            if !ann.iscrowd {
                let i = if ann.area < small { 0 } else if ann.area <= large { 1 } else { 2 };
                buckets[i] += 1;
                let j = if ann.area < 1024.0 { 0 } else if ann.area <= 9216.0 { 1 } else { 2 };
                coco_buckets[j] += 1;
            }
        }
        for (p, px) in png.pixels().enumerate() {
            if owner[p] == 0 {
                assert!(spread(px.0) <= BACKGROUND_MAX_SPREAD, "{}: unannotated shape pixel {p}", image.file_name);
            }
        }
    }
    // Every size bucket, scaled and unscaled, and every segmentation form occurs.
    assert!(buckets.iter().all(|&n| n >= 10), "scaled buckets {buckets:?}");
    assert!(coco_buckets.iter().all(|&n| n >= 3), "COCO buckets {coco_buckets:?}");
    assert!(polygons >= 20 && rles >= 5 && crowds >= 2, "{polygons} polygons, {rles} RLEs, {crowds} crowds");
}

#[test]
fn classification_layout_is_balanced_image_folder() {
    let dir = scratch("shapes_cls");
    let cfg = ShapesConfig { train: 12, val: 6, size: 64, seed: 1, task: ShapesTask::Classification, ..ShapesConfig::default() };
    let summary = generate(&cfg, &dir).unwrap();
    assert_eq!(summary.images, [12, 6]);
    for (split, per_class) in [("train", 2), ("val", 1)] {
        for kind in ShapeKind::ALL {
            let n = std::fs::read_dir(dir.join(split).join(kind.name())).unwrap().count();
            assert_eq!(n, per_class, "{split}/{}", kind.name());
        }
    }
    assert!(!dir.join("annotations").exists());
}

#[test]
fn classification_dominant_shape_is_large_and_of_its_class() {
    let textured = ClassificationStyle::Textured;
    let cfg = ShapesConfig { train: 12, val: 0, size: 96, seed: 2, task: ShapesTask::Classification, style: textured, ..ShapesConfig::default() };
    for i in 0..12 {
        let (kind, scene) = coco::shapes::render_classification(&cfg, coco::Split::Train, i).unwrap();
        assert_eq!(kind, ShapeKind::ALL[i % 6]);
        let dominant = &scene.objects[0];
        assert_eq!(dominant.kind, kind);
        let fraction = dominant.mask.area() as f64 / (96.0 * 96.0);
        assert!((0.08..0.45).contains(&fraction), "image {i}: dominant covers {fraction}");
        assert!(scene.objects[1..].iter().all(|o| o.kind != kind && o.mask.area() < dominant.mask.area()));
    }
}

#[test]
fn plain_classification_images_are_one_white_silhouette_on_black() {
    let cfg = ShapesConfig { train: 12, val: 0, size: 64, seed: 3, task: ShapesTask::Classification, ..ShapesConfig::default() };
    assert_eq!(cfg.style, ClassificationStyle::Plain);
    for i in 0..12 {
        let (kind, scene) = coco::shapes::render_classification(&cfg, coco::Split::Train, i).unwrap();
        assert_eq!(scene.objects.len(), 1, "image {i}");
        assert_eq!(scene.objects[0].kind, kind);
        let white = scene.image.pixels().filter(|p| p.0 == [255, 255, 255]).count();
        let black = scene.image.pixels().filter(|p| p.0 == [0, 0, 0]).count();
        assert_eq!(white as u64, scene.objects[0].mask.area(), "image {i}: white pixels are the shape's mask");
        assert_eq!(white + black, 64 * 64, "image {i}: nothing but the silhouette and the background");
    }
}

#[test]
fn invalid_size_is_a_typed_error() {
    let cfg = ShapesConfig { size: 8, ..ShapesConfig::default() };
    let err = generate(&cfg, &scratch("shapes_bad")).unwrap_err();
    assert!(matches!(err, coco::Error::ShapesConfig { .. }), "{err}");
    assert!(err.is_user_error());
}

/// The demo recipe's mix (cpu-demo-calibration.md) at 128 px.
fn calibration_scene() -> SceneParams {
    use ShapeKind::{Circle, Ellipse, Rectangle, Star, Triangle};
    SceneParams {
        categories: vec![Circle, Triangle, Rectangle, Star, Ellipse],
        objects: [1, 6],
        sides: Some([8.0, 64.0]),
        crowd_probability: 0.0,
        min_visible_fraction: 0.45,
    }
}

#[test]
fn scene_params_set_kinds_counts_sizes_and_crowds() {
    let scene = calibration_scene();
    let cfg = ShapesConfig { train: 60, val: 0, size: 128, seed: 4, scene: scene.clone(), ..ShapesConfig::default() };
    let (mut objects, mut seen, mut sides) = (0usize, Vec::new(), Vec::new());
    for i in 0..cfg.train {
        let image = coco::shapes::render_detection(&cfg, coco::Split::Train, i).unwrap();
        assert!((1..=6).contains(&image.objects.len()), "image {i}: {} objects", image.objects.len());
        objects += image.objects.len();
        for o in &image.objects {
            assert!(!o.iscrowd, "image {i}: a crowd with crowd_probability 0");
            assert!(scene.categories.contains(&o.kind), "image {i}: {:?} was not asked for", o.kind);
            if !seen.contains(&o.kind) {
                seen.push(o.kind);
            }
            // A fully visible shape's box spans its outline's longest side
            // (within the rasteriser's pixel).
            if let Segmentation::Polygons(_) = o.segmentation {
                let [_, _, w, h] = o.mask.to_bbox();
                let side = w.max(h);
                assert!((6.5..=65.5).contains(&side), "image {i}: a {:?} with side {side}", o.kind);
                sides.push(side);
            }
        }
    }
    let mean = objects as f64 / cfg.train as f64;
    assert!((2.5..=4.0).contains(&mean), "{mean} objects an image for 1..=6 asked");
    assert_eq!(seen.len(), 5, "kinds drawn: {seen:?}");
    // Uniform sides: both ends of the range occur.
    assert!(sides.iter().any(|&s| s < 20.0) && sides.iter().any(|&s| s > 52.0), "sides {sides:?}");

    let dir = scratch("shapes_scene");
    generate(&ShapesConfig { train: 3, val: 1, ..cfg }, &dir).unwrap();
    let (_, file) = read_instances(&dir, "train");
    let names: Vec<&str> = file.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["circle", "triangle", "rectangle", "star", "ellipse"]);
}

#[test]
fn scene_params_out_of_range_name_the_field() {
    let cases: [(&str, SceneParams); 6] = [
        ("categories", SceneParams { categories: vec![], ..SceneParams::default() }),
        ("categories", SceneParams { categories: vec![ShapeKind::Star, ShapeKind::Circle, ShapeKind::Star], ..SceneParams::default() }),
        ("objects", SceneParams { objects: [5, 2], ..SceneParams::default() }),
        ("sides", SceneParams { sides: Some([8.0, 200.0]), ..SceneParams::default() }),
        ("crowd_probability", SceneParams { crowd_probability: 1.5, ..SceneParams::default() }),
        ("min_visible_fraction", SceneParams { min_visible_fraction: 0.0, ..SceneParams::default() }),
    ];
    for (expected, scene) in cases {
        let cfg = ShapesConfig { size: 128, scene, ..ShapesConfig::default() };
        let err = cfg.validate().unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(matches!(err, coco::Error::ShapesConfig { field, .. } if field == expected), "{err} (expected field {expected})");
    }
    let twice = ShapesConfig { size: 128, scene: SceneParams { categories: vec![ShapeKind::Star; 2], ..SceneParams::default() }, ..ShapesConfig::default() };
    assert!(twice.validate().unwrap_err().to_string().contains("lists star twice"));
    assert!(ShapesConfig { size: 128, scene: calibration_scene(), ..ShapesConfig::default() }.validate().is_ok());
}

#[test]
fn classification_uses_only_the_chosen_kinds() {
    let dir = scratch("shapes_cls_kinds");
    let scene = SceneParams { categories: vec![ShapeKind::Star, ShapeKind::Circle], ..SceneParams::default() };
    let cfg = ShapesConfig { train: 6, val: 0, size: 64, seed: 1, task: ShapesTask::Classification, scene, style: ClassificationStyle::Textured };
    generate(&cfg, &dir).unwrap();
    let mut classes: Vec<String> =
        std::fs::read_dir(dir.join("train")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    classes.sort();
    assert_eq!(classes, ["circle", "star"]);
    for i in 0..6 {
        let (kind, scene) = coco::shapes::render_classification(&cfg, coco::Split::Train, i).unwrap();
        assert_eq!(kind, [ShapeKind::Star, ShapeKind::Circle][i % 2]);
        assert!(scene.objects.iter().all(|o| o.kind == ShapeKind::Star || o.kind == ShapeKind::Circle));
    }
}
