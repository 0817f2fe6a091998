//! Image-folder listing against torchvision's `make_dataset` order
//! (fixture from `fixtures/make_list_fixtures.py`), and its errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::fixture;
use serde_json::Value;
use vision::list::{is_image_file, list_images, IMAGE_EXTENSIONS};
use vision::Error;

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// Builds the fixture's tree under `root`.
fn build_tree(root: &Path, spec: &Value) {
    for rel in strings(&spec["files"]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }
    for pair in spec["links"].as_array().unwrap() {
        let (link, target) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
}

fn relative(root: &Path, files: Vec<PathBuf>) -> Vec<String> {
    files.iter().map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_owned()).collect()
}

#[test]
fn listing_follows_torchvision_order_extensions_and_links() {
    let spec = fixture("list.json");
    let want_ext: Vec<String> = strings(&spec["extensions"]).iter().map(|e| e.trim_start_matches('.').to_owned()).collect();
    assert_eq!(IMAGE_EXTENSIONS.to_vec(), want_ext);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    build_tree(&root, &spec);
    assert_eq!(relative(&root, list_images(&root, true).unwrap()), strings(&spec["recursive"]));
    assert_eq!(relative(&root, list_images(&root, false).unwrap()), strings(&spec["flat"]));
}

#[test]
fn a_file_lists_itself_and_names_decide_what_is_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(list_images(&file, false).unwrap(), vec![file.clone()]);
    assert_eq!(list_images(&file, true).unwrap(), vec![file]);
    for (name, image) in [("a.JPEG", true), ("a.Png", true), (".webp", true), ("a.jpg.txt", false), ("jpg", false), ("a.pngx", false), ("a", false)] {
        assert_eq!(is_image_file(Path::new(name)), image, "{name}");
    }
}

#[test]
fn a_link_cycle_is_walked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/x.png"), b"x").unwrap();
    std::os::unix::fs::symlink("..", root.join("a/up")).unwrap();
    let found = relative(root, list_images(root, true).unwrap());
    // a/up is the top folder again: not followed (torchvision would walk
    // a/up/a/up/... until the path is too long).
    assert_eq!(found, vec!["a/x.png"]);
}

#[test]
fn empty_and_missing_folders_are_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("holiday");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    std::fs::write(empty.join("sub/readme.txt"), b"x").unwrap();
    std::fs::write(empty.join("sub/a.png"), b"x").unwrap();
    let err = list_images(&empty, false).unwrap_err();
    assert!(matches!(err, Error::NoImages { recursive: false, .. }) && err.is_user_error(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("holiday") && text.contains("jpg, jpeg, png"), "{text}");
    assert_eq!(list_images(&empty, true).unwrap(), vec![empty.join("sub/a.png")]);

    let missing = tmp.path().join("no_such_folder");
    let err = list_images(&missing, true).unwrap_err();
    assert!(matches!(err, Error::ReadDir { .. }) && err.is_user_error(), "{err:?}");
    assert_eq!(err.path(), Some(missing.as_path()));
    assert!(err.to_string().contains("no_such_folder"), "{err}");
}
