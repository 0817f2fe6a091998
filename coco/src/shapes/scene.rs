//! One synthetic image: sampling shapes, occlusion, painting, annotations.
//!
//! Exactness: every shape is a polygon rasterised by
//! [`Rle::from_polygon`] (pycocotools' `rleFrPoly`), and its pixels are painted
//! from exactly those runs, later shapes over earlier ones. An owner map
//! records which object each pixel shows. An object's annotation is then:
//! - fully visible instance → its polygon (re-rasterising it gives exactly the
//!   painted pixels, in Rust and in pycocotools alike);
//! - partly occluded instance → the compressed RLE of its visible pixels
//!   (`iscrowd = 0` with an RLE is legal COCO);
//! - crowd region (a cluster of many tiny shapes of one category) → the
//!   uncompressed RLE of its visible pixels, `iscrowd = 1`, as COCO stores crowds.
//!
//! A new shape is rejected (and re-drawn, up to [`PLACEMENT_TRIES`] times) if it
//! would leave an earlier object with less than
//! [`SceneParams::min_visible_fraction`] of its pixels, or fewer than
//! [`MIN_VISIBLE_PIXELS`]; so every annotated object is mostly visible and no
//! painted shape goes unannotated.

use image::{Rgb, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::background::{background, shape_colour};
use super::kinds::ShapeKind;
use crate::mask::{MergeOp, Rle};
use crate::types::Segmentation;
use crate::Error;

/// An object must keep at least this many visible pixels.
pub const MIN_VISIBLE_PIXELS: u64 = 12;
/// Draws per shape before giving up on it.
const PLACEMENT_TRIES: usize = 30;
/// Most instances a detection image may ask for.
pub const MAX_OBJECTS: usize = 64;

/// What a detection image contains. `Default` is the COCO-like mix `vitdet
/// data shapes` writes: all six kinds, 2..=7 instances, sizes spread over
/// COCO's scaled small / medium / large ranges, a crowd in 30% of images.
/// Recipes can ask for another mix (the demo recipe uses the one of
/// `cpu-demo-calibration.md`: five kinds, 1..=6 instances, sides 8..S/2 px,
/// no crowds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneParams {
    /// The kinds drawn (and listed as categories), by name.
    pub categories: Vec<ShapeKind>,
    /// Instances an image, `[min, max]` inclusive, before rejections.
    pub objects: [usize; 2],
    /// Instance sizes as the longest side of the shape's outline, `[min, max]`
    /// pixels, drawn uniformly; `None` draws areas from COCO's scaled size
    /// ranges instead (see [`area_thresholds`]).
    pub sides: Option<[f64; 2]>,
    /// Probability that an image has a crowd region (`iscrowd = 1`).
    pub crowd_probability: f64,
    /// An earlier object must keep at least this fraction of its pixels
    /// visible when a later one is placed over it.
    pub min_visible_fraction: f64,
}

impl Default for SceneParams {
    fn default() -> Self {
        Self {
            categories: ShapeKind::ALL.to_vec(),
            objects: [2, 7],
            sides: None,
            crowd_probability: 0.3,
            min_visible_fraction: 0.4,
        }
    }
}

impl SceneParams {
    /// Checks every field against the image side; the reason names the field.
    ///
    /// # Errors
    /// [`Error::ShapesConfig`] with what is wrong and what was expected.
    pub fn validate(&self, size: u32) -> Result<(), Error> {
        let fail = |field: &'static str, reason: String| Err(Error::ShapesConfig { field, reason });
        let kinds = &self.categories;
        if kinds.is_empty() {
            return fail("categories", "is empty: name at least one kind".into());
        }
        if let Some(k) = kinds.iter().enumerate().find_map(|(i, k)| kinds[..i].contains(k).then_some(k)) {
            return fail("categories", format!("lists {} twice", k.name()));
        }
        let [lo, hi] = self.objects;
        if lo > hi || hi > MAX_OBJECTS {
            return fail("objects", format!("[{lo}, {hi}] must satisfy min <= max <= {MAX_OBJECTS}"));
        }
        if let Some([lo, hi]) = self.sides {
            let most = f64::from(size) - 2.0;
            if !(lo >= 2.0 && lo <= hi && hi <= most) {
                return fail("sides", format!("[{lo}, {hi}] must satisfy 2 <= min <= max <= {most} (the image side less 2 px)"));
            }
        }
        if !(0.0..=1.0).contains(&self.crowd_probability) {
            return fail("crowd_probability", format!("{} is outside 0..=1", self.crowd_probability));
        }
        if !(self.min_visible_fraction > 0.0 && self.min_visible_fraction <= 1.0) {
            return fail("min_visible_fraction", format!("{} is outside (0, 1]", self.min_visible_fraction));
        }
        Ok(())
    }

