//! Ops of the detector (RoIAlign, pooling, upsampling), each with a backward
//! checked against finite differences.
