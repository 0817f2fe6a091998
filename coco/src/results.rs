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
        let bytes = crate::input::read(path)?;
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
    if let Some(all) = boxes_in_place(body, &spans) {
        return Some(all);
    }
    let chunks: Vec<Option<Vec<DetectionResult>>> = spans
        .par_iter()
        .map(|&(from, to)| {
            let chunk = body.get(from..to)?;
            box_elements(chunk).or_else(|| parse_elements(chunk))
        })
        .collect();
    let mut all = Vec::with_capacity(chunks.iter().map(|c| c.as_ref().map_or(0, Vec::len)).sum());
    for chunk in chunks {
        all.extend(chunk?);
    }
    Some(all)
}

/// Box results straight into one vector, without per-chunk vectors and their
/// concatenation (a copy of the whole list, and its page faults): a chunk of
/// box objects has exactly one `{` per object (the fast path accepts no other
/// object and no string that could hold one), so counting them sizes each
/// chunk's slice of the output. `None` when the first object is not a box
/// result or any chunk does not fill its slice exactly; the caller then parses
/// chunk by chunk.
fn boxes_in_place(body: &[u8], spans: &[(usize, usize)]) -> Option<Vec<DetectionResult>> {
    use rayon::prelude::*;
    let &(from, to) = spans.first()?;
    let first = BoxParser { bytes: body.get(from..to)?, pos: 0 }.object()?;
    if first.segmentation.is_some() {
        return None; // mask objects hold more than one `{`
    }
    let counts: Vec<usize> =
        spans.par_iter().map(|&(from, to)| body.get(from..to).map_or(0, |c| c.iter().filter(|&&b| b == b'{').count())).collect();
    let total = counts.iter().sum();
    let blank = DetectionResult::from_box(ImageId(0), CategoryId(0), [0.0; 4], 0.0);
    let mut all: Vec<DetectionResult> = Vec::with_capacity(total);
    all.par_extend(rayon::iter::repeat_n(blank, total));
    let mut slices = Vec::with_capacity(spans.len());
    let mut rest = all.as_mut_slice();
    for &n in &counts {
        let (head, tail) = rest.split_at_mut(n);
        slices.push(head);
        rest = tail;
    }
    let filled = spans
        .par_iter()
        .zip(slices)
        .all(|(&(from, to), out)| body.get(from..to).is_some_and(|chunk| box_elements_into(chunk, out)));
    filled.then_some(all)
}

/// [`box_elements`] into `out`: true if the chunk holds exactly `out.len()`
/// box objects, all written.
fn box_elements_into(chunk: &[u8], out: &mut [DetectionResult]) -> bool {
    let mut slots = out.iter_mut();
    let parsed = BoxParser { bytes: chunk, pos: 0 }.elements(|p| {
        *slots.next()? = p.object()?;
        Some(())
    });
    parsed.is_some() && slots.next().is_none()
}

/// Parses `elem, elem, ..., elem` (the inside of an array, no brackets) in
/// place, without copying the chunk into a `[...]` buffer; `None` on any error.
fn parse_elements(chunk: &[u8]) -> Option<Vec<DetectionResult>> {
    let mut out = Vec::with_capacity(chunk.len() / 64 + 1);
    BoxParser { bytes: chunk, pos: 0 }.elements(|p| {
        out.push(p.serde_element()?);
        Some(())
    })?;
    Some(out)
}

/// Fast path for the common result shapes: objects whose keys are only
/// `image_id`, `category_id`, `bbox` (4 numbers), `score` and `segmentation`
/// (a compressed RLE, see [`BoxParser::compressed_rle`]), each at most once,
/// unescaped, with JSON-valid numbers. Anything else (an uncompressed or
/// polygon mask, another key, `null`, an escape, a number out of range)
/// returns `None`, and the chunk is parsed by serde instead, so the result
/// is always serde's.
///
/// Values equal serde_json's (`float_roundtrip`): a JSON number token parsed
/// by `str::parse::<f64>` is correctly rounded, as serde's is, including
/// integer tokens (`u64` / `i64` to `f64` rounds to nearest as well) and `-0`.
fn box_elements(chunk: &[u8]) -> Option<Vec<DetectionResult>> {
    let mut out = Vec::with_capacity(chunk.len() / 64 + 1);
    BoxParser { bytes: chunk, pos: 0 }.elements(|p| {
        out.push(p.object()?);
        Some(())
    })?;
    Some(out)
}

/// Powers of ten exactly representable as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22,
];

/// A scanned JSON number (see [`BoxParser::number`]).
struct Number<'a> {
    /// The token's bytes.
    token: &'a [u8],
    /// No fraction and no exponent.
    integer: bool,
    /// The value by Clinger's exact fast path, when it applies.
    fast: Option<f64>,
    /// The value of an integer token of at most 18 digits.
    exact: Option<i64>,
}

