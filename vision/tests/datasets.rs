//! The dataset readers against the references, on tiny copies of each
//! published format written by `tests/fixtures/make_dataset_fixtures.py`:
//! every reader's index (classes, images in order, labels) must equal what
//! torchvision's dataset class (or scipy plus MAE-Lite's logic for Cars,
//! MAE-Lite's logic for iNat18) built from the same files, stored in
//! `fixtures/datasets/expected/*.json`; the MAT-file reader must return what
//! `scipy.io.loadmat` returns (`fixtures/datasets/mat/*.json`). Then the
//! error cases: each must be one error naming the file and what was expected.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use vision::datasets::mat::{MatArray, MatData, MatFile};
use vision::datasets::{open, DatasetError, DatasetKind, ImageSource, LabeledImages, Split};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datasets")
}

/// FNV-1a 64 of a byte string, as the fixture script hashes CIFAR pixels.
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The index as the expected JSON writes it: files relative to the
/// fixtures folder, CIFAR images by the hash of their HWC pixels.
fn as_json(index: &LabeledImages) -> Value {
    let base = fixtures();
    let items: Vec<Value> = index
        .items
        .iter()
        .map(|(source, label)| {
            let image = match source {
                ImageSource::File(path) => path.strip_prefix(&base).unwrap().to_str().unwrap().replace('\\', "/"),
                ImageSource::Cifar { images, index } => fnv1a64(&images.image(*index).unwrap().data),
            };
            json!([image, label])
        })
        .collect();
    json!({ "classes": index.classes, "items": items })
}

