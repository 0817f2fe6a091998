//! `AnchorGenerator` against detectron2's `DefaultAnchorGenerator` formula
//! (computed with numpy in the fixture script; torchvision rounds its cell
//! anchors, so it is not the reference here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{f64s, fixture, i64s, rows4};
use detector::anchors::{AnchorConfig, AnchorGenerator};

#[test]
fn cell_and_grid_anchors_match_detectron2_formula() {
    let f = fixture("anchors.json");
    let levels = f["levels"].as_array().unwrap();
    let cfg = AnchorConfig::default();
    assert_eq!(f64s(&f["ratios"]), cfg.aspect_ratios);
    let generator = AnchorGenerator::new(&cfg).unwrap();
    let grids: Vec<(usize, usize)> = levels
        .iter()
        .map(|l| {
            let g = i64s(&l["grid"]);
            (g[0] as usize, g[1] as usize)
        })
        .collect();
    let anchors = generator.grid_anchors(&grids).unwrap();
    assert_eq!(anchors.len(), 5);
    for (i, (level, got)) in levels.iter().zip(&anchors).enumerate() {
        assert_eq!(level["size"].as_f64().unwrap(), cfg.sizes[i][0]);
        assert_eq!(level["stride"].as_u64().unwrap() as usize, cfg.strides[i]);
        // Bit-exact: the same f64 formula rounded to f32, then an f32 add.
        assert_eq!(generator.cell_anchors()[i], rows4(&level["cell"]), "cell anchors of level {i}");
        assert_eq!(got.as_slice(), rows4(&level["anchors"]).as_slice(), "anchors of level {i}");
    }
}
