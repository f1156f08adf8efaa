//! Batched matrix-multiply reference.
//!
//! For `a` of shape `[α…, m, k]` and `b` of shape `[β…, k, n]`, the batch dims `α…`
//! and `β…` broadcast numpy-style to `γ…`, and
//!
//! `c[g, i, j] = Σ_{p<k} a[g↓α, i, p] · b[g↓β, p, j]`,  shape `[γ…, m, n]`,
//!
//! where `g↓α` is the batch index `g` broadcast down to `α…` (leading dims dropped,
//! length-1 dims indexed at 0). A rank-2 operand has no batch dims and so is shared by
//! every batch of the other. The sum runs in index order; `k = 0` gives zeros.

use super::tensor::{broadcast_shape, broadcast_source, numel_of, unravel, RefTensor};

/// Batched matmul: `a [.., m, k] @ b [.., k, n] -> [.., m, n]`; batch dims broadcast
/// numpy-style (both operands rank >= 2; a rank-2 operand broadcasts over the other's
/// batch).
///
/// # Panics
///
/// If either operand has rank < 2, the inner dims differ, or the batch dims do not
/// broadcast.
pub fn matmul(a: &RefTensor, b: &RefTensor) -> RefTensor {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    assert!(
        ra >= 2 && rb >= 2,
        "matmul: both operands need rank >= 2, got {:?} and {:?}",
        a.shape,
        b.shape
    );
    let (m, k) = (a.shape[ra - 2], a.shape[ra - 1]);
    let (kb, n) = (b.shape[rb - 2], b.shape[rb - 1]);
    assert!(
        k == kb,
        "matmul: inner dims differ: {:?} @ {:?}",
        a.shape,
        b.shape
    );
    let (a_batch, b_batch) = (&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let batch = broadcast_shape(a_batch, b_batch).unwrap_or_else(|| {
        panic!(
            "matmul: batch dims of {:?} and {:?} do not broadcast",
            a.shape, b.shape
        )
    });

    let mut shape = batch.clone();
    shape.extend([m, n]);
    let mut data = Vec::with_capacity(numel_of(&shape));
    for g in 0..numel_of(&batch) {
        let g_idx = unravel(g, &batch);
        // Offsets of the (broadcast) matrices this batch element reads.
        let a_off = broadcast_source(&g_idx, a_batch) * m * k;
        let b_off = broadcast_source(&g_idx, b_batch) * k * n;
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| a.data[a_off + i * k + p] * b.data[b_off + p * n + j])
                    .sum();
                data.push(dot);
            }
        }
    }
    RefTensor::new(&shape, data)
}
