//! `Boxes` against torchvision `box_iou`, `box_area`, `clip_boxes_to_image`, `box_convert`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_close, fixture, rows4};
use detector::Boxes;

#[test]
fn pairwise_iou_area_clip_xywh_match_torchvision() {
    let f = fixture("boxes.json");
    let a = Boxes::new(rows4(&f["a"]));
    let b = Boxes::new(rows4(&f["b"]));
    let expected_iou: Vec<f32> = f["iou"].as_array().unwrap().iter().flat_map(common::f32s).collect();
    let iou = a.pairwise_iou(&b);
    assert_eq!((iou.num_rows(), iou.num_cols()), (a.len(), b.len()));
    assert_close("iou", iou.values(), &expected_iou);
    // The fixture plants an exact duplicate (IoU 1) and a disjoint box (IoU 0).
    assert_eq!(iou.row(5)[3], 1.0);
    assert!((0..a.len()).all(|r| iou.row(r)[4] == 0.0));

    assert_close("area", &a.area(), &common::f32s(&f["area_a"]));

    let hw = common::i64s(&f["image_hw"]);
    let mut clipped = a.clone();
    clipped.clip((hw[0] as usize, hw[1] as usize));
    let flat = |b: &[[f32; 4]]| b.iter().flatten().copied().collect::<Vec<f32>>();
    assert_eq!(flat(clipped.as_slice()), flat(&rows4(&f["clipped_a"])));

    let xywh = a.to_xywh();
    assert_close("xywh", &flat(&xywh), &flat(&rows4(&f["xywh_a"])));
    assert_close("xyxy round trip", &flat(Boxes::from_xywh(&xywh).as_slice()), &flat(a.as_slice()));
}
