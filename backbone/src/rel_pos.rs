//! Decomposed relative positions (MViTv2), as ViTDet adds them to the
//! attention logits: a table per axis, `rel_pos_h` (2h-1, d) and `rel_pos_w`
//! (2w-1, d), indexed by the query-key offset along that axis, and dotted with
//! the (unscaled) query. Mirrors detectron2 `modeling/backbone/utils.py`
//! `get_rel_pos` and `add_decomposed_rel_pos`, including the linear
//! resampling of a table whose length differs from the one needed and the
//! query/key coordinate scaling for unequal sizes.
//!
//! Shapes: B batch, H heads, d head width, (qh, qw) the query grid, (kh, kw)
//! the key grid, tokens row-major (t = row * w + col).
//!
//! Verified against a PyTorch reference in `tests/vitdet_reference.rs`.

use candle_core::{Result, Tensor};

/// The (out × in) matrix of 1-D linear interpolation with
/// `align_corners=False`, as `F.interpolate(..., mode="linear")`: source
/// coordinate `(o + 0.5) * in / out - 0.5`, clamped at 0, its two neighbours
/// weighted by distance (the right one clamped at the border).
pub fn linear_matrix(in_size: usize, out_size: usize) -> Vec<f64> {
    let scale = in_size as f64 / out_size as f64;
    let mut m = vec![0f64; out_size * in_size];
    for o in 0..out_size {
        let src = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
        let left = (src.floor() as usize).min(in_size - 1);
        let right = (left + 1).min(in_size - 1);
        let t = src - left as f64;
        m[o * in_size + left] += 1.0 - t;
        m[o * in_size + right] += t;
    }
    m
}

/// Row of the (resampled) table for every (query, key) pair along one axis,
/// row-major over (q_size, k_size): detectron2's `relative_coords`,
/// `q * max(k/q, 1) - k * max(q/k, 1) + (k_size - 1) * max(q/k, 1)`,
/// computed in f32 and truncated as PyTorch's `.long()` does.
pub fn relative_index(q_size: usize, k_size: usize) -> Vec<u32> {
    let q_scale = (k_size as f32 / q_size as f32).max(1.0);
    let k_scale = (q_size as f32 / k_size as f32).max(1.0);
    let offset = (k_size as f32 - 1.0) * k_scale;
    let mut index = Vec::with_capacity(q_size * k_size);
    for q in 0..q_size {
        for k in 0..k_size {
            // Never negative: the offset is the largest k * k_scale.
            index.push((q as f32 * q_scale - k as f32 * k_scale + offset) as u32);
        }
    }
    index
}

/// The relative-position embeddings of every (query, key) pair along one
/// axis: (q_size, k_size, d) from a table `rel_pos` (L, d). When L is not
/// `2 * max(q_size, k_size) - 1`, the table is first resampled linearly to
/// that length. Differentiable in `rel_pos` (a matmul and an index_select).
///
/// # Errors
/// `rel_pos` is not 2-D, or a size is zero.
pub fn get_rel_pos(q_size: usize, k_size: usize, rel_pos: &Tensor) -> Result<Tensor> {
    let (len, d) = rel_pos.dims2()?;
    if q_size == 0 || k_size == 0 || len == 0 {
        return Err(candle_core::Error::Msg(format!("get_rel_pos: empty axis (q {q_size}, k {k_size}, table {len})")));
    }
    let needed = 2 * q_size.max(k_size) - 1;
    let table = if len == needed {
        rel_pos.clone()
    } else {
        let m = Tensor::from_vec(linear_matrix(len, needed), (needed, len), rel_pos.device())?.to_dtype(rel_pos.dtype())?;
        m.matmul(rel_pos)?
    };
    let index = Tensor::from_vec(relative_index(q_size, k_size), q_size * k_size, rel_pos.device())?;
    table.index_select(&index, 0)?.reshape((q_size, k_size, d))
}

