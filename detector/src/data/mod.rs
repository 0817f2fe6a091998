//! ViTDet's data pipeline: finding a dataset on disk ([`layout`]), loading a
//! COCO split with contiguous class indices ([`dataset`]), the LSJ training
//! and long-side test transforms with normalisation and padding
//! ([`transforms`], Pillow-exact bilinear resizing from `vision::resize`), and
//! the detector's samples for `vision::loader`'s parallel, prefetched,
//! reproducible batch streams ([`loader`]).
//!
//! Checked against detectron2's formulas, Pillow and pycocotools in
//! `tests/data.rs` (fixtures from `tests/fixtures/make_data_fixtures.py`).

pub mod dataset;
pub mod layout;
pub mod loader;
pub mod rle_polygons;
pub mod transforms;

pub use dataset::{DetectionDataset, ImageRecord, Instance, Purpose};
pub use layout::{DataLayout, LayoutKind, SplitFiles};
pub use loader::{eval_stream, pixels_to_tensor, train_stream, Batch, BatchStream, LoaderConfig};
pub use transforms::{DetectionSample, LsjConfig};
