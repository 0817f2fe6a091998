//! A fast path for parsing a large instances file: the top-level object is
//! split into its members, `images` / `categories` / `info` / `licenses` go to
//! serde as they are, and the `annotations` list is cut into chunks parsed in
//! parallel by a small scanner for the common annotation shape (integer ids,
//! `area`, `bbox`, `iscrowd`, `ignore`, polygon segmentations), each other
//! annotation (an RLE, an unknown key, ...) by serde on its own.
//!
//! Every value is serde's: numbers go through the results scanner
//! ([`crate::results`]'s `BoxParser`, pinned against serde and `str::parse`).
//! Anything the fast path does not handle exactly as serde would (an unknown
//! or repeated top-level key, a malformed document, an annotation serde
//! rejects) makes [`parse`] return `None`, and the caller parses the whole
//! file with serde, which gives the value or the error with its position.

use rayon::prelude::*;

use crate::results::{next_element_boundary, BoxParser};
use crate::types::{AnnId, Annotation, Category, CategoryId, ImageId, ImageInfo, InstancesFile, Segmentation};

/// Files smaller than this are left to serde.
const FAST_PATH_MIN_BYTES: usize = 1 << 20;

/// The fast parse of a large instances file, or `None` (see the module doc).
pub(crate) fn parse(bytes: &[u8]) -> Option<InstancesFile> {
    if bytes.len() < FAST_PATH_MIN_BYTES {
        return None;
    }
    parse_any_size(bytes)
}

/// [`parse`] without the size threshold.
fn parse_any_size(bytes: &[u8]) -> Option<InstancesFile> {
    const KEYS: [&[u8]; 5] = [b"info", b"licenses", b"images", b"annotations", b"categories"];
    let mut spans: [Option<&[u8]>; 5] = [None; 5];
    let mut p = BoxParser { bytes, pos: 0 };
    p.members(|p, key| {
        let slot = KEYS.iter().position(|k| *k == key).and_then(|i| spans.get_mut(i))?;
        if slot.is_some() {
            return None; // serde: duplicate field
        }
        let start = p.pos;
        skip_value(p)?;
        *slot = Some(bytes.get(start..p.pos)?);
        Some(())
    })?;
    p.skip_ws();
    if p.pos != bytes.len() {
        return None;
    }
    let [info, licenses, images, annotations, categories] = spans;
    let optional_value = |span: Option<&[u8]>| match span {
        Some(s) => serde_json::from_slice::<Option<serde_json::Value>>(s).ok(),
        None => Some(None),
    };
    let ((info, licenses), (images, categories)) = rayon::join(
        || (optional_value(info), optional_value(licenses)),
        || {
            rayon::join(
                || serde_json::from_slice::<Vec<ImageInfo>>(images?).ok(),
                || serde_json::from_slice::<Vec<Category>>(categories?).ok(),
            )
        },
    );
    let annotations = match annotations {
        Some(span) => annotation_list(span)?,
        None => Vec::new(),
    };
    Some(InstancesFile { info: info?, licenses: licenses?, images: images?, annotations, categories: categories? })
}

/// Moves past one JSON value (string, number, literal, array or object),
/// tracking strings and nesting only: the members it delimits are parsed by
/// serde, which checks them.
fn skip_value(p: &mut BoxParser<'_>) -> Option<()> {
    match p.peek()? {
        b'"' => skip_string(p),
        b'[' | b'{' => {
            let mut depth = 0usize;
            loop {
                match p.peek()? {
                    b'"' => skip_string(p)?,
                    b'[' | b'{' => {
                        depth += 1;
                        p.pos += 1;
                    }
                    b']' | b'}' => {
                        depth = depth.checked_sub(1)?;
                        p.pos += 1;
                        if depth == 0 {
                            return Some(());
                        }
                    }
                    _ => p.pos += 1,
                }
            }
        }
        _ => {
            while !matches!(p.peek()?, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                p.pos += 1;
            }
            Some(())
        }
    }
}

/// Moves past a string (the cursor on its opening quote).
fn skip_string(p: &mut BoxParser<'_>) -> Option<()> {
    p.pos += 1;
    loop {
        match p.peek()? {
            b'\\' => p.pos += 2,
            b'"' => {
                p.pos += 1;
                return Some(());
            }
            _ => p.pos += 1,
        }
    }
}