/// The two factors of the decomposed relative-position term, each (B, H,
/// qh*qw, ·): `rel_h[.., (y, x), i] = q[y, x] · Rh[y, i]` (kh columns) and
/// `rel_w[.., (y, x), j] = q[y, x] · Rw[x, j]` (kw columns), with `Rh =
/// get_rel_pos(qh, kh, rel_pos_h)`, `Rw = get_rel_pos(qw, kw, rel_pos_w)`
/// (detectron2's `rel_h` and `rel_w` of `add_decomposed_rel_pos`).
fn rel_pos_factors(q: &Tensor, rel_pos_h: &Tensor, rel_pos_w: &Tensor, q_size: (usize, usize), k_size: (usize, usize)) -> Result<(Tensor, Tensor)> {
    let (b, heads, n, d) = q.dims4()?;
    let ((qh, qw), (kh, kw)) = (q_size, k_size);
    if n != qh * qw {
        return Err(candle_core::Error::Msg(format!("decomposed rel-pos: {n} queries do not form a {qh}x{qw} grid")));
    }
    let bh = b * heads;
    let rh = get_rel_pos(qh, kh, rel_pos_h)?; // (qh, kh, d)
    let rw = get_rel_pos(qw, kw, rel_pos_w)?; // (qw, kw, d)
    let q = q.reshape((bh, qh, qw, d))?;
    // Along h: for each query row y, (bh * qw, d) @ (d, kh).
    let by_row = q.permute((1, 0, 2, 3))?.reshape((qh, bh * qw, d))?;
    let rel_h = by_row.matmul(&rh.transpose(1, 2)?)?.reshape((qh, bh, qw, kh))?.permute((1, 0, 2, 3))?;
    // Along w: for each query column x, (bh * qh, d) @ (d, kw).
    let by_col = q.permute((2, 0, 1, 3))?.reshape((qw, bh * qh, d))?;
    let rel_w = by_col.matmul(&rw.transpose(1, 2)?)?.reshape((qw, bh, qh, kw))?.permute((1, 2, 0, 3))?;
    Ok((rel_h.reshape((b, heads, n, kh))?, rel_w.reshape((b, heads, n, kw))?))
}

/// The decomposed relative-position term of the attention logits, (B, H,
/// qh*qw, kh*kw): entry (query (y, x), key (i, j)) is
/// `q[y, x] · Rh[y, i] + q[y, x] · Rw[x, j]` with `Rh = get_rel_pos(qh, kh,
/// rel_pos_h)` and `Rw = get_rel_pos(qw, kw, rel_pos_w)`. `q` (B, H, qh*qw,
/// d) is the query **before** the `head_dim^-0.5` scaling, as in detectron2.
/// The definition, as a bias of the logits' size; the model uses the
/// equivalent [`fold_rel_pos`].
///
/// # Errors
/// `q` is not (B, H, qh*qw, d) or a table's width is not d.
pub fn decomposed_rel_pos(q: &Tensor, rel_pos_h: &Tensor, rel_pos_w: &Tensor, q_size: (usize, usize), k_size: (usize, usize)) -> Result<Tensor> {
    let (b, heads, n, _) = q.dims4()?;
    let ((kh, kw), (qh, qw)) = (k_size, q_size);
    let (rel_h, rel_w) = rel_pos_factors(q, rel_pos_h, rel_pos_w, q_size, k_size)?;
    let rel_h = rel_h.reshape((b * heads, qh, qw, kh, 1))?;
    let rel_w = rel_w.reshape((b * heads, qh, qw, 1, kw))?;
    rel_h.broadcast_add(&rel_w)?.reshape((b, heads, n, kh * kw))
}

