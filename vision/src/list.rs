//! Finding the image files of a folder, as torchvision's `ImageFolder` does.
//!
//! Mirrors `torchvision/datasets/folder.py`: a file is an image when its
//! name ends with one of `IMG_EXTENSIONS`, case-insensitively
//! (`has_file_allowed_extension`); a recursive listing walks the folders
//! following symbolic links and orders them as `sorted(os.walk(dir,
//! followlinks=True))` with each folder's files sorted by name
//! (`make_dataset`). Deliberate deviations: a link back to a folder being
//! walked (a cycle) is not followed (`os.walk` would recurse until the path
//! is too long), and an unreadable subfolder is an error naming it
//! (`os.walk` skips it silently). Checked against torchvision by
//! `tests/list.rs` (fixture from `tests/fixtures/make_list_fixtures.py`).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// torchvision's `IMG_EXTENSIONS` (lower case, without the dot). This build
/// decodes PNG, JPEG, BMP and PPM/PGM; a TIFF or WebP file is listed and then
/// reported as undecodable, so it is never silently ignored.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Whether the file name ends with `.` and one of [`IMAGE_EXTENSIONS`], in
/// any case (`photo.JPG` is an image). Looks at the name only.
pub fn is_image_file(path: &Path) -> bool {
    let Some(name) = path.file_name() else { return false };
    let name = name.to_string_lossy().to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|ext| name.strip_suffix(ext).is_some_and(|stem| stem.ends_with('.')))
}

/// The image files of `dir` (directly inside it, or anywhere below it when
/// `recursive`), in torchvision's order (see the module doc); `[dir]` itself
/// when `dir` is a file, whatever its name. Symbolic links are followed.
///
/// # Errors
/// [`Error::ReadDir`] naming the folder that cannot be read (including a
/// `dir` that does not exist); [`Error::NoImages`] naming `dir` when no image
/// file was found.
pub fn list_images(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut folders: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    // Each folder still to read, with the canonical paths of the folders
    // above it (itself included once read), to stop at cycles.
    let mut pending: Vec<(PathBuf, Vec<PathBuf>)> = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((folder, mut above)) = pending.pop() {
        let read_error = |source| Error::ReadDir { path: folder.clone(), source };
        let canonical = std::fs::canonicalize(&folder).map_err(read_error)?;
        if above.contains(&canonical) {
            continue;
        }
        above.push(canonical);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&folder).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            // `is_dir` follows links; a broken link counts as a file, as in os.walk.
            if path.is_dir() {
                if recursive {
                    pending.push((path, above.clone()));
                }
            } else if is_image_file(&path) {
                files.push(path);
            }
        }
        files.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        folders.push((folder, files));
    }
    folders.sort_by(|a, b| a.0.as_os_str().as_encoded_bytes().cmp(b.0.as_os_str().as_encoded_bytes()));
    let files: Vec<PathBuf> = folders.into_iter().flat_map(|(_, files)| files).collect();
    if files.is_empty() {
        return Err(Error::NoImages { path: dir.to_path_buf(), recursive });
    }
    Ok(files)
}