fn expected(name: &str) -> Value {
    let path = fixtures().join("expected").join(format!("{name}.json"));
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

/// Opens both splits of `kind` at each of `roots` and compares them with
/// `expected/{name}_{train,val}.json`.
fn check(kind: DatasetKind, name: &str, roots: &[&str]) {
    for root in roots {
        for split in [Split::Train, Split::Val] {
            let index = open(kind, &fixtures().join(root), split).unwrap_or_else(|e| panic!("{kind} at {root}, {split}: {e}"));
            let got = as_json(&index);
            let want = expected(&format!("{name}_{split}"));
            assert_eq!(
                got,
                want,
                "{kind} at {root}, {split}:\n got: {}\nwant: {}",
                serde_json::to_string_pretty(&got).unwrap(),
                serde_json::to_string_pretty(&want).unwrap()
            );
        }
    }
}

#[test]
fn folder_and_imagenet_match_torchvision_image_folder() {
    check(DatasetKind::Folder, "folder", &["folder"]);
    check(DatasetKind::ImageNet, "folder", &["folder"]);
}

#[test]
fn cifar10_python_and_binary_releases_match_torchvision() {
    // The parent of the extracted folder (torchvision's root) and the folder itself.
    check(DatasetKind::Cifar10, "cifar10", &["cifar10_py2", "cifar10_py3/cifar-10-batches-py", "cifar10_bin"]);
}

#[test]
fn cifar100_python_and_binary_releases_match_torchvision() {
    check(DatasetKind::Cifar100, "cifar100", &["cifar100_py2", "cifar100_bin/cifar-100-binary"]);
}

#[test]
fn flowers_matches_torchvision_train_plus_val_and_test() {
    check(DatasetKind::Flowers, "flowers", &["flowers", "flowers/flowers-102"]);
}

#[test]
fn pets_matches_torchvision() {
    check(DatasetKind::Pets, "pets", &["pets", "pets/oxford-iiit-pet"]);
}

#[test]
fn aircraft_matches_torchvision_from_any_of_its_folders() {
    check(DatasetKind::Aircraft, "aircraft", &["aircraft", "aircraft/fgvc-aircraft-2013b", "aircraft/fgvc-aircraft-2013b/data"]);
}

#[test]
fn cars_matches_maelite_on_scipys_reading() {
    check(DatasetKind::Cars, "cars", &["cars"]);
}

#[test]
fn inat18_matches_maelite() {
    check(DatasetKind::Inat18, "inat", &["inat"]);
}

#[test]
fn cifar_images_are_named_by_batch_file_and_record() {
    let index = open(DatasetKind::Cifar10, &fixtures().join("cifar10_bin"), Split::Train).unwrap();
    let label = index.items[1].0.path_or_label();
    assert!(label.ends_with("cifar-10-batches-bin/data_batch_1.bin[1]"), "{label}");
    let label = index.items[2].0.path_or_label();
    assert!(label.ends_with("data_batch_2.bin[0]"), "{label}");
    let ImageSource::Cifar { images, .. } = &index.items[0].0 else { panic!("not a CIFAR image") };
    assert_eq!(images.len(), 6);
    let debug = format!("{images:?}");
    assert!(debug.len() < 1000 && debug.contains("len: 6"), "{debug}");
    let err = images.image(6).unwrap_err();
    assert!(matches!(err, DatasetError::CifarIndex { index: 6, len: 6, .. }), "{err}");
}

// ------------------------------------------------------------ MAT-files

/// A MAT array in the JSON form of the fixture script's `mat_json`.
fn mat_json(a: &MatArray) -> Value {
    match &a.data {
        MatData::Numeric(v) => json!({"kind": "numeric", "dims": a.dims, "data": v}),
        MatData::Char(c) => json!({"kind": "char", "dims": a.dims, "data": c.iter().collect::<String>()}),
        MatData::Cell(cells) => json!({"kind": "cell", "dims": a.dims, "data": cells.iter().map(mat_json).collect::<Vec<_>>()}),
        MatData::Struct { fields, elements } => json!({
            "kind": "struct",
            "dims": a.dims,
            "fields": fields,
            "data": elements.iter().map(|e| e.iter().map(mat_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }),
    }
}

#[test]
fn mat_reader_matches_scipy_loadmat() {
    for name in ["types_plain", "types_compressed", "big_endian"] {
        let dir = fixtures().join("mat");
        let file = MatFile::read(&dir.join(format!("{name}.mat"))).unwrap();
        let want: Value = serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let want = want.as_object().unwrap();
        let got_names: Vec<&str> = file.variables.iter().map(|(n, _)| n.as_str()).collect();
        let want_names: Vec<&str> = want.keys().map(String::as_str).collect();
        let mut sorted = got_names.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, want_names, "{name}: variables");
        for (var, array) in &file.variables {
            assert_eq!(mat_json(array), want[var], "{name}: variable {var}");
        }
    }
}

#[test]
fn mat_text_helpers_read_rows_and_refuse_matrices() {
    let file = MatFile::read(&fixtures().join("mat/types_compressed.mat")).unwrap();
    assert_eq!(file.get("text").unwrap().text().unwrap(), "car_ims/000001.jpg");
    assert_eq!(file.get("text_utf8").unwrap().text().unwrap(), "Citro\u{eb}n C4 \u{b0}");
    assert_eq!(file.get("empty_text").unwrap().text().unwrap(), "");
    assert!(file.get("char_matrix").unwrap().text().is_none());
    let err = file.get("nope").unwrap_err().to_string();
    assert!(err.contains("types_compressed.mat") && err.contains("`nope`") && err.contains("double_2x3"), "{err}");
}

/// The 128-byte header MATLAB writes before the HDF5 data of a v7.3 file.
fn v73_file() -> Vec<u8> {
    let mut bytes = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".to_vec();
    bytes.resize(116, b' ');
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&0x0200u16.to_le_bytes());
    bytes.extend_from_slice(b"IM");
    bytes.resize(512, 0);
    bytes.extend_from_slice(b"\x89HDF\r\n\x1a\n");
    bytes
}

// ---------------------------------------------------------- error cases

/// A writable copy of fixture folder `name`.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    copy(&fixtures().join(name), &root);
    (dir, root)
}