/// Folds the scale and the decomposed relative positions into the query
/// and key, so that attention runs without a bias and without scaling:
/// returns `q' = [scale * q, rel_h, rel_w]` (B, H, N, d + kh + kw) and
/// `k' = [k, onehot(row), onehot(col)]` (B, H, kh*kw, d + kh + kw), whose
/// products are `q'·k'[(y, x), (i, j)] = scale * q·k + rel_h[(y, x), i] +
/// rel_w[(y, x), j]`, the logits of detectron2's attention with
/// `add_decomposed_rel_pos`. The fused attention kernel then never builds
/// the (N, M) bias, which at 640 px (1600 tokens) costs more than the
/// attention itself; gradients reach q, k and both tables through q'.
///
/// # Errors
/// As [`decomposed_rel_pos`], or `k` is not (B, H, kh*kw, d).
pub fn fold_rel_pos(q: &Tensor, k: &Tensor, scale: f64, rel_pos_h: &Tensor, rel_pos_w: &Tensor, q_size: (usize, usize), k_size: (usize, usize)) -> Result<(Tensor, Tensor)> {
    let (b, heads, m, _) = k.dims4()?;
    let (kh, kw) = k_size;
    if m != kh * kw {
        return Err(candle_core::Error::Msg(format!("fold_rel_pos: {m} keys do not form a {kh}x{kw} grid")));
    }
    let (rel_h, rel_w) = rel_pos_factors(q, rel_pos_h, rel_pos_w, q_size, k_size)?;
    // Contiguous parts make a contiguous result (candle's cat of strided
    // parts returns a transposed view, which matmul cannot always take).
    let q_folded = Tensor::cat(&[&(q * scale)?, &rel_h.contiguous()?, &rel_w.contiguous()?], 3)?;
    // Key (i, j) selects column i of rel_h and column j of rel_w.
    let mut selectors = vec![0f32; m * (kh + kw)];
    for i in 0..kh {
        for j in 0..kw {
            let row = &mut selectors[(i * kw + j) * (kh + kw)..][..kh + kw];
            row[i] = 1.0;
            row[kh + j] = 1.0;
        }
    }
    let selectors = Tensor::from_vec(selectors, (1, 1, m, kh + kw), k.device())?.to_dtype(k.dtype())?;
    let k_folded = Tensor::cat(&[&k.contiguous()?, &selectors.broadcast_as((b, heads, m, kh + kw))?.contiguous()?], 3)?;
    Ok((q_folded, k_folded))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use engine::testing::{check_gradients, random_tensor};

    #[test]
    fn linear_rows_sum_to_one_and_identity_at_same_size() {
        for (i, o) in [(7, 11), (11, 7), (3, 9), (5, 5)] {
            let m = linear_matrix(i, o);
            for r in 0..o {
                let s: f64 = m[r * i..(r + 1) * i].iter().sum();
                assert!((s - 1.0).abs() < 1e-12, "{i}->{o} row {r}: {s}");
            }
        }
        let id = linear_matrix(4, 4);
        for r in 0..4 {
            for c in 0..4 {
                assert!((id[r * 4 + c] - f64::from(u8::from(r == c))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn linear_upsampling_by_two_hand_worked() {
        // 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (right clamped).
        let m = linear_matrix(2, 4);
        let want = [1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0];
        for (a, b) in m.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{m:?}");
        }
    }

    #[test]
    fn equal_sizes_index_by_offset() {
        // q - k + (k - 1): row 0 of a 3x3 is [2, 1, 0], row 2 is [4, 3, 2].
        assert_eq!(relative_index(3, 3), vec![2, 1, 0, 3, 2, 1, 4, 3, 2]);
        // q 2, k 4: q coordinates scaled by 2, offset 3.
        assert_eq!(relative_index(2, 4), vec![3, 2, 1, 0, 5, 4, 3, 2]);
    }

    #[test]
    fn rel_pos_gradient_matches_finite_differences() {
        // Tables of the wrong length (3 for a needed 5 and 9) exercise the resampling.
        let q = random_tensor(&[1, 2, 2 * 4, 3], 1);
        let th = random_tensor(&[3, 3], 2);
        let tw = random_tensor(&[3, 3], 3);
        check_gradients(&[q, th, tw], |t| decomposed_rel_pos(&t[0], &t[1], &t[2], (2, 4), (3, 5))).unwrap();
    }

    #[test]
    fn folded_query_and_key_give_the_biased_logits() {
        // Resampled tables and an unpadded 3x2 grid: q'·k' = scale q·k + bias, with its gradients.
        let (q, k) = (random_tensor(&[2, 2, 6, 3], 10), random_tensor(&[2, 2, 6, 3], 11));
        let (th, tw) = (random_tensor(&[4, 3], 12), random_tensor(&[2, 3], 13));
        let (qf, kf) = fold_rel_pos(&q, &k, 0.5, &th, &tw, (3, 2), (3, 2)).unwrap();
        let folded = qf.matmul(&kf.t().unwrap()).unwrap();
        let biased = ((q.matmul(&k.t().unwrap()).unwrap() * 0.5).unwrap() + decomposed_rel_pos(&q, &th, &tw, (3, 2), (3, 2)).unwrap()).unwrap();
        let diff = (folded - biased).unwrap().abs().unwrap().max_all().unwrap().to_vec0::<f64>().unwrap();
        assert!(diff < 1e-12, "{diff}");
        check_gradients(&[q, k, th, tw], |t| {
            let (qf, kf) = fold_rel_pos(&t[0], &t[1], 0.5, &t[2], &t[3], (3, 2), (3, 2))?;
            qf.matmul(&kf.t()?)
        })
        .unwrap();
    }

    #[test]
    fn bias_entry_is_the_sum_of_two_dot_products() {
        let q = random_tensor(&[1, 1, 6, 2], 4);
        // Tables of the needed lengths, 2*2-1 and 2*3-1: no resampling.
        let th = random_tensor(&[3, 2], 5);
        let tw = random_tensor(&[5, 2], 6);
        let bias = decomposed_rel_pos(&q, &th, &tw, (2, 3), (2, 3)).unwrap();
        let b = bias.reshape((6, 6)).unwrap().to_vec2::<f64>().unwrap();
        let qv = q.reshape((6, 2)).unwrap().to_vec2::<f64>().unwrap();
        let (hv, wv) = (th.to_vec2::<f64>().unwrap(), tw.to_vec2::<f64>().unwrap());
        let dot = |a: &[f64], c: &[f64]| a[0] * c[0] + a[1] * c[1];
        // Query (1, 0) = token 3, key (0, 2) = token 2: rows (1-0+1) of Rh-table, (0-2+2) of Rw-table.
        let want = dot(&qv[3], &hv[2]) + dot(&qv[3], &wv[0]);
        assert!((b[3][2] - want).abs() < 1e-12, "{} vs {want}", b[3][2]);
    }
}
