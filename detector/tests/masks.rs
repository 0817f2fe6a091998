//! Mask geometry against detectron2's reference functions (run through
//! pycocotools and torch in `fixtures/make_data_fixtures.py`):
//! `rasterize_polygons_within_box` bit for bit, `paste_masks_in_image` bit for
//! bit on the thresholded result except where torch's probability lies within
//! `NEAR_THRESHOLD` of the threshold.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{f64s, fixture};
use detector::masks::{paste_masks_in_image, rasterize_polygons_within_box};
use serde_json::Value;

/// Probabilities this close to the threshold may flip between torch's
/// vectorised CPU kernel (which may fuse multiply-adds) and this port.
const NEAR_THRESHOLD: f32 = 1e-6;
/// Fixture masks are integers k meaning k / 65536 (exact in f32).
const MASK_DENOM: f32 = 65536.0;

fn bits(v: &Value) -> Vec<u8> {
    v.as_str().unwrap().bytes().map(|b| b - b'0').collect()
}

fn box4(v: &Value) -> [f32; 4] {
    let b = f64s(v);
    [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]
}

#[test]
fn rasterize_polygons_within_box_matches_detectron2() {
    let data = fixture("data_fixtures.json");
    let cases = data["rasterize"].as_array().unwrap();
    assert!(cases.len() > 100);
    let mut nonempty = 0;
    for (i, case) in cases.iter().enumerate() {
        let polygons: Vec<Vec<f64>> = case["polygons"].as_array().unwrap().iter().map(f64s).collect();
        let m = case["mask_size"].as_u64().unwrap() as usize;
        let got = rasterize_polygons_within_box(&polygons, box4(&case["box"]), m).unwrap();
        let want = bits(&case["mask"]);
        let got: Vec<u8> = got.iter().map(|&v| v as u8).collect();
        assert_eq!(got, want, "case {i}: box {:?}, M {m}", case["box"]);
        nonempty += usize::from(want.contains(&1));
    }
    // The cases exercise real shapes, not only empty masks.
    assert!(nonempty > cases.len() / 2, "{nonempty} non-empty of {}", cases.len());
}

#[test]
fn paste_masks_matches_detectron2_cpu_path() {
    let data = fixture("data_fixtures.json");
    let cases = data["paste"].as_array().unwrap();
    let (mut near_flips, mut foreground) = (0usize, 0usize);
    for (i, case) in cases.iter().enumerate() {
        let hw: Vec<usize> = case["image_hw"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (h, w) = (hw[0], hw[1]);
        let m = case["mask_size"].as_u64().unwrap() as usize;
        let mask: Vec<f32> =
            case["mask_k"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as f32 / MASK_DENOM).collect();
        let rles = paste_masks_in_image(&mask, m, &[box4(&case["box"])], (h, w), 0.5).unwrap();
        assert_eq!(rles.len(), 1);
        assert_eq!((rles[0].h as usize, rles[0].w as usize), (h, w));
        let got = rles[0].decode_row_major().unwrap();
        let want = bits(&case["pasted"]);
        let near: Vec<(usize, usize)> = case["near_threshold_yx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
            .collect();
        for y in 0..h {
            for x in 0..w {
                let (g, e) = (got[y * w + x], want[y * w + x]);
                if g != e {
                    assert!(near.contains(&(y, x)), "case {i}: pixel (y {y}, x {x}) got {g}, torch {e}, box {:?}", case["box"]);
                    near_flips += 1;
                }
            }
        }
        foreground += want.iter().filter(|&&b| b == 1).count();
    }
    assert!(foreground > 1000, "fixtures paste real masks ({foreground} px)");
    eprintln!("paste: {near_flips} pixel(s) differ, all within {NEAR_THRESHOLD} of the threshold");
}

#[test]
fn paste_rejects_wrong_mask_length_and_handles_no_boxes() {
    let err = paste_masks_in_image(&[0.0; 27], 28, &[[0.0, 0.0, 1.0, 1.0]], (4, 4), 0.5).unwrap_err();
    assert!(err.to_string().contains("expected length 784"), "{err}");
    assert!(paste_masks_in_image(&[], 28, &[], (4, 4), 0.5).unwrap().is_empty());
}

#[test]
fn paste_full_mask_into_integer_box_fills_exactly_the_box() {
    // An all-ones 2x2 mask at box (1, 1)-(3, 4) of a 5x5 image: inside the box
    // every sample is 1; one pixel outside, the bilinear weight of the mask
    // falls below 0.5 (half a cell = 0.5 px horizontally, 0.75 px vertically).
    let rle = &paste_masks_in_image(&[1.0; 4], 2, &[[1.0, 1.0, 3.0, 4.0]], (5, 5), 0.5).unwrap()[0];
    let got = rle.decode_row_major().unwrap();
    let mut want = vec![0u8; 25];
    for y in 1..4 {
        for x in 1..3 {
            want[y * 5 + x] = 1;
        }
    }
    assert_eq!(got, want);
    assert_eq!(rle.area(), 6);
}

#[test]
fn rasterize_box_covering_a_square_fills_the_mask() {
    // The square polygon (0,0)-(10,10) inside its own box fills all M x M cells.
    let square = vec![vec![0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]];
    let mask = rasterize_polygons_within_box(&square, [0.0, 0.0, 10.0, 10.0], 7).unwrap();
    assert!(mask.iter().all(|&v| v == 1.0));
    // Its left half in box (0,0)-(20,10): columns 0..M/2 of every row.
    let mask = rasterize_polygons_within_box(&square, [0.0, 0.0, 20.0, 10.0], 8).unwrap();
    for y in 0..8 {
        let row: Vec<f32> = mask[y * 8..(y + 1) * 8].to_vec();
        assert_eq!(row, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }
    assert!(rasterize_polygons_within_box(&[], [0.0, 0.0, 1.0, 1.0], 4).unwrap().iter().all(|&v| v == 0.0));
}
