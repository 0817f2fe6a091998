//! A deterministic, synthetic evaluation case of any size: a GT instances
//! file and two results files (boxes and masks), as JSON bytes, from a
//! fixed-seed SplitMix64 stream. At COCO-val scale it is the workload of
//! `vitdet bench coco` and `coco/bench/peers.py`; small cases exercise the
//! parsers and the evaluator on realistic files in tests.
//!
//! [`CaseSpec::COCO_VAL`] matches COCO val2017's scale: 5000 images of
//! 480-640 px, 80 categories with a skewed frequency (low ids common, as
//! "person" is), 1..=14 objects per image (~37.5k GT, polygons of 12 vertices,
//! 1% crowd regions as uncompressed RLE, areas log-uniform from 8² to 400² so
//! all three area ranges are populated), 100 box detections per image (jittered
//! copies of the GT, some with a wrong category, plus background boxes) and 20
//! mask detections per image (compressed RLE of jittered GT polygons, written
//! without `bbox` so `loadRes` uses mask areas). Scores have 3 decimals, so
//! ties occur.

use std::path::{Path, PathBuf};

use crate::mask::Rle;
use crate::results::write_bytes_atomic;
use crate::types::{
    AnnId, Annotation, Category, CategoryId, DetectionResult, ImageId, ImageInfo, InstancesFile, Segmentation,
};
use crate::Error;

/// Sizes of a generated case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaseSpec {
    /// Number of images.
    pub images: usize,
    /// Number of categories.
    pub categories: usize,
    /// Most GT objects in one image (uniform in `1..=max_gt_per_image`).
    pub max_gt_per_image: usize,
    /// Box detections per image.
    pub box_dets_per_image: usize,
    /// Mask detections per image.
    pub mask_dets_per_image: usize,
    /// RNG seed.
    pub seed: u64,
}

impl CaseSpec {
    /// COCO val2017 scale (see the module doc).
    pub const COCO_VAL: CaseSpec = CaseSpec {
        images: 5000,
        categories: 80,
        max_gt_per_image: 14,
        box_dets_per_image: 100,
        mask_dets_per_image: 20,
        seed: 42,
    };
}

/// The three JSON files of a case.
#[derive(Debug, Clone)]
pub struct CaseFiles {
    /// Instances (GT) file.
    pub gt: Vec<u8>,
    /// Box results.
    pub bbox_results: Vec<u8>,
    /// Mask results.
    pub segm_results: Vec<u8>,
    /// Number of GT annotations.
    pub n_gt: usize,
}

/// SplitMix64: tiny, seedable, identical on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `lo..=hi`.
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Rounds to 2 decimals, as detector outputs are usually written.
fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A star-shaped polygon of `n` vertices inside the box, clamped to the image.
fn polygon(rng: &mut SplitMix64, bbox: [f64; 4], n: usize, w: f64, h: f64) -> Vec<f64> {
    let (cx, cy) = (bbox[0] + bbox[2] / 2.0, bbox[1] + bbox[3] / 2.0);
    (0..n)
        .flat_map(|i| {
            let angle = std::f64::consts::TAU * (i as f64 + rng.range(-0.3, 0.3)) / n as f64;
            let radius = rng.range(0.75, 1.0);
            let x = (cx + bbox[2] / 2.0 * radius * angle.cos()).clamp(0.0, w);
            let y = (cy + bbox[3] / 2.0 * radius * angle.sin()).clamp(0.0, h);
            [r2(x), r2(y)]
        })
        .collect()
}

/// Box `[x, y, w, h]` jittered by `sigma` of its size, clamped to the image.
fn jitter(rng: &mut SplitMix64, b: [f64; 4], sigma: f64, w: f64, h: f64) -> [f64; 4] {
    let mut j = || rng.range(-sigma, sigma) * 1.7;
    let bw = (b[2] * (1.0 + j())).max(1.0);
    let bh = (b[3] * (1.0 + j())).max(1.0);
    let x = (b[0] + b[2] * j()).clamp(0.0, (w - bw).max(0.0));
    let y = (b[1] + b[3] * j()).clamp(0.0, (h - bh).max(0.0));
    [r2(x), r2(y), r2(bw.min(w)), r2(bh.min(h))]
}

