//! Times one forward of the paper's ViTDet backbone (ViT-Tiny, 12 heads,
//! windows of 14 in blocks 0,1,3,4,6,7,9,10, rel-pos) at batch 1 on the
//! CPU, at 640x640 and 128x128: the fastest of 3 passes after one warm-up
//! (the machine is shared, so the minimum is the least disturbed), and the
//! process CPU time per pass (all threads; from /proc/self/stat on Linux,
//! 10 ms ticks), which other processes disturb less than wall time. A
//! one-off measurement, not a benchmark:
//!
//!     cargo run -p backbone --release --example vitdet_forward_time
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use backbone::config::{VitConfig, WindowedConfig};
use backbone::VitDetBackbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// Process CPU time (user + system) in ms, if /proc/self/stat is readable.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0) // USER_HZ is 100 on Linux
}

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
        let cpu_start = cpu_ms();
        for _ in 0..3 {
            let start = Instant::now();
            let out = model.forward(&x, false, &mut rng).unwrap();
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
            dims = out.dims().to_vec();
        }
        let cpu = match (cpu_start, cpu_ms()) {
            (Some(a), Some(b)) => format!("{:.0} ms", (b - a) / 3.0),
            _ => "n/a".into(),
        };
        println!("{side}x{side}: output {dims:?}, forward {best:.1} ms wall (best of 3), CPU time {cpu} per pass");
    }
}
