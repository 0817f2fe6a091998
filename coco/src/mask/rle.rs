//! The run-length encoding itself: encode, decode, area, bounding box, merge.
//!
//! Mirrors `rleEncode`, `rleDecode`, `rleArea`, `rleToBbox` and `rleMerge` of
//! pycocotools 2.0.11 `common/maskApi.c`, bit for bit on well-formed input
//! (pinned by `coco/tests/masks.rs` against fixtures written by pycocotools).
//!
//! Layout: a mask of `h` rows and `w` columns is flattened in **column-major**
//! (Fortran) order, so pixel (x, y) — column x, row y, origin top-left — is at
//! index `y + h * x`. `counts` alternate background / foreground run lengths
//! over that order and always start with a background run, which may be 0.
//!
//! Deliberate deviations (all on malformed input, where pycocotools reads out of
//! bounds, loops forever or returns a 0×0 sentinel): a bitmap of the wrong
//! length, a merge of masks of different sizes, and decoding counts that do not
//! sum to `h * w` are typed errors.

use crate::Error;

/// A binary mask as COCO run-length encoding, in column-major order.
///
/// Pixel (x, y) (column x, row y) is at flat index `y + h * x`. `counts[0]` is
/// the length of the leading background run (possibly 0), then foreground and
/// background runs alternate. A well-formed RLE's counts sum to `h * w`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rle {
    /// Height in pixels (number of rows).
    pub h: u32,
    /// Width in pixels (number of columns).
    pub w: u32,
    /// Alternating run lengths, background first.
    pub counts: Vec<u32>,
}

/// How [`Rle::merge`] combines masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOp {
    /// A pixel is set if it is set in any mask (`rleMerge(.., intersect=0)`).
    Union,
    /// A pixel is set if it is set in every mask (`rleMerge(.., intersect=1)`).
    Intersection,
}

impl Rle {
    /// Encodes a **column-major** bitmap (`bitmap[y + h * x]`), as `rleEncode`.
    ///
    /// Pass 0/1 (or 0/255) masks. Like pycocotools, runs break wherever the
    /// **byte value** changes, not where "zero vs non-zero" changes: `[0, 3, 5]`
    /// gives counts `[1, 1, 1]`, which decodes to `[0, 1, 0]` (pinned by
    /// `encode_splits_runs_on_any_byte_change`).
    ///
    /// # Errors
    /// [`Error::BitmapSize`] if `bitmap.len() != h * w`.
    pub fn encode(bitmap: &[u8], h: u32, w: u32) -> Result<Self, Error> {
        check_bitmap_len(bitmap.len(), h, w)?;
        Ok(Self::encode_iter(bitmap.iter().copied(), h, w, bitmap.len()))
    }

    /// Encodes a **row-major** bitmap (`bitmap[x + w * y]`, the layout of image
    /// buffers) into the same column-major RLE that [`Rle::encode`] gives for the
    /// transposed buffer (same byte-change rule).
    ///
    /// # Errors
    /// [`Error::BitmapSize`] if `bitmap.len() != h * w`.
    pub fn encode_row_major(bitmap: &[u8], h: u32, w: u32) -> Result<Self, Error> {
        check_bitmap_len(bitmap.len(), h, w)?;
        let (hu, wu) = (h as usize, w as usize);
        let column_major = (0..wu).flat_map(|x| (0..hu).map(move |y| x + wu * y));
        let values = column_major.map(|i| bitmap.get(i).copied().unwrap_or(0));
        Ok(Self::encode_iter(values, h, w, bitmap.len()))
    }

    /// Run-length encodes a column-major sequence of bytes, starting a new run
    /// at every change of value (`rleEncode`).
    fn encode_iter(values: impl Iterator<Item = u8>, h: u32, w: u32, hint: usize) -> Self {
        let mut counts = Vec::with_capacity(hint.min(64));
        let (mut prev, mut run) = (0u8, 0u32);
        for v in values {
            if v != prev {
                counts.push(run);
                run = 0;
                prev = v;
            }
            run += 1;
        }
        counts.push(run);
        Self { h, w, counts }
    }

    /// Decodes into a **column-major** bitmap of `h * w` bytes (0 or 1).
    ///
    /// # Errors
    /// [`Error::RleCountsSum`] if the counts do not sum to `h * w`.
    pub fn decode(&self) -> Result<Vec<u8>, Error> {
        self.check_counts_sum()?;
        let mut out = Vec::with_capacity(self.pixel_count() as usize);
        let mut value = 0u8;
        for &c in &self.counts {
            out.resize(out.len() + c as usize, value);
            value ^= 1;
        }
        Ok(out)
    }

