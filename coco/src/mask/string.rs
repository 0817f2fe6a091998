//! COCO's compressed RLE string (`"counts": "..."`), as `rleToString` and
//! `rleFrString` of pycocotools `common/maskApi.c`.
//!
//! Each count becomes a little-endian sequence of 5-bit chunks, one ASCII char
//! per chunk (`chunk + 48`, so chars `'0'..='o'`): bit 0x20 means "more chunks
//! follow" and, on the last chunk, bit 0x10 is the sign. From the 4th count on
//! (index `i > 2`) the value written is the delta `counts[i] - counts[i - 2]`,
//! which is why the decoder adds `counts[m - 2]` back only when `m > 2`.
//!
//! Arithmetic is done in i64 (the C code's `long`). The C decoder shifts an
//! `int` (`(c & 0x1f) << 5*k`, `-1 << 5*k`), which is undefined past 31 bits;
//! for every count and delta below 2^30 in magnitude both agree exactly.
//! Deviation: characters outside `'0'..='o'` and a string that ends inside a
//! value (continuation bit set on its last char) are typed errors; C reads past
//! the terminator.

use super::Rle;
use crate::Error;

/// The first character of the alphabet: chunk value 0.
const BASE: u8 = 48;
/// Continuation bit of a chunk.
const MORE: u8 = 0x20;
/// Sign bit of the last chunk of a value.
const SIGN: u8 = 0x10;
/// Data bits of a chunk.
const DATA: u8 = 0x1f;

impl Rle {
    /// The compressed counts string (pycocotools `rleToString`).
    pub fn to_compressed(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for (i, &count) in self.counts.iter().enumerate() {
            let mut x = i64::from(count);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut c = (x & i64::from(DATA)) as u8;
                x >>= 5;
                let more = if c & SIGN != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= MORE;
                }
                s.push(char::from(c + BASE));
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parses a compressed counts string (pycocotools `rleFrString`) for a mask
    /// of `h` rows and `w` columns. Decoded values are truncated to u32 as the C
    /// `(uint) x` cast does. The counts are not required to sum to `h * w`
    /// (pycocotools does not check); use [`Rle::check_counts_sum`] for that.
    ///
    /// # Errors
    /// [`Error::RleString`] with the byte offset for a character outside
    /// `'0'..='o'` or a string that ends in the middle of a value.
    pub fn from_compressed(s: &str, h: u32, w: u32) -> Result<Self, Error> {
        let mut counts: Vec<u32> = Vec::with_capacity(s.len());
        decode_counts_into(s.as_bytes(), &mut counts)?;
        Ok(Self { h, w, counts })
    }
}

/// Decodes a compressed counts string (see [`Rle::from_compressed`]) into
/// `counts`, which is cleared first and keeps its allocation, so a reused
/// buffer decodes without allocating.
///
/// # Errors
/// As [`Rle::from_compressed`].
pub(crate) fn decode_counts_into(bytes: &[u8], counts: &mut Vec<u32>) -> Result<(), Error> {
    counts.clear();
    counts.reserve(bytes.len());
    let mut p = 0usize;
    while let Some(&ch) = bytes.get(p) {
        let c = ch.wrapping_sub(BASE);
        let mut x = if c < MORE {
            // A one-character value (most are): 5 bits, sign-extended.
            p += 1;
            i64::from(c) - if c & SIGN != 0 { 32 } else { 0 }
        } else {
            long_value(bytes, &mut p)?
        };
        let m = counts.len();
        if m > 2 {
            x = x.wrapping_add(i64::from(counts[m - 2]));
        }
        counts.push(x as u32);
    }
    Ok(())
}

/// Decodes the value starting at `*p` (5 bits a character, low bits first,
/// sign-extended from the last character) and moves `*p` past it.
fn long_value(bytes: &[u8], p: &mut usize) -> Result<i64, Error> {
    let (mut x, mut k) = (0i64, 0u32);
    loop {
        let Some(&ch) = bytes.get(*p) else {
            return Err(Error::RleString { offset: *p, reason: "string ends inside a value" });
        };
        if !(BASE..BASE + 64).contains(&ch) {
            return Err(Error::RleString { offset: *p, reason: "character outside '0'..='o'" });
        }
        let c = ch - BASE;
        x |= i64::from(c & DATA).wrapping_shl(5 * k);
        *p += 1;
        k += 1;
        if c & MORE == 0 {
            if c & SIGN != 0 {
                x |= (-1i64).wrapping_shl(5 * k);
            }
            return Ok(x);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn small_counts_are_one_char_each() {
        // 0..=15 fit in one chunk without the sign bit: '0' + value.
        let r = Rle { h: 1, w: 36, counts: vec![0, 5, 15] };
        assert_eq!(r.to_compressed(), "05?");
    }

    #[test]
    fn sixteen_needs_two_chunks() {
        // 16 = 0b10000: first chunk 16 has the sign bit set, so a second chunk
        // (value 0) must follow: chars (16 | 0x20) + 48 = 96 = '`', then '0'.
        let r = Rle { h: 1, w: 16, counts: vec![16] };
        assert_eq!(r.to_compressed(), "`0");
        assert_eq!(Rle::from_compressed("`0", 1, 16).unwrap(), r);
    }

    #[test]
    fn differential_kicks_in_at_index_three() {
        // counts[3] = 7 is written as 7 - counts[1] = 7 - 9 = -2: chunk 0b11110
        // (sign bit set, x >> 5 == -1) → one char 30 + 48 = 'N'.
        // counts[2] = 4 is written as is even though counts[0] exists.
        let r = Rle { h: 1, w: 22, counts: vec![2, 9, 4, 7] };
        let s = r.to_compressed();
        assert_eq!(s, "294N");
        assert_eq!(Rle::from_compressed(&s, 1, 22).unwrap(), r);
    }

    #[test]
    fn invalid_strings_are_typed_errors() {
        let err = Rle::from_compressed("12 3", 2, 2).unwrap_err();
        assert!(matches!(err, Error::RleString { offset: 2, .. }), "{err}");
        // '`' has the continuation bit set and nothing follows.
        let err = Rle::from_compressed("1`", 2, 2).unwrap_err();
        assert!(matches!(err, Error::RleString { offset: 2, .. }), "{err}");
    }

    #[test]
    fn round_trip_large_counts() {
        let r = Rle { h: 1000, w: 1000, counts: vec![999_000, 100, 0, 900, 0] };
        assert_eq!(Rle::from_compressed(&r.to_compressed(), 1000, 1000).unwrap(), r);
    }
}
