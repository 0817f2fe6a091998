//! Pillow-exact resizing: every fixture case of `fixtures/make_resize_fixtures.py`
//! (Pillow 13's `Image.resize` with BILINEAR and BICUBIC) bit for bit, and
//! windows of the output computed alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fixture, hex, usizes};
use vision::resize::{resize, resize_window, Filter, RgbImage};

const FILTERS: [(Filter, &str); 2] = [(Filter::Bilinear, "bilinear"), (Filter::Bicubic, "bicubic")];

#[test]
fn resize_matches_pillow_bit_for_bit() {
    let data = fixture("resize.json");
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for (i, case) in cases.iter().enumerate() {
        let (hw, out) = (usizes(&case["in_hw"]), usizes(&case["out_hw"]));
        let src = RgbImage { height: hw[0], width: hw[1], data: hex(&case["input"]) };
        for (filter, name) in FILTERS {
            let full = resize(&src, out[0], out[1], filter);
            assert_eq!((full.height, full.width), (out[0], out[1]));
            assert_eq!(full.data, hex(&case[name]), "case {i} {name}: {hw:?} -> {out:?} ({})", case["pattern"]);
        }
    }
}

#[test]
fn a_window_is_the_same_pixels_as_the_whole_output() {
    let data = fixture("resize.json");
    for (i, case) in data["cases"].as_array().unwrap().iter().enumerate() {
        let (hw, out) = (usizes(&case["in_hw"]), usizes(&case["out_hw"]));
        let src = RgbImage { height: hw[0], width: hw[1], data: hex(&case["input"]) };
        for (filter, name) in FILTERS {
            let full = resize(&src, out[0], out[1], filter);
            let (rows, cols) = (out[0] / 3..out[0] - out[0] / 4, out[1] / 5..out[1]);
            let window = resize_window(&src, out[0], out[1], rows.clone(), cols.clone(), filter);
            assert_eq!((window.height, window.width), (rows.len(), cols.len()));
            for (r, y) in rows.enumerate() {
                let want = &full.data[(y * out[1] + cols.start) * 3..(y * out[1] + cols.end) * 3];
                assert_eq!(&window.data[r * window.width * 3..(r + 1) * window.width * 3], want, "case {i} {name} row {y}");
            }
        }
    }
}

#[test]
fn windows_are_clamped_to_the_output() {
    let src = RgbImage { height: 4, width: 6, data: (0..72).collect() };
    let w = resize_window(&src, 8, 12, 6..20, 10..30, Filter::Bicubic);
    assert_eq!((w.height, w.width, w.data.len()), (2, 2, 12));
    let empty = resize_window(&src, 8, 12, 9..20, 0..12, Filter::Bilinear);
    assert_eq!((empty.height, empty.data.len()), (0, 0));
}

#[test]
fn filter_names_are_lowercase_in_configs() {
    assert_eq!(serde_json::to_string(&Filter::Bicubic).unwrap(), "\"bicubic\"");
    assert_eq!(serde_json::from_str::<Filter>("\"bilinear\"").unwrap(), Filter::Bilinear);
    assert!(serde_json::from_str::<Filter>("\"nearest\"").is_err());
}
