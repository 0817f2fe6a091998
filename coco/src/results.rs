//! Results files: reading them for evaluation and writing them so that
//! pycocotools' `COCO.loadRes` accepts them unchanged.
//!
//! The written form is a JSON list of `{"image_id", "category_id", "bbox",
//! "score"}` for boxes (`bbox` as `[x, y, w, h]` in pixels) and
//! `{"image_id", "category_id", "segmentation": {"size": [h, w], "counts":
//! "<string>"}, "score"}` for masks. Mask results are written *without* `bbox`
//! on purpose: `loadRes` picks its branch from the first entry, and an entry
//! with a `bbox` makes it take every detection's area from the box (`w * h`)
//! even in a segm evaluation; without one it uses the mask area and derives the
//! box with `toBbox`, which is what a mask result means.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::mask::Rle;
use crate::types::{BboxXywh, CategoryId, DetectionResult, ImageId, Segmentation};
use crate::Error;

/// A parsed results file: the detections in file order, and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// The file (names it in messages).
    pub path: PathBuf,
    /// The detections, in file order (their index + 1 is their `loadRes` id).
    pub detections: Vec<DetectionResult>,
}

impl Results {
    /// Reads a results file.
    ///
    /// # Errors
    /// [`Error::Read`], [`Error::Json`] (line and column of a malformed entry or
    /// a field of the wrong type), and [`Error::EmptyResults`] for `[]`, which
    /// `loadRes` cannot read either.
    pub fn load(path: &Path) -> Result<Results, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        Results::from_slice(&bytes, path)
    }

    /// Parses results JSON; `path` names it in messages.
    ///
    /// # Errors
    /// As [`Results::load`], less the read error.
    pub fn from_slice(bytes: &[u8], path: &Path) -> Result<Results, Error> {
        let detections: Vec<DetectionResult> = serde_json::from_slice(bytes).map_err(|e| Error::json(path, &e))?;
        if detections.is_empty() {
            return Err(Error::EmptyResults { path: path.to_path_buf() });
        }
        Ok(Results { path: path.to_path_buf(), detections })
    }

    /// True if some detection carries a mask.
    pub fn has_masks(&self) -> bool {
        self.detections.iter().any(|d| d.segmentation.is_some())
    }
}

impl DetectionResult {
    /// A box detection (`bbox` is `[x, y, w, h]` in pixels).
    pub fn from_box(image_id: ImageId, category_id: CategoryId, bbox: BboxXywh, score: f64) -> Self {
        DetectionResult { image_id, category_id, bbox: Some(bbox), score, segmentation: None }
    }

    /// A mask detection: the mask as compressed RLE (`counts` a string) and no
    /// `bbox`, so `loadRes` uses the mask's area and box (see the module doc).
    pub fn from_mask(image_id: ImageId, category_id: CategoryId, mask: &Rle, score: f64) -> Self {
        DetectionResult {
            image_id,
            category_id,
            bbox: None,
            score,
            segmentation: Some(Segmentation::Compressed(mask.to_compressed_rle())),
        }
    }
}

/// Writes detections as a results file, atomically (temporary file, fsync,
/// rename), so a crash never leaves a truncated file that parses.
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_results(path: &Path, detections: &[DetectionResult]) -> Result<(), Error> {
    write_json_atomic(path, &detections)
}

/// Serialises `value` as JSON to `path` atomically (temporary file in the same
/// directory, fsync, rename).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    write_bytes_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically (for text reports).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let fail = |source: std::io::Error| Error::Write { path: path.to_path_buf(), source };
    let file_name = path.file_name().ok_or_else(|| fail(std::io::Error::other("not a file path")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coco-results-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn written_results_read_back_identically() {
        let mask = Rle { h: 4, w: 3, counts: vec![5, 2, 5] };
        let dets = vec![
            DetectionResult::from_box(ImageId(1), CategoryId(2), [1.5, 2.0, 3.25, 4.0], 0.9),
            DetectionResult::from_mask(ImageId(1), CategoryId(3), &mask, 0.25),
        ];
        let path = tmp("round.json");
        write_results(&path, &dets).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            r#"[{"image_id":1,"category_id":2,"bbox":[1.5,2.0,3.25,4.0],"score":0.9},{"image_id":1,"category_id":3,"score":0.25,"segmentation":{"size":[4,3],"counts":"525"}}]"#
        );
        let back = Results::load(&path).unwrap();
        assert_eq!(back.detections, dets);
        assert!(back.has_masks());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn empty_results_file_is_a_user_error() {
        let err = Results::from_slice(b"[]", Path::new("dt.json")).unwrap_err();
        assert!(matches!(err, Error::EmptyResults { .. }));
        assert!(err.is_user_error());
    }

    #[test]
    fn wrong_field_type_names_line_and_column() {
        let err = Results::from_slice(b"[{\"image_id\": 1, \"category_id\": 1,\n \"score\": \"high\", \"bbox\": [0,0,1,1]}]", Path::new("dt.json"))
            .unwrap_err();
        let Error::Json { line, .. } = &err else { unreachable!("{err}") };
        assert_eq!(*line, 2, "{err}");
        assert!(err.to_string().starts_with("dt.json:2:"), "{err}");
    }

    #[test]
    fn write_into_missing_directory_is_a_write_error() {
        let err = write_results(Path::new("/nonexistent-dir/x/dt.json"), &[]).unwrap_err();
        assert!(matches!(err, Error::Write { .. }));
        assert!(!err.is_user_error());
    }
}
