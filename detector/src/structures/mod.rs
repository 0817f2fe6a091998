//! Typed data structures the detector passes between its stages: boxes and
//! per-image instance sets.

pub mod boxes;
pub mod instances;