    /// A kind drawn uniformly from [`Self::categories`].
    fn kind(&self, rng: &mut impl Rng) -> ShapeKind {
        self.categories[rng.gen_range(0..self.categories.len())]
    }

    /// One instance's size: a side from [`Self::sides`], or an area from
    /// COCO's scaled ranges.
    fn instance_size(&self, rng: &mut impl Rng, size: u32) -> ShapeSize {
        match self.sides {
            Some([lo, hi]) => ShapeSize::Side(if hi > lo { rng.gen_range(lo..=hi) } else { lo }),
            None => ShapeSize::Area(target_area(rng, size)),
        }
    }
}

/// How large to make a shape.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum ShapeSize {
    /// Polygon area in px².
    Area(f64),
    /// Longest side of the outline's bounding box in px.
    Side(f64),
}
/// Vertex coordinates are rounded to this many decimals before rasterising,
/// so that the JSON stays small and the stored polygon is the drawn polygon.
const DECIMALS: f64 = 100.0;

/// COCO's small / medium / large area thresholds (32², 96² at COCO's ~640 px
/// images) scaled to a `size`-pixel image by `(size / 640)²`. At 256 px:
/// 163.84 and 1474.56 px².
pub fn area_thresholds(size: u32) -> [f64; 2] {
    let f = (f64::from(size) / 640.0).powi(2);
    [32.0 * 32.0 * f, 96.0 * 96.0 * f]
}

/// One annotated object of a [`Scene`].
#[derive(Clone, Debug, PartialEq)]
pub struct SceneObject {
    /// The category.
    pub kind: ShapeKind,
    /// The COCO segmentation (see the module doc for which form).
    pub segmentation: Segmentation,
    /// The visible pixels (equal to the segmentation's raster).
    pub mask: Rle,
    /// A crowd region (`iscrowd = 1`).
    pub iscrowd: bool,
    /// The flat fill colour.
    pub colour: [u8; 3],
}

/// A rendered image with its objects, bottom to top.
#[derive(Clone, Debug)]
pub struct Scene {
    /// The picture (`size × size`).
    pub image: RgbImage,
    /// The annotated objects; every shape pixel belongs to exactly one of them.
    pub objects: Vec<SceneObject>,
}

/// A placed object before its visible mask is known.
struct Draft {
    kind: ShapeKind,
    /// One polygon for an instance, many for a crowd.
    polygons: Vec<Vec<f64>>,
    /// All pixels of the object, occluded or not.
    full: Rle,
    /// Pixels still showing this object.
    visible: u64,
    iscrowd: bool,
    colour: [u8; 3],
}

/// The canvas: which object (1-based, 0 = background) each pixel shows.
struct Canvas {
    size: u32,
    /// [`SceneParams::min_visible_fraction`].
    min_visible_fraction: f64,
    /// Row-major owner ids.
    owner: Vec<u16>,
    drafts: Vec<Draft>,
}

impl Canvas {
    fn new(size: u32, min_visible_fraction: f64) -> Self {
        Self { size, min_visible_fraction, owner: vec![0; (size as usize) * (size as usize)], drafts: Vec::new() }
    }

