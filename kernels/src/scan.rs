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
