//! Bit-exactness of `coco::mask` against pycocotools 2.0.11.
//!
//! Every expected value in `fixtures/mask_cases.json` was computed by
//! pycocotools (see `fixtures/make_mask_cases.py`, which says how to re-run it).
//! Counts and compressed strings must be equal, IoUs must have equal f64 bits:
//! there is no tolerance anywhere in this file. Each section also checks that
//! it exercised the interesting cases (non-empty masks, non-zero IoUs, crowd
//! pairs), so a fixture that degenerated to trivial inputs would fail too.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use coco::mask::{bbox_iou, iou, segmentation_to_rle, MergeOp, Rle};
use coco::types::Segmentation;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    encode: Vec<EncodeCase>,
    rles: Vec<RleCase>,
    polygon: Vec<PolygonCase>,
    frbbox: Vec<FrBboxCase>,
    merge: Vec<MergeCase>,
    iou: Vec<IouCase>,
    bbox_iou: Vec<BboxIouCase>,
}

#[derive(Deserialize)]
struct EncodeCase {
    h: u32,
    w: u32,
    /// Column-major pixel values as digits 0..9.
    bitmap: String,
    counts: Vec<u32>,
    string: String,
    area: u64,
    bbox: [f64; 4],
}

#[derive(Deserialize)]
struct RleCase {
    h: u32,
    w: u32,
    counts: Vec<u32>,
    string: String,
    area: u64,
    bbox: [f64; 4],
}

#[derive(Deserialize)]
struct PolygonCase {
    h: u32,
    w: u32,
    polygons: Vec<Vec<f64>>,
    parts: Vec<String>,
    merged: String,
    area: u64,
    bbox: [f64; 4],
}

#[derive(Deserialize)]
struct FrBboxCase {
    h: u32,
    w: u32,
    bbox_in: [f64; 4],
    string: String,
}

#[derive(Deserialize)]
struct MergeCase {
    h: u32,
    w: u32,
    inputs: Vec<String>,
    union: String,
    intersection: String,
}

#[derive(Deserialize)]
struct IouCase {
    h: u32,
    w: u32,
    dt: Vec<String>,
    gt: Vec<String>,
    iscrowd: Vec<u8>,
    iou_bits: Vec<u64>,
}

#[derive(Deserialize)]
struct BboxIouCase {
    dt: Vec<[f64; 4]>,
    gt: Vec<[f64; 4]>,
    iscrowd: Vec<u8>,
    iou_bits: Vec<u64>,
}

fn cases() -> Cases {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mask_cases.json");
    let text = std::fs::read_to_string(path).expect("read mask_cases.json");
    serde_json::from_str(&text).expect("parse mask_cases.json")
}

fn parse(s: &str, h: u32, w: u32) -> Rle {
    Rle::from_compressed(s, h, w).unwrap()
}

#[test]
fn encode_string_area_bbox_match_pycocotools() {
    let cases = cases().encode;
    let (mut nonempty, mut binary, mut multi_valued) = (0, 0, 0);
    for (i, c) in cases.iter().enumerate() {
        let bitmap: Vec<u8> = c.bitmap.bytes().map(|b| b - b'0').collect();
        let rle = Rle::encode(&bitmap, c.h, c.w).unwrap();
        assert_eq!(rle.counts, c.counts, "encode case {i}");
        assert_eq!(rle.to_compressed(), c.string, "encode case {i}: string");
        assert_eq!(parse(&c.string, c.h, c.w), rle, "encode case {i}: from string");
        assert_eq!(rle.area(), c.area, "encode case {i}: area");
        assert_eq!(rle.to_bbox(), c.bbox, "encode case {i}: bbox");
        if bitmap.iter().all(|&v| v <= 1) {
            assert_eq!(rle.decode().unwrap(), bitmap, "encode case {i}: decode");
            binary += 1;
        } else {
            // Runs break on every byte change (rleEncode), not on zero/non-zero.
            multi_valued += 1;
        }
        nonempty += usize::from(c.area > 0);
    }
    assert!(nonempty > cases.len() / 2, "too few non-empty encode cases: {nonempty}");
    assert!(binary > 100 && multi_valued > 20, "{binary} binary, {multi_valued} multi-valued bitmaps");
}

