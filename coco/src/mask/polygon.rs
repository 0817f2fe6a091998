//! Polygon and box rasterisation, identical to `rleFrPoly` / `rleFrBbox` of
//! pycocotools `common/maskApi.c` (same integer and f64 arithmetic, same
//! rounding; re-derived from the algorithm, not copied).
//!
//! The algorithm (quirks H3–H6 of the pycocotools quirk list):
//! 1. Scale vertices by [`UPSAMPLE`] and round with a C cast: `(int)(5x + .5)`
//!    (truncation toward zero, so negative coordinates round differently).
//! 2. Trace every edge (the polygon is closed) with a DDA along its major axis,
//!    always stepping in increasing major coordinate but emitting points in the
//!    edge's own direction.
//! 3. Wherever the upsampled x changes between consecutive points, take the
//!    column `xd = (min(u, u_prev + ...) + .5) / 5 - .5`; keep it only if it is
//!    an integer in `[0, w - 1]` (points outside the image in x are dropped),
//!    and the row `ceil(clamp((min(v, v_prev) + .5) / 5 - .5, 0, h))` (y is
//!    clamped, not dropped).
//! 4. Each kept (x, y) is a toggle at flat index `x * h + y`; sort the toggles
//!    with a sentinel `h * w`, take differences, and fold zero-length runs.
//!
//! Pixel centres are therefore at integer coordinates: a pixel (x, y) is inside
//! when its centre is (roughly) inside the polygon. The result depends on the
//! vertex order, as in pycocotools.

use super::Rle;

/// Upsampling factor of the boundary trace (`scale=5` in maskApi.c).
const UPSAMPLE: f64 = 5.0;