/// A skewed category index: low indices are much more frequent.
fn category(rng: &mut SplitMix64, n: usize) -> usize {
    ((rng.unit() * rng.unit() * n as f64) as usize).min(n - 1)
}

/// A score with 3 decimals (ties happen).
fn score(rng: &mut SplitMix64) -> f64 {
    (rng.unit() * 1000.0).floor() / 1000.0
}

/// Generates a case.
///
/// # Errors
/// Mask errors from rasterising the generated polygons (none for valid specs).
pub fn generate(spec: &CaseSpec) -> Result<CaseFiles, Error> {
    let mut rng = SplitMix64(spec.seed);
    let categories: Vec<Category> = (0..spec.categories)
        .map(|k| Category { id: CategoryId(k as i64 + 1), name: format!("class{}", k + 1), supercategory: None })
        .collect();
    let mut images = Vec::with_capacity(spec.images);
    let mut annotations = Vec::new();
    let mut box_dets = Vec::with_capacity(spec.images * spec.box_dets_per_image);
    let mut mask_dets = Vec::with_capacity(spec.images * spec.mask_dets_per_image);
    for i in 0..spec.images {
        let image_id = ImageId(i as i64 * 3 + 139);
        let (w, h) = (rng.int(480, 640) as u32, rng.int(360, 640) as u32);
        let (wf, hf) = (f64::from(w), f64::from(h));
        images.push(ImageInfo { id: image_id, file_name: format!("{:012}.jpg", image_id.0), width: w, height: h });
        let n_gt = rng.int(1, spec.max_gt_per_image);
        let mut gt_here: Vec<([f64; 4], usize, Vec<f64>)> = Vec::with_capacity(n_gt);
        for _ in 0..n_gt {
            let side = (8.0f64.ln() + rng.unit() * (400.0f64.ln() - 8.0f64.ln())).exp();
            let aspect = rng.range(0.5, 2.0);
            let (bw, bh) = ((side * aspect.sqrt()).min(wf - 1.0), (side / aspect.sqrt()).min(hf - 1.0));
            let b = [r2(rng.range(0.0, wf - bw)), r2(rng.range(0.0, hf - bh)), r2(bw), r2(bh)];
            let k = category(&mut rng, spec.categories);
            let id = AnnId(annotations.len() as i64 + 1);
            let crowd = rng.unit() < 0.01;
            let (segmentation, area, bbox, poly) = if crowd {
                let rle = Rle::from_bbox(b, h, w);
                let area = rle.area() as f64;
                let bbox = rle.to_bbox();
                (Segmentation::Uncompressed(rle.to_uncompressed_rle()), area, bbox, Vec::new())
            } else {
                let poly = polygon(&mut rng, b, 12, wf, hf);
                let rle = Rle::from_polygon(&poly, h, w);
                let (xs, ys) = (poly.iter().step_by(2), poly.iter().skip(1).step_by(2));
                let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let bbox = [x0, y0, r2(x1 - x0), r2(y1 - y0)];
                (Segmentation::Polygons(vec![poly.clone()]), rle.area() as f64, bbox, poly)
            };
            annotations.push(Annotation {
                id,
                image_id,
                category_id: categories[k].id,
                segmentation: Some(segmentation),
                area,
                bbox,
                iscrowd: crowd,
                ignore: None,
            });
            gt_here.push((bbox, k, poly));
        }
        // Box detections: jittered GT (mostly the right category), then background.
        let mut n_box = 0;
        'gt: for (bbox, k, _) in &gt_here {
            for copy in 0..4 {
                if n_box == spec.box_dets_per_image {
                    break 'gt;
                }
                let k = if copy == 3 { category(&mut rng, spec.categories) } else { *k };
                let b = jitter(&mut rng, *bbox, 0.12, wf, hf);
                box_dets.push(DetectionResult::from_box(image_id, categories[k].id, b, score(&mut rng)));
                n_box += 1;
            }
        }
        while n_box < spec.box_dets_per_image {
            let (bw, bh) = (rng.range(4.0, wf / 2.0), rng.range(4.0, hf / 2.0));
            let b = [r2(rng.range(0.0, wf - bw)), r2(rng.range(0.0, hf - bh)), r2(bw), r2(bh)];
            let k = if !gt_here.is_empty() && rng.unit() < 0.5 {
                gt_here[rng.int(0, gt_here.len() - 1)].1
            } else {
                category(&mut rng, spec.categories)
            };
            box_dets.push(DetectionResult::from_box(image_id, categories[k].id, b, score(&mut rng)));
            n_box += 1;
        }
        // Mask detections: jittered GT polygons, then background polygons.
        for m in 0..spec.mask_dets_per_image {
            let (bbox, k) = match gt_here.get(m % (2 * gt_here.len().max(1))) {
                Some((bbox, k, _)) => (jitter(&mut rng, *bbox, 0.08, wf, hf), *k),
                None => {
                    let (bw, bh) = (rng.range(4.0, wf / 3.0), rng.range(4.0, hf / 3.0));
                    ([rng.range(0.0, wf - bw), rng.range(0.0, hf - bh), bw, bh], category(&mut rng, spec.categories))
                }
            };
            let poly = polygon(&mut rng, bbox, 12, wf, hf);
            let rle = Rle::from_polygon(&poly, h, w);
            mask_dets.push(DetectionResult::from_mask(image_id, categories[k].id, &rle, score(&mut rng)));
        }
    }
    let n_gt = annotations.len();
    let gt = InstancesFile { info: None, licenses: None, images, annotations, categories };
    Ok(CaseFiles { gt: to_json(&gt)?, bbox_results: to_json(&box_dets)?, segm_results: to_json(&mask_dets)?, n_gt })
}