fn open_err(kind: DatasetKind, root: &Path, split: Split) -> String {
    match open(kind, root, split) {
        Ok(index) => panic!("expected an error, got {} items", index.items.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_annotation_file_is_named() {
    let (_dir, root) = copy_fixture("flowers");
    fs::remove_file(root.join("flowers-102/setid.mat")).unwrap();
    let err = open_err(DatasetKind::Flowers, &root, Split::Train);
    assert!(err.contains("flowers-102/setid.mat not found") && err.contains("trnid"), "{err}");

    let err = open_err(DatasetKind::Cars, &fixtures().join("flowers"), Split::Train);
    assert!(err.contains("cars_annos.mat not found") && err.contains("car_ims/"), "{err}");

    let err = open_err(DatasetKind::Cifar100, &fixtures().join("cifar10_py2"), Split::Train);
    assert!(err.contains("cifar-100-python") && err.contains("fine_label_names.txt"), "{err}");

    let (_dir, root) = copy_fixture("cifar10_py2");
    fs::remove_file(root.join("cifar-10-batches-py/batches.meta")).unwrap();
    let err = open_err(DatasetKind::Cifar10, &root, Split::Val);
    assert!(err.contains("cifar-10-batches-py/batches.meta not found") && err.contains("data_batch_1"), "{err}");
}

#[test]
fn a_v73_mat_file_says_so() {
    let (_dir, root) = copy_fixture("flowers");
    fs::write(root.join("flowers-102/setid.mat"), v73_file()).unwrap();
    let err = open_err(DatasetKind::Flowers, &root, Split::Val);
    assert!(err.contains("setid.mat is a MATLAB v7.3 (HDF5) MAT-file"), "{err}");
}

#[test]
fn a_flowers_label_past_102_is_out_of_range() {
    let (_dir, root) = copy_fixture("flowers");
    fs::copy(fixtures().join("mat/flowers_label_103.mat"), root.join("flowers-102/imagelabels.mat")).unwrap();
    // Image 6 (label 103) is in the test split only.
    assert!(open(DatasetKind::Flowers, &root, Split::Train).is_ok());
    let err = open_err(DatasetKind::Flowers, &root, Split::Val);
    assert!(err.contains("imagelabels.mat") && err.contains("image 6") && err.contains("label 103") && err.contains("1..=102"), "{err}");
}

#[test]
fn a_pets_class_of_zero_names_the_line() {
    let (_dir, root) = copy_fixture("pets");
    let list = root.join("oxford-iiit-pet/annotations/trainval.txt");
    let text = fs::read_to_string(&list).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut fields: Vec<&str> = lines[2].split(' ').collect();
    fields[1] = "0";
    lines[2] = fields.join(" ");
    fs::write(&list, lines.join("\n")).unwrap();
    let err = open_err(DatasetKind::Pets, &root, Split::Val);
    assert!(err.contains("trainval.txt: line 3: label 0 is out of range"), "{err}");
}

#[test]
fn pets_comment_lines_are_skipped() {
    let (_dir, root) = copy_fixture("pets");
    for split in ["trainval", "test"] {
        let list = root.join(format!("oxford-iiit-pet/annotations/{split}.txt"));
        let text = fs::read_to_string(&list).unwrap();
        fs::write(&list, format!("#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n\n{text}")).unwrap();
    }
    for split in [Split::Train, Split::Val] {
        let index = open(DatasetKind::Pets, &root, split).unwrap();
        let original = open(DatasetKind::Pets, &fixtures().join("pets"), split).unwrap();
        assert_eq!(index.classes, original.classes);
        let labels = |i: &LabeledImages| i.items.iter().map(|(s, l)| (s.path_or_label().rsplit('/').next().unwrap().to_owned(), *l)).collect::<Vec<_>>();
        assert_eq!(labels(&index), labels(&original));
    }
}

#[test]
fn a_truncated_cifar_binary_batch_is_rejected() {
    let (_dir, root) = copy_fixture("cifar10_bin");
    let batch = root.join("cifar-10-batches-bin/data_batch_3.bin");
    let bytes = fs::read(&batch).unwrap();
    fs::write(&batch, &bytes[..bytes.len() - 100]).unwrap();
    let err = open_err(DatasetKind::Cifar10, &root, Split::Train);
    assert!(err.contains("data_batch_3.bin: size 2973 bytes") && err.contains("3073-byte records"), "{err}");
}

#[test]
fn a_cifar_binary_label_past_the_class_names_is_out_of_range() {
    let (_dir, root) = copy_fixture("cifar10_bin");
    let batch = root.join("cifar-10-batches-bin/test_batch.bin");
    let mut bytes = fs::read(&batch).unwrap();
    bytes[3073] = 10;
    fs::write(&batch, bytes).unwrap();
    let err = open_err(DatasetKind::Cifar10, &root, Split::Val);
    assert!(err.contains("test_batch.bin: image 1: label 10 is out of range, expected 0..10"), "{err}");
}

#[test]
fn a_truncated_cifar_pickle_is_rejected() {
    let (_dir, root) = copy_fixture("cifar100_py2");
    let batch = root.join("cifar-100-python/train");
    let bytes = fs::read(&batch).unwrap();
    fs::write(&batch, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_err(DatasetKind::Cifar100, &root, Split::Train);
    assert!(err.contains("cifar-100-python/train: byte") && err.contains("truncated"), "{err}");
}

#[test]
fn a_listed_image_that_does_not_exist_is_counted_and_named() {
    let (_dir, root) = copy_fixture("aircraft");
    let data = root.join("fgvc-aircraft-2013b/data");
    let list = fs::read_to_string(data.join("images_variant_test.txt")).unwrap();
    let ids: Vec<&str> = list.lines().map(|l| l.split(' ').next().unwrap()).collect();
    fs::remove_file(data.join(format!("images/{}.jpg", ids[3]))).unwrap();
    fs::remove_file(data.join(format!("images/{}.jpg", ids[1]))).unwrap();
    let err = open_err(DatasetKind::Aircraft, &root, Split::Val);
    let first = format!("images/{}.jpg)", ids[1]);
    assert!(err.contains("images_variant_test.txt: 2 of 5 listed images do not exist") && err.contains(&first), "{err}");
}

#[test]
fn an_aircraft_variant_missing_from_variants_txt_is_named() {
    let (_dir, root) = copy_fixture("aircraft");
    let data = root.join("fgvc-aircraft-2013b/data");
    let variants = fs::read_to_string(data.join("variants.txt")).unwrap().replace("Boeing 717\n", "");
    fs::write(data.join("variants.txt"), variants).unwrap();
    let err = open_err(DatasetKind::Aircraft, &root, Split::Train);
    assert!(err.contains("images_variant_trainval.txt: line") && err.contains("found `Boeing 717`"), "{err}");
}

#[test]
fn an_inat_image_of_an_unknown_category_is_out_of_range() {
    let (_dir, root) = copy_fixture("inat");
    let path = root.join("val2018.json");
    let mut doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    doc["images"][2]["file_name"] = json!("train_val2018/Fungi/99/x.jpg");
    fs::write(&path, doc.to_string()).unwrap();
    let err = open_err(DatasetKind::Inat18, &root, Split::Val);
    assert!(err.contains("val2018.json: images[2].file_name") && err.contains("label 99 is out of range"), "{err}");
}

#[test]
fn malformed_inat_json_names_the_position() {
    let (_dir, root) = copy_fixture("inat");
    fs::write(root.join("categories.json"), "[{\"id\": 0}]").unwrap();
    let err = open_err(DatasetKind::Inat18, &root, Split::Train);
    assert!(err.contains("categories.json: line 1, column") && err.contains("missing field `name`"), "{err}");
}

#[test]
fn folder_layout_errors_name_the_folder() {
    let (_dir, root) = copy_fixture("folder");
    // A val class that train lacks.
    fs::create_dir_all(root.join("val/n99999999")).unwrap();
    fs::copy(root.join("val/n01443537/v3.png"), root.join("val/n99999999/a.png")).unwrap();
    let err = open_err(DatasetKind::ImageNet, &root, Split::Val);
    assert!(err.contains("val/n99999999: wrong layout") && err.contains("train"), "{err}");
    // A class folder without images.
    fs::create_dir_all(root.join("train/n99999999/empty")).unwrap();
    let err = open_err(DatasetKind::Folder, &root, Split::Train);
    assert!(err.contains("train/n99999999: wrong layout: expected image files"), "{err}");
    // ImageNet's validation images not yet sorted into class folders.
    let flat = root.join("flat");
    fs::create_dir_all(flat.join("val")).unwrap();
    fs::copy(root.join("val/n01443537/v3.png"), flat.join("val/ILSVRC2012_val_00000001.JPEG")).unwrap();
    let err = open_err(DatasetKind::ImageNet, &flat, Split::Val);
    assert!(err.contains("flat/val: wrong layout") && err.contains("sort them into class folders"), "{err}");
    let err = open_err(DatasetKind::ImageNet, &flat, Split::Train);
    assert!(err.contains("flat/train not found"), "{err}");
}

#[test]
fn val_keeps_train_class_indices_when_a_class_is_absent() {
    let (_dir, root) = copy_fixture("folder");
    fs::remove_dir_all(root.join("val/n01443537")).unwrap();
    let index = open(DatasetKind::Folder, &root, Split::Val).unwrap();
    assert_eq!(index.classes, ["n01440764", "n01443537", "n01484850"]);
    let labels: Vec<usize> = index.items.iter().map(|(_, l)| *l).collect();
    assert_eq!(labels, [0, 0, 2, 2]);
}

#[test]
fn dataset_names_round_trip_and_unknown_ones_list_the_valid() {
    for kind in DatasetKind::ALL {
        assert_eq!(kind.to_string().parse::<DatasetKind>().unwrap(), kind);
    }
    let names: Vec<String> = DatasetKind::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["imagenet", "folder", "cifar10", "cifar100", "flowers", "pets", "aircraft", "cars", "inat18"]);
    let err = "imagenet1k".parse::<DatasetKind>().unwrap_err().to_string();
    assert!(err.contains("`imagenet1k`") && err.contains("cifar100, flowers"), "{err}");
}
