//! COCO data, masks and evaluation (filled in by the COCO toolkit issue).

pub mod mask;
pub mod types;

/// Errors of the COCO toolkit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder variant.
    #[error("{0}")]
    Msg(String),

    // ---- Masks (mask/), geometry and the shapes generator ----
    /// A bitmap whose length is not `h * w` (or `h * w` exceeds u32).
    #[error("bitmap of {len} bytes does not match a {h}x{w} mask")]
    BitmapSize {
        /// Mask height.
        h: u32,
        /// Mask width.
        w: u32,
        /// Bitmap length.
        len: usize,
    },
    /// RLE counts that do not sum to `h * w`.
    #[error("RLE counts sum to {sum}, but a {h}x{w} mask has {} pixels", u64::from(*h) * u64::from(*w))]
    RleCountsSum {
        /// Mask height.
        h: u32,
        /// Mask width.
        w: u32,
        /// Sum of the counts.
        sum: u64,
    },
    /// A malformed compressed RLE string.
    #[error("invalid compressed RLE counts at byte {offset}: {reason}")]
    RleString {
        /// Byte offset of the offending character.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Masks of different sizes given to an operation that needs one size.
    #[error("{what}: mask {index} is {}x{}, expected {}x{}", found[0], found[1], expected[0], expected[1])]
    MaskSizeMismatch {
        /// The operation (`"merge"`, `"iou detection"`, ...).
        what: &'static str,
        /// Index of the offending mask in its list.
        index: usize,
        /// `[h, w]` of the first mask.
        expected: [u32; 2],
        /// `[h, w]` of the offending mask.
        found: [u32; 2],
    },
    /// A merge of zero masks (pycocotools returns a 0x0 mask).
    #[error("cannot merge an empty list of masks")]
    MergeEmpty,
    /// IoU inputs whose lengths disagree.
    #[error("iou: {dt} detections x {gt} ground truths need {gt} crowd flags and {} outputs, got {iscrowd} and {out}", dt * gt)]
    IouShape {
        /// Number of detections.
        dt: usize,
        /// Number of ground truths.
        gt: usize,
        /// Length of `iscrowd`.
        iscrowd: usize,
        /// Length of `out`.
        out: usize,
    },
    /// A segmentation pycocotools cannot convert (see `mask::segmentation`).
    #[error("unsupported segmentation: {reason}")]
    Segmentation {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// True for mistakes the user can fix.
    pub fn is_user_error(&self) -> bool {
        true
    }
}
