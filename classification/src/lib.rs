//! Image classification on the shared ViT: fine-tuning and transfer (timm /
//! MAE-Lite recipes), linear probing, evaluation, and readers for the
//! datasets in their published on-disk layouts.

pub mod mixup;
