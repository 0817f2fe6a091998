//! Serde types of the two COCO JSON formats: the *instances* (ground truth)
//! file and the *results* (detections) file.
//!
//! The field names and value shapes are the ones `pycocotools.coco.COCO` and
//! `COCO.loadRes` read (cocoapi `PythonAPI/pycocotools/coco.py`):
//!
//! - boxes are `[x, y, w, h]` in pixels, `(x, y)` the top-left corner;
//! - a segmentation is a list of polygons (`[[x0, y0, x1, y1, ...], ...]`, pixel
//!   coordinates), a compressed RLE (`{"size": [h, w], "counts": "..."}`), or an
//!   uncompressed RLE (`{"size": [h, w], "counts": [n0, n1, ...]}`, the form
//!   COCO uses for crowd regions). RLE runs are in column-major order and start
//!   with a background run (see `crate::mask`).
//!
//! Unknown keys are accepted and dropped, as pycocotools ignores them: real
//! COCO files carry `info`, `licenses`, `coco_url`, ... . Validation beyond
//! shapes (duplicate ids, dangling references) lives in `crate::dataset`.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Id of an image (`images[].id`, `annotations[].image_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageId(pub i64);

/// Id of a category (`categories[].id`, `annotations[].category_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CategoryId(pub i64);

/// Id of an annotation (`annotations[].id`). pycocotools uses 0 as "unmatched"
/// in its match arrays, so ground-truth ids should be >= 1 (see `crate::dataset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnnId(pub i64);

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for CategoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for AnnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A box `[x, y, w, h]` in pixels; `(x, y)` is the top-left corner.
pub type BboxXywh = [f64; 4];

/// A whole instances file: `{"images": [...], "annotations": [...], "categories": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstancesFile {
    /// Free-form dataset description (`info`); kept so a round trip preserves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// License list (`licenses`); kept so a round trip preserves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<serde_json::Value>,
    /// The images.
    pub images: Vec<ImageInfo>,
    /// The object annotations. Absent in image-only files; read as empty.
    #[serde(default)]
    pub annotations: Vec<Annotation>,
    /// The categories.
    pub categories: Vec<Category>,
}

/// One entry of `images`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image id, unique in the file.
    pub id: ImageId,
    /// File name relative to the image directory.
    pub file_name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// One entry of `categories`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// Category id, unique in the file.
    pub id: CategoryId,
    /// Human-readable name (`"person"`).
    pub name: String,
    /// Parent group (`"animal"`); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
}

/// One ground-truth object (`annotations[]` of an instances file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Annotation id; should be >= 1 (0 means "unmatched" inside pycocotools).
    pub id: AnnId,
    /// The image the object is in.
    pub image_id: ImageId,
    /// The object's category.
    pub category_id: CategoryId,
    /// Object shape; absent in box-only files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    /// Object area in pixels, read verbatim (for COCO this is the *mask* area,
    /// also used for the area ranges of bbox evaluation, as in pycocotools).
    pub area: f64,
    /// Bounding box `[x, y, w, h]` in pixels.
    pub bbox: BboxXywh,
    /// Crowd region: matches many detections, which are then neither TP nor FP.
    /// Written as `0`/`1`; `true`/`false` are accepted on input.
    #[serde(default, with = "int_bool")]
    pub iscrowd: bool,
    /// A user-provided `ignore` flag. pycocotools reads it and then overwrites
    /// it with `iscrowd` (`COCOeval._prepare`), so evaluation never uses it;
    /// it is kept so the loader can warn when it disagrees with `iscrowd`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_int_bool")]
    pub ignore: Option<bool>,
}

/// One detection of a results file: a list of these is what `COCO.loadRes` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionResult {
    /// The image; must be an image of the ground truth.
    pub image_id: ImageId,
    /// The predicted category.
    pub category_id: CategoryId,
    /// Box `[x, y, w, h]` in pixels. Optional for segm results, where
    /// `loadRes` derives it from the mask (`maskUtils.toBbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BboxXywh>,
    /// Confidence; higher is more confident.
    pub score: f64,
    /// The predicted mask, for segm results (compressed RLE, `counts` a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

/// A compressed RLE: `{"size": [h, w], "counts": "<LEB128-like string>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedRle {
    /// `[height, width]` of the image the mask belongs to.
    pub size: [u32; 2],
    /// The run lengths encoded by `rleToString` (cocoapi `maskApi.c`).
    pub counts: String,
}

/// An uncompressed RLE: `{"size": [h, w], "counts": [n0, n1, ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncompressedRle {
    /// `[height, width]` of the image the mask belongs to.
    pub size: [u32; 2],
    /// Alternating background / foreground run lengths in column-major order,
    /// starting with a (possibly empty) background run.
    pub counts: Vec<u32>,
}

/// The shape of an object, in one of the three forms COCO files use.
///
/// Serialises untagged (a JSON list for polygons, an object for RLE), as in the
/// COCO format; deserialisation dispatches on the JSON shape directly instead
/// of serde's buffering `untagged` machinery, which matters for large files.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Segmentation {
    /// One or more polygons `[x0, y0, x1, y1, ...]` in pixel coordinates; the
    /// object is their union.
    Polygons(Vec<Vec<f64>>),
    /// A compressed RLE (`counts` is a string).
    Compressed(CompressedRle),
    /// An uncompressed RLE (`counts` is a list of integers).
    Uncompressed(UncompressedRle),
}

