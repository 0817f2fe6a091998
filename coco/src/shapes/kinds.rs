//! The shape categories and their outlines as polygons around the origin.
//!
//! Every shape, circles included, is a polygon, so that what is drawn is
//! exactly `Rle::from_polygon` of that polygon (see `super::scene`).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::geometry::polygon_area;

/// The categories of the synthetic dataset, in category-id order (id = index + 1).
/// In recipes and JSON a kind is its [`ShapeKind::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    /// A disc (a 48-gon).
    Circle,
    /// A triangle with jittered corners.
    Triangle,
    /// A rectangle with random aspect ratio and rotation.
    Rectangle,
    /// A five-pointed star.
    Star,
    /// An ellipse with random aspect ratio and rotation (a 48-gon).
    Ellipse,
    /// A regular hexagon.
    Hexagon,
}

/// Vertices of the round shapes: enough that a 100 px radius looks smooth.
const ROUND_VERTICES: usize = 48;

impl ShapeKind {
    /// All kinds, in category-id order.
    pub const ALL: [ShapeKind; 6] =
        [ShapeKind::Circle, ShapeKind::Triangle, ShapeKind::Rectangle, ShapeKind::Star, ShapeKind::Ellipse, ShapeKind::Hexagon];

    /// The category name (also the ImageFolder class directory).
    pub fn name(self) -> &'static str {
        match self {
            ShapeKind::Circle => "circle",
            ShapeKind::Triangle => "triangle",
            ShapeKind::Rectangle => "rectangle",
            ShapeKind::Star => "star",
            ShapeKind::Ellipse => "ellipse",
            ShapeKind::Hexagon => "hexagon",
        }
    }

    /// The kind called `name` (as [`ShapeKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The COCO category id (1-based).
    pub fn category_id(self) -> i64 {
        Self::ALL.iter().position(|&k| k == self).map_or(0, |i| i as i64 + 1)
    }

    /// A random outline of this kind as `(x, y)` vertices around the origin,
    /// scaled so that its polygon area is 1 (multiply by `sqrt(area)`).
    pub(crate) fn unit_outline(self, rng: &mut impl Rng) -> Vec<(f64, f64)> {
        use std::f64::consts::TAU;
        let rotation = rng.gen_range(0.0..TAU);
        let ring = |n: usize, radius: &dyn Fn(usize) -> (f64, f64)| -> Vec<(f64, f64)> {
            (0..n)
                .map(|j| {
                    let (angle, r) = radius(j);
                    (r * (angle + rotation).cos(), r * (angle + rotation).sin())
                })
                .collect()
        };
        let step = |n: usize| TAU / n as f64;
        let outline = match self {
            ShapeKind::Circle => ring(ROUND_VERTICES, &|j| (j as f64 * step(ROUND_VERTICES), 1.0)),
            ShapeKind::Ellipse => {
                let minor = rng.gen_range(0.4..0.75);
                let pts = ring(ROUND_VERTICES, &|j| (j as f64 * step(ROUND_VERTICES), 1.0));
                let (c, s) = (rotation.cos(), rotation.sin());
                // Squash along the rotated minor axis.
                pts.into_iter()
                    .map(|(x, y)| {
                        let (u, v) = (x * c + y * s, -x * s + y * c);
                        let v = v * minor;
                        (u * c - v * s, u * s + v * c)
                    })
                    .collect()
            }
            ShapeKind::Triangle => {
                let jitter: Vec<(f64, f64)> =
                    (0..3).map(|_| (rng.gen_range(-0.35..0.35), rng.gen_range(0.75..1.0))).collect();
                ring(3, &|j| (j as f64 * step(3) + jitter[j].0, jitter[j].1))
            }
            ShapeKind::Rectangle => {
                let aspect: f64 = rng.gen_range(0.35..1.0);
                let corner = aspect.atan();
                let angles = [corner, std::f64::consts::PI - corner, std::f64::consts::PI + corner, TAU - corner];
                ring(4, &|j| (angles[j], 1.0))
            }
            ShapeKind::Star => {
                let inner = rng.gen_range(0.38..0.55);
                ring(10, &|j| (j as f64 * step(10), if j % 2 == 0 { 1.0 } else { inner }))
            }
            ShapeKind::Hexagon => ring(6, &|j| (j as f64 * step(6), 1.0)),
        };
        normalise_area(outline)
    }
}

/// Scales an outline around the origin to unit polygon area.
fn normalise_area(outline: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let flat: Vec<f64> = outline.iter().flat_map(|&(x, y)| [x, y]).collect();
    let area = polygon_area(&flat);
    if area <= 0.0 {
        return outline;
    }
    let k = area.sqrt().recip();
    outline.into_iter().map(|(x, y)| (x * k, y * k)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn outlines_have_unit_area_and_expected_vertex_counts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let expected = [48, 3, 4, 10, 48, 6];
        for (kind, n) in ShapeKind::ALL.into_iter().zip(expected) {
            let outline = kind.unit_outline(&mut rng);
            assert_eq!(outline.len(), n, "{kind:?}");
            let flat: Vec<f64> = outline.iter().flat_map(|&(x, y)| [x, y]).collect();
            assert!((polygon_area(&flat) - 1.0).abs() < 1e-12, "{kind:?}");
        }
    }

    #[test]
    fn category_ids_are_one_based_and_names_unique() {
        let ids: Vec<i64> = ShapeKind::ALL.iter().map(|k| k.category_id()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
        let mut names: Vec<&str> = ShapeKind::ALL.iter().map(|k| k.name()).collect();
        names.dedup();
        assert_eq!(names.len(), 6);
    }
}