    /// Decodes into a **row-major** bitmap (`out[x + w * y]`) of 0/1 bytes.
    ///
    /// # Errors
    /// [`Error::RleCountsSum`] if the counts do not sum to `h * w`.
    pub fn decode_row_major(&self) -> Result<Vec<u8>, Error> {
        self.check_counts_sum()?;
        let mut out = vec![0u8; self.pixel_count() as usize];
        let (h, w) = (u64::from(self.h), u64::from(self.w));
        for (start, len) in self.foreground_runs() {
            for i in start..start + u64::from(len) {
                let (x, y) = (i / h, i % h);
                if let Some(px) = out.get_mut((x + w * y) as usize) {
                    *px = 1;
                }
            }
        }
        Ok(out)
    }

    /// The foreground runs as `(start, len)` in column-major flat indices
    /// (`start = y + h * x`), skipping zero-length runs.
    pub fn foreground_runs(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let mut pos = 0u64;
        self.counts.iter().enumerate().filter_map(move |(j, &c)| {
            let start = pos;
            pos += u64::from(c);
            (j % 2 == 1 && c > 0).then_some((start, c))
        })
    }

    /// `h * w` as u64.
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.h) * u64::from(self.w)
    }

    /// Checks that the counts sum to `h * w` (true of every RLE that pycocotools
    /// or this module produces).
    ///
    /// # Errors
    /// [`Error::RleCountsSum`] naming the size, the sum and the expected sum.
    pub fn check_counts_sum(&self) -> Result<(), Error> {
        let sum: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if sum == self.pixel_count() {
            Ok(())
        } else {
            Err(Error::RleCountsSum { h: self.h, w: self.w, sum })
        }
    }

    /// Number of foreground pixels: the sum of the odd-indexed counts (`rleArea`).
    pub fn area(&self) -> u64 {
        self.counts.iter().skip(1).step_by(2).map(|&c| u64::from(c)).sum()
    }

    /// Tight bounding box `[x, y, w, h]` in pixels, exactly as `rleToBbox` of
    /// pycocotools 2.0.11:
    /// - no foreground run (fewer than 2 counts) gives `[0, 0, 0, 0]`;
    /// - a foreground run that spans two or more columns makes y cover the full
    ///   height `0..h`;
    /// - a trailing unpaired count is ignored, as are zero-length foreground runs;
    /// - if every foreground run has length 0 (possible only with hand-written
    ///   counts) the C code's unsigned arithmetic wraps: width becomes
    ///   `(1 - w) mod 2^32` and height `(1 - h) mod 2^32`; this is reproduced.
    pub fn to_bbox(&self) -> [f64; 4] {
        let m = (self.counts.len() / 2) * 2;
        if m == 0 || self.h == 0 {
            return [0.0; 4];
        }
        let mut bbox = RunBox::new(self.h, self.w);
        let mut cc = 0u32;
        for (j, &c) in self.counts.iter().take(m).enumerate() {
            let start = cc;
            cc = cc.wrapping_add(c);
            if j % 2 == 1 && c != 0 {
                bbox.add_run(start, cc);
            }
        }
        bbox.xywh()
    }

    /// Union or intersection of several masks of one size, as `rleMerge`,
    /// including its output run structure (zero-length runs only where the C
    /// code emits them).
    ///
    /// # Errors
    /// - [`Error::MergeEmpty`] for an empty slice (pycocotools returns a 0×0 RLE);
    /// - [`Error::MaskSizeMismatch`] if the sizes differ (pycocotools silently
    ///   returns a 0×0 RLE);
    /// - [`Error::RleCountsSum`] for malformed counts (pycocotools may loop forever).
    pub fn merge(rles: &[Rle], op: MergeOp) -> Result<Rle, Error> {
        let Some(first) = rles.first() else {
            return Err(Error::MergeEmpty);
        };
        let (h, w) = (first.h, first.w);
        for (index, r) in rles.iter().enumerate() {
            if (r.h, r.w) != (h, w) {
                return Err(Error::MaskSizeMismatch { what: "merge", index, expected: [h, w], found: [r.h, r.w] });
            }
            r.check_counts_sum()?;
        }
        let mut acc = first.counts.clone();
        let mut out = Vec::with_capacity(acc.len());
        for b in &rles[1..] {
            merge_two(&acc, &b.counts, op, &mut out);
            std::mem::swap(&mut acc, &mut out);
        }
        Ok(Rle { h, w, counts: acc })
    }
}