/// JSON bytes of a value (these types always serialise; the error is for form).
fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Params { reason: format!("cannot serialise the bench case: {e}") })
}

/// Where [`write_case`] put the three files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasePaths {
    /// `instances.json`.
    pub gt: PathBuf,
    /// `results_bbox.json`.
    pub bbox_results: PathBuf,
    /// `results_segm.json`.
    pub segm_results: PathBuf,
}

impl CasePaths {
    /// The three files under `dir`, if all exist.
    pub fn in_dir(dir: &Path) -> Option<CasePaths> {
        let paths = CasePaths {
            gt: dir.join("instances.json"),
            bbox_results: dir.join("results_bbox.json"),
            segm_results: dir.join("results_segm.json"),
        };
        [&paths.gt, &paths.bbox_results, &paths.segm_results].iter().all(|p| p.is_file()).then_some(paths)
    }
}

/// Writes a case as `instances.json`, `results_bbox.json`, `results_segm.json`
/// under `dir` (created if missing).
///
/// # Errors
/// [`Error::Write`] naming the file.
pub fn write_case(files: &CaseFiles, dir: &Path) -> Result<CasePaths, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    let paths = CasePaths {
        gt: dir.join("instances.json"),
        bbox_results: dir.join("results_bbox.json"),
        segm_results: dir.join("results_segm.json"),
    };
    write_bytes_atomic(&paths.gt, &files.gt)?;
    write_bytes_atomic(&paths.bbox_results, &files.bbox_results)?;
    write_bytes_atomic(&paths.segm_results, &files.segm_results)?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn small_case_is_deterministic_and_parses() {
        let spec = CaseSpec { images: 20, ..CaseSpec::COCO_VAL };
        let a = generate(&spec).unwrap();
        let b = generate(&spec).unwrap();
        assert_eq!(a.gt, b.gt);
        assert_eq!(a.segm_results, b.segm_results);
        let gt: InstancesFile = serde_json::from_slice(&a.gt).unwrap();
        assert_eq!(gt.images.len(), 20);
        assert_eq!(gt.annotations.len(), a.n_gt);
        let boxes: Vec<DetectionResult> = serde_json::from_slice(&a.bbox_results).unwrap();
        assert_eq!(boxes.len(), 20 * 100);
        let masks: Vec<DetectionResult> = serde_json::from_slice(&a.segm_results).unwrap();
        assert_eq!(masks.len(), 20 * 20);
        assert!(masks.iter().all(|d| d.bbox.is_none() && d.segmentation.is_some()));
    }
}