impl Rle {
    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` (pixel coordinates, closed
    /// implicitly) into an `h × w` mask exactly as pycocotools `rleFrPoly`.
    ///
    /// An odd trailing coordinate is ignored (`int(len(p)/2)` vertices), fewer
    /// than two vertices give an empty mask, and non-finite coordinates behave as
    /// Rust's saturating `as i32` casts (C leaves them undefined).
    pub fn from_polygon(poly: &[f64], h: u32, w: u32) -> Rle {
        let k = poly.len() / 2;
        let round = |v: f64| (UPSAMPLE * v + 0.5) as i32;
        let xs: Vec<i32> = (0..k).map(|j| round(poly[2 * j])).collect();
        let ys: Vec<i32> = (0..k).map(|j| round(poly[2 * j + 1])).collect();

        // Dense boundary points (u, v) in upsampled coordinates.
        let total: usize = (0..k)
            .map(|j| {
                let n = (j + 1) % k;
                xs[j].abs_diff(xs[n]).max(ys[j].abs_diff(ys[n])) as usize + 1
            })
            .sum();
        let mut u = Vec::with_capacity(total);
        let mut v = Vec::with_capacity(total);
        for j in 0..k {
            let n = (j + 1) % k;
            trace_edge((xs[j], ys[j]), (xs[n], ys[n]), &mut u, &mut v);
        }

        // Toggle points where the upsampled x changes, downsampled to pixels.
        let (hf, hi) = (f64::from(h), h as i32);
        let x_max = u64::from(w).wrapping_sub(1) as f64;
        let mut toggles: Vec<u32> = Vec::with_capacity(u.len() / 4 + 1);
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let xd = f64::from(if u[j] < u[j - 1] { u[j] } else { u[j].wrapping_sub(1) });
            let xd = (xd + 0.5) / UPSAMPLE - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > x_max {
                continue;
            }
            let yd = f64::from(v[j].min(v[j - 1]));
            let mut yd = (yd + 0.5) / UPSAMPLE - 0.5;
            if yd < 0.0 {
                yd = 0.0;
            } else if yd > hf {
                yd = hf;
            }
            let (x, y) = (xd as i32, yd.ceil() as i32);
            toggles.push(x.wrapping_mul(hi).wrapping_add(y) as u32);
        }
        toggles.push(h.wrapping_mul(w));
        toggles.sort_unstable();
        Rle { h, w, counts: toggles_to_counts(&toggles) }
    }

    /// Rasterises a box `[x, y, width, height]` (pixels) exactly as
    /// pycocotools `rleFrBbox`: the polygon (x,y) (x,y+h) (x+w,y+h) (x+w,y)
    /// through [`Rle::from_polygon`].
    pub fn from_bbox(bbox: [f64; 4], h: u32, w: u32) -> Rle {
        let [x0, y0, bw, bh] = bbox;
        let (x1, y1) = (x0 + bw, y0 + bh);
        Rle::from_polygon(&[x0, y0, x0, y1, x1, y1, x1, y0], h, w)
    }
}

/// Appends the DDA points of one upsampled edge to `u` (x) and `v` (y).
fn trace_edge((x0, y0): (i32, i32), (x1, y1): (i32, i32), u: &mut Vec<i32>, v: &mut Vec<i32>) {
    let (dx, dy) = (x0.abs_diff(x1) as i32, y0.abs_diff(y1) as i32);
    if dx == 0 && dy == 0 {
        // C computes 0/0 here and casts NaN to int; the point always repeats its
        // neighbours' x, so its y is never read. Emit the vertex itself.
        u.push(x0);
        v.push(y0);
        return;
    }
    let x_major = dx >= dy;
    let flip = (x_major && x0 > x1) || (!x_major && y0 > y1);
    let (xs, xe, ys, ye) = if flip { (x1, x0, y1, y0) } else { (x0, x1, y0, y1) };
    if x_major {
        let s = f64::from(ye - ys) / f64::from(dx);
        for d in 0..=dx {
            let t = if flip { dx - d } else { d };
            u.push(t + xs);
            v.push((f64::from(ys) + s * f64::from(t) + 0.5) as i32);
        }
    } else {
        let s = f64::from(xe - xs) / f64::from(dy);
        for d in 0..=dy {
            let t = if flip { dy - d } else { d };
            v.push(t + ys);
            u.push((f64::from(xs) + s * f64::from(t) + 0.5) as i32);
        }
    }
}

/// Sorted toggle indices (last one the `h * w` sentinel) → run counts, folding
/// zero-length runs into the previous run as maskApi.c does.
fn toggles_to_counts(sorted: &[u32]) -> Vec<u32> {
    let mut prev = 0u32;
    let diffs: Vec<u32> = sorted
        .iter()
        .map(|&t| {
            let d = t.wrapping_sub(prev);
            prev = t;
            d
        })
        .collect();
    let mut counts = Vec::with_capacity(diffs.len());
    let mut j = 0;
    if let Some(&first) = diffs.first() {
        counts.push(first);
        j = 1;
    }
    while j < diffs.len() {
        if diffs[j] > 0 {
            counts.push(diffs[j]);
            j += 1;
        } else {
            j += 1;
            if let (Some(&next), Some(last)) = (diffs.get(j), counts.last_mut()) {
                *last = last.wrapping_add(next);
                j += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn unit_square_around_pixel_centres() {
        // The square [0.5, 2.5]² covers pixel centres x, y ∈ {1, 2} in a 4×4 mask.
        let r = Rle::from_polygon(&[0.5, 0.5, 0.5, 2.5, 2.5, 2.5, 2.5, 0.5], 4, 4);
        let row_major = r.decode_row_major().unwrap();
        #[rustfmt::skip]
        let expected = vec![
            0, 0, 0, 0,
            0, 1, 1, 0,
            0, 1, 1, 0,
            0, 0, 0, 0,
        ];
        assert_eq!(row_major, expected);
        assert_eq!(r.counts, vec![5, 2, 2, 2, 5]);
    }

    #[test]
    fn bbox_goes_through_polygon() {
        let a = Rle::from_bbox([0.5, 0.5, 2.0, 2.0], 4, 4);
        assert_eq!(a, Rle::from_polygon(&[0.5, 0.5, 0.5, 2.5, 2.5, 2.5, 2.5, 0.5], 4, 4));
        assert_eq!(a.area(), 4);
    }

    #[test]
    fn degenerate_polygons_are_empty() {
        assert_eq!(Rle::from_polygon(&[], 3, 3).counts, vec![9]);
        assert_eq!(Rle::from_polygon(&[1.0, 1.0], 3, 3).counts, vec![9]);
        // An odd trailing coordinate is ignored.
        assert_eq!(Rle::from_polygon(&[1.0, 1.0, 7.0], 3, 3).counts, vec![9]);
    }

    #[test]
    fn polygon_outside_in_x_is_dropped_and_clamped_in_y() {
        // Entirely right of the image: every toggle has x > w - 1.
        assert_eq!(Rle::from_polygon(&[10.0, 0.0, 10.0, 2.0, 12.0, 2.0, 12.0, 0.0], 3, 3).counts, vec![9]);
        // Taller than the image: y is clamped, so full columns 1 and 2.
        let r = Rle::from_polygon(&[0.5, -5.0, 0.5, 9.0, 2.5, 9.0, 2.5, -5.0], 3, 3);
        assert_eq!(r.counts, vec![3, 6]);
    }
}
