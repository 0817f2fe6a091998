//! Typed data structures the detector passes between its stages.

pub mod boxes;