    /// Row-major pixel indices of a column-major RLE's foreground.
    fn pixels<'a>(&self, rle: &'a Rle) -> impl Iterator<Item = usize> + 'a {
        let s = u64::from(self.size);
        rle.foreground_runs()
            .flat_map(move |(start, len)| (start..start + u64::from(len)).map(move |i| ((i % s) * s + i / s) as usize))
    }

    /// Places `full` on top if every earlier object keeps enough of itself.
    fn try_place(&mut self, kind: ShapeKind, polygons: Vec<Vec<f64>>, full: Rle, iscrowd: bool, colour: [u8; 3]) -> bool {
        let area = full.area();
        if area < MIN_VISIBLE_PIXELS {
            return false;
        }
        let mut covered = vec![0u64; self.drafts.len() + 1];
        for p in self.pixels(&full) {
            if let Some(c) = self.owner.get(p).and_then(|&o| covered.get_mut(o as usize)) {
                *c += 1;
            }
        }
        let ok = self.drafts.iter().zip(&covered[1..]).all(|(d, &c)| {
            let left = d.visible - c;
            left >= MIN_VISIBLE_PIXELS && left as f64 >= self.min_visible_fraction * d.full.area() as f64
        });
        if !ok {
            return false;
        }
        for (d, &c) in self.drafts.iter_mut().zip(&covered[1..]) {
            d.visible -= c;
        }
        let id = (self.drafts.len() + 1) as u16;
        let pixels: Vec<usize> = self.pixels(&full).collect();
        for p in pixels {
            if let Some(o) = self.owner.get_mut(p) {
                *o = id;
            }
        }
        self.drafts.push(Draft { kind, polygons, full, visible: area, iscrowd, colour });
        true
    }

    /// The visible mask of every object, in one column-major pass.
    fn visible_masks(&self) -> Vec<Rle> {
        let (s, n) = (self.size as usize, self.drafts.len());
        let total = (s * s) as u32;
        let mut counts: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut last_end = vec![0u32; n];
        let mut run_start = vec![0u32; n];
        let mut prev = 0u16;
        let mut pos = 0u32;
        for x in 0..s {
            for y in 0..s {
                let v = self.owner.get(y * s + x).copied().unwrap_or(0);
                if v != prev {
                    if let Some(k) = (prev as usize).checked_sub(1) {
                        counts[k].push(pos - run_start[k]);
                        last_end[k] = pos;
                    }
                    if let Some(k) = (v as usize).checked_sub(1) {
                        counts[k].push(pos - last_end[k]);
                        run_start[k] = pos;
                    }
                    prev = v;
                }
                pos += 1;
            }
        }
        if let Some(k) = (prev as usize).checked_sub(1) {
            counts[k].push(total - run_start[k]);
            last_end[k] = total;
        }
        counts
            .into_iter()
            .zip(last_end)
            .map(|(mut c, end)| {
                c.push(total - end);
                Rle { h: self.size, w: self.size, counts: c }
            })
            .collect()
    }

    /// Builds the objects from their visible masks (see the module doc for
    /// which segmentation form each gets).
    fn finish(self) -> Vec<SceneObject> {
        let masks = self.visible_masks();
        self.drafts
            .into_iter()
            .zip(masks)
            .map(|(d, mask)| {
                let segmentation = if d.iscrowd {
                    Segmentation::Uncompressed(mask.to_uncompressed_rle())
                } else if mask == d.full {
                    Segmentation::Polygons(d.polygons)
                } else {
                    Segmentation::Compressed(mask.to_compressed_rle())
                };
                SceneObject { kind: d.kind, segmentation, mask, iscrowd: d.iscrowd, colour: d.colour }
            })
            .collect()
    }
}

/// A polygon of `kind` of the given size (before rasterisation) centred at a
/// random position that keeps its vertices inside the image; vertices rounded
/// to [`DECIMALS`].
fn place_polygon(rng: &mut impl Rng, kind: ShapeKind, shape_size: ShapeSize, size: u32, centre: Option<(f64, f64)>) -> Vec<f64> {
    let outline = kind.unit_outline(rng);
    let s = f64::from(size);
    let (mut lo_x, mut lo_y, mut hi_x, mut hi_y) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &(x, y) in &outline {
        (lo_x, lo_y, hi_x, hi_y) = (lo_x.min(x), lo_y.min(y), hi_x.max(x), hi_y.max(y));
    }
    // Keep the shape inside [1, s - 1] on both axes.
    let extent = (hi_x - lo_x).max(hi_y - lo_y);
    let fit = ((s - 2.0) / extent).max(0.0);
    let r = match shape_size {
        ShapeSize::Area(area) => area.sqrt(),
        ShapeSize::Side(side) => side / extent,
    }
    .min(fit);
    let (cx, cy) = centre.unwrap_or_else(|| {
        let mut span = |lo: f64, hi: f64| {
            let (a, b) = (1.0 - lo * r, s - 1.0 - hi * r);
            if b > a {
                rng.gen_range(a..b)
            } else {
                a
            }
        };
        (span(lo_x, hi_x), span(lo_y, hi_y))
    });
    let round = |v: f64| (v * DECIMALS).round() / DECIMALS;
    outline.iter().flat_map(|&(x, y)| [round(cx + x * r), round(cy + y * r)]).collect()
}