/// The annotations of a `[...]` span, in parallel chunks.
fn annotation_list(span: &[u8]) -> Option<Vec<Annotation>> {
    let start = span.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = span.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if span.get(start) != Some(&b'[') || span.get(end) != Some(&b']') || end <= start {
        return None;
    }
    let body = span.get(start + 1..end)?;
    let n_chunks = rayon::current_num_threads() * 4;
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(n_chunks);
    let mut from_elem = 0;
    for i in 1..n_chunks {
        let from = (body.len() * i / n_chunks).max(from_elem);
        if let Some((comma, next)) = next_element_boundary(body, from) {
            spans.push((from_elem, comma));
            from_elem = next;
        }
    }
    spans.push((from_elem, body.len()));
    let chunks: Vec<Option<Vec<Annotation>>> =
        spans.par_iter().map(|&(from, to)| body.get(from..to).and_then(annotation_elements)).collect();
    let mut all = Vec::with_capacity(chunks.iter().map(|c| c.as_ref().map_or(0, Vec::len)).sum());
    for chunk in chunks {
        all.extend(chunk?);
    }
    Some(all)
}

/// `elem, elem, ..., elem`: each annotation by the fast scanner, or by serde
/// when the scanner declines it; `None` if serde rejects one too.
fn annotation_elements(chunk: &[u8]) -> Option<Vec<Annotation>> {
    let mut out = Vec::with_capacity(chunk.len() / 256 + 1);
    BoxParser { bytes: chunk, pos: 0 }.elements(|p| {
        let start = p.pos;
        let parsed = annotation(p).or_else(|| {
            p.pos = start;
            p.serde_element()
        })?;
        out.push(parsed);
        Some(())
    })?;
    Some(out)
}

/// One annotation of the common shape (see the module doc), or `None`.
fn annotation(p: &mut BoxParser<'_>) -> Option<Annotation> {
    let (mut id, mut image_id, mut category_id, mut area, mut bbox) = (None, None, None, None, None);
    let (mut segmentation, mut iscrowd, mut ignore) = (None, None, None);
    p.members(|p, key| {
        match key {
            b"id" if id.is_none() => id = Some(p.integer()?),
            b"image_id" if image_id.is_none() => image_id = Some(p.integer()?),
            b"category_id" if category_id.is_none() => category_id = Some(p.integer()?),
            b"area" if area.is_none() => area = Some(p.float()?),
            b"bbox" if bbox.is_none() => bbox = Some(p.four_floats()?),
            b"iscrowd" if iscrowd.is_none() => iscrowd = Some(int_bool(p)?),
            b"ignore" if ignore.is_none() => ignore = Some(int_bool(p)?),
            b"segmentation" if segmentation.is_none() => segmentation = Some(polygons(p)?),
            _ => return None,
        }
        Some(())
    })?;
    Some(Annotation {
        id: AnnId(id?),
        image_id: ImageId(image_id?),
        category_id: CategoryId(category_id?),
        segmentation,
        area: area?,
        bbox: bbox?,
        iscrowd: iscrowd.unwrap_or(false),
        ignore,
    })
}

/// `iscrowd` / `ignore`: `true`, `false` or an integer (non-zero is true).
fn int_bool(p: &mut BoxParser<'_>) -> Option<bool> {
    for (word, value) in [(&b"true"[..], true), (&b"false"[..], false)] {
        if p.bytes.get(p.pos..)?.starts_with(word) {
            p.pos += word.len();
            return Some(value);
        }
    }
    Some(p.integer()? != 0)
}

