//! The two splits of a dataset, shared by every reader and writer of one
//! (the shapes generator, the detector's data discovery, the CLI).

/// A split of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training split.
    Train,
    /// The validation (evaluation) split.
    Val,
}

impl Split {
    /// Both splits, training first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Val];

    /// The folder and file-name stem: `"train"` or `"val"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}