impl Segmentation {
    /// `[height, width]` for the RLE forms; `None` for polygons, whose canvas
    /// size comes from the image entry.
    pub fn rle_size(&self) -> Option<[u32; 2]> {
        match self {
            Segmentation::Polygons(_) => None,
            Segmentation::Compressed(rle) => Some(rle.size),
            Segmentation::Uncompressed(rle) => Some(rle.size),
        }
    }
}

impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SegmentationVisitor)
    }
}

/// Dispatches on list (polygons) vs object (RLE) without buffering.
struct SegmentationVisitor;

impl<'de> Visitor<'de> for SegmentationVisitor {
    type Value = Segmentation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of polygons or an RLE object {\"size\": [h, w], \"counts\": ...}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut polygons = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(polygon) = seq.next_element::<Vec<f64>>()? {
            polygons.push(polygon);
        }
        Ok(Segmentation::Polygons(polygons))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut size: Option<[u32; 2]> = None;
        let mut counts: Option<Counts> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "size" => size = Some(map.next_value()?),
                "counts" => counts = Some(map.next_value()?),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let size = size.ok_or_else(|| de::Error::missing_field("size"))?;
        match counts.ok_or_else(|| de::Error::missing_field("counts"))? {
            Counts::Compressed(counts) => Ok(Segmentation::Compressed(CompressedRle { size, counts })),
            Counts::Uncompressed(counts) => {
                Ok(Segmentation::Uncompressed(UncompressedRle { size, counts }))
            }
        }
    }
}

/// The `counts` of an RLE: a string (compressed) or a list (uncompressed).
enum Counts {
    Compressed(String),
    Uncompressed(Vec<u32>),
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CountsVisitor)
    }
}

/// Reads `counts` as a string or as a list of run lengths.
struct CountsVisitor;

impl<'de> Visitor<'de> for CountsVisitor {
    type Value = Counts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLE counts as a string or a list of non-negative integers")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Counts::Compressed(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Counts::Compressed(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut counts = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(n) = seq.next_element::<u32>()? {
            counts.push(n);
        }
        Ok(Counts::Uncompressed(counts))
    }
}

/// `iscrowd`: written as `0`/`1`, read from an integer or a boolean.
mod int_bool {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        d.deserialize_any(super::IntBoolVisitor)
    }
}

/// `ignore`: like `int_bool`, but optional.
mod opt_int_bool {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_u8(u8::from(*b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        d.deserialize_any(super::IntBoolVisitor).map(Some)
    }
}

/// Accepts `0`/`1` (any integer: non-zero is true, as Python's truthiness) or a boolean.
struct IntBoolVisitor;

impl Visitor<'_> for IntBoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0, 1, true or false")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(v != 0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(v != 0)
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;

    #[test]
    fn segmentation_reads_all_three_forms() {
        let poly: Segmentation = serde_json::from_str("[[0, 0, 4, 0, 4, 4], [1.5, 2, 3, 4, 5, 6]]").unwrap();
        assert_eq!(
            poly,
            Segmentation::Polygons(vec![vec![0.0, 0.0, 4.0, 0.0, 4.0, 4.0], vec![1.5, 2.0, 3.0, 4.0, 5.0, 6.0]])
        );
        let compressed: Segmentation = serde_json::from_str(r#"{"size": [4, 5], "counts": "52"}"#).unwrap();
        assert_eq!(
            compressed,
            Segmentation::Compressed(CompressedRle { size: [4, 5], counts: "52".into() })
        );
        let raw: Segmentation = serde_json::from_str(r#"{"counts": [3, 2, 15], "size": [4, 5]}"#).unwrap();
        assert_eq!(raw, Segmentation::Uncompressed(UncompressedRle { size: [4, 5], counts: vec![3, 2, 15] }));
        assert_eq!(raw.rle_size(), Some([4, 5]));
    }

    #[test]
    fn segmentation_round_trips_through_json() {
        for text in [r#"[[0.0,0.0,4.0,0.0,4.0,4.0]]"#, r#"{"size":[4,5],"counts":"52"}"#, r#"{"size":[4,5],"counts":[3,2,15]}"#] {
            let seg: Segmentation = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&seg).unwrap(), text);
        }
    }

    #[test]
    fn rle_without_counts_is_an_error_naming_the_field() {
        let err = serde_json::from_str::<Segmentation>(r#"{"size": [4, 5]}"#).unwrap_err();
        assert!(err.to_string().contains("counts"), "{err}");
    }

    #[test]
    fn annotation_reads_int_or_bool_iscrowd_and_keeps_ignore() {
        let a: Annotation = serde_json::from_str(
            r#"{"id": 7, "image_id": 1, "category_id": 3, "area": 10.5, "bbox": [1, 2, 3, 4], "iscrowd": 1, "ignore": 0, "extra": "x"}"#,
        )
        .unwrap();
        assert!(a.iscrowd);
        assert_eq!(a.ignore, Some(false));
        assert_eq!(a.id, AnnId(7));
        let b: Annotation =
            serde_json::from_str(r#"{"id": 8, "image_id": 1, "category_id": 3, "area": 1, "bbox": [1, 2, 3, 4], "iscrowd": false}"#)
                .unwrap();
        assert!(!b.iscrowd);
        assert_eq!(b.ignore, None);
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains(r#""iscrowd":1"#), "{text}");
    }

    #[test]
    fn detection_result_bbox_and_mask_are_optional() {
        let d: DetectionResult =
            serde_json::from_str(r#"{"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5}"#).unwrap();
        assert_eq!(d.bbox, Some([0.0, 0.0, 1.0, 1.0]));
        assert!(d.segmentation.is_none());
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"image_id":1,"category_id":2,"bbox":[0.0,0.0,1.0,1.0],"score":0.5}"#);
    }
}
