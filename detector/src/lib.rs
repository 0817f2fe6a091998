//! ViTDet's detector: a Mask R-CNN on a plain ViT through a simple feature
//! pyramid (Li et al. 2022, detectron2 `projects/ViTDet`).
//!
//! - the network: [`model::ViTDet`] = the windowed ViT of `backbone::vitdet`,
//!   the simple feature pyramid ([`sfp`]), the RPN ([`rpn`]) and the box and
//!   mask heads ([`roi_heads`]), with their losses ([`losses`]) and seeded
//!   detectron2 initialisation ([`init`]);
//! - the algorithmic parts, each checked against torchvision/detectron2 on
//!   committed fixtures (`tests/fixtures/`): boxes and IoU ([`structures`]),
//!   box coding ([`box_transform`]), anchors ([`anchors`]), matching
//!   ([`matcher`]), label subsampling ([`sampling`]), NMS ([`nms`]), the
//!   multi-level RoI pooler ([`pooler`]), mask targets and pasting ([`masks`]);
//! - data ([`data`]): COCO / shapes layouts, LSJ and test transforms, a
//!   prefetching loader;
//! - running it: recipes ([`recipe`]), the training loop ([`train`]), COCO
//!   evaluation ([`evaluate`]), trained-model files ([`weights`]), and
//!   predictions on image files with pictures ([`predict`], [`draw`]).

pub mod anchors;
pub mod box_transform;
pub mod data;
pub mod draw;
mod error;
pub mod evaluate;
pub mod init;
pub mod layers;
pub mod losses;
pub mod masks;
pub mod matcher;
pub mod model;
pub mod nms;
pub mod pooler;
pub mod predict;
pub mod recipe;
pub mod roi_heads;
pub mod rpn;
pub mod sampling;
pub mod selftest;
pub mod sfp;
pub mod structures;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
pub use structures::boxes::Boxes;