/// One step of `rleMerge`: combines run lists `a` and `b` into `out` (cleared
/// first). Both must sum to the same total: then both lists run out together and
/// the loop ends (with unequal sums the C loop can spin forever).
fn merge_two(a: &[u32], b: &[u32], op: MergeOp, out: &mut Vec<u32>) {
    out.clear();
    let mut ra = Runs::new(a);
    let mut rb = Runs::new(b);
    let (mut v, mut cc, mut ct) = (false, 0u32, 1u32);
    while ct > 0 {
        let c = ra.left.min(rb.left);
        cc = cc.wrapping_add(c);
        // u32 wrapping, as the C code's `uint` (only reachable past 2^32 pixels).
        ct = ra.consume(c).wrapping_add(rb.consume(c));
        let vp = v;
        v = match op {
            MergeOp::Union => ra.value || rb.value,
            MergeOp::Intersection => ra.value && rb.value,
        };
        if v != vp || ct == 0 {
            out.push(cc);
            cc = 0;
        }
    }
}

/// The box of a mask's foreground runs as `rleToBbox` grows it, in its
/// wrapping `u32` arithmetic: shared by [`Rle::to_bbox`] and the one-pass
/// mask facts of the IoU code.
pub(crate) struct RunBox {
    h: u32,
    xs: u32,
    ys: u32,
    xe: u32,
    ye: u32,
}

impl RunBox {
    /// No run yet, for an (h, w) mask with `h > 0`.
    pub(crate) fn new(h: u32, w: u32) -> RunBox {
        RunBox { h, xs: w, ys: h, xe: 0, ye: 0 }
    }

    /// A foreground run of pixels `start..end` (column-major, `end > start`).
    #[inline(always)]
    pub(crate) fn add_run(&mut self, start: u32, end: u32) {
        let h = self.h;
        let (y_start, x_start) = (start % h, start / h);
        let last = end.wrapping_sub(1);
        let (y_end, x_end) = (last % h, last / h);
        self.xs = self.xs.min(x_start);
        self.xe = self.xe.max(x_end);
        if x_start < x_end {
            // The run wraps into the next column: the box spans the height.
            self.ys = 0;
            self.ye = h - 1;
        } else {
            self.ys = self.ys.min(y_start);
            self.ye = self.ye.max(y_end);
        }
    }

    /// `[x, y, width, height]`.
    pub(crate) fn xywh(&self) -> [f64; 4] {
        let width = self.xe.wrapping_sub(self.xs).wrapping_add(1);
        let height = self.ye.wrapping_sub(self.ys).wrapping_add(1);
        [f64::from(self.xs), f64::from(self.ys), f64::from(width), f64::from(height)]
    }
}

/// A cursor over one run list, as the `ca`/`a`/`va` triple of maskApi.c.
pub(crate) struct Runs<'a> {
    counts: &'a [u32],
    /// Index of the next run to load.
    next: usize,
    /// Pixels left in the current run.
    pub(crate) left: u32,
    /// Value of the current run (false = background).
    pub(crate) value: bool,
}

impl<'a> Runs<'a> {
    /// Starts at the leading background run (an empty list acts as `[0]`).
    pub(crate) fn new(counts: &'a [u32]) -> Self {
        Self { counts, next: 1, left: counts.first().copied().unwrap_or(0), value: false }
    }

    /// Consumes `c` pixels; if the run is exhausted, loads at most one next run
    /// (exactly one step, as the C loop). Returns the pixels left in the run.
    #[inline]
    pub(crate) fn consume(&mut self, c: u32) -> u32 {
        self.left -= c;
        if self.left == 0 {
            if let Some(&n) = self.counts.get(self.next) {
                self.left = n;
                self.next += 1;
                self.value = !self.value;
            }
        }
        self.left
    }
}