/// A target area: a size bucket (small / medium / large, thresholds from
/// [`area_thresholds`]) chosen uniformly, then log-uniform inside the bucket.
/// Small starts at a quarter of its threshold (at least 30 px²); large ends at
/// 40% of the image.
fn target_area(rng: &mut impl Rng, size: u32) -> f64 {
    let [small, large] = area_thresholds(size);
    let image = f64::from(size) * f64::from(size);
    let (lo, hi) = match rng.gen_range(0..3) {
        0 => ((small / 4.0).max(30.0), small),
        1 => (small, large),
        _ => (large, 0.4 * image),
    };
    let (lo, hi) = (lo.min(hi), hi.max(lo));
    (lo.ln() + rng.gen::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// A crowd: 12..=30 tiny shapes of one kind clustered around a random point.
fn crowd(rng: &mut impl Rng, params: &SceneParams, size: u32) -> Result<(ShapeKind, Vec<Vec<f64>>, Rle), Error> {
    let kind = params.kind(rng);
    let s = f64::from(size);
    let unit = s / 256.0;
    let spread = rng.gen_range(14.0..30.0) * unit;
    let (cx, cy) = (rng.gen_range(spread..s - spread), rng.gen_range(spread..s - spread));
    let n = rng.gen_range(12..=30);
    let polygons: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            let area = rng.gen_range(6.0..28.0) * unit * unit;
            let centre = (cx + rng.gen_range(-spread..spread), cy + rng.gen_range(-spread..spread));
            place_polygon(rng, kind, ShapeSize::Area(area), size, Some(centre))
        })
        .collect();
    let rles: Vec<Rle> = polygons.iter().map(|p| Rle::from_polygon(p, size, size)).collect();
    let union = Rle::merge(&rles, MergeOp::Union)?;
    Ok((kind, polygons, union))
}

/// Renders one detection image: background, maybe a crowd, then the
/// instances `params` asks for. `params` must be valid
/// ([`SceneParams::validate`]).
///
/// # Errors
/// Only on internal mask errors (none expected for valid sizes).
pub fn detection_scene(rng: &mut impl Rng, params: &SceneParams, size: u32) -> Result<Scene, Error> {
    let image = background(rng, size);
    let mut canvas = Canvas::new(size, params.min_visible_fraction);
    if rng.gen_bool(params.crowd_probability) {
        let (kind, polygons, union) = crowd(rng, params, size)?;
        let colour = shape_colour(rng);
        canvas.try_place(kind, polygons, union, true, colour);
    }
    // Large shapes first, small ones on top: natural layering, and large
    // shapes are not rejected for burying the small ones.
    let [lo, hi] = params.objects;
    let mut sizes: Vec<ShapeSize> = (0..rng.gen_range(lo..=hi)).map(|_| params.instance_size(rng, size)).collect();
    sizes.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
    for shape_size in sizes {
        for _ in 0..PLACEMENT_TRIES {
            let kind = params.kind(rng);
            let poly = place_polygon(rng, kind, shape_size, size, None);
            let full = Rle::from_polygon(&poly, size, size);
            let colour = shape_colour(rng);
            if canvas.try_place(kind, vec![poly], full, false, colour) {
                break;
            }
        }
    }
    let objects = canvas.finish();
    Ok(Scene { image: paint(image, &objects), objects })
}

/// How a classification image looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassificationStyle {
    /// One white shape on a black background, nothing else: the class is the
    /// silhouette alone. A ViT-Tiny learns it from scratch in a few hundred
    /// steps on a CPU, so pre-training, probing and layer reservation can be
    /// compared on it.
    #[default]
    Plain,
    /// The dominant shape in a random colour over a textured background with
    /// 0-2 small shapes of other kinds. Colour varies far more than shape
    /// between images, and a ViT-Tiny from scratch stays at chance on it for
    /// thousands of steps (so does timm's); a harder set for pre-trained
    /// backbones.
    Textured,
}

