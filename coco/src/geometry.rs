//! Polygon geometry on COCO's flat polygons `[x0, y0, x1, y1, ...]` (pixel
//! coordinates, closed implicitly): area, bounding box, clipping to a crop
//! window and the scale + translate + horizontal-flip transform of large-scale
//! jitter (detectron2 `ResizeScale` → `FixedSizeCrop` → `RandomFlip`).
//!
//! Clipping uses the `geo` crate's boolean operations (even-odd fill rule, the
//! same parity rule as [`crate::mask::Rle::from_polygon`]'s scanline toggles),
//! as detectron2's `CropTransform.apply_polygons` uses shapely: a concave
//! polygon can come out as several parts. Areas here are geometric (shoelace);
//! COCO's `area` field is the *mask* area ([`crate::mask::Rle::area`]).

use geo::{BooleanOps, Coord, LineString, Polygon, Rect};

/// Number of vertices of a flat polygon (a trailing odd coordinate is ignored,
/// as pycocotools does).
fn vertex_count(poly: &[f64]) -> usize {
    poly.len() / 2
}

/// Vertex `j` of a flat polygon.
fn vertex(poly: &[f64], j: usize) -> (f64, f64) {
    (poly[2 * j], poly[2 * j + 1])
}

/// Unsigned area (shoelace formula) of a flat polygon, in square pixels.
/// Self-intersecting polygons get the absolute value of the signed sum, where
/// oppositely wound lobes cancel. Fewer than 3 vertices give 0.
pub fn polygon_area(poly: &[f64]) -> f64 {
    let k = vertex_count(poly);
    if k < 3 {
        return 0.0;
    }
    let twice: f64 = (0..k)
        .map(|j| {
            let (x0, y0) = vertex(poly, j);
            let (x1, y1) = vertex(poly, (j + 1) % k);
            x0 * y1 - x1 * y0
        })
        .sum();
    twice.abs() / 2.0
}

/// Tight box `[x, y, w, h]` of the vertices of one or more flat polygons
/// (`None` if there is no vertex). This is the geometric box; the box COCO
/// stores for an annotation is usually [`crate::mask::Rle::to_bbox`] of its mask.
pub fn polygons_bbox<'a>(parts: impl IntoIterator<Item = &'a [f64]>) -> Option<[f64; 4]> {
    let mut bounds: Option<[f64; 4]> = None;
    for poly in parts {
        for j in 0..vertex_count(poly) {
            let (x, y) = vertex(poly, j);
            let b = bounds.get_or_insert([x, y, x, y]);
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        }
    }
    bounds.map(|[x0, y0, x1, y1]| [x0, y0, x1 - x0, y1 - y0])
}

/// Clips a flat polygon to the window `[x0, y0, x1, y1]` (pixel coordinates,
/// `x0 <= x1`, `y0 <= y1`) and returns the parts that remain, each a flat
/// polygon in the same coordinates (translate afterwards to make them
/// crop-relative). A part is dropped if it has fewer than 3 vertices or zero
/// area. A polygon wholly outside gives no parts.
pub fn clip_polygon(poly: &[f64], window: [f64; 4]) -> Vec<Vec<f64>> {
    if vertex_count(poly) < 3 {
        return Vec::new();
    }
    let ring: LineString<f64> = (0..vertex_count(poly)).map(|j| vertex(poly, j)).collect();
    let subject = Polygon::new(ring, Vec::new());
    let [x0, y0, x1, y1] = window;
    let clip = Rect::new(Coord { x: x0, y: y0 }, Coord { x: x1, y: y1 }).to_polygon();
    subject
        .intersection(&clip)
        .0
        .iter()
        .filter_map(|part| {
            let coords = &part.exterior().0;
            // geo closes rings: drop the repeated last vertex.
            let open = coords.len().saturating_sub(1);
            let flat: Vec<f64> = coords.iter().take(open).flat_map(|c| [c.x, c.y]).collect();
            (flat.len() >= 6 && polygon_area(&flat) > 0.0).then_some(flat)
        })
        .collect()
}

