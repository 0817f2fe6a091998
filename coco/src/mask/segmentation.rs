//! A COCO `segmentation` value → one [`Rle`], as pycocotools `COCO.annToRLE`
//! (`coco.py`) with `maskUtils.frPyObjects` (`_mask.pyx`), and back.
//!
//! - Polygons (`[[x0, y0, ...], ...]`): every part is rasterised by
//!   [`Rle::from_polygon`] on the image's `h × w` canvas, then the parts are
//!   merged by union (quirk K2). pycocotools dispatches on the *first* part's
//!   length: with exactly 4 numbers it takes the list for boxes and fails with a
//!   `TypeError` (2.0.11), with fewer than 4 it raises "input type is not
//!   supported", and an empty list raises `IndexError`; these three are
//!   [`Error::Segmentation`] here. Later parts of any length are rasterised as
//!   polygons (2 numbers: one vertex, an empty mask).
//! - Uncompressed RLE (`counts` a list): taken as is, with its own `size`.
//! - Compressed RLE (`counts` a string): decoded with its own `size`.
//!
//! The RLE forms keep their own size even if it differs from the image's, as in
//! pycocotools; [`crate::mask::iou`] then reports the mismatch.

use super::{MergeOp, Rle};
use crate::types::{CompressedRle, Segmentation, UncompressedRle};
use crate::Error;

/// Converts a segmentation into one RLE (pycocotools `annToRLE`); `h` and `w`
/// are the image's height and width, used by the polygon form only.
///
/// # Errors
/// - [`Error::Segmentation`] for polygon lists pycocotools rejects (empty, or a
///   first part of at most 4 numbers);
/// - [`Error::RleString`] for a malformed compressed string;
/// - [`Error::RleCountsSum`] for RLE counts that do not sum to `h * w` of the
///   RLE's own size (pycocotools accepts them and may misbehave later).
pub fn segmentation_to_rle(seg: &Segmentation, h: u32, w: u32) -> Result<Rle, Error> {
    match seg {
        Segmentation::Polygons(parts) => Rle::from_polygons(parts, h, w),
        Segmentation::Uncompressed(u) => Rle::from_uncompressed(u),
        Segmentation::Compressed(c) => Rle::from_compressed_rle(c),
    }
}

/// [`segmentation_to_rle`] into `out`, reusing its counts buffer for the
/// common forms (a compressed RLE, a single polygon), so that a per-thread
/// mask decodes without allocating. Same result and errors.
///
/// # Errors
/// As [`segmentation_to_rle`].
pub fn segmentation_to_rle_into(seg: &Segmentation, h: u32, w: u32, out: &mut Rle) -> Result<(), Error> {
    if decode_into(seg, h, w, out)? {
        out.check_counts_sum()?;
    }
    Ok(())
}

/// The work of [`segmentation_to_rle_into`] less the counts-sum check of the
/// common forms: returns whether the caller still has to check the sum
/// (`false` when the conversion checked it). Callers that compute
/// [`MaskFacts`](super::iou::MaskFacts) check it from `facts.sum` instead of
/// a second pass.
///
/// # Errors
/// As [`segmentation_to_rle`], less [`Error::RleCountsSum`] when `true`.
pub(crate) fn decode_into(seg: &Segmentation, h: u32, w: u32, out: &mut Rle) -> Result<bool, Error> {
    match seg {
        Segmentation::Compressed(c) => {
            super::string::decode_counts_into(c.counts.as_bytes(), &mut out.counts)?;
            (out.h, out.w) = (c.size[0], c.size[1]);
            Ok(true)
        }
        Segmentation::Polygons(parts) if matches!(&parts[..], [only] if only.len() > 4) => {
            super::polygon::polygon_counts_into(&parts[0], h, w, &mut out.counts);
            (out.h, out.w) = (h, w);
            Ok(true)
        }
        _ => {
            *out = segmentation_to_rle(seg, h, w)?;
            Ok(false)
        }
    }
}

