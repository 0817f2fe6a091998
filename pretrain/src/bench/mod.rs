//! `vitdet bench mocov3`: the pre-training objectives' training steps beside
//! PyTorch's (`bench/bench_mocov3.py`; BENCHMARKS.md records the comparison).

pub mod mocov3;
