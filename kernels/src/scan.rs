//! First-order linear-recurrence scans, the engine of the Laplace-kernel recursion.
//!
//! Forward: `h_k = d_k · h_{k−1} + u_k` (`h_{−1} = 0`); reverse: `h_k = d_k · h_{k+1} + u_k`
//! (`h_N = 0`), for `k < N`, with `c` channels sharing the decays `d` (`u`, `h` are `[N, c]`
//! row-major). The pairs `(d, u)` compose associatively,
//! `(d₁, u₁) ∘ (d₂, u₂) = (d₁d₂, d₂u₁ + u₂)`, which is what makes a parallel scan possible
//! (Blelloch 1990, "Prefix sums and their applications"; `specs/laplace-engine.md` §2).
//!
//! Variant implemented here: **chunked reduce-then-scan**, correct on every device because
//! no workgroup ever waits on another (lavapipe gives no forward-progress guarantee between
//! workgroups, so decoupled look-back is not safe there). The sequence is cut into `P`
//! chunks of `C` elements:
//! 1. [`scan_aggregate_kernel`]: one unit per (chunk, channel) composes its chunk into one
//!    pair `(D_p, H_p)` = (product of decays, chunk scan from 0);
//! 2. [`scan_carry_kernel`]: one unit per channel scans the `P` aggregates sequentially,
//!    giving each chunk its incoming carry;
//! 3. [`scan_apply_kernel`]: one unit per (chunk, channel) rescans its chunk from the carry
//!    and writes `h`.
//!
//! Work O(N·c) (inputs read twice), depth O(C + P); the caller picks `C ≈ max(32, N/65536)`
//! so `P ≤ 65 536`. Numerics: when `|d| ≤ 1` (Laplace factors `e^{−λΔ}`), every partial
//! product is bounded by 1 and nothing overflows; the f32 error of `h_k` is bounded by
//! `≈ 2·N·ε·h̃_k` with `h̃` the scan of `(|d|, |u|)`.

use cubecl::prelude::*;

/// Phase 1: `agg_d[p·c + ch] = Π_{k∈p} d_k`, `agg_h[p·c + ch]` = the chunk's scan from 0.
#[cube(launch)]
pub fn scan_aggregate_kernel(
    d: &Array<f32>,
    u: &Array<f32>,
    agg_d: &mut Array<f32>,
    agg_h: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut dd = 1.0f32;
    let mut h = 0.0f32;
    for i in 0..end - start {
        let mut k = start + i;
        if comptime![reverse] {
            k = end - 1 - i;
        }
        let dk = d[k as usize];
        dd *= dk;
        h = dk * h + u[(k * c + ch) as usize];
    }
    agg_d[unit as usize] = dd;
    agg_h[unit as usize] = h;
}

/// Phase 2: `carry[p·c + ch]` = the value of `h` just before chunk `p` (in scan order).
#[cube(launch)]
pub fn scan_carry_kernel(
    agg_d: &Array<f32>,
    agg_h: &Array<f32>,
    carry: &mut Array<f32>,
    c: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
) {
    let ch = ABSOLUTE_POS as u32;
    if ch >= c {
        terminate!();
    }
    let mut h = 0.0f32;
    for i in 0..num_chunks {
        let mut p = i;
        if comptime![reverse] {
            p = num_chunks - 1 - i;
        }
        let q = (p * c + ch) as usize;
        carry[q] = h;
        h = agg_d[q] * h + agg_h[q];
    }
}

/// Phase 3: rescans each chunk from its carry and writes `h`.
#[cube(launch)]
pub fn scan_apply_kernel(
    d: &Array<f32>,
    u: &Array<f32>,
    carry: &Array<f32>,
    h_out: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut h = carry[unit as usize];
    for i in 0..end - start {
        let mut k = start + i;
        if comptime![reverse] {
            k = end - 1 - i;
        }
        let q = (k * c + ch) as usize;
        h = d[k as usize] * h + u[q];
        h_out[q] = h;
    }
}

/// Complex phase 1: like [`scan_aggregate_kernel`] with complex decays `d = dr + i·di` and
/// values `u = ur + i·ui` (planar real/imaginary arrays).
#[cube(launch)]
pub fn cscan_aggregate_kernel(
    dr: &Array<f32>,
    di: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    agg: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut pr = 1.0f32;
    let mut pi = 0.0f32;
    let mut hr = 0.0f32;
    let mut hi = 0.0f32;
    for i in 0..end - start {
        let mut k = start + i;
        if comptime![reverse] {
            k = end - 1 - i;
        }
        let a = dr[k as usize];
        let b = di[k as usize];
        let npr = pr * a - pi * b;
        pi = pr * b + pi * a;
        pr = npr;
        let q = (k * c + ch) as usize;
        let nhr = a * hr - b * hi + ur[q];
        hi = a * hi + b * hr + ui[q];
        hr = nhr;
    }
    // agg holds [pr, pi, hr, hi] per unit.
    let o = (unit * 4) as usize;
    agg[o] = pr;
    agg[o + 1] = pi;
    agg[o + 2] = hr;
    agg[o + 3] = hi;
}

/// Complex phase 2: `carry[(p·c + ch)·2 + {0,1}]` = the complex `h` just before chunk `p`.
#[cube(launch)]
pub fn cscan_carry_kernel(
    agg: &Array<f32>,
    carry: &mut Array<f32>,
    c: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
) {
    let ch = ABSOLUTE_POS as u32;
    if ch >= c {
        terminate!();
    }
    let mut hr = 0.0f32;
    let mut hi = 0.0f32;
    for i in 0..num_chunks {
        let mut p = i;
        if comptime![reverse] {
            p = num_chunks - 1 - i;
        }
        let q = p * c + ch;
        carry[(q * 2) as usize] = hr;
        carry[(q * 2 + 1) as usize] = hi;
        let o = (q * 4) as usize;
        let pr = agg[o];
        let pi = agg[o + 1];
        let nhr = pr * hr - pi * hi + agg[o + 2];
        hi = pr * hi + pi * hr + agg[o + 3];
        hr = nhr;
    }
}

/// Complex phase 3: rescans each chunk from its carry, writing `hr`, `hi`.
#[cube(launch)]
pub fn cscan_apply_kernel(
    dr: &Array<f32>,
    di: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    carry: &Array<f32>,
    out_r: &mut Array<f32>,
    out_i: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut hr = carry[(unit * 2) as usize];
    let mut hi = carry[(unit * 2 + 1) as usize];
    for i in 0..end - start {
        let mut k = start + i;
        if comptime![reverse] {
            k = end - 1 - i;
        }
        let a = dr[k as usize];
        let b = di[k as usize];
        let q = (k * c + ch) as usize;
        let nhr = a * hr - b * hi + ur[q];
        hi = a * hi + b * hr + ui[q];
        hr = nhr;
        out_r[q] = hr;
        out_i[q] = hi;
    }
}
