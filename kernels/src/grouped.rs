//! Grouped linear kernels: the expert layer of a sparse mixture of experts (SoftMoE).
//!
//! Row `r` of `x [M, din]` belongs to group `g_r < E` when `mask[r] > 0` (else to none):
//!
//! ```text
//! y[r, j]  = Σ_i x[r, i] W[g_r, i, j] + b[g_r, j]        (0 for a row of no group)
//! x̄[r, i]  = Σ_j ȳ[r, j] W[g_r, i, j]                    (0 for a row of no group)
//! W̄[e, i, j] = Σ_{r : g_r = e} x[r, i] ȳ[r, j],   b̄[e, j] = Σ_{r : g_r = e} ȳ[r, j]
//! ```
//!
//! Each output element is one unit (no atomics: deterministic on every device). The
//! weight gradient walks each group's rows through a sort of the rows by group key
//! (`keys` ascending, rows of no group keyed `E` at the end, `perm` the sorting
//! permutation): unit `(c, e, i, j)` finds its group's range by binary search and sums the
//! rows of chunk `c` of it (chunks of at most `chunk` rows keep every loop under
//! llvmpipe's iteration limit; the host sums the chunk partials).

use cubecl::prelude::*;

/// `keys[r] = g_r` (as f32) when `mask[r] > 0`, else `sentinel`.
#[cube(launch)]
pub fn group_keys_kernel(
    group: &Array<u32>,
    mask: &Array<f32>,
    keys: &mut Array<f32>,
    m: u32,
    sentinel: f32,
) {
    let r = ABSOLUTE_POS as u32;
    if r >= m {
        terminate!();
    }
    let mut k = sentinel;
    if mask[r as usize] > 0.0 {
        k = f32::cast_from(group[r as usize]);
    }
    keys[r as usize] = k;
}

/// `y = x W[g] + b[g]` per row (module docs); unit `(r, j)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn grouped_linear_kernel(
    x: &Array<f32>,
    w: &Array<f32>,
    b: &Array<f32>,
    group: &Array<u32>,
    mask: &Array<f32>,
    y: &mut Array<f32>,
    m: u32,
    din: u32,
    dout: u32,
    groups: u32,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= m * dout {
        terminate!();
    }
    let r = p / dout;
    let j = p % dout;
    let mut acc = 0.0f32;
    if mask[r as usize] > 0.0 {
        let e = min(group[r as usize], groups - 1);
        let wbase = e * din * dout + j;
        let xbase = r * din;
        for i in 0..din {
            acc += x[(xbase + i) as usize] * w[(wbase + i * dout) as usize];
        }
        acc += b[(e * dout + j) as usize];
    }
    y[p as usize] = acc;
}

/// `x̄ = ȳ W[g]ᵀ` per row (module docs); unit `(r, i)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn grouped_linear_dx_kernel(
    gy: &Array<f32>,
    w: &Array<f32>,
    group: &Array<u32>,
    mask: &Array<f32>,
    gx: &mut Array<f32>,
    m: u32,
    din: u32,
    dout: u32,
    groups: u32,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= m * din {
        terminate!();
    }
    let r = p / din;
    let i = p % din;
    let mut acc = 0.0f32;
    if mask[r as usize] > 0.0 {
        let e = min(group[r as usize], groups - 1);
        let wbase = (e * din + i) * dout;
        let gbase = r * dout;
        for j in 0..dout {
            acc += gy[(gbase + j) as usize] * w[(wbase + j) as usize];
        }
    }
    gx[p as usize] = acc;
}

/// First position of `keys[0..m]` (ascending) whose key is `≥ v`.
#[cube]
fn lower_bound(keys: &Array<f32>, m: u32, v: f32) -> u32 {
    let mut lo = 0u32;
    let mut hi = m;
    // ⌈log2(m + 1)⌉ halvings suffice; 32 bounds any u32 length.
    for _ in 0..32u32 {
        if lo < hi {
            let mid = (lo + hi) / 2;
            if keys[mid as usize] < v {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
    }
    lo
}

/// Weight-gradient partials `W̄_c[e, i, j]` over chunk `c` of group `e`'s rows; with
/// `bias = 1` the `x` factor is 1 and `din` must be 1 (`b̄`). Unit `(c, e, i, j)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn grouped_linear_dw_kernel(
    x: &Array<f32>,
    gy: &Array<f32>,
    keys: &Array<f32>,
    perm: &Array<u32>,
    gw: &mut Array<f32>,
    m: u32,
    din: u32,
    dout: u32,
    groups: u32,
    chunks: u32,
    chunk: u32,
    bias: u32,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= chunks * groups * din * dout {
        terminate!();
    }
    let j = p % dout;
    let i = (p / dout) % din;
    let e = (p / (dout * din)) % groups;
    let c = p / (dout * din * groups);
    let lo = lower_bound(keys, m, f32::cast_from(e));
    let hi = lower_bound(keys, m, f32::cast_from(e + 1));
    let start = min(lo + c * chunk, hi);
    let end = min(start + chunk, hi);
    let mut acc = 0.0f32;
    for s in start..end {
        let r = min(perm[s as usize], m - 1);
        let mut xv = 1.0f32;
        if bias == 0 {
            xv = x[(r * din + i) as usize];
        }
        acc += xv * gy[(r * dout + j) as usize];
    }
    gw[p as usize] = acc;
}
