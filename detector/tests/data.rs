//! The data pipeline: detectron2's LSJ and test-resize formulas and
//! normalisation (fixtures from `fixtures/make_data_fixtures.py`),
//! hand-worked polygon clipping with recomputed boxes, RLE → rectangle
//! polygons, dataset discovery errors, and a tiny shapes dataset end to end
//! through the loader (determinism, resumption, skipped images), and the
//! check of a decoded image's size against its annotation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use coco::mask::Rle;
use coco::shapes::{ShapesConfig, ShapesTask};
use common::fixture;
use detector::data::dataset::{DetectionDataset, ImageRecord, Instance, Purpose};
use detector::data::layout::{DataLayout, LayoutKind, SplitFiles};
use coco::Split;
use detector::data::loader::{eval_stream, load_image, pixels_to_tensor, train_batch, train_stream, LoaderConfig, LoaderStats};
use vision::resize::{resize, Filter, RgbImage};
use detector::data::rle_polygons::rle_to_rectangles;
use detector::data::transforms::{
    apply_lsj, apply_test, crop_offset, normalize_and_pad, polygons_box, resize_scale_size, test_resize_size,
    LsjConfig, LsjParams,
};
use serde_json::Value;

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

#[test]
fn lsj_resize_and_crop_match_detectron2_formulas() {
    let data = fixture("data_fixtures.json");
    for case in data["lsj"].as_array().unwrap() {
        let hw = usizes(&case["hw"]);
        let target = case["target"].as_u64().unwrap() as usize;
        let (s, u) = (case["s"].as_f64().unwrap(), case["u"].as_f64().unwrap());
        let (scale, (nh, nw)) = resize_scale_size(hw[0], hw[1], target, s);
        assert_eq!(scale, case["scale"].as_f64().unwrap(), "{case}");
        assert_eq!(vec![nh, nw], usizes(&case["resized_hw"]), "{case}");
        let (oy, ox) = crop_offset(nh, nw, target, u);
        assert_eq!(vec![oy, ox], usizes(&case["offset_yx"]), "{case}");
    }
    // numpy rounds half to even: offsets 2.5 -> 2 and 3.5 -> 4.
    assert_eq!(crop_offset(9, 11, 4, 0.5), (2, 4));
}

#[test]
fn test_resize_matches_get_output_shape() {
    let data = fixture("data_fixtures.json");
    for case in data["test_resize"].as_array().unwrap() {
        let hw = usizes(&case["hw"]);
        let side = case["side"].as_u64().unwrap() as usize;
        let (scale, (nh, nw)) = test_resize_size(hw[0], hw[1], side);
        assert_eq!(vec![nh, nw], usizes(&case["resized_hw"]), "{case}");
        // The long side becomes S (up to rounding) and the scale says so.
        assert_eq!(nh.max(nw), side, "{case}");
        assert!((scale - side as f64 / hw[0].max(hw[1]) as f64).abs() < 1e-12, "{case}");
    }
}

#[test]
fn normalisation_matches_torch_and_pads_with_zeros() {
    let data = fixture("data_fixtures.json");
    let want: Vec<Vec<f32>> =
        data["normalize"].as_array().unwrap().iter().map(common::f32s).collect();
    // A 1 x 256 image whose pixel x has value x in every channel, padded to 256.
    let img = RgbImage { height: 1, width: 256, data: (0..=255u8).flat_map(|v| [v, v, v]).collect() };
    let out = normalize_and_pad(&img, 256);
    for c in 0..3 {
        assert_eq!(&out[c * 256 * 256..c * 256 * 256 + 256], &want[c][..], "channel {c}");
        assert!(out[c * 256 * 256 + 256..(c + 1) * 256 * 256].iter().all(|&v| v == 0.0));
    }
}

/// A 100 x 100 grey image with three square-ish instances.
fn handcrafted() -> (ImageRecord, RgbImage) {
    let square = |x0: f64, y0: f64, x1: f64, y1: f64| vec![x0, y0, x1, y0, x1, y1, x0, y1];
    let record = ImageRecord {
        image_id: 7,
        path: "unused.png".into(),
        height: 100,
        width: 100,
        instances: vec![
            Instance { class: 0, polygons: vec![square(10.0, 10.0, 60.0, 60.0)] },
            Instance { class: 1, polygons: vec![square(70.0, 70.0, 90.0, 90.0)] },
            Instance { class: 2, polygons: vec![square(0.0, 0.0, 25.5, 40.0)] },
        ],
    };
    (record, RgbImage { height: 100, width: 100, data: vec![128; 100 * 100 * 3] })
}