/// Checks a bitmap's length against `h * w`.
fn check_bitmap_len(len: usize, h: u32, w: u32) -> Result<(), Error> {
    let expected = u64::from(h) * u64::from(w);
    if len as u64 == expected && expected <= u64::from(u32::MAX) {
        Ok(())
    } else {
        Err(Error::BitmapSize { h, w, len })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A 3×2 mask (h=3, w=2); row-major:
    /// ```text
    /// 0 1
    /// 1 1
    /// 0 0
    /// ```
    /// Column-major: [0,1,0, 1,1,0] → counts [1,1,1,2,1].
    fn small() -> (Vec<u8>, Vec<u8>) {
        (vec![0, 1, 0, 1, 1, 0], vec![0, 1, 1, 1, 0, 0])
    }

    #[test]
    fn encode_hand_worked_column_major() {
        let (col, row) = small();
        let r = Rle::encode(&col, 3, 2).unwrap();
        assert_eq!(r.counts, vec![1, 1, 1, 2, 1]);
        assert_eq!(Rle::encode_row_major(&row, 3, 2).unwrap(), r);
        assert_eq!(r.decode().unwrap(), col);
        assert_eq!(r.decode_row_major().unwrap(), row);
        assert_eq!(r.area(), 3);
        // x in 0..=1, y in 0..=1; the run [3,5) spans one column only.
        assert_eq!(r.to_bbox(), [0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn leading_foreground_gets_zero_background_run() {
        let r = Rle::encode(&[1, 1, 0, 0], 2, 2).unwrap();
        assert_eq!(r.counts, vec![0, 2, 2]);
        let empty = Rle::encode(&[0, 0, 0, 0], 2, 2).unwrap();
        assert_eq!(empty.counts, vec![4]);
        assert_eq!(empty.to_bbox(), [0.0; 4]);
        assert_eq!(empty.area(), 0);
    }

    #[test]
    fn bbox_of_run_crossing_columns_spans_full_height() {
        // h=4, w=3: foreground = flat indices 3..6 = (x0,y3), (x1,y0), (x1,y1).
        let r = Rle { h: 4, w: 3, counts: vec![3, 3, 6] };
        assert_eq!(r.to_bbox(), [0.0, 0.0, 2.0, 4.0]);
    }

    #[test]
    fn bbox_with_only_zero_length_foreground_wraps_like_c() {
        let r = Rle { h: 4, w: 3, counts: vec![5, 0, 7] };
        let wrap = |v: u32| f64::from(0u32.wrapping_sub(v).wrapping_add(1));
        assert_eq!(r.to_bbox(), [3.0, 4.0, wrap(3), wrap(4)]);
    }

    #[test]
    fn encode_splits_runs_on_any_byte_change() {
        let r = Rle::encode(&[0, 3, 5], 1, 3).unwrap();
        assert_eq!(r.counts, vec![1, 1, 1]);
        assert_eq!(r.decode().unwrap(), vec![0, 1, 0]);
        assert_eq!(Rle::encode(&[0, 255, 255], 1, 3).unwrap().counts, vec![1, 2]);
    }

    #[test]
    fn wrong_bitmap_length_is_typed_error() {
        let err = Rle::encode(&[0, 1, 0], 2, 2).unwrap_err();
        assert!(matches!(err, Error::BitmapSize { h: 2, w: 2, len: 3 }), "{err}");
        assert!(Rle::encode_row_major(&[0; 5], 2, 2).is_err());
    }

    #[test]
    fn decode_rejects_counts_not_summing_to_size() {
        let r = Rle { h: 2, w: 2, counts: vec![1, 2] };
        assert!(matches!(r.decode(), Err(Error::RleCountsSum { sum: 3, .. })));
    }

    #[test]
    fn merge_union_and_intersection_hand_worked() {
        // 1×6 strips: a = 011100, b = 000110.
        let a = Rle { h: 1, w: 6, counts: vec![1, 3, 2] };
        let b = Rle { h: 1, w: 6, counts: vec![3, 2, 1] };
        let u = Rle::merge(&[a.clone(), b.clone()], MergeOp::Union).unwrap();
        assert_eq!(u.counts, vec![1, 4, 1]);
        let i = Rle::merge(&[a.clone(), b], MergeOp::Intersection).unwrap();
        assert_eq!(i.counts, vec![3, 1, 2]);
        assert_eq!(Rle::merge(std::slice::from_ref(&a), MergeOp::Union).unwrap(), a);
    }

    #[test]
    fn merge_errors_are_typed() {
        assert!(matches!(Rle::merge(&[], MergeOp::Union), Err(Error::MergeEmpty)));
        let a = Rle { h: 1, w: 2, counts: vec![2] };
        let b = Rle { h: 2, w: 1, counts: vec![2] };
        let err = Rle::merge(&[a, b], MergeOp::Union).unwrap_err();
        assert!(matches!(err, Error::MaskSizeMismatch { index: 1, .. }), "{err}");
    }

    #[test]
    fn foreground_runs_skip_zero_length() {
        let r = Rle { h: 2, w: 3, counts: vec![0, 2, 1, 0, 1, 2] };
        assert_eq!(r.foreground_runs().collect::<Vec<_>>(), vec![(0, 2), (4, 2)]);
    }
}