/// The geometric part of large-scale jitter: `p' = p * scale + translate`,
/// then, if `flip_width` is set, a horizontal flip `x' = flip_width - x'`
/// (detectron2 `HFlipTransform`: the image's width after the crop).
///
/// Example: resize by 0.5, crop at (10, 20), flip in a 100 px wide output:
/// `Transform { scale: [0.5, 0.5], translate: [-10.0, -20.0], flip_width: Some(100.0) }`
/// maps (40, 60) to (100 - (20 - 10), 30 - 20) = (90, 10).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    /// Per-axis scale `[sx, sy]`.
    pub scale: [f64; 2],
    /// Translation `[tx, ty]` in output pixels, applied after scaling (a crop
    /// at (cx, cy) is `[-cx, -cy]`).
    pub translate: [f64; 2],
    /// Output width for a horizontal flip, or `None` for no flip.
    pub flip_width: Option<f64>,
}

impl Transform {
    /// The identity.
    pub const IDENTITY: Transform = Transform { scale: [1.0, 1.0], translate: [0.0, 0.0], flip_width: None };

    /// Maps one point.
    pub fn apply_point(&self, x: f64, y: f64) -> (f64, f64) {
        let x = x * self.scale[0] + self.translate[0];
        let y = y * self.scale[1] + self.translate[1];
        match self.flip_width {
            Some(width) => (width - x, y),
            None => (x, y),
        }
    }

    /// Maps every vertex of a flat polygon (a trailing odd coordinate is dropped).
    pub fn apply_polygon(&self, poly: &[f64]) -> Vec<f64> {
        (0..vertex_count(poly))
            .flat_map(|j| {
                let (x, y) = vertex(poly, j);
                let (x, y) = self.apply_point(x, y);
                [x, y]
            })
            .collect()
    }

