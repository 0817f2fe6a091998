//! ViTDet's detector: a Mask R-CNN on a plain ViT through a simple feature
//! pyramid (Li et al. 2022, detectron2 `projects/ViTDet`).
//!
//! This crate holds, so far, the purely algorithmic parts, each checked against
//! torchvision on committed fixtures (`tests/fixtures/make_fixtures.py`):
//! box structures and IoU ([`structures::boxes`]), box coding
//! ([`box_transform`]), anchors ([`anchors`]), the IoU matcher ([`matcher`]),
//! label subsampling ([`sampling`]), NMS ([`nms`]) and the multi-level RoI
//! pooler ([`pooler`]). RoIAlign itself is an op with a backward in
//! `engine::ops::detection`.

pub mod anchors;
pub mod box_transform;
pub mod data;
mod error;
pub mod masks;
pub mod matcher;
pub mod nms;
pub mod pooler;
pub mod sampling;
pub mod structures;

pub use error::{Error, Result};
pub use structures::boxes::Boxes;
