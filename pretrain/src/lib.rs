//! Self-supervised pre-training of the shared ViT (MAE-Lite, Section 5):
//! MAE, MoCo-v3 and MAE with attention distillation.

pub mod mocov3;
