//! Fused optimizer updates: one launch per parameter tensor instead of a dozen
//! elementwise ones.
//!
//! Adam / AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), per entry:
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `θ ← δ·θ − (lr/c₁)·m / (√(v/c₂) + ε)` with `c_k = 1 − β_kᵗ` and `δ = 1 − lr·wd`
//! (decoupled decay; `δ = 1` for Adam). The host computes `1 − β`, `c₁`, `c₂` in f64.

use cubecl::prelude::*;

/// One Adam/AdamW step for f32 `p`, `g`, `m`, `v` of `n` entries, written to the `*_out`
/// arrays (the inputs may be shared by other tensors, so they are not overwritten).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn adam_kernel(
    p: &Array<f32>,
    g: &Array<f32>,
    m: &Array<f32>,
    v: &Array<f32>,
    p_out: &mut Array<f32>,
    m_out: &mut Array<f32>,
    v_out: &mut Array<f32>,
    n: u32,
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    step: f32,
    inv_c2: f32,
    eps: f32,
    decay: f32,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    // step = lr/c₁, inv_c2 = 1/c₂, decay = δ
    let gi = g[i];
    let mi = b1 * m[i] + one_minus_b1 * gi;
    let vi = b2 * v[i] + one_minus_b2 * gi * gi;
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = decay * p[i] - step * mi / ((vi * inv_c2).sqrt() + eps);
}