#[test]
fn raw_counts_strings_area_bbox_match_pycocotools() {
    let cases = cases().rles;
    assert!(cases.iter().any(|c| c.bbox[2] > 1e9), "the wrapping-bbox case is missing");
    assert!(cases.iter().any(|c| c.counts.iter().any(|&n| n > 100_000)), "no large counts");
    for (i, c) in cases.iter().enumerate() {
        let rle = Rle { h: c.h, w: c.w, counts: c.counts.clone() };
        assert_eq!(rle.to_compressed(), c.string, "rle case {i}: string");
        assert_eq!(parse(&c.string, c.h, c.w), rle, "rle case {i}: from string");
        assert_eq!(rle.area(), c.area, "rle case {i}: area");
        assert_eq!(rle.to_bbox(), c.bbox, "rle case {i}: bbox");
    }
}

#[test]
fn polygons_match_frpyobjects_and_ann_to_rle() {
    let cases = cases().polygon;
    let mut nonempty = 0;
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(c.parts.len(), c.polygons.len());
        for (j, (poly, expected)) in c.polygons.iter().zip(&c.parts).enumerate() {
            let got = Rle::from_polygon(poly, c.h, c.w);
            assert_eq!(got.to_compressed(), *expected, "polygon case {i} part {j}: {poly:?} on {}x{}", c.h, c.w);
        }
        let seg = Segmentation::Polygons(c.polygons.clone());
        let merged = segmentation_to_rle(&seg, c.h, c.w).unwrap();
        assert_eq!(merged.to_compressed(), c.merged, "polygon case {i}: merged");
        assert_eq!(merged.area(), c.area, "polygon case {i}: area");
        assert_eq!(merged.to_bbox(), c.bbox, "polygon case {i}: bbox");
        merged.check_counts_sum().unwrap();
        nonempty += usize::from(c.area > 0);
    }
    assert!(nonempty > cases.len() * 3 / 4, "too few non-empty polygon cases: {nonempty}");
}

#[test]
fn boxes_match_frbbox() {
    let cases = cases().frbbox;
    let mut nonempty = 0;
    for (i, c) in cases.iter().enumerate() {
        let got = Rle::from_bbox(c.bbox_in, c.h, c.w);
        assert_eq!(got.to_compressed(), c.string, "frbbox case {i}: {:?} on {}x{}", c.bbox_in, c.h, c.w);
        nonempty += usize::from(got.area() > 0);
    }
    assert!(nonempty > cases.len() / 2, "too few non-empty boxes: {nonempty}");
}

#[test]
fn merges_match_pycocotools() {
    for (i, c) in cases().merge.iter().enumerate() {
        let inputs: Vec<Rle> = c.inputs.iter().map(|s| parse(s, c.h, c.w)).collect();
        let union = Rle::merge(&inputs, MergeOp::Union).unwrap();
        assert_eq!(union.to_compressed(), c.union, "merge case {i}: union");
        let inter = Rle::merge(&inputs, MergeOp::Intersection).unwrap();
        assert_eq!(inter.to_compressed(), c.intersection, "merge case {i}: intersection");
    }
}

#[test]
fn mask_iou_matches_bit_for_bit() {
    let (mut nonzero, mut crowd_nonzero, mut fractional) = (0, 0, 0);
    for (i, c) in cases().iou.iter().enumerate() {
        let dt: Vec<Rle> = c.dt.iter().map(|s| parse(s, c.h, c.w)).collect();
        let gt: Vec<Rle> = c.gt.iter().map(|s| parse(s, c.h, c.w)).collect();
        let crowd: Vec<bool> = c.iscrowd.iter().map(|&v| v != 0).collect();
        let mut out = vec![f64::NAN; dt.len() * gt.len()];
        iou(&dt, &gt, &crowd, &mut out).unwrap();
        let bits: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, c.iou_bits, "iou case {i}: got {out:?}");
        for (k, v) in out.iter().enumerate() {
            nonzero += usize::from(*v > 0.0);
            fractional += usize::from(*v > 0.0 && *v < 1.0);
            crowd_nonzero += usize::from(*v > 0.0 && crowd[k % gt.len()]);
        }
    }
    assert!(nonzero > 100 && fractional > 50 && crowd_nonzero > 20, "{nonzero} {fractional} {crowd_nonzero}");
}

#[test]
fn bbox_iou_matches_bit_for_bit() {
    let mut nonzero = 0;
    for (i, c) in cases().bbox_iou.iter().enumerate() {
        let crowd: Vec<bool> = c.iscrowd.iter().map(|&v| v != 0).collect();
        let mut out = vec![f64::NAN; c.dt.len() * c.gt.len()];
        bbox_iou(&c.dt, &c.gt, &crowd, &mut out).unwrap();
        let bits: Vec<u64> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, c.iou_bits, "bbox iou case {i}: got {out:?}");
        nonzero += out.iter().filter(|v| **v > 0.0).count();
    }
    assert!(nonzero > 100, "{nonzero}");
}
