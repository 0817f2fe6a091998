//! `vitdet bench data` and `vitdet bench finetune`: the classification
//! pipeline's speed beside PyTorch's (`bench/bench_data.py`,
//! `bench/bench_finetune.py`; BENCHMARKS.md records the comparisons).
//!
//! * [`data`]: decoded-and-augmented training images per second at 224 px
//!   (the vision loader over ImageNet-sized JPEGs, N threads);
//! * [`finetune`]: images per second of one fine-tuning step of the ViT-Tiny
//!   classifier (forward, cross-entropy, backward, AdamW) and the process's
//!   peak resident memory;
//! * [`jpegs`]: the ImageNet-sized JPEGs both sides of the data benchmark read.

pub mod data;
pub mod finetune;
pub mod jpegs;
