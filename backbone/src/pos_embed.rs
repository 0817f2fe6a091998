//! Absolute position embeddings: MAE's fixed 2-D sin-cos table, and bicubic
//! resizing of a learned table to another token grid (a checkpoint trained at
//! 224 px used at 640 px, as in MAE fine-tuning and detectron2's ViTDet).
//!
//! Layout: (1, P + h*w, D) with P prefix tokens (the cls token) first and the
//! patch tokens in row-major order (token t = row * w + col).

use candle_core::{DType, Device, Result, Tensor};

/// MAE's `get_2d_sincos_pos_embed` with a zero cls slot: for patch (row, col)
/// the row is `[sin(col ω), cos(col ω), sin(row ω), cos(row ω)]` with
/// `ω_d = 10000^(-d / (D/4))`, d = 0..D/4. Computed in f64, returned as f32
/// (1, 1 + grid², D). `D` must be divisible by 4.
pub fn sincos_2d(embed_dim: usize, grid: usize, device: &Device) -> Result<Tensor> {
    if !embed_dim.is_multiple_of(4) {
        return Err(candle_core::Error::Msg(format!("sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")));
    }
    let quarter = embed_dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|d| 1.0 / 10000f64.powf(d as f64 / quarter as f64)).collect();
    let mut table = vec![0f32; (1 + grid * grid) * embed_dim];
    for row in 0..grid {
        for col in 0..grid {
            let base = (1 + row * grid + col) * embed_dim;
            for (d, w) in omega.iter().enumerate() {
                let (c, r) = (col as f64 * w, row as f64 * w);
                table[base + d] = c.sin() as f32;
                table[base + quarter + d] = c.cos() as f32;
                table[base + 2 * quarter + d] = r.sin() as f32;
                table[base + 3 * quarter + d] = r.cos() as f32;
            }
        }
    }
    Tensor::from_vec(table, (1, 1 + grid * grid, embed_dim), device)
}

/// PyTorch's bicubic convolution constant (`upsample_bicubic2d`, A = -0.75).
const CUBIC_A: f64 = -0.75;

/// The (out × in) matrix of 1-D bicubic interpolation with
/// `align_corners=False` and border clamping, as `F.interpolate(...,
/// mode="bicubic")` without antialiasing (what MAE and detectron2 use).
pub fn bicubic_matrix(in_size: usize, out_size: usize) -> Vec<f64> {
    let cubic_near = |x: f64| ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0;
    let cubic_far = |x: f64| ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A;
    let scale = in_size as f64 / out_size as f64;
    let mut m = vec![0f64; out_size * in_size];
    for o in 0..out_size {
        let src = scale * (o as f64 + 0.5) - 0.5;
        let floor = src.floor();
        let t = src - floor;
        let weights = [cubic_far(t + 1.0), cubic_near(t), cubic_near(1.0 - t), cubic_far(2.0 - t)];
        for (k, w) in weights.iter().enumerate() {
            let idx = (floor as i64 - 1 + k as i64).clamp(0, in_size as i64 - 1) as usize;
            m[o * in_size + idx] += w;
        }
    }
    m
}

/// Resizes the patch part of `pos` (1, P + gh*gw, D) to an `out_h` × `out_w`
/// grid with bicubic interpolation, keeping the P prefix entries apart; with
/// `drop_prefix` they are left out of the result (ViTDet has no cls token).
///
/// Written as two matrix products with constant interpolation matrices, so the
/// gradient flows back into `pos` when it is a trained parameter.
pub fn resize_pos_embed(pos: &Tensor, grid: (usize, usize), prefix: usize, out: (usize, usize), drop_prefix: bool) -> Result<Tensor> {
    let (gh, gw) = grid;
    let (_, n, dim) = pos.dims3()?;
    if n != prefix + gh * gw {
        return Err(candle_core::Error::Msg(format!("position embedding has {n} tokens, expected {prefix} + {gh}x{gw}")));
    }
    let patches = pos.narrow(1, prefix, gh * gw)?;
    let resized = if (gh, gw) == out {
        patches
    } else {
        let dtype = pos.dtype();
        let my = Tensor::from_vec(bicubic_matrix(gh, out.0), (out.0, gh), pos.device())?.to_dtype(dtype)?;
        let mx = Tensor::from_vec(bicubic_matrix(gw, out.1), (out.1, gw), pos.device())?.to_dtype(dtype)?;
        // (D, gh, gw) -> rows: (D, out_h, gw) -> columns: (D, out_h, out_w)
        let grid_first = patches.reshape((gh, gw, dim))?.permute((2, 0, 1))?.contiguous()?;
        let rows = my.unsqueeze(0)?.broadcast_matmul(&grid_first)?;
        let both = rows.broadcast_matmul(&mx.t()?.unsqueeze(0)?)?;
        both.permute((1, 2, 0))?.reshape((1, out.0 * out.1, dim))?
    };
    if drop_prefix || prefix == 0 {
        Ok(resized)
    } else {
        Tensor::cat(&[&pos.narrow(1, 0, prefix)?, &resized], 1)
    }
}

/// Side of the square grid a table of `tokens` patch entries describes.
pub fn square_grid(tokens: usize) -> Option<usize> {
    let side = (tokens as f64).sqrt().round() as usize;
    (side * side == tokens).then_some(side)
}

/// The dtype position tables are stored in.
pub const POS_DTYPE: DType = DType::F32;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use engine::testing::{check_gradients, random_tensor};

    #[test]
    fn sincos_matches_maes_layout_at_hand_picked_entries() {
        let t = sincos_2d(8, 3, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 10, 8]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v[..8].iter().all(|x| *x == 0.0), "cls slot is zero");
        // token (row 2, col 1) = index 1 + 2*3 + 1 = 8; quarter 2, omega = [1, 0.01].
        let row = &v[8 * 8..9 * 8];
        let expect = [1f64.sin(), 0.01f64.sin(), 1f64.cos(), 0.01f64.cos(), 2f64.sin(), 0.02f64.sin(), 2f64.cos(), 0.02f64.cos()];
        for (a, e) in row.iter().zip(expect) {
            assert!((f64::from(*a) - e).abs() < 1e-7, "{a} vs {e}");
        }
    }

    #[test]
    fn bicubic_rows_sum_to_one_and_identity_at_same_size() {
        let m = bicubic_matrix(5, 9);
        for o in 0..9 {
            let s: f64 = m[o * 5..(o + 1) * 5].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
        let id = bicubic_matrix(4, 4);
        for o in 0..4 {
            for i in 0..4 {
                assert!((id[o * 4 + i] - f64::from(u8::from(o == i))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn resize_gradient_matches_finite_differences() {
        let pos = random_tensor(&[1, 1 + 6, 3], 40);
        check_gradients(&[pos], |t| resize_pos_embed(&t[0], (2, 3), 1, (4, 3), false)).unwrap();
    }
}