/// A polygon list `[[x0, y0, ...], ...]` (the RLE forms are left to serde).
fn polygons(p: &mut BoxParser<'_>) -> Option<Segmentation> {
    p.expect(b'[')?;
    let mut parts = Vec::new();
    p.skip_ws();
    if p.peek()? == b']' {
        p.pos += 1;
        return Some(Segmentation::Polygons(parts));
    }
    loop {
        p.expect(b'[')?;
        let mut coords = Vec::new();
        p.skip_ws();
        if p.peek()? == b']' {
            p.pos += 1;
        } else {
            loop {
                p.skip_ws();
                coords.push(p.float()?);
                p.skip_ws();
                match p.peek()? {
                    b',' => p.pos += 1,
                    b']' => {
                        p.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        parts.push(coords);
        p.skip_ws();
        match p.peek()? {
            b',' => p.pos += 1,
            b']' => {
                p.pos += 1;
                return Some(Segmentation::Polygons(parts));
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn serde(text: &str) -> Option<InstancesFile> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn synthetic_case_parses_as_serde_does() {
        let spec = crate::eval::synthetic_case::CaseSpec { images: 300, ..crate::eval::synthetic_case::CaseSpec::COCO_VAL };
        let files = crate::eval::synthetic_case::generate(&spec).unwrap();
        let text = std::str::from_utf8(&files.gt).unwrap();
        let fast = parse_any_size(&files.gt).unwrap();
        assert_eq!(Some(&fast), serde(text).as_ref());
        assert!(fast.annotations.iter().any(|a| matches!(a.segmentation, Some(Segmentation::Uncompressed(_)))));
        let pretty = serde_json::to_vec_pretty(&fast).unwrap();
        assert_eq!(parse_any_size(&pretty).unwrap(), fast);
    }

    #[test]
    fn unusual_annotations_parse_as_serde_does() {
        let anns = [
            r#"{"id": 1, "image_id": 7, "category_id": 2, "area": 1e2, "bbox": [0, -0.0, 1.5E1, 2], "iscrowd": true, "segmentation": [[1, 2, 3.25, 4, 5, 6], []]}"#,
            r#"{"segmentation": {"size": [4, 5], "counts": "52"}, "iscrowd": 1, "id": 2, "image_id": 7, "category_id": 2, "area": 3, "bbox": [1,1,1,1]}"#,
            r#"{"id": 3, "image_id": 7, "category_id": 2, "area": 0.1, "bbox": [1,1,1,1], "ignore": 0, "segmentation": null}"#,
            r#"{"id": 4, "image_id": 7, "category_id": 2, "area": 12345678901234567890, "bbox": [1,1,1,1], "attributes": {"x": [1]}}"#,
            r#"{"id": 5, "image_id": 7, "category_id": 2, "area": 0.30000000000000004, "bbox": [1e-7,1,1,1], "segmentation": []}"#,
            r#"{ "id" : 6 , "image_id" : 7 , "category_id" : 2 , "area" : 2 , "bbox" : [ 1 , 1 , 1 , 1 ] , "iscrowd" : false }"#,
        ];
        let text = format!(
            r#"{{"info": {{"year": 2017, "note": "a \"quoted\" }} brace"}}, "licenses": [{{"id": 1}}],
               "images": [{{"id": 7, "file_name": "a.jpg", "width": 10, "height": 8, "license": 1}}],
               "annotations": [{}],
               "categories": [{{"id": 2, "name": "cat", "supercategory": "animal"}}]}}"#,
            anns.join(",\n")
        );
        assert_eq!(parse_any_size(text.as_bytes()), serde(&text));
        assert!(serde(&text).is_some());
    }

    #[test]
    fn anything_serde_rejects_or_the_scanner_skips_falls_back() {
        let ok = r#"{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 1, "bbox": [1,1,1,1]}], "categories": []}"#;
        assert_eq!(parse_any_size(ok.as_bytes()), serde(ok));
        for bad in [
            r#"{"images": [], "images": [], "categories": []}"#,
            r#"{"images": [], "categories": []} x"#,
            r#"{"images": [], "categories": [], "extra": 1}"#,
            r#"{"images": [], "annotations": [{"id": 1.5, "image_id": 1, "category_id": 1, "area": 1, "bbox": [1,1,1,1]}], "categories": []}"#,
            r#"{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 1, "bbox": [1,1,1]}], "categories": []}"#,
            r#"{"images": [], "annotations": [{"id": 1, "id": 2, "image_id": 1, "category_id": 1, "area": 1, "bbox": [1,1,1,1]}], "categories": []}"#,
            r#"{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 1, "bbox": [1,1,1,1]},], "categories": []}"#,
            r#"{"images": [], "annotations": null, "categories": []}"#,
            r#"{"annotations": [], "categories": []}"#,
        ] {
            assert_eq!(parse_any_size(bad.as_bytes()), None, "{bad}");
        }
    }
}