#[test]
fn lsj_clips_polygons_to_the_crop_and_recomputes_boxes() {
    let (record, image) = handcrafted();
    // Scale 2 to 200 x 200, crop 64 x 64 at (50, 50): the window is [50, 114]².
    let params = LsjParams { flip: false, resized_hw: (200, 200), scale: 2.0, offset_yx: (50, 50) };
    let s = apply_lsj(&record, &image, &params, 64);
    // Square 1 -> (20..120)² clipped to [50, 114]² -> (0..64)² after the shift.
    // Square 2 -> (140..180)²: outside, dropped. Square 3 -> x 0..51, y 0..80
    // -> clipped x 50..51, y 50..80 -> box (0, 0, 1, 30).
    assert_eq!(s.classes, vec![0, 2]);
    assert_eq!(s.boxes, vec![[0.0, 0.0, 64.0, 64.0], [0.0, 0.0, 1.0, 30.0]]);
    for (b, parts) in s.boxes.iter().zip(&s.polygons) {
        assert_eq!(polygons_box(parts).unwrap(), *b);
    }
    assert_eq!((s.input_hw, s.valid_hw, s.original_hw, s.image_id), ((64, 64), (64, 64), (100, 100), 7));
    // Uniform grey stays grey through Pillow's resize: (128 - mean) / std everywhere.
    assert!(s.pixels[..64 * 64].iter().all(|&v| v == (128.0 - 123.675) / 58.395));

    // Flipped first: x -> 100 - x, so square 1 spans x 40..90 -> 80..180 ->
    // clipped 80..114 -> 30..64; square 3 spans x 74.5..100 -> 149..200: gone.
    let flipped = LsjParams { flip: true, ..params };
    let s = apply_lsj(&record, &image, &flipped, 64);
    assert_eq!(s.classes, vec![0]);
    assert_eq!(s.boxes, vec![[30.0, 0.0, 64.0, 64.0]]);
}

#[test]
fn lsj_small_result_is_padded_and_keeps_whole_polygons() {
    let (record, mut image) = handcrafted();
    for (i, v) in image.data.iter_mut().enumerate() {
        *v = (i % 251) as u8;
    }
    // Scale 0.3 to 30 x 30: nothing to crop (offset 0), padded to 64.
    let params = LsjParams { flip: false, resized_hw: (30, 30), scale: 0.3, offset_yx: (0, 0) };
    let s = apply_lsj(&record, &image, &params, 64);
    assert_eq!(s.valid_hw, (30, 30));
    assert_eq!(s.classes, vec![0, 1, 2]);
    assert_eq!(s.boxes[0], [3.0, 3.0, 18.0, 18.0]);
    let want = normalize_and_pad(&resize(&image, 30, 30, Filter::Bilinear), 64);
    assert_eq!(s.pixels, want);
    assert_eq!(s.pixels[64 * 64 - 1], 0.0, "padding is zero");
}

#[test]
fn test_transform_scales_instances_and_maps_back() {
    let (mut record, _) = handcrafted();
    record.height = 50;
    let image = RgbImage { height: 50, width: 100, data: vec![9; 50 * 100 * 3] };
    let s = apply_test(&record, &image, 64);
    assert_eq!(s.valid_hw, (32, 64));
    assert_eq!(s.scale, 0.64);
    assert_eq!(s.input_to_original(), (100.0 / 64.0, 50.0 / 32.0));
    assert_eq!(s.boxes[0], [6.4, 6.4, 38.4, 38.4]);
    assert_eq!(s.classes, vec![0, 1, 2]);
}