    /// Maps a box `[x, y, w, h]` (pixels); the result is again a box with
    /// non-negative size (a flip moves the left edge to `flip_width - (x + w)`).
    pub fn apply_box(&self, bbox: [f64; 4]) -> [f64; 4] {
        let (ax, ay) = self.apply_point(bbox[0], bbox[1]);
        let (bx, by) = self.apply_point(bbox[0] + bbox[2], bbox[1] + bbox[3]);
        [ax.min(bx), ay.min(by), (bx - ax).abs(), (by - ay).abs()]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Vertices of a flat polygon as a sorted list, to compare rings that may
    /// start at a different vertex or run the other way.
    fn sorted_vertices(poly: &[f64]) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> =
            poly.chunks_exact(2).map(|p| ((p[0] * 1e6).round() as i64, (p[1] * 1e6).round() as i64)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn area_of_hand_worked_shapes() {
        // 4×3 rectangle, either winding.
        assert_eq!(polygon_area(&[0.0, 0.0, 4.0, 0.0, 4.0, 3.0, 0.0, 3.0]), 12.0);
        assert_eq!(polygon_area(&[0.0, 0.0, 0.0, 3.0, 4.0, 3.0, 4.0, 0.0]), 12.0);
        // Right triangle with legs 3 and 4.
        assert_eq!(polygon_area(&[1.0, 1.0, 4.0, 1.0, 1.0, 5.0]), 6.0);
        // L-shape: 2×2 square minus its 1×1 top-right quarter = 3.
        assert_eq!(polygon_area(&[0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 2.0, 1.0, 2.0, 2.0, 0.0, 2.0]), 3.0);
        // Bow-tie: two unit-area lobes wound oppositely cancel.
        assert_eq!(polygon_area(&[0.0, 0.0, 2.0, 2.0, 2.0, 0.0, 0.0, 2.0]), 0.0);
        assert_eq!(polygon_area(&[0.0, 0.0, 1.0, 1.0]), 0.0);
    }

    #[test]
    fn bbox_spans_all_parts() {
        let a = [1.0, 2.0, 3.0, 2.0, 2.0, 5.0];
        let b = [-1.0, 4.0, 0.0, 4.0, 0.0, 6.5];
        assert_eq!(polygons_bbox([&a[..], &b[..]]), Some([-1.0, 2.0, 4.0, 4.5]));
        assert_eq!(polygons_bbox(std::iter::empty::<&[f64]>()), None);
    }

    #[test]
    fn clip_square_to_window_corner() {
        // Square (0,0)-(4,4) clipped to (2,1)-(10,10) leaves (2,1)-(4,4): area 6.
        let parts = clip_polygon(&[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0], [2.0, 1.0, 10.0, 10.0]);
        assert_eq!(parts.len(), 1);
        assert_eq!(polygon_area(&parts[0]), 6.0);
        assert_eq!(sorted_vertices(&parts[0]), sorted_vertices(&[2.0, 1.0, 4.0, 1.0, 4.0, 4.0, 2.0, 4.0]));
    }

    #[test]
    fn clip_concave_polygon_splits_into_parts() {
        // A "U": two 1-wide arms (x 0..1 and 2..3) joined by a base at y 0..1.
        // Cutting away the base (window y >= 2) leaves two separate arms of 1×2.
        let u = [0.0, 0.0, 3.0, 0.0, 3.0, 4.0, 2.0, 4.0, 2.0, 1.0, 1.0, 1.0, 1.0, 4.0, 0.0, 4.0];
        let mut parts = clip_polygon(&u, [0.0, 2.0, 3.0, 4.0]);
        parts.sort_by(|a, b| a[0].total_cmp(&b[0]));
        assert_eq!(parts.len(), 2);
        let areas: Vec<f64> = parts.iter().map(|p| polygon_area(p)).collect();
        assert_eq!(areas, vec![2.0, 2.0]);
        assert_eq!(polygons_bbox([&parts[0][..]]), Some([0.0, 2.0, 1.0, 2.0]));
        assert_eq!(polygons_bbox([&parts[1][..]]), Some([2.0, 2.0, 1.0, 2.0]));
    }

    #[test]
    fn clip_outside_or_degenerate_gives_nothing() {
        assert!(clip_polygon(&[0.0, 0.0, 1.0, 0.0, 1.0, 1.0], [5.0, 5.0, 9.0, 9.0]).is_empty());
        assert!(clip_polygon(&[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 9.0, 9.0]).is_empty());
        // Touching the window along an edge only: zero area, dropped.
        assert!(clip_polygon(&[0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0], [2.0, 0.0, 4.0, 2.0]).is_empty());
    }

    #[test]
    fn transform_scale_crop_flip_hand_worked() {
        let t = Transform { scale: [0.5, 0.5], translate: [-10.0, -20.0], flip_width: Some(100.0) };
        assert_eq!(t.apply_point(40.0, 60.0), (90.0, 10.0));
        assert_eq!(t.apply_polygon(&[40.0, 60.0, 60.0, 60.0, 7.0]), vec![90.0, 10.0, 80.0, 10.0]);
        // Box x 40..80 → 10..30 after scale+crop → flipped 70..90.
        assert_eq!(t.apply_box([40.0, 60.0, 40.0, 20.0]), [70.0, 10.0, 20.0, 10.0]);
        assert_eq!(Transform::IDENTITY.apply_box([1.0, 2.0, 3.0, 4.0]), [1.0, 2.0, 3.0, 4.0]);
        // Scaling scales areas by sx * sy; a flip keeps the area.
        let tri = [0.0, 0.0, 4.0, 0.0, 0.0, 4.0];
        assert_eq!(polygon_area(&t.apply_polygon(&tri)), polygon_area(&tri) * 0.25);
    }
}
