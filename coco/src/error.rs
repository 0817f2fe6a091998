//! The one error type of the `coco` crate.
//!
//! Every variant carries the context needed to act on it: the file, the entry
//! (annotation id, results index) and what was expected. [`Error::is_user_error`]
//! tells the CLI which ones the user can fix (exit code 2) from runtime
//! failures (exit code 1). A variant that wraps a cause keeps it as
//! `source()` and leaves it out of its own message, so a chain printed with
//! `{:#}` names every cause once.

use std::path::PathBuf;

use crate::types::{AnnId, ImageId};

/// Errors of the COCO toolkit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- Files: dataset, results and the evaluator's inputs ----
    /// A file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (results, plots, JSON reports).
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Malformed JSON or a value of the wrong type, with its position.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error (0 if unknown, e.g. at end of file).
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description, without its own position suffix.
        message: String,
    },
    /// A ground-truth segmentation that cannot be turned into a mask.
    #[error("{path}: annotation {ann_id}")]
    AnnotationMask {
        /// The instances file.
        path: PathBuf,
        /// The annotation.
        ann_id: AnnId,
        /// What the mask code said.
        #[source]
        source: Box<Error>,
    },
    /// A ground-truth annotation without the segmentation a segm evaluation needs.
    #[error("{path}: annotation {ann_id} has no segmentation, needed for --iou-type segm")]
    MissingSegmentation {
        /// The instances file.
        path: PathBuf,
        /// The annotation.
        ann_id: AnnId,
    },
    /// A repeated annotation id whose last occurrence, evaluated in place of
    /// the others, is on an undeclared image: its mask has no image size.
    #[error(
        "{path}: annotation id {ann_id} repeats and its last occurrence, which is evaluated in place of \
         the others, is on image {image_id}, which `images` does not declare; a segm evaluation cannot \
         rasterise it (pycocotools fails here too)"
    )]
    EvaluatedAnnotationOnUnknownImage {
        /// The instances file.
        path: PathBuf,
        /// The repeated id.
        ann_id: AnnId,
        /// The undeclared image.
        image_id: ImageId,
    },
    /// A results file that is an empty list (pycocotools fails on it too).
    #[error("{path}: the results file has no detections")]
    EmptyResults {
        /// The results file.
        path: PathBuf,
    },
    /// Detections on images that are not in the ground truth (`loadRes`:
    /// "Results do not correspond to current coco set").
    #[error("{path}: {count} detection(s) on images not in the ground truth, first: entry {index} (image {image_id})")]
    ResultUnknownImage {
        /// The results file.
        path: PathBuf,
        /// How many detections are affected.
        count: usize,
        /// 0-based index of the first one in the file.
        index: usize,
        /// Its image id.
        image_id: ImageId,
    },
    /// A detection without a field its results file's form requires (`loadRes`
    /// picks the form from the first entry: `bbox` if it has one, else `segmentation`).
    #[error("{path}: entry {index} has no `{field}` ({why})")]
    ResultMissingField {
        /// The results file.
        path: PathBuf,
        /// 0-based index in the file.
        index: usize,
        /// The missing field.
        field: &'static str,
        /// Why the field is required.
        why: &'static str,
    },
    /// A segm evaluation of results that carry no masks.
    #[error("{path}: segm evaluation needs masks, but the results have no `segmentation` (box results: use --iou-type bbox)")]
    ResultsWithoutMasks {
        /// The results file.
        path: PathBuf,
    },
    /// A detection mask that cannot be decoded.
    #[error("{path}: entry {index}")]
    ResultMask {
        /// The results file.
        path: PathBuf,
        /// 0-based index in the file.
        index: usize,
        /// What the mask code said.
        #[source]
        source: Box<Error>,
    },
    /// A detection mask whose size is not its image's size (pycocotools would
    /// score every pair -1; that is almost always a bug in the exporter).
    #[error("{path}: entry {index}: mask is {}x{}, but image {image_id} is {}x{}", found[0], found[1], expected[0], expected[1])]
    ResultMaskSize {
        /// The results file.
        path: PathBuf,
        /// 0-based index in the file.
        index: usize,
        /// The image.
        image_id: ImageId,
        /// `[h, w]` of the image.
        expected: [u32; 2],
        /// `[h, w]` of the mask.
        found: [u32; 2],
    },
    /// Evaluation parameters that break the evaluator's assumptions.
    #[error("invalid evaluation parameters: {reason}")]
    Params {
        /// What is wrong.
        reason: String,
    },
    /// A plot could not be drawn or saved.
    #[error("failed to draw {path}: {message}")]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// The plotting backend's message.
        message: String,
    },

    // ---- Masks (mask/), geometry and the shapes generator ----
    /// A bitmap whose length is not `h * w` (or `h * w` exceeds u32).
    #[error("bitmap of {len} bytes does not match a {h}x{w} mask")]
    BitmapSize {
        /// Mask height.
        h: u32,
        /// Mask width.
        w: u32,
        /// Bitmap length.
        len: usize,
    },
    /// RLE counts that do not sum to `h * w`.
    #[error("RLE counts sum to {sum}, but a {h}x{w} mask has {} pixels", u64::from(*h) * u64::from(*w))]
    RleCountsSum {
        /// Mask height.
        h: u32,
        /// Mask width.
        w: u32,
        /// Sum of the counts.
        sum: u64,
    },
    /// A malformed compressed RLE string.
    #[error("invalid compressed RLE counts at byte {offset}: {reason}")]
    RleString {
        /// Byte offset of the offending character.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Masks of different sizes given to an operation that needs one size.
    #[error("{what}: mask {index} is {}x{}, expected {}x{}", found[0], found[1], expected[0], expected[1])]
    MaskSizeMismatch {
        /// The operation (`"merge"`, `"iou detection"`, ...).
        what: &'static str,
        /// Index of the offending mask in its list.
        index: usize,
        /// `[h, w]` of the first mask.
        expected: [u32; 2],
        /// `[h, w]` of the offending mask.
        found: [u32; 2],
    },
    /// A merge of zero masks (pycocotools returns a 0x0 mask).
    #[error("cannot merge an empty list of masks")]
    MergeEmpty,
    /// IoU inputs whose lengths disagree.
    #[error("iou: {dt} detections x {gt} ground truths need {gt} crowd flags and {} outputs, got {iscrowd} and {out}", dt * gt)]
    IouShape {
        /// Number of detections.
        dt: usize,
        /// Number of ground truths.
        gt: usize,
        /// Length of `iscrowd`.
        iscrowd: usize,
        /// Length of `out`.
        out: usize,
    },
    /// A segmentation pycocotools cannot convert (see `mask::segmentation`).
    #[error("unsupported segmentation: {reason}")]
    Segmentation {
        /// What is wrong.
        reason: String,
    },
    /// A shapes-dataset setting out of range.
    #[error("invalid shapes dataset setting {field}: {reason}")]
    ShapesConfig {
        /// The [`crate::shapes::ShapesConfig`] / [`crate::shapes::SceneParams`]
        /// field, e.g. `"sides"`.
        field: &'static str,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// An image could not be encoded or written.
    #[error("failed to write image {path}: {source}")]
    ImageWrite {
        /// The image file.
        path: PathBuf,
        /// The encoder's failure.
        #[source]
        source: image::ImageError,
    },
}

impl From<atomic_write::Error> for Error {
    /// An atomic write's failure is a [`Error::Write`] of the file asked for.
    fn from(e: atomic_write::Error) -> Self {
        Error::Write { path: e.path, source: e.cause }
    }
}

impl Error {
    /// True for mistakes the user can fix (bad or inconsistent input files,
    /// bad parameters): the CLI exits with code 2. Failing to write output or
    /// to draw a plot is a runtime failure (exit code 1).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Write { .. } | Error::Plot { .. } | Error::ImageWrite { .. })
    }

    /// Wraps a serde_json error with the file it came from, keeping line and column.
    pub fn json(path: impl Into<PathBuf>, err: &serde_json::Error) -> Self {
        let full = err.to_string();
        // serde_json appends " at line L column C"; keep the message alone.
        let message = match full.rfind(" at line ") {
            Some(cut) if err.line() > 0 => full[..cut].to_owned(),
            _ => full,
        };
        Error::Json { path: path.into(), line: err.line(), column: err.column(), message }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn json_error_keeps_line_and_column() {
        let err = serde_json::from_str::<Vec<u32>>("[1,\n 2,\n x]").unwrap_err();
        let e = Error::json("gt.json", &err);
        assert_eq!(e.to_string(), "gt.json:3:2: expected value");
        assert!(e.is_user_error());
    }

    #[test]
    fn write_failures_are_not_user_errors() {
        let e = Error::Write { path: "out.json".into(), source: std::io::Error::other("disk full") };
        assert!(!e.is_user_error());
        assert_eq!(e.to_string(), "failed to write out.json");
        assert_eq!(std::error::Error::source(&e).map(ToString::to_string).as_deref(), Some("disk full"));
    }
}