/// Cursor of [`box_elements`].
pub(crate) struct BoxParser<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> BoxParser<'a> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips JSON whitespace (space, tab, newline, carriage return).
    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// One `{...}` detection with box-result keys only.
    /// A `"key"` without escapes; the cursor ends after the closing quote.
    pub(crate) fn key(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let bytes: &'a [u8] = self.bytes;
        let start = self.pos;
        let len = bytes.get(start..)?.iter().position(|&b| b == b'"' || b == b'\\')?;
        self.pos = start + len;
        self.expect(b'"')?;
        bytes.get(start..start + len)
    }

    /// Walks `elem, elem, ..., elem` (an array's inside, without brackets)
    /// to the end of the bytes: `element` parses the element at the cursor.
    /// `None` if it declines one or the list is malformed (a trailing comma
    /// included).
    pub(crate) fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.skip_ws();
        while self.pos < self.bytes.len() {
            element(self)?;
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    self.peek()?; // a trailing comma is not JSON
                }
                Some(_) => return None,
            }
        }
        Some(())
    }

    /// The value at the cursor, parsed by serde (which checks it); the
    /// cursor moves past it.
    pub(crate) fn serde_element<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let mut stream = serde_json::Deserializer::from_slice(self.bytes.get(self.pos..)?).into_iter::<T>();
        let value = stream.next()?.ok()?;
        self.pos += stream.byte_offset();
        Some(value)
    }

    /// Walks the members of a `{...}` object: `member` gets each key with
    /// the cursor on its value and must consume the value. `None` (from
    /// `member`, or for malformed or empty objects) means the fast path
    /// declines the object.
    pub(crate) fn members(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        loop {
            let key = self.key()?;
            self.expect(b':')?;
            self.skip_ws();
            member(self, key)?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[a, b, c, d]` as four floats (a bbox).
    pub(crate) fn four_floats(&mut self) -> Option<[f64; 4]> {
        self.expect(b'[')?;
        let mut b = [0.0; 4];
        for (i, v) in b.iter_mut().enumerate() {
            if i > 0 {
                self.expect(b',')?;
            }
            self.skip_ws();
            *v = self.float()?;
        }
        self.expect(b']')?;
        Some(b)
    }

    fn object(&mut self) -> Option<DetectionResult> {
        let (mut image_id, mut category_id, mut bbox, mut score) = (None, None, None, None);
        let mut segmentation = None;
        self.members(|p, key| {
            match key {
                b"image_id" if image_id.is_none() => image_id = Some(p.integer()?),
                b"category_id" if category_id.is_none() => category_id = Some(p.integer()?),
                b"score" if score.is_none() => score = Some(p.float()?),
                b"segmentation" if segmentation.is_none() => segmentation = Some(p.compressed_rle()?),
                b"bbox" if bbox.is_none() => bbox = Some(p.four_floats()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(DetectionResult {
            image_id: ImageId(image_id?),
            category_id: CategoryId(category_id?),
            bbox,
            score: score?,
            segmentation,
        })
    }

    /// A string of printable ASCII whose only escapes are `\\`, `\"` and
    /// `\/` (an RLE string's alphabet `'0'..='o'` holds a backslash, which
    /// JSON writers escape); anything else returns `None`.
    fn ascii_string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let rest = self.bytes.get(self.pos..)?;
            let run = rest.iter().position(|&b| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\')?;
            out.push_str(std::str::from_utf8(rest.get(..run)?).ok()?);
            self.pos += run;
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    let escaped = *self.bytes.get(self.pos + 1)?;
                    if !matches!(escaped, b'\\' | b'"' | b'/') {
                        return None;
                    }
                    out.push(char::from(escaped));
                    self.pos += 2;
                }
                _ => return None,
            }
        }
    }

    /// `{"size": [h, w], "counts": "..."}` with exactly these keys, `h` and
    /// `w` integers in `u32`, and `counts` as [`BoxParser::ascii_string`]
    /// reads it (every RLE string is): a compressed RLE as serde reads it.
    fn compressed_rle(&mut self) -> Option<Segmentation> {
        let (mut size, mut counts) = (None, None);
        self.members(|p, key| {
            match key {
                b"size" if size.is_none() => {
                    p.expect(b'[')?;
                    p.skip_ws();
                    let h = u32::try_from(p.integer()?).ok()?;
                    p.expect(b',')?;
                    p.skip_ws();
                    let w = u32::try_from(p.integer()?).ok()?;
                    p.expect(b']')?;
                    size = Some([h, w]);
                }
                b"counts" if counts.is_none() => counts = Some(p.ascii_string()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(Segmentation::Compressed(crate::types::CompressedRle { size: size?, counts: counts? }))
    }

    /// A JSON number token `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`:
    /// the token, whether it is an integer (no fraction, no exponent), and its
    /// value when an exact fast path applies.
    fn number(&mut self) -> Option<Number<'_>> {
        let start = self.pos;
        // Appends decimal digits to `acc` (wrapping; only trusted while the
        // token has at most 19 digits, < 2^64) and returns how many there were.
        let digits = |p: &mut Self, acc: &mut u64| {
            let from = p.pos;
            while let Some(d) = p.peek().map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9) {
                *acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
                p.pos += 1;
            }
            p.pos - from
        };
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        let mut mantissa = 0u64;
        let n_int = digits(self, &mut mantissa);
        if n_int == 0 || (n_int > 1 && self.bytes.get(int_start) == Some(&b'0')) {
            return None;
        }
        let (mut integer, mut n_frac, mut exp10) = (true, 0usize, 0i64);
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            n_frac = digits(self, &mut mantissa);
            if n_frac == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            integer = false;
            let negative_exp = self.peek() == Some(b'-');
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let mut e = 0u64;
            let n_exp = digits(self, &mut e);
            if n_exp == 0 {
                return None;
            }
            // Beyond 4 digits the fast path is off anyway.
            exp10 = if n_exp > 4 { i64::MAX } else if negative_exp { -(e as i64) } else { e as i64 };
        }
        let token = self.bytes.get(start..self.pos)?;
        // Clinger: an integer mantissa below 2^53 and |exp10| <= 22 are both
        // exact doubles, so one IEEE multiply / divide is correctly rounded,
        // which is what a correct decimal parser (std, serde's
        // float_roundtrip) returns. The sign is applied exactly afterwards.
        let exp10 = exp10.saturating_sub(n_frac as i64);
        let fast = (n_int + n_frac <= 19 && mantissa < 1 << 53 && (-22..=22).contains(&exp10)).then(|| {
            let pow = POW10[exp10.unsigned_abs() as usize];
            let v = if exp10 < 0 { mantissa as f64 / pow } else { mantissa as f64 * pow };
            if negative {
                -v
            } else {
                v
            }
        });
        // An integer token of at most 18 digits (< 2^63) is exact in `mantissa`.
        let exact = (integer && n_int <= 18).then(|| if negative { -(mantissa as i64) } else { mantissa as i64 });
        Some(Number { token, integer, fast, exact })
    }

    /// An `i64` id (serde rejects fractions, exponents and out-of-range ids,
    /// and reads `-0` as the float `-0.0`, which an id rejects too).
    pub(crate) fn integer(&mut self) -> Option<i64> {
        match self.number()? {
            Number { token: b"-0", .. } => None,
            Number { integer: true, exact: Some(v), .. } => Some(v),
            Number { token, integer: true, exact: None, .. } => std::str::from_utf8(token).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// A finite `f64` (serde rejects numbers out of range): the exact fast
    /// path when it applies, else `str::parse` (correctly rounded).
    pub(crate) fn float(&mut self) -> Option<f64> {
        match self.number()? {
            Number { fast: Some(v), .. } => Some(v),
            Number { token, fast: None, .. } => std::str::from_utf8(token).ok()?.parse::<f64>().ok().filter(|v| v.is_finite()),
        }
    }
}

/// The first `}` `,` `{` (whitespace allowed around the comma) at or after
/// `from`: the comma's offset and the offset of the `{` that starts the next element.
pub(crate) fn next_element_boundary(body: &[u8], from: usize) -> Option<(usize, usize)> {
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

/// Writes detections as a results file, atomically ([`write_bytes_atomic`]),
/// so a crash never leaves a truncated file that parses.
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_results(path: &Path, detections: &[DetectionResult]) -> Result<(), Error> {
    write_json_atomic(path, &detections)
}

/// Serialises `value` as JSON to `path` atomically ([`write_bytes_atomic`]).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    write_bytes_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically (for text reports), through the
/// workspace's one protocol ([`atomic_write`]: unique temporary, fsync,
/// rename, fsync of the folder).
///
/// # Errors
/// [`Error::Write`] naming `path`.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    atomic_write::write(path, bytes).map_err(Error::from)
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
    fn float_fast_path_is_correctly_rounded() {
        let mut state = 12345u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200_000 {
            let digits = 1 + next() % 19;
            let m = next() % 10u64.pow(digits as u32);
            let frac = next() % 20;
            let s = m.to_string();
            let token = match i % 4 {
                0 if frac > 0 && (frac as usize) < s.len() => format!("{}.{}", &s[..s.len() - frac as usize], &s[s.len() - frac as usize..]),
                1 => format!("0.{:0>width$}", m, width = frac as usize),
                2 => format!("-{m}e{}", next() % 45) .replace("e", if next() % 2 == 0 { "e-" } else { "e" }),
                _ => format!("{m}"),
            };
            let mut p = BoxParser { bytes: token.as_bytes(), pos: 0 };
            let got = p.float();
            let want = token.parse::<f64>().ok().filter(|v| v.is_finite());
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{token}");
            assert_eq!(p.pos, token.len(), "{token}");
        }
    }

    #[test]
    fn mask_fast_path_equals_serde_or_defers_to_it() {
        let segs = [
            r#"{"size": [4, 5], "counts": "52"}"#,
            r#"{"counts":"0`0<>?@ ~!", "size":[0, 4294967295]}"#,
            r#"{ "size" : [ 4 , 5 ] , "counts" : "" }"#,
            r#"{"size": [4, 5], "counts": "5\"2"}"#,
            r#"{"size": [4, 5], "counts": "5\\2\/\\"}"#,
            r#"{"size": [4, 5], "counts": "5\u00322"}"#,
            r#"{"size": [4, 5], "counts": "5\n2"}"#,
            r#"{"size": [4, 5], "counts": [3, 17]}"#,
            r#"{"size": [4, 5], "counts": "52", "extra": 1}"#,
            r#"{"size": [4, 5], "counts": "52", "counts": "1"}"#,
            r#"{"size": [-1, 5], "counts": "52"}"#,
            r#"{"size": [4294967296, 5], "counts": "52"}"#,
            r#"{"size": [4, 5, 6], "counts": "52"}"#,
            r#"{"size": [4, 5]}"#,
            "{\"size\": [4, 5], \"counts\": \"5\u{e9}2\"}",
            r#"[[1, 2, 3, 4, 5, 6]]"#,
            r#"null"#,
        ];
        let mut checked_fast = 0;
        for seg in segs {
            for text in [
                format!(r#"{{"image_id":1,"category_id":3,"segmentation":{seg},"score":0.5}}"#),
                format!(r#"{{"segmentation":{seg},"score":0.5,"bbox":[1,2,3,4],"image_id":1,"category_id":3}}"#),
            ] {
                let serde = serde_json::from_str::<Vec<DetectionResult>>(&format!("[{text}]")).ok();
                if let Some(fast) = box_elements(text.as_bytes()) {
                    checked_fast += 1;
                    assert_eq!(Some(fast), serde, "{text}");
                }
            }
        }
        assert_eq!(checked_fast, 10);
    }

    #[test]
    fn box_fast_path_equals_serde_or_defers_to_it() {
        let numbers = [
            "0", "-0", "1", "-1", "0.1", "-0.0", "1e5", "1E-3", "2.5e+2", "123456789012345678901234567890",
            "9007199254740993", "-9223372036854775809", "0.30000000000000004", "1e400", "01", "1.", ".5", "+1",
            "1e", "-", "null", "\"1\"", "4.9e-324", "1.7976931348623157e308",
        ];
        let ids = ["1", "-0", "0", "9223372036854775807", "9223372036854775808", "1.0", "1e2", "-3", "01"];
        let mut checked_fast = 0;
        for (i, n) in numbers.iter().enumerate() {
            let id = ids[i % ids.len()];
            for text in [
                format!(r#"{{"image_id":{id},"category_id":3,"bbox":[{n},1,2.5,{n}],"score":{n}}}"#),
                format!("{{ \"score\" : {n} ,\n\t\"category_id\":{id}, \"image_id\":7 }}"),
                format!(r#"{{"image_id":1,"category_id":1,"bbox":[1,2,3],"score":{n}}}"#),
                format!(r#"{{"image_id":1,"category_id":1,"score":{n},"score":1}}"#),
                format!(r#"{{"image_id":1,"category_id":1,"score":{n},"extra":1}}"#),
                format!(r#"{{"image_id":1,"category_id":1,"score":{n}}},{{"image_id":2,"category_id":1,"score":0.5}}"#),
            ] {
                let serde = serde_json::from_str::<Vec<DetectionResult>>(&format!("[{text}]")).ok();
                if let Some(fast) = box_elements(text.as_bytes()) {
                    checked_fast += 1;
                    let serde = serde.expect("the fast path accepted what serde rejects");
                    // Compare bits: -0.0 vs 0.0 must match too.
                    let bits = |d: &[DetectionResult]| {
                        d.iter()
                            .map(|d| (d.image_id, d.category_id, d.score.to_bits(), d.bbox.map(|b| b.map(f64::to_bits))))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(bits(&fast), bits(&serde), "{text}");
                }
            }
        }
        assert!(checked_fast > 20, "{checked_fast}");
        // The written form always takes the fast path.
        let dets = vec![DetectionResult::from_box(ImageId(1), CategoryId(2), [1.5, -0.0, 3.25, 4e-7], 0.9); 3];
        let text = serde_json::to_string(&dets).unwrap();
        assert_eq!(box_elements(text.trim_start_matches('[').trim_end_matches(']').as_bytes()).unwrap(), dets);
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
