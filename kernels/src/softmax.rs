//! Softmax and log-softmax along one axis.
//!
//! The tensor is viewed as `[outer, len, inner]` (the axis in the middle); unit `(o, j)`
//! with `o < outer`, `j < inner` owns one line and makes three passes over it:
//! `m = max_i x_i`, `s = Σ_i e^{x_i − m}`, then
//! `softmax_i = e^{x_i − m} / s` or `log_softmax_i = x_i − m − ln s`.
//! Subtracting the max keeps every exponent ≤ 0: no overflow for any finite input, and
//! `s ≥ 1` so `ln s` is finite.
//!
//! Cost: 3 reads + 1 write per element; parallel over `outer·inner` lines (a line is
//! handled by one unit, which suits the short lines of attention and classification
//! heads; very long single rows are serial in this version).

use cubecl::prelude::*;

/// Softmax (`log = false`) or log-softmax (`log = true`) over lines of `len` elements.
#[cube(launch)]
pub fn softmax_kernel<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    outer: u32,
    len: u32,
    inner: u32,
    #[comptime] log: bool,
    #[define(F)] _dtype: StorageType,
) {
    let line = ABSOLUTE_POS as u32;
    if line >= outer * inner {
        terminate!();
    }
    let o = line / inner;
    let j = line % inner;
    let base = o * len * inner + j;
    let mut m = f32::cast_from(x[base as usize]);
    for i in 1..len {
        m = max(m, f32::cast_from(x[(base + i * inner) as usize]));
    }
    let mut s = 0.0f32;
    for i in 0..len {
        s += (f32::cast_from(x[(base + i * inner) as usize]) - m).exp();
    }
    if comptime![log] {
        let ls = s.ln();
        for i in 0..len {
            let p = (base + i * inner) as usize;
            out[p] = F::cast_from(f32::cast_from(x[p]) - m - ls);
        }
    } else {
        let inv = 1.0f32 / s;
        for i in 0..len {
            let p = (base + i * inner) as usize;
            out[p] = F::cast_from((f32::cast_from(x[p]) - m).exp() * inv);
        }
    }
}
