//! `vitdet bench convs`: the time of the ViTDet pyramid's convolution work,
//! forward and forward + backward, through the op layer
//! (`ops::detection::{conv2d, conv_transpose2d, max_pool2d}`). Mirrors
//! `bench/torch_convs.py`, the PyTorch side of the comparison in
//! BENCHMARKS.md ("ViTDet convolutions and RoIAlign").
//!
//! Workload: batch B (default 2) of C = 256-channel maps (the paper's
//! pyramid width) at 64x64, 32x32, 16x16 and 8x8, the P2..P5 maps of a
//! 256 px image (strides 4..32). On each map: a 3x3 convolution C -> C with
//! padding 1 and no bias and a 1x1 convolution C -> C without bias (the
//! pyramid's output and lateral convolutions, which are followed by a norm),
//! and a transposed convolution C -> C with kernel 2, stride 2 and a bias
//! from the half-size map (the pyramid's upsampling). Each op is one cell,
//! timed alone; the totals add the cells. The 2x2 max pool of a 64x64 map is
//! timed as well but kept out of the totals (it is not a convolution), and
//! so is RoIAlign on that map read as P2 (stride 4): [`ROIS_PER_IMAGE`]
//! boxes an image, 7x7 bins, adaptive sampling, aligned, as the box head
//! pools them (the input gradient only: boxes are constants).
//!
//! Forward + backward is `sum(op(x))`, then candle's `backward()`: the
//! gradients of the input, the weight and the bias. (A plain sum keeps the
//! loss's own elementwise work, which is not what is measured, to one op on
//! each side; a dY of ones costs the GEMMs what any other dY does.)
//! Each cell runs once untimed, then `iters` times; a cell's time is the
//! median of its runs (robust to the load spikes of a shared machine).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var};
use serde::Serialize;

use engine::ops::{detection, reference};

use crate::timing::sync;

/// RoIs an image in the RoIAlign cell: the demo recipe's sampled ROIs.
pub const ROIS_PER_IMAGE: usize = 128;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchConvsOptions {
    /// Images per map.
    pub batch: usize,
    /// Timed runs per cell (after one untimed warm-up).
    pub iters: usize,
    /// Channels of every map and every convolution.
    pub channels: usize,
    /// Map sides, largest first.
    pub sizes: Vec<usize>,
    /// Time candle's primitives (`engine::ops::reference`)
    /// instead of the op layer's kernels: the "before" of BENCHMARKS.md.
    pub composed: bool,
}

impl Default for BenchConvsOptions {
    fn default() -> Self {
        Self { batch: 2, iters: 5, channels: 256, sizes: vec![64, 32, 16, 8], composed: false }
    }
}

/// One JSON line of results; `bench/torch_convs.py` prints the same keys.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConvsResult {
    /// What was timed.
    pub workload: String,
    /// `fused` (the op layer) or `composed` (candle's primitives).
    pub kernels: String,
    /// Device used.
    pub device: String,
    /// Worker threads.
    pub threads: usize,
    /// Images per map.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Timed runs per cell.
    pub iters: usize,
    /// Forward time of the whole convolution workload, ms (sum of cells).
    pub forward_ms: f64,
    /// Forward + backward time of the whole convolution workload, ms.
    pub train_ms: f64,
    /// Forward time of each cell (`conv3x3@64`, `conv1x1@64`, `deconv2x2@64`
    /// (output side), ..., `maxpool2x2@64`), ms.
    pub forward_ms_by_op: BTreeMap<String, f64>,
    /// Forward + backward time of each cell, ms.
    pub train_ms_by_op: BTreeMap<String, f64>,
}

/// The kind of op a cell times.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Conv3x3,
    Conv1x1,
    Deconv2x2,
    MaxPool2x2,
    RoiAlign7,
}

impl Cell {
    fn name(self) -> &'static str {
        match self {
            Cell::Conv3x3 => "conv3x3",
            Cell::Conv1x1 => "conv1x1",
            Cell::Deconv2x2 => "deconv2x2",
            Cell::MaxPool2x2 => "maxpool2x2",
            Cell::RoiAlign7 => "roialign7",
        }
    }
}

