//! An RLE mask as polygons: the union of axis-aligned rectangles that covers
//! exactly its pixels.
//!
//! The training pipeline carries every instance as polygons (detectron2's
//! `mask_format="polygon"`), so that flips, resizes and crops stay exact and
//! mask targets are rasterised inside each proposal box. COCO stores some
//! non-crowd objects as RLE only (the shapes dataset stores every partly
//! occluded object that way); detectron2 rejects these in polygon mode. Here
//! they are converted instead: pixel (x, y) is the square `[x, x+1] × [y, y+1]`
//! (the pycocotools convention: `rleFrPoly` sets pixel x for edges crossing
//! `x + 0.5`), a vertical run of pixels is one rectangle, and rectangles with
//! the same rows in neighbouring columns are merged. The union has no holes
//! problem (parts are merged by union, never by parity), and rasterising it
//! with [`coco::mask::Rle::from_polygons`] gives back the RLE bit for bit
//! (pinned by `tests/data.rs::rle_rectangles_rasterise_back_to_the_mask`).

use coco::mask::Rle;

/// The rectangles (flat polygons `[x0, y0, x0, y1, x1, y1, x1, y0]`, pixel
/// coordinates) whose union is exactly the foreground of `rle`. Empty for an
/// empty mask.
pub fn rle_to_rectangles(rle: &Rle) -> Vec<Vec<f64>> {
    let h = u64::from(rle.h);
    if h == 0 {
        return Vec::new();
    }
    // Rows [y0, y1) of each column's runs, in column order.
    let mut columns: Vec<(u64, u64, u64)> = Vec::new(); // (x, y0, y1)
    for (start, len) in rle.foreground_runs() {
        let (mut pos, mut left) = (start, u64::from(len));
        while left > 0 {
            let (x, y) = (pos / h, pos % h);
            let take = left.min(h - y);
            columns.push((x, y, y + take));
            pos += take;
            left -= take;
        }
    }
    // Merge runs of a column with the same rows in the column just before.
    // Open rectangles are (x_first, x_last, y0, y1), pixel columns inclusive.
    let mut rectangles = Vec::new();
    let mut open: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut next: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut i = 0;
    while i < columns.len() {
        let x = columns[i].0;
        next.clear();
        while let Some(&(cx, y0, y1)) = columns.get(i) {
            if cx != x {
                break;
            }
            let continued = open.iter().position(|&(_, last, a, b)| last + 1 == x && (a, b) == (y0, y1));
            let x_first = match continued {
                Some(k) => open.swap_remove(k).0,
                None => x,
            };
            next.push((x_first, x, y0, y1));
            i += 1;
        }
        rectangles.extend(open.drain(..).map(|(first, last, y0, y1)| rectangle(first, last + 1, y0, y1)));
        std::mem::swap(&mut open, &mut next);
    }
    rectangles.extend(open.drain(..).map(|(first, last, y0, y1)| rectangle(first, last + 1, y0, y1)));
    rectangles
}

/// The flat polygon of the rectangle `[x0, x1] × [y0, y1]`.
fn rectangle(x0: u64, x1: u64, y0: u64, y1: u64) -> Vec<f64> {
    let (x0, x1, y0, y1) = (x0 as f64, x1 as f64, y0 as f64, y1 as f64);
    vec![x0, y0, x0, y1, x1, y1, x1, y0]
}