#[test]
fn boxes_from_polygons_follow_detectron2() {
    // The max starts at 0, as in PolygonMasks.get_bounding_boxes, so an
    // all-negative part gets a box with max corner (0, 0).
    assert_eq!(polygons_box(&[vec![-5.0, -4.0, -1.0, -4.0, -1.0, -2.0]]), Some([-5.0, -4.0, 0.0, 0.0]));
    assert_eq!(polygons_box(&[]), None);
    assert_eq!(
        polygons_box(&[vec![1.5, 2.0, 3.0, 2.0, 3.0, 9.0], vec![0.5, 4.0, 1.0, 4.0, 1.0, 5.0]]),
        Some([0.5, 2.0, 3.0, 9.0])
    );
}

#[test]
fn rle_rectangles_rasterise_back_to_the_mask() {
    // A 6 x 5 mask with a hole and a column wrap (column-major index y + 6x).
    let rows = ["01110", "01010", "01110", "00001", "10001", "10000"];
    let bitmap: Vec<u8> = rows.iter().flat_map(|r| r.bytes().map(|b| b - b'0')).collect();
    let rle = Rle::encode_row_major(&bitmap, 6, 5).unwrap();
    let rects = rle_to_rectangles(&rle);
    assert_eq!(Rle::from_polygons(&rects, 6, 5).unwrap(), rle);
    // Columns 1 and 3 are the same run (rows 0..3) but not adjacent: 6 rectangles
    // (col 0 rows 4..6, which continues into col 1 rows 0..3 in column-major
    // order; col 2 rows 0..1 and 2..3; col 3 rows 0..3; col 4 rows 3..5).
    assert_eq!(rects.len(), 6);
    // Every object of some rendered shapes scenes (occluded ones are RLE).
    let cfg = ShapesConfig { train: 6, val: 0, size: 96, seed: 3, task: ShapesTask::Detection, ..ShapesConfig::default() };
    let mut checked = 0;
    for i in 0..6 {
        let scene = coco::shapes::render_detection(&cfg, Split::Train, i).unwrap();
        for obj in &scene.objects {
            let rects = rle_to_rectangles(&obj.mask);
            if obj.mask.area() == 0 {
                assert!(rects.is_empty());
                continue;
            }
            assert_eq!(Rle::from_polygons(&rects, 96, 96).unwrap(), obj.mask);
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn layout_discovery_tells_the_layouts_apart_and_names_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let err = DataLayout::discover(&root.join("nope")).unwrap_err();
    assert!(err.is_user_error());
    assert!(err.to_string().contains("nope") && err.to_string().contains("expected a dataset directory"), "{err}");
    let err = DataLayout::discover(root).unwrap_err().to_string();
    assert!(err.contains("instances_{train,val}2017.json") && err.contains("instances_{train,val}.json"), "{err}");

    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::write(root.join("annotations/instances_val2017.json"), "{}").unwrap();
    let err = DataLayout::discover(root).unwrap_err().to_string();
    assert!(err.contains("val2017") && err.contains("image directory"), "{err}");
    std::fs::create_dir(root.join("val2017")).unwrap();
    let layout = DataLayout::discover(root).unwrap();
    assert_eq!(layout.kind, LayoutKind::Coco2017);
    assert_eq!(layout.split(Split::Val).unwrap().images, root.join("val2017"));
    let err = layout.split(Split::Train).unwrap_err().to_string();
    assert!(err.contains("instances_train2017.json"), "{err}");

    let shapes = root.join("shapes");
    std::fs::create_dir_all(shapes.join("annotations")).unwrap();
    std::fs::create_dir_all(shapes.join("train")).unwrap();
    std::fs::write(shapes.join("annotations/instances_train.json"), "{}").unwrap();
    let layout = DataLayout::discover(&shapes).unwrap();
    assert_eq!(layout.kind, LayoutKind::Shapes);
    assert!(layout.val.is_none() && layout.train.is_some());

    let err = SplitFiles::explicit(&root.join("x.json"), root).unwrap_err().to_string();
    assert!(err.contains("x.json") && err.contains("COCO instances JSON"), "{err}");
    let err = SplitFiles::explicit(&shapes.join("annotations/instances_train.json"), &root.join("imgs"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("imgs") && err.contains("image directory"), "{err}");
    // A malformed JSON surfaces as a user error naming the file.
    let files = SplitFiles::explicit(&shapes.join("annotations/instances_train.json"), &shapes.join("train")).unwrap();
    let err = DetectionDataset::load(&files, Purpose::Train).unwrap_err();
    assert!(err.is_user_error() && err.to_string().contains("instances_train.json"), "{err}");
}

#[test]
fn training_needs_an_image_with_annotations() {
    use coco::types::{CategoryId, ImageId, ImageInfo, InstancesFile};
    let file = InstancesFile {
        images: vec![ImageInfo { id: ImageId(1), file_name: "a.png".into(), width: 4, height: 4 }],
        categories: vec![coco::types::Category { id: CategoryId(3), name: "x".into(), supercategory: None }],
        ..InstancesFile::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.png"), b"").unwrap();
    let (coco_ds, _) = coco::dataset::Dataset::from_instances(file, Path::new("mem.json"), None).unwrap();
    let train = DetectionDataset::from_coco(&coco_ds, tmp.path(), Purpose::Train).unwrap();
    assert!(train.is_empty());
    assert_eq!(train.report().images_without_instances, 1);
    let err = train_stream(Arc::new(train), loader_cfg(1), 0).err().unwrap();
    assert!(err.to_string().contains("no image with a usable annotation"), "{err}");
    let eval = DetectionDataset::from_coco(&coco_ds, tmp.path(), Purpose::Eval).unwrap();
    assert_eq!(eval.len(), 1, "evaluation keeps images without annotations");
    assert_eq!((eval.category_id(0), eval.class_index(3), eval.class_index(4)), (Some(3), Some(0), None));
}

#[test]
fn repeated_image_and_category_ids_are_one_image_and_one_class() {
    use coco::types::{Category, CategoryId, ImageId, ImageInfo, InstancesFile};
    let image = |name: &str| ImageInfo { id: ImageId(1), file_name: name.into(), width: 4, height: 4 };
    let category = |name: &str| Category { id: CategoryId(3), name: name.into(), supercategory: None };
    let file = InstancesFile {
        images: vec![image("a.png"), image("b.png")],
        categories: vec![category("x"), category("y")],
        ..InstancesFile::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    for name in ["a.png", "b.png"] {
        std::fs::write(tmp.path().join(name), b"").unwrap();
    }
    let (coco_ds, report) = coco::dataset::Dataset::from_instances(file, Path::new("mem.json"), None).unwrap();
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    let eval = DetectionDataset::from_coco(&coco_ds, tmp.path(), Purpose::Eval).unwrap();
    assert_eq!(eval.len(), 1, "the last entry of a repeated image id is the image");
    assert!(eval.images()[0].path.ends_with("b.png"));
    assert_eq!((eval.category_id(0), eval.category_id(1)), (Some(3), None));
}

fn shapes_dataset(dir: &Path) -> coco::shapes::ShapesSummary {
    let cfg = ShapesConfig { train: 10, val: 5, size: 64, seed: 11, task: ShapesTask::Detection, ..ShapesConfig::default() };
    coco::shapes::generate(&cfg, dir).unwrap()
}

fn loader_cfg(threads: usize) -> LoaderConfig {
    LoaderConfig { batch_size: 3, threads, prefetch: 2, seed: 5, lsj: LsjConfig::vitdet(48) }
}

#[test]
fn shapes_dataset_loads_and_streams_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = shapes_dataset(tmp.path());
    let layout = DataLayout::discover(tmp.path()).unwrap();
    assert_eq!(layout.kind, LayoutKind::Shapes);
    let train = DetectionDataset::load(layout.split(Split::Train).unwrap(), Purpose::Train).unwrap();
    let report = train.report();
    assert_eq!(report.images_in_file, 10);
    assert_eq!(report.crowd_dropped, summary.crowd[0]);
    let instances: usize = train.images().iter().map(|r| r.instances.len()).sum();
    assert_eq!(instances + report.crowd_dropped + report.invalid_segmentation.0, summary.annotations[0]);
    assert!(report.rle_converted > 0, "occluded shapes are RLE in the file");
    assert_eq!(train.num_classes(), coco::shapes::ShapeKind::ALL.len());
    for k in 0..train.num_classes() {
        assert_eq!(train.class_index(train.category_id(k).unwrap()), Some(k));
    }
    assert_eq!(train.class_names().len(), train.num_classes());

    // Pure function of (seed, iteration), whatever the thread count.
    let stats = LoaderStats::default();
    let cfg = loader_cfg(2);
    let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
    let a = pool(1).install(|| train_batch(&train, &cfg, 4, &stats));
    let b = pool(2).install(|| train_batch(&train, &cfg, 4, &stats));
    assert_eq!(a, b);
    assert_eq!(a.samples.len(), 3);
    let c = train_batch(&train, &cfg, 5, &stats);
    assert_ne!(a.samples, c.samples);
    let other_seed = train_batch(&train, &LoaderConfig { seed: 6, ..cfg }, 4, &stats);
    assert_ne!(a.samples, other_seed.samples);
    // Every training image appears once per epoch: 10 images, B = 3, so the
    // first 9 positions of epoch 0 are distinct.
    let ids: Vec<u64> =
        (0..3).flat_map(|i| train_batch(&train, &cfg, i, &stats).samples.into_iter().map(|s| s.image_id)).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 9, "{ids:?}");

    // The stream resumed at iteration 4 starts with that batch.
    let train = Arc::new(train);
    let mut stream = train_stream(Arc::clone(&train), cfg, 4).unwrap();
    assert_eq!(stream.next().unwrap(), a);
    assert_eq!(stream.next().unwrap(), c);
    drop(stream);
    for s in &a.samples {
        assert_eq!(s.pixels.len(), 3 * 48 * 48);
        assert_eq!((s.boxes.len(), s.classes.len(), s.polygons.len()), (s.classes.len(), s.classes.len(), s.classes.len()));
        for (b, parts) in s.boxes.iter().zip(&s.polygons) {
            assert_eq!(polygons_box(parts).unwrap(), *b);
            assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= 48.0 && b[3] <= 48.0, "{b:?}");
            assert!(b[2] - b[0] > 1e-5 && b[3] - b[1] > 1e-5);
        }
    }
    let t = pixels_to_tensor(&a.samples, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[3, 3, 48, 48]);
}

#[test]
fn eval_stream_is_ordered_and_skips_corrupt_images() {
    let tmp = tempfile::tempdir().unwrap();
    shapes_dataset(tmp.path());
    let layout = DataLayout::discover(tmp.path()).unwrap();
    let files = layout.split(Split::Val).unwrap();
    std::fs::write(files.images.join("000001.png"), b"not a png").unwrap();
    std::fs::remove_file(files.images.join("000003.png")).unwrap();
    let val = DetectionDataset::load(files, Purpose::Eval).unwrap();
    assert_eq!(val.len(), 4, "the missing file is dropped at load");
    assert_eq!(val.report().missing_files.0, 1);
    let mut stream = eval_stream(Arc::new(val), loader_cfg(2)).unwrap();
    let batches: Vec<_> = stream.by_ref().collect();
    assert_eq!(batches.len(), 2);
    let ids: Vec<u64> = batches.iter().flat_map(|b| b.samples.iter().map(|s| s.image_id)).collect();
    assert_eq!(ids, vec![1, 3, 5], "image 2 (000001.png) is corrupt, image 4 missing");
    assert_eq!(stream.stats().skipped(), 1);
    let summary = stream.stats().summary().unwrap();
    assert!(summary.contains("000001.png"), "{summary}");
    for s in batches.iter().flat_map(|b| &b.samples) {
        assert_eq!((s.valid_hw, s.original_hw, s.scale), ((48, 48), (64, 64), 0.75));
    }
}

#[test]
fn an_annotation_size_differing_from_the_upright_image_is_reported() {
    // EXIF orientation itself is tested with vision::decode (vision/tests/decode.rs).
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("photo.png");
    image::RgbImage::from_pixel(32, 16, image::Rgb([9, 8, 7])).save(&path).unwrap();
    let record = |width, height| ImageRecord { image_id: 1, path: path.clone(), height, width, instances: Vec::new() };
    assert_eq!(load_image(&record(32, 16)).unwrap().height, 16);
    // An annotation made on the other orientation names the file and both sizes.
    let err = load_image(&record(16, 32)).unwrap_err();
    assert!(err.is_user_error());
    let err = err.to_string();
    assert!(err.contains("photo.png") && err.contains("32x16") && err.contains("16x32") && err.contains("EXIF"), "{err}");
}