/// Runs every cell.
///
/// # Errors
/// Tensor errors, or a map side that is odd (the transposed convolution
/// reads the half-size map).
pub fn bench_convs(opts: &BenchConvsOptions, device: &Device) -> Result<BenchConvsResult> {
    let mut forward_by_op = BTreeMap::new();
    let mut train_by_op = BTreeMap::new();
    let (mut forward_ms, mut train_ms) = (0.0, 0.0);
    let mut seed = 0;
    for &side in &opts.sizes {
        if side % 2 != 0 {
            anyhow::bail!("bench convs: map side {side} is odd");
        }
        for cell in [Cell::Conv3x3, Cell::Conv1x1, Cell::Deconv2x2] {
            seed += 1;
            let (f, t) = time_cell(cell, side, opts, device, seed)?;
            forward_ms += f;
            train_ms += t;
            forward_by_op.insert(format!("{}@{side}", cell.name()), f);
            train_by_op.insert(format!("{}@{side}", cell.name()), t);
        }
    }
    if let Some(&side) = opts.sizes.first() {
        for cell in [Cell::MaxPool2x2, Cell::RoiAlign7] {
            seed += 1;
            let (f, t) = time_cell(cell, side, opts, device, seed)?;
            forward_by_op.insert(format!("{}@{side}", cell.name()), f);
            train_by_op.insert(format!("{}@{side}", cell.name()), t);
        }
    }
    Ok(BenchConvsResult {
        workload: format!(
            "vitdet pyramid convs: conv3x3 pad 1 + conv1x1 (no bias) + deconv k2 s2 (bias) at {:?}, {} channels",
            opts.sizes, opts.channels
        ),
        kernels: if opts.composed { "composed" } else { "fused" }.into(),
        device: format!("{device:?}"),
        threads: rayon::current_num_threads(),
        batch: opts.batch,
        channels: opts.channels,
        iters: opts.iters,
        forward_ms,
        train_ms,
        forward_ms_by_op: forward_by_op,
        train_ms_by_op: train_by_op,
    })
}

/// Inputs of one cell: the input map, and the weight, the bias and the
/// boxes when the op has them.
struct CellInputs {
    x: Tensor,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    rois: Option<Tensor>,
}

/// The RoIAlign cell's boxes, (B * [`ROIS_PER_IMAGE`], 5) rows `(image, x1,
/// y1, x2, y2)` in the pixels of an image 4x the map side: sides from 1/16
/// to 1/2 of the image, placed inside it. Box i of each image takes its
/// sizes and position from the fractional parts of (i + 1) times four
/// irrational constants, so `bench/torch_convs.py` pools the same boxes
/// without sharing a random generator.
fn roi_boxes(batch: usize, side: usize, device: &Device) -> Result<Tensor> {
    const STEPS: [f64; 4] = [0.618_033_988_7, 0.754_877_666_2, 0.569_840_291_0, 0.430_159_709_0];
    let image = 4.0 * side as f64;
    let mut rows = Vec::with_capacity(batch * ROIS_PER_IMAGE * 5);
    for b in 0..batch {
        for i in 0..ROIS_PER_IMAGE {
            let u = STEPS.map(|step| ((i + 1) as f64 * step).fract());
            let (w, h) = (image * (1.0 / 16.0 + u[0] * 7.0 / 16.0), image * (1.0 / 16.0 + u[1] * 7.0 / 16.0));
            let (x, y) = (u[2] * (image - w), u[3] * (image - h));
            rows.extend([b as f64, x, y, x + w, y + h].map(|v| v as f32));
        }
    }
    Ok(Tensor::from_vec(rows, (batch * ROIS_PER_IMAGE, 5), device)?)
}

/// Uniform random values in [-1, 1) scaled by `scale`, as an f32 tensor.
fn random(shape: &[usize], seed: u64, scale: f64, device: &Device) -> Result<Tensor> {
    Ok(engine::testing::random_tensor(shape, seed).affine(scale, 0.0)?.to_dtype(DType::F32)?.to_device(device)?)
}

fn cell_inputs(cell: Cell, side: usize, opts: &BenchConvsOptions, device: &Device, seed: u64) -> Result<CellInputs> {
    let (b, c) = (opts.batch, opts.channels);
    // Weights at PyTorch's default init scale, 1 / sqrt(fan_in).
    let x_side = if cell == Cell::Deconv2x2 { side / 2 } else { side };
    let x = random(&[b, c, x_side, x_side], 3 * seed, 1.0, device)?;
    let (weight, bias) = match cell {
        Cell::Conv3x3 => (Some(random(&[c, c, 3, 3], 3 * seed + 1, 1.0 / ((9 * c) as f64).sqrt(), device)?), None),
        Cell::Conv1x1 => (Some(random(&[c, c, 1, 1], 3 * seed + 1, 1.0 / (c as f64).sqrt(), device)?), None),
        Cell::Deconv2x2 => {
            let scale = 1.0 / ((4 * c) as f64).sqrt();
            (Some(random(&[c, c, 2, 2], 3 * seed + 1, scale, device)?), Some(random(&[c], 3 * seed + 2, scale, device)?))
        }
        Cell::MaxPool2x2 | Cell::RoiAlign7 => (None, None),
    };
    let rois = if cell == Cell::RoiAlign7 { Some(roi_boxes(b, side, device)?) } else { None };
    Ok(CellInputs { x, weight, bias, rois })
}

