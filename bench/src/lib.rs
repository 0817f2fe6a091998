//! The Rust side of vitdet's benchmarks: everything `vitdet bench ...` times,
//! kept out of the library crates so that they hold only what a user runs.
//! Each module builds its workload from the libraries' public API, times it
//! and returns one JSON-serialisable result; the PyTorch side of each
//! comparison lives next to this crate in `bench/*.py`, and BENCHMARKS.md
//! records the ratios and the commands that reproduce them.
//!
//! What a benchmark compares against inside the project (candle's own
//! primitives, the device-generic composed ops) is public API of the crate that
//! owns it, e.g. `engine::ops::reference`.

pub mod cka;
pub mod classification;
pub mod coco_eval;
pub mod convs;
pub mod pretrain;
pub mod timing;
pub mod vit;
pub mod vitdet;
