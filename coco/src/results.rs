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
        let detections = match parse_in_parallel(bytes) {
            Some(detections) => detections,
            // One pass over the whole file: the error's line and column are the file's.
            None => serde_json::from_slice(bytes).map_err(|e| Error::json(path, &e))?,
        };
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

/// Files smaller than this are parsed on one thread.
const PARALLEL_PARSE_MIN_BYTES: usize = 1 << 20;

/// Parses a large results array in chunks on all threads: the array is cut at
/// `}` `,` `{` boundaries near evenly spaced offsets, and each chunk is parsed
/// as an array of its own. A cut inside a string would leave a chunk with
/// unbalanced quotes, which fails to parse; any failure (or an input that is
/// not a large `[...]`) returns `None`, and the caller parses the whole file
/// sequentially, which also gives the exact error position.
fn parse_in_parallel(bytes: &[u8]) -> Option<Vec<DetectionResult>> {
    use rayon::prelude::*;
    if bytes.len() < PARALLEL_PARSE_MIN_BYTES {
        return None;
    }
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if bytes[start] != b'[' || bytes[end] != b']' {
        return None;
    }
    let body = &bytes[start + 1..end];
    let n_chunks = rayon::current_num_threads() * 4;
    // (start of a chunk's first element, the comma after its last one).
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(n_chunks);
    let mut start = 0;
    for i in 1..n_chunks {
        let from = (body.len() * i / n_chunks).max(start);
        if let Some((comma, next)) = next_element_boundary(body, from) {
            spans.push((start, comma));
            start = next;
        }
    }
    spans.push((start, body.len()));
    let chunks: Vec<Option<Vec<DetectionResult>>> = spans
        .par_iter()
        .map(|&(from, to)| parse_elements(body.get(from..to)?))
        .collect();
    let mut all = Vec::with_capacity(chunks.iter().map(|c| c.as_ref().map_or(0, Vec::len)).sum());
    for chunk in chunks {
        all.extend(chunk?);
    }
    Some(all)
}

/// Parses `elem, elem, ..., elem` (the inside of an array, no brackets) in
/// place, without copying the chunk into a `[...]` buffer; `None` on any error.
fn parse_elements(chunk: &[u8]) -> Option<Vec<DetectionResult>> {
    let skip_ws = |mut i: usize| {
        while chunk.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut out = Vec::with_capacity(chunk.len() / 64 + 1);
    let mut pos = skip_ws(0);
    while pos < chunk.len() {
        let mut stream = serde_json::Deserializer::from_slice(chunk.get(pos..)?).into_iter::<DetectionResult>();
        out.push(stream.next()?.ok()?);
        pos = skip_ws(pos + stream.byte_offset());
        match chunk.get(pos) {
            None => break,
            Some(b',') => pos = skip_ws(pos + 1),
            Some(_) => return None,
        }
        if pos >= chunk.len() {
            // A trailing comma is not JSON.
            return None;
        }
    }
    Some(out)
}

/// The first `}` `,` `{` (whitespace allowed around the comma) at or after
/// `from`: the comma's offset and the offset of the `{` that starts the next element.
fn next_element_boundary(body: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < body.len() {
        let close = i + body.get(i..)?.iter().position(|&b| b == b'}')?;
        let mut j = close + 1;
        while body.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if body.get(j) == Some(&b',') {
            let comma = j;
            j += 1;
            while body.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
            if body.get(j) == Some(&b'{') {
                return Some((comma, j));
            }
        }
        i = close + 1;
    }
    None
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
    fn large_files_parse_in_chunks_identically() {
        let mask = Rle { h: 4, w: 3, counts: vec![5, 2, 5] };
        let dets: Vec<DetectionResult> = (0..30_000)
            .map(|i| {
                let score = f64::from(i % 997) / 997.0;
                if i % 3 == 0 {
                    DetectionResult::from_mask(ImageId(i64::from(i)), CategoryId(1), &mask, score)
                } else {
                    DetectionResult::from_box(ImageId(i64::from(i)), CategoryId(2), [0.1 * f64::from(i), 1.0, 2.0, 3.0], score)
                }
            })
            .collect();
        let mut text = serde_json::to_vec_pretty(&dets).unwrap();
        assert!(text.len() > PARALLEL_PARSE_MIN_BYTES);
        assert_eq!(parse_in_parallel(&text).unwrap(), dets);
        // A digit replaced by a letter: the chunk fails, the caller falls back and
        // reports the position in the whole file.
        let n = text.len();
        let bad = (n / 2..n).find(|&i| text[i].is_ascii_digit()).unwrap();
        text[bad] = b'x';
        assert!(parse_in_parallel(&text).is_none());
        let err = Results::from_slice(&text, Path::new("dt.json")).unwrap_err();
        assert!(matches!(err, Error::Json { line, .. } if line > 1000), "{err}");
    }

    #[test]
    fn boundary_lookalike_inside_a_string_is_never_a_cut() {
        // Every element carries `},{` inside a string; wherever the cut lands, the
        // result equals a sequential parse.
        let seg = Segmentation::Compressed(crate::types::CompressedRle { size: [1, 1], counts: "1},{\"x".into() });
        let dets: Vec<DetectionResult> = (0..40_000)
            .map(|i| DetectionResult {
                image_id: ImageId(i),
                category_id: CategoryId(1),
                bbox: None,
                score: 0.5,
                segmentation: Some(seg.clone()),
            })
            .collect();
        let text = serde_json::to_vec(&dets).unwrap();
        assert!(text.len() > PARALLEL_PARSE_MIN_BYTES);
        assert_eq!(Results::from_slice(&text, Path::new("dt.json")).unwrap().detections, dets);
    }

    #[test]
    fn elements_parse_in_place_and_reject_malformed_lists() {
        let one = r#"{"image_id":1,"category_id":2,"bbox":[1.5,2.0,3.25,4.0],"score":0.9}"#;
        let two = format!("{one} ,\n {one}");
        assert_eq!(parse_elements(two.as_bytes()).unwrap().len(), 2);
        assert_eq!(parse_elements(one.as_bytes()).unwrap().len(), 1);
        for bad in [format!("{one},"), format!("{one} {one}"), format!("{one},,{one}"), format!(",{one}")] {
            assert!(parse_elements(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn element_boundary_skips_nested_objects() {
        let body = br#"{"a":{"b":1}},  {"c":2}"#;
        assert_eq!(next_element_boundary(body, 0), Some((13, 16)));
        assert_eq!(next_element_boundary(body, 16), None);
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
