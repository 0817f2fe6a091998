//! Non-overlapping window partition of a token map and its inverse, as
//! ViTDet's window-attention blocks use them. Mirrors detectron2
//! `modeling/backbone/utils.py` `window_partition` / `window_unpartition`:
//! the map is zero-padded at the bottom and right to a multiple of the
//! window, and the padded tokens are ordinary members of their windows (no
//! attention mask), then cropped away after attention.
//!
//! Shapes: B batch, (h, w) token grid, (hp, wp) the padded grid, S window
//! side, D width; tokens row-major (t = row * w + col).

use candle_core::{Result, Tensor};

/// Splits (B, h*w, D) tokens into windows of S x S: (B * nh * nw, S*S, D),
/// windows in row-major order over the padded grid, tokens row-major inside
/// each. Returns the padded grid (hp, wp) too.
///
/// # Errors
/// The token count is not h*w, or S is zero.
pub fn window_partition(x: &Tensor, hw: (usize, usize), window: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, n, dim) = x.dims3()?;
    let (h, w) = hw;
    if n != h * w || window == 0 {
        return Err(candle_core::Error::Msg(format!("window_partition: {n} tokens as a {h}x{w} grid in windows of {window}")));
    }
    let (hp, wp) = (h.div_ceil(window) * window, w.div_ceil(window) * window);
    let mut map = x.reshape((b, h, w, dim))?;
    if hp > h {
        map = map.pad_with_zeros(1, 0, hp - h)?;
    }
    if wp > w {
        map = map.pad_with_zeros(2, 0, wp - w)?;
    }
    let (nh, nw) = (hp / window, wp / window);
    let windows = map
        .reshape((b, nh, window, nw, window, dim))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b * nh * nw, window * window, dim))?;
    Ok((windows, (hp, wp)))
}

/// The inverse of [`window_partition`]: (B * nh * nw, S*S, D) windows of a
/// (hp, wp) padded grid back to (B, h*w, D) tokens, the padding cropped.
///
/// # Errors
/// The window tensor does not fit the padded grid.
pub fn window_unpartition(windows: &Tensor, window: usize, padded: (usize, usize), hw: (usize, usize)) -> Result<Tensor> {
    let (count, n, dim) = windows.dims3()?;
    let ((hp, wp), (h, w)) = (padded, hw);
    let per_image = (hp / window.max(1)) * (wp / window.max(1));
    if window == 0 || n != window * window || per_image == 0 || count % per_image != 0 || h > hp || w > wp {
        return Err(candle_core::Error::Msg(format!(
            "window_unpartition: {count} windows of {n} tokens do not tile a {hp}x{wp} grid in windows of {window}"
        )));
    }
    let b = count / per_image;
    let map = windows
        .reshape((b, hp / window, wp / window, window, window, dim))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, hp, wp, dim))?;
    let map = if (hp, wp) == (h, w) { map } else { map.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()? };
    map.reshape((b, h * w, dim))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;
    use engine::testing::{check_gradients, random_tensor};

    #[test]
    fn partition_pads_and_orders_windows_row_major() {
        // A 3x3 grid of token ids in windows of 2: padded to 4x4, 4 windows.
        let ids: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        let x = Tensor::from_vec(ids, (1, 9, 1), &Device::Cpu).unwrap();
        let (win, padded) = window_partition(&x, (3, 3), 2).unwrap();
        assert_eq!(padded, (4, 4));
        let got = win.squeeze(2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got, vec![vec![1., 2., 4., 5.], vec![3., 0., 6., 0.], vec![7., 8., 0., 0.], vec![9., 0., 0., 0.]]);
    }

    #[test]
    fn unpartition_inverts_partition() {
        let x = random_tensor(&[2, 5 * 3, 4], 7);
        let (win, padded) = window_partition(&x, (5, 3), 2).unwrap();
        let back = window_unpartition(&win, 2, padded, (5, 3)).unwrap();
        let diff = (back - &x).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f64>().unwrap();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn partition_round_trip_gradient_matches_finite_differences() {
        // Scaling each window by a different factor makes the gradient depend on the window order.
        let x = random_tensor(&[1, 3 * 5, 2], 8);
        check_gradients(&[x], |t| {
            let (win, padded) = window_partition(&t[0], (3, 5), 2)?;
            let n = win.dim(0)?;
            let scale = Tensor::arange(1.0, 1.0 + n as f64, &Device::Cpu)?.reshape((n, 1, 1))?;
            window_unpartition(&win.broadcast_mul(&scale)?, 2, padded, (3, 5))
        })
        .unwrap();
    }

    #[test]
    fn a_grid_that_does_not_match_the_tokens_is_an_error() {
        let x = random_tensor(&[1, 10, 2], 9);
        assert!(window_partition(&x, (3, 3), 2).is_err());
    }
}