/// The cell's op on these tensors.
fn apply(cell: Cell, composed: bool, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, rois: Option<&Tensor>) -> Result<Tensor> {
    let weight = || weight.ok_or_else(|| anyhow!("bench convs: a convolution cell without a weight"));
    let y = match (cell, composed) {
        (Cell::Conv3x3, false) => detection::conv2d(x, weight()?, bias, 1),
        (Cell::Conv3x3, true) => reference::conv2d(x, weight()?, bias, 1),
        (Cell::Conv1x1, false) => detection::conv2d(x, weight()?, bias, 0),
        (Cell::Conv1x1, true) => reference::conv2d(x, weight()?, bias, 0),
        (Cell::Deconv2x2, false) => detection::conv_transpose2d(x, weight()?, bias, 2),
        (Cell::Deconv2x2, true) => reference::conv_transpose2d(x, weight()?, bias, 2),
        (Cell::MaxPool2x2, false) => detection::max_pool2d(x, 2),
        (Cell::MaxPool2x2, true) => reference::max_pool2d(x, 2),
        (Cell::RoiAlign7, composed) => {
            let rois = rois.ok_or_else(|| anyhow!("bench convs: a RoIAlign cell without boxes"))?;
            if composed {
                reference::roi_align(x, rois, (7, 7), 0.25, 0, true)
            } else {
                detection::roi_align(x, rois, (7, 7), 0.25, 0, true)
            }
        }
    };
    Ok(y?)
}

/// The (forward, forward + backward) median times of one cell, ms.
fn time_cell(cell: Cell, side: usize, opts: &BenchConvsOptions, device: &Device, seed: u64) -> Result<(f64, f64)> {
    let inputs = cell_inputs(cell, side, opts, device, seed)?;
    let (x, weight, bias, rois) = (&inputs.x, inputs.weight.as_ref(), inputs.bias.as_ref(), inputs.rois.as_ref());
    // Forward on plain tensors: candle records no graph for them.
    let forward = median_ms(opts.iters, || sync(&apply(cell, opts.composed, x, weight, bias, rois)?))?;
    let vars = [Some(x), weight, bias].into_iter().flatten().map(Var::from_tensor).collect::<candle_core::Result<Vec<_>>>()?;
    let tensors: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let (xv, wv, bv) = (tensors[0], tensors.get(1).copied(), tensors.get(2).copied());
    let train = median_ms(opts.iters, || {
        let grads = apply(cell, opts.composed, xv, wv, bv, rois)?.sum_all()?.backward()?;
        for v in &vars {
            let grad = grads.get(v.as_tensor()).ok_or_else(|| anyhow!("bench convs: a variable got no gradient"))?;
            sync(grad)?;
        }
        Ok(())
    })?;
    Ok((forward, train))
}

/// Runs `step` once untimed, then `iters` times; returns the median run, ms.
fn median_ms(iters: usize, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    step()?;
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        step()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    Ok(if times.len() % 2 == 1 { times[mid] } else { 0.5 * (times[mid - 1] + times[mid]) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_every_cell_of_a_small_workload() {
        for composed in [false, true] {
            let opts = BenchConvsOptions { batch: 1, iters: 1, channels: 4, sizes: vec![8, 4], composed };
            let r = bench_convs(&opts, &Device::Cpu).unwrap();
            assert_eq!(r.train_ms_by_op.len(), 8, "{:?}", r.train_ms_by_op.keys());
            assert!(r.train_ms_by_op.contains_key("deconv2x2@4") && r.train_ms_by_op.contains_key("maxpool2x2@8"));
            assert!(r.train_ms_by_op.contains_key("roialign7@8"));
            let conv_sum: f64 = r.train_ms_by_op.iter().filter(|(k, _)| k.starts_with("conv") || k.starts_with("deconv")).map(|(_, v)| v).sum();
            assert!((conv_sum - r.train_ms).abs() <= 1e-9 * r.train_ms.max(1.0));
        }
    }

    #[test]
    fn rejects_an_odd_map() {
        let opts = BenchConvsOptions { batch: 1, iters: 1, channels: 2, sizes: vec![5], composed: false };
        assert!(bench_convs(&opts, &Device::Cpu).is_err());
    }
}
