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

/// Largest upsampled coordinate magnitude (vertices about 10^8 px outside
/// the image). maskApi.c's `int` differences overflow past 2^30 (undefined
/// behaviour in C, a panic in a Rust build with overflow checks, found by the
/// `polygon` fuzz target); clamping keeps every edge's arithmetic in range
/// and leaves every polygon within 10^8 px of the origin unchanged.
const MAX_UPSAMPLED: i32 = 1 << 29;

impl Rle {
    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` (pixel coordinates, closed
    /// implicitly) into an `h × w` mask exactly as pycocotools `rleFrPoly`.
    ///
    /// An odd trailing coordinate is ignored (`int(len(p)/2)` vertices), fewer
    /// than two vertices give an empty mask, and non-finite coordinates behave as
    /// Rust's saturating `as i32` casts (C leaves them undefined).
    pub fn from_polygon(poly: &[f64], h: u32, w: u32) -> Rle {
        let mut counts = Vec::new();
        polygon_counts_into(poly, h, w, &mut counts);
        Rle { h, w, counts }
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

/// Buffers of one rasterisation, reused across polygons.
#[derive(Default)]
struct Scratch {
    /// Flat toggle indices `x * h + y`.
    toggles: Vec<u32>,
    /// The column `x` of each toggle.
    cols: Vec<u32>,
    /// Counting-sort bucket starts, one per column.
    starts: Vec<u32>,
    /// The toggles bucketed by column.
    sorted: Vec<u32>,
}

std::thread_local! {
    /// Per-thread buffers (no allocation per call beyond the returned counts).
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// The run counts of [`Rle::from_polygon`] into `counts` (cleared first; its
/// allocation is reused).
pub(crate) fn polygon_counts_into(poly: &[f64], h: u32, w: u32, counts: &mut Vec<u32>) {
    SCRATCH.with(|cell| {
        let mut scratch = cell.take();
        rasterise(poly, h, w, &mut scratch, counts);
        cell.set(scratch);
    })
}

/// [`Rle::from_polygon`] with a caller-owned scratch buffer.
///
/// The C code stores every DDA point, then scans consecutive pairs; here the
/// points are streamed through [`Toggler`], which keeps only the previous one.
/// Its floating-point steps are replaced by exact integer equivalents (see
/// [`Toggler::point`]); the DDA itself keeps C's double arithmetic.
fn rasterise(poly: &[f64], h: u32, w: u32, scratch: &mut Scratch, counts: &mut Vec<u32>) {
    let k = poly.len() / 2;
    let round = |v: f64| ((UPSAMPLE * v + 0.5) as i32).clamp(-MAX_UPSAMPLED, MAX_UPSAMPLED);
    let vertex = |j: usize| (round(poly[2 * j]), round(poly[2 * j + 1]));
    scratch.toggles.clear();
    scratch.cols.clear();
    let mut toggler =
        Toggler { prev: None, h, x_max: u64::from(w).wrapping_sub(1), out: &mut scratch.toggles, cols: &mut scratch.cols };
    for j in 0..k {
        trace_edge(vertex(j), vertex((j + 1) % k), &mut toggler);
    }
    if u64::from(h) * u64::from(w) <= u64::from(u32::MAX) && sort_by_columns(scratch) {
        scratch.sorted.push(h * w);
        toggles_to_counts(&scratch.sorted, counts);
    } else {
        // `x * h + y` may wrap: sort the values as C does.
        scratch.toggles.push(h.wrapping_mul(w));
        scratch.toggles.sort_unstable();
        toggles_to_counts(&scratch.toggles, counts);
    }
}

/// Sorts `scratch.toggles` into `scratch.sorted` by a counting sort on their
/// columns, then an insertion sort that only reorders within a column (a
/// column holds a few toggles; a crowded one is sorted): about linear time where a comparison sort is
/// `n log n`. Without wrapping (`h * w` fits `u32`), a toggle of column x
/// is at most `x * h + h`, which no toggle of a later column is below, so the
/// result is the sorted order. False (nothing written) when the columns span
/// far more than the toggles (the caller sorts instead).
fn sort_by_columns(scratch: &mut Scratch) -> bool {
    let Scratch { toggles, cols, starts, sorted } = scratch;
    let n = toggles.len();
    let (Some(&lo), Some(&hi)) = (cols.iter().min(), cols.iter().max()) else {
        sorted.clear();
        return true;
    };
    let span = (hi - lo) as usize + 1;
    if span > 2 * n + 64 {
        return false;
    }
    starts.clear();
    starts.resize(span + 1, 0);
    for &x in cols.iter() {
        starts[(x - lo) as usize + 1] += 1;
    }
    for i in 0..span {
        starts[i + 1] += starts[i];
    }
    sorted.clear();
    sorted.resize(n, 0);
    for (&t, &x) in toggles.iter().zip(cols.iter()) {
        let slot = &mut starts[(x - lo) as usize];
        sorted[*slot as usize] = t;
        *slot += 1;
    }
    // `starts[c]` is now the end of column c's bucket.
    let mut begin = 0;
    for &end in &starts[..span] {
        let bucket = &mut sorted[begin..end as usize];
        if bucket.len() > 16 {
            bucket.sort_unstable();
        } else {
            for i in 1..bucket.len() {
                let v = bucket[i];
                let mut j = i;
                while j > 0 && bucket[j - 1] > v {
                    bucket[j] = bucket[j - 1];
                    j -= 1;
                }
                bucket[j] = v;
            }
        }
        begin = end as usize;
    }
    true
}

/// Turns consecutive boundary points (upsampled) into pixel toggles.
struct Toggler<'a> {
    /// The previous point (u, v), none before the first.
    prev: Option<(i32, i32)>,
    /// Mask height.
    h: u32,
    /// `w - 1` as C's `double` comparison sees it (wrapping for `w = 0`).
    x_max: u64,
    /// Flat toggle indices `x * h + y` (wrapping, as C's unsigned arithmetic).
    out: &'a mut Vec<u32>,
    /// The column of each toggle in `out`.
    cols: &'a mut Vec<u32>,
}

impl Toggler<'_> {
    /// The largest `a` of [`Toggler::pair`] that can toggle: `5 (w - 1)`.
    fn a_max(&self) -> i64 {
        i64::try_from(self.x_max.saturating_mul(5)).unwrap_or(i64::MAX)
    }

    /// A toggle candidate from a pair of consecutive points whose u differ,
    /// given `u_min` (the `a + 2` below) and `v_min = min(v, v_prev)`.
    ///
    /// maskApi.c computes, for consecutive points whose u differ,
    /// `xd = (a + .5) / 5 - .5` with `a = u` (u decreasing) or `u - 1`, keeps it
    /// only if `xd == floor(xd)` and `0 <= xd <= w - 1`, and takes the row
    /// `ceil(clamp((b + .5) / 5 - .5, 0, h))` with `b = min(v, v_prev)`.
    /// Exactly, `(a + .5) / 5 - .5 = (a - 2) / 5`. For `|a| < 2^32` the double
    /// result is within `2^-20` of that, while a non-integer `(a - 2) / 5` is at
    /// least `1/5` from every integer; when `a ≡ 2 (mod 5)` every step is exact
    /// (`a + .5` and `(a - 2) / 5 + .5` are representable). So `xd` is an
    /// integer iff `a ≡ 2 (mod 5)`, and then equals `(a - 2) / 5`; likewise the
    /// row is `clamp(ceil((b - 2) / 5), 0, h)` in integers. No `floor` / `ceil`
    /// calls (libm on baseline x86-64), identical results.
    #[inline(always)]
    fn pair(&mut self, u_min: i32, v_min: i32) {
        let a = i64::from(u_min) - 2;
        if a.rem_euclid(5) != 0 || a < 0 {
            return;
        }
        let x = a / 5;
        if x as u64 > self.x_max {
            return;
        }
        let b = i64::from(v_min) - 2;
        let y = if b <= 0 { 0 } else { ((b + 4) / 5).min(i64::from(self.h)) };
        // C's `(int)` of the row saturates (as Rust's `as`) for `h > i32::MAX`.
        let y = i32::try_from(y).unwrap_or(i32::MAX);
        self.out.push((x as i32).wrapping_mul(self.h as i32).wrapping_add(y) as u32);
        self.cols.push(x as u32);
    }

    /// Takes the next boundary point (after the previous one, if any).
    #[inline(always)]
    fn point(&mut self, u: i32, v: i32) {
        let Some((pu, pv)) = self.prev.replace((u, v)) else { return };
        if u == pu {
            return;
        }
        self.pair(if u < pu { u } else { u.wrapping_sub(1) }, v.min(pv));
    }
}

/// Streams the DDA points of one upsampled edge into `out`.
#[inline(always)]
fn trace_edge((x0, y0): (i32, i32), (x1, y1): (i32, i32), out: &mut Toggler<'_>) {
    let (dx, dy) = (x0.abs_diff(x1) as i32, y0.abs_diff(y1) as i32);
    if dx == 0 && dy == 0 {
        // C computes 0/0 here and casts NaN to int; the point always repeats its
        // neighbours' x, so its y is never read. Emit the vertex itself.
        out.point(x0, y0);
        return;
    }
    let x_major = dx >= dy;
    let flip = (x_major && x0 > x1) || (!x_major && y0 > y1);
    let (xs, xe, ys, ye) = if flip { (x1, x0, y1, y0) } else { (x0, x1, y0, y1) };
    if x_major {
        let s = f64::from(ye - ys) / f64::from(dx);
        let v_at = |t: i32| (f64::from(ys) + s * f64::from(t) + 0.5) as i32;
        // Consecutive points of an x-major edge differ by 1 in u, so the pair at
        // parameters (t, t + 1) has `a = min(u) - 2 = xs + t - 2` in either
        // direction, and only every fifth pair can toggle. Toggles are sorted
        // afterwards, so their order does not matter: visit just those pairs.
        let (first, last) = if flip { (dx, 0) } else { (0, dx) };
        out.point(xs + first, v_at(first));
        // Only pairs with `0 <= a <= 5 (w - 1)` can toggle: start and stop
        // there, so the work is bounded by the image width and not by how
        // far outside it the vertices lie.
        let (a_lo, a_hi) = (2 - i64::from(xs), out.a_max().saturating_add(3 - i64::from(xs)));
        let mut t = (2 - i64::from(xs)).rem_euclid(5).max(a_lo);
        while t < i64::from(dx).min(a_hi) {
            let t32 = t as i32;
            out.pair(xs + t32, v_at(t32).min(v_at(t32 + 1)));
            t += 5;
        }
        out.prev = Some((xs + last, v_at(last)));
    } else {
        let s = f64::from(xe - xs) / f64::from(dy);
        let u_at = |t: i32| (f64::from(xs) + s * f64::from(t) + 0.5) as i32;
        // The pair at parameters (t, t + 1) has `min(v) = ys + t`; visit the pairs
        // in increasing t (order does not matter) with C's rule for `a`, which
        // depends on which of the two points is emitted second.
        let (first, last) = if flip { (dy, 0) } else { (0, dy) };
        out.point(u_at(first), ys + first);
        // u(t) is monotone in t (a fixed-sign multiply, an add and a truncation
        // all are), so instead of stepping through all dy points, find for each
        // u value k ≡ 2 (mod 5) in range the first step where u passes k, from
        // an estimate corrected by exact evaluations. Every step where u
        // changes by one and `min(u) ≡ 2` is visited exactly once; steps where
        // u jumps are visited with their true endpoints (C's rule then rejects
        // or keeps them), and a step is never emitted twice.
        let increasing = xe >= xs;
        let (u_start, u_end) = (i64::from(u_at(0)), i64::from(u_at(dy)));
        let (lo, hi) = if increasing { (u_start, u_end) } else { (u_end, u_start) };
        // A pair toggles only when its `a = k - 2` is in `[0, 5 (w - 1)]`;
        // the k outside are skipped, which bounds the work by the image width.
        // (A step whose u jumps is visited at its first k in range, and the
        // only k its pair can be kept for is in range.)
        let (lo, hi) = (lo.max(2), hi.min(out.a_max().saturating_add(3)));
        let passed = |k: i64, t: i32| if increasing { i64::from(u_at(t)) > k } else { i64::from(u_at(t)) <= k };
        let mut k = lo + (2 - lo).rem_euclid(5);
        let mut last_step = 0;
        while k < hi {
            let estimate = ((k as f64 + 0.5) - f64::from(xs)) / s;
            let mut t = if estimate.is_finite() { (estimate as i64).clamp(1, i64::from(dy)) as i32 } else { 1 };
            while t > 1 && passed(k, t - 1) {
                t -= 1;
            }
            while t < dy && !passed(k, t) {
                t += 1;
            }
            if t != last_step {
                last_step = t;
                let (u0, u1) = (u_at(t - 1), u_at(t));
                let (prev, cur) = if flip { (u1, u0) } else { (u0, u1) };
                if prev != cur {
                    out.pair(if cur < prev { cur } else { cur.wrapping_sub(1) }, ys + t - 1);
                }
            }
            k += 5;
        }
        out.prev = Some((u_at(last), ys + last));
    }
}

/// Sorted toggle indices (last one the `h * w` sentinel) → run counts, folding
/// zero-length runs into the previous run as maskApi.c does.
fn toggles_to_counts(sorted: &[u32], counts: &mut Vec<u32>) {
    let mut prev = 0u32;
    let mut diffs = sorted.iter().map(|&t| {
        let d = t.wrapping_sub(prev);
        prev = t;
        d
    });
    counts.clear();
    counts.reserve(sorted.len());
    if let Some(first) = diffs.next() {
        counts.push(first);
    }
    while let Some(d) = diffs.next() {
        if d > 0 {
            counts.push(d);
        } else if let (Some(next), Some(last)) = (diffs.next(), counts.last_mut()) {
            // A zero-length run: merge the next run into the previous one.
            *last = last.wrapping_add(next);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The direct port of `rleFrPoly` (stored points, `floor` / `ceil` in
    /// doubles) that the streaming integer version replaced.
    fn reference(poly: &[f64], h: u32, w: u32) -> Rle {
        let k = poly.len() / 2;
        let round = |v: f64| (UPSAMPLE * v + 0.5) as i32;
        let xs: Vec<i32> = (0..k).map(|j| round(poly[2 * j])).collect();
        let ys: Vec<i32> = (0..k).map(|j| round(poly[2 * j + 1])).collect();
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for j in 0..k {
            let n = (j + 1) % k;
            let ((x0, y0), (x1, y1)) = ((xs[j], ys[j]), (xs[n], ys[n]));
            let (dx, dy) = (x0.abs_diff(x1) as i32, y0.abs_diff(y1) as i32);
            if dx == 0 && dy == 0 {
                u.push(x0);
                v.push(y0);
                continue;
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
        let (hf, hi) = (f64::from(h), h as i32);
        let x_max = u64::from(w).wrapping_sub(1) as f64;
        let mut toggles: Vec<u32> = Vec::new();
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
            let yd = ((yd + 0.5) / UPSAMPLE - 0.5).clamp(0.0, hf);
            let (x, y) = (xd as i32, yd.ceil() as i32);
            toggles.push(x.wrapping_mul(hi).wrapping_add(y) as u32);
        }
        toggles.push(h.wrapping_mul(w));
        toggles.sort_unstable();
        let mut counts = Vec::new();
        toggles_to_counts(&toggles, &mut counts);
        Rle { h, w, counts }
    }

    #[test]
    fn integer_rounding_equals_the_double_reference() {
        // SplitMix64: coordinates from well inside to far outside the image,
        // negative ones included, on canvases from 1x1 to 97x89.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for case in 0..20_500 {
            // The last 500: large canvases and far-out vertices (long, steep edges).
            let big = case >= 20_000;
            let h = 1 + (next() % if big { 1000 } else { 97 }) as u32;
            let w = 1 + (next() % if big { 800 } else { 89 }) as u32;
            let n = 2 * (1 + next() % 9) as usize + (case % 2);
            let spread = if big { [2.0, 10.0, 50.0][case % 3] } else { [2.0, 1.2, 3.0][case % 3] };
            let poly: Vec<f64> = (0..n)
                .map(|j| {
                    let unit = (next() >> 11) as f64 / (1u64 << 53) as f64;
                    let side = f64::from(if j % 2 == 0 { w } else { h });
                    let v = (unit * spread - (spread - 1.0) / 2.0) * side;
                    // Some vertices on the 0.1-pixel grid, where ties live.
                    if next() % 3 == 0 { (v * 10.0).round() / 10.0 } else { v }
                })
                .collect();
            assert_eq!(Rle::from_polygon(&poly, h, w), reference(&poly, h, w), "case {case}: {poly:?} on {h}x{w}");
        }
    }

    #[test]
    fn far_out_vertices_cost_only_the_image_width() {
        // Edges spanning 10^5 pixels either way: the same mask as the
        // reference, which walks every point of them.
        for poly in [
            vec![-1e5, 1.5, 1e5, 2.5, 3.5, 1e5],
            vec![1.5, -1e5, 2.5, 1e5, 1e5, 3.5, -7e4, -9e4],
            vec![-1e5, -1e5, 1e5, -1e5, 1e5, 1e5, -1e5, 1e5],
        ] {
            assert_eq!(Rle::from_polygon(&poly, 7, 5), reference(&poly, 7, 5), "{poly:?}");
        }
        // Found by coco/tests/properties.rs: vertices near f64::MAX took minutes
        // (about 2^32 / 5 steps an edge); now they take no longer than any other.
        let far = [1e300, -1e300, -1e300, 1e300, 3.0, 1e300, -1e300, -3e300];
        Rle::from_polygon(&far, 9, 9).check_counts_sum().unwrap();
        Rle::from_polygon(&[1e9, 0.0, -1e9, 1.0, 2.0, 5e8], 9, 9).check_counts_sum().unwrap();
    }

    #[test]
    fn extreme_vertices_do_not_overflow_the_edge_arithmetic() {
        // The `polygon` fuzz target's crash (an i32 overflow in `ye - ys`
        // under overflow checks, e.g. `cargo test` without --release).
        for poly in [[0.0, 1e300, 0.0, -1e300], [-1e300, 0.0, 1e300, 0.0], [4e8, -4e8, -4e8, 4e8]] {
            Rle::from_polygon(&[poly[0], poly[1], poly[2], poly[3], 1.0, 1.0], 4, 4).check_counts_sum().unwrap();
        }
    }

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