impl Rle {
    /// Rasterises a multi-part polygon and merges the parts by union
    /// (pycocotools `merge(frPyObjects(polygons, h, w))`).
    ///
    /// # Errors
    /// [`Error::Segmentation`] for an empty list or a first part with at most 4
    /// numbers (see the module doc).
    pub fn from_polygons(parts: &[Vec<f64>], h: u32, w: u32) -> Result<Rle, Error> {
        let first_len = parts.first().map(Vec::len);
        match first_len {
            None => return Err(Error::Segmentation { reason: "empty polygon list".into() }),
            Some(n) if n <= 4 => {
                return Err(Error::Segmentation {
                    reason: format!(
                        "first polygon has {n} coordinates; at least 6 (3 points) are needed \
                         (pycocotools reads 4 as a box list and fails)"
                    ),
                })
            }
            Some(_) => {}
        }
        if let [only] = parts {
            // The union of one mask is that mask; `merge` would only check it.
            let rle = Rle::from_polygon(only, h, w);
            rle.check_counts_sum()?;
            return Ok(rle);
        }
        let rles: Vec<Rle> = parts.iter().map(|p| Rle::from_polygon(p, h, w)).collect();
        Rle::merge(&rles, MergeOp::Union)
    }

    /// An uncompressed RLE (`counts` a list) with its own size.
    ///
    /// # Errors
    /// [`Error::RleCountsSum`] if the counts do not sum to `h * w`.
    pub fn from_uncompressed(u: &UncompressedRle) -> Result<Rle, Error> {
        let rle = Rle { h: u.size[0], w: u.size[1], counts: u.counts.clone() };
        rle.check_counts_sum()?;
        Ok(rle)
    }

    /// A compressed RLE (`counts` a string) with its own size.
    ///
    /// # Errors
    /// [`Error::RleString`] for a malformed string, [`Error::RleCountsSum`] if
    /// the counts do not sum to `h * w`.
    pub fn from_compressed_rle(c: &CompressedRle) -> Result<Rle, Error> {
        let rle = Rle::from_compressed(&c.counts, c.size[0], c.size[1])?;
        rle.check_counts_sum()?;
        Ok(rle)
    }

    /// The compressed JSON form `{"size": [h, w], "counts": "..."}` (what
    /// `maskUtils.encode` returns, and what results files carry).
    pub fn to_compressed_rle(&self) -> CompressedRle {
        CompressedRle { size: [self.h, self.w], counts: self.to_compressed() }
    }

    /// The uncompressed JSON form `{"size": [h, w], "counts": [...]}` (what COCO
    /// uses for crowd annotations).
    pub fn to_uncompressed_rle(&self) -> UncompressedRle {
        UncompressedRle { size: [self.h, self.w], counts: self.counts.clone() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn polygon_parts_are_unioned() {
        let a = vec![0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 1.5, 0.5];
        let b = vec![2.5, 2.5, 2.5, 3.5, 3.5, 3.5, 3.5, 2.5];
        let seg = Segmentation::Polygons(vec![a.clone(), b.clone()]);
        let r = segmentation_to_rle(&seg, 5, 5).unwrap();
        assert_eq!(r.area(), 2);
        let expected = Rle::merge(&[Rle::from_polygon(&a, 5, 5), Rle::from_polygon(&b, 5, 5)], MergeOp::Union).unwrap();
        assert_eq!(r, expected);
        assert_eq!(r.to_bbox(), [1.0, 1.0, 3.0, 3.0]);
    }

    #[test]
    fn rejected_polygon_lists_are_typed_errors() {
        for parts in [vec![], vec![vec![1.0, 1.0, 3.0, 3.0]], vec![vec![1.0, 1.0]]] {
            let err = segmentation_to_rle(&Segmentation::Polygons(parts), 6, 6).unwrap_err();
            assert!(matches!(err, Error::Segmentation { .. }), "{err}");
        }
    }

    #[test]
    fn rle_forms_keep_their_own_size_and_round_trip() {
        let rle = Rle { h: 4, w: 3, counts: vec![5, 2, 5] };
        let u = segmentation_to_rle(&Segmentation::Uncompressed(rle.to_uncompressed_rle()), 99, 99).unwrap();
        assert_eq!(u, rle);
        let c = segmentation_to_rle(&Segmentation::Compressed(rle.to_compressed_rle()), 99, 99).unwrap();
        assert_eq!(c, rle);
    }

    #[test]
    fn rle_counts_must_cover_the_mask() {
        let bad = UncompressedRle { size: [4, 3], counts: vec![5, 2] };
        assert!(matches!(Rle::from_uncompressed(&bad), Err(Error::RleCountsSum { sum: 7, .. })));
    }
}