/// Renders one classification image: a dominant `kind` covering 12–40% of the
/// image near the centre, drawn as `style` says (for
/// [`ClassificationStyle::Textured`] plus 0–2 small shapes of the other
/// `categories` that do not touch it). `objects[0]` is the dominant shape.
///
/// # Errors
/// Only on internal mask errors (none expected for valid sizes).
pub fn classification_scene(
    rng: &mut impl Rng,
    size: u32,
    kind: ShapeKind,
    categories: &[ShapeKind],
    style: ClassificationStyle,
) -> Result<Scene, Error> {
    let textured = style == ClassificationStyle::Textured;
    let image = if textured { background(rng, size) } else { RgbImage::new(size, size) };
    let colour = |rng: &mut _| if textured { shape_colour(rng) } else { [255, 255, 255] };
    let s = f64::from(size);
    let mut canvas = Canvas::new(size, SceneParams::default().min_visible_fraction);
    for _ in 0..PLACEMENT_TRIES {
        let area = rng.gen_range(0.12..0.4) * s * s;
        let centre = (rng.gen_range(0.4..0.6) * s, rng.gen_range(0.4..0.6) * s);
        let poly = place_polygon(rng, kind, ShapeSize::Area(area), size, Some(centre));
        let full = Rle::from_polygon(&poly, size, size);
        let fill = colour(rng);
        if canvas.try_place(kind, vec![poly], full, false, fill) {
            break;
        }
    }
    let others: Vec<ShapeKind> = categories.iter().copied().filter(|&k| k != kind).collect();
    let distractors = if textured { rng.gen_range(0..=2) } else { 0 };
    for _ in 0..distractors {
        let Some(&other) = others.get(rng.gen_range(0..others.len().max(1))) else { break };
        let area = rng.gen_range(0.005..0.02) * s * s;
        let poly = place_polygon(rng, other, ShapeSize::Area(area), size, None);
        let full = Rle::from_polygon(&poly, size, size);
        let touches = canvas.pixels(&full).any(|p| canvas.owner.get(p).is_some_and(|&o| o != 0));
        if !touches {
            canvas.try_place(other, vec![poly], full, false, shape_colour(rng));
        }
    }
    let objects = canvas.finish();
    Ok(Scene { image: paint(image, &objects), objects })
}

/// Paints every object's visible mask in its colour.
fn paint(mut image: RgbImage, objects: &[SceneObject]) -> RgbImage {
    let (w, h) = image.dimensions();
    for o in objects {
        for (start, len) in o.mask.foreground_runs() {
            for i in start..start + u64::from(len) {
                let (x, y) = ((i / u64::from(h)) as u32, (i % u64::from(h)) as u32);
                if x < w && y < h {
                    image.put_pixel(x, y, Rgb(o.colour));
                }
            }
        }
    }
    image
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn one_pass_visible_masks_equal_per_object_encoding() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut canvas = Canvas::new(48, 0.4);
        for _ in 0..6 {
            let kind = ShapeKind::ALL[rng.gen_range(0..6)];
            let poly = place_polygon(&mut rng, kind, ShapeSize::Area(300.0), 48, None);
            let full = Rle::from_polygon(&poly, 48, 48);
            canvas.try_place(kind, vec![poly], full, false, [255, 0, 0]);
        }
        assert!(canvas.drafts.len() >= 3);
        let masks = canvas.visible_masks();
        for (k, (mask, d)) in masks.iter().zip(&canvas.drafts).enumerate() {
            let bitmap: Vec<u8> = canvas.owner.iter().map(|&o| u8::from(o as usize == k + 1)).collect();
            assert_eq!(*mask, Rle::encode_row_major(&bitmap, 48, 48).unwrap(), "object {k}");
            assert_eq!(mask.area(), d.visible, "object {k}");
        }
    }

    #[test]
    fn thresholds_scale_with_image_area() {
        assert_eq!(area_thresholds(640), [1024.0, 9216.0]);
        let [s, l] = area_thresholds(256);
        assert!((s - 163.84).abs() < 1e-9 && (l - 1474.56).abs() < 1e-9);
    }
}
