//! Times one forward of the paper's ViTDet backbone (ViT-Tiny, 12 heads,
//! windows of 14 in blocks 0,1,3,4,6,7,9,10, rel-pos) at batch 1 on the
//! CPU, at 640x640 and 128x128: the fastest of 3 passes after one warm-up
//! (the machine is shared, so the minimum is the least disturbed). A
//! one-off measurement, not a benchmark:
//!
//!     cargo run -p backbone --release --example vitdet_forward_time
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use backbone::config::{VitConfig, WindowedConfig};
use backbone::VitDetBackbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

fn main() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let cfg = VitConfig::tiny();
    let model = VitDetBackbone::new(&cfg, &WindowedConfig::default(), vb).unwrap();
    backbone::init::init_weights(&varmap, &cfg, 0).unwrap();
    let mut rng = rand::rngs::mock::StepRng::new(0, 1);
    for side in [640usize, 128] {
        let x = Tensor::randn(0f32, 1.0, (1, 3, side, side), &Device::Cpu).unwrap();
        model.forward(&x, false, &mut rng).unwrap();
        let mut best = f64::INFINITY;
        let mut dims = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let out = model.forward(&x, false, &mut rng).unwrap();
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
            dims = out.dims().to_vec();
        }
        println!("{side}x{side}: output {dims:?}, forward {best:.1} ms (best of 3)");
    }
}
