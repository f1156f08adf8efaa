//! First-order linear-recurrence scans with given decays, the generic engine behind
//! [`linear_scan`](../../lapis_ops/fn.linear_scan.html).
//!
//! Forward: `h_k = d_k · h_{k−1} + u_k` (`h_{−1} = 0`); reverse: `h_k = d_k · h_{k+1} + u_k`
//! (`h_N = 0`), for `k < N`, with `c` channels sharing the decays `d` (`u`, `h` are `[N, c]`
//! row-major). The pairs `(d, u)` compose associatively,
//! `(d₁, u₁) ∘ (d₂, u₂) = (d₁d₂, d₂u₁ + u₂)`, which is what makes a parallel scan possible
//! (Blelloch 1990, "Prefix sums and their applications"; `specs/laplace-engine.md` §2).
//!
//! Variant implemented here: a **hierarchical reduce-then-scan**, correct on every device
//! because no workgroup ever waits on another (lavapipe gives no forward-progress guarantee
//! between workgroups, so decoupled look-back is not safe there). A level cuts its sequence
//! into `P` chunks of `C` elements:
//! 1. [`scan_aggregate_kernel()`]: one unit per (chunk, channel) composes its chunk into one
//!    pair `(D_p, H_p)` = (product of decays, chunk scan from 0);
//! 2. the host scans the `P` pairs as a sequence of their own (the same two kernels, one
//!    level up), giving each chunk's inclusive value;
//! 3. [`scan_apply_kernel()`]: one unit per (chunk, channel) rescans its chunk from the
//!    neighbouring chunk's value and writes `h`.
//!
//! Work O(N·c) (inputs read twice), depth O(C·log_C N). Numerics: every output is reached
//! through at most `C` rounded products per level, `O(C log_C N)` in all — not `N`, as a
//! sequential carry over the chunks would be — so the f32 error of `h_k` is bounded by
//! `≈ 2·C·⌈log_C N⌉·ε·h̃_k` with `h̃` the scan of `(|d|, |u|)`, whatever `N`. (Decays that
//! are themselves rounded exponentials `e^{−λΔ}` still carry their own rounding into long
//! products; the Laplace sweeps use the anchored scans of
//! [`decay_scan`](crate::decay_scan), which compute every long-range decay from
//! coordinates.) When `|d| ≤ 1` nothing overflows.

use cubecl::prelude::*;

/// Level pass 1: `agg_d[p] = Π_{k∈p} d_k`, `agg_h[p·c + ch]` = the chunk's scan from 0.
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
    if ch == 0 {
        agg_d[p as usize] = dd;
    }
    agg_h[unit as usize] = h;
}

/// Index of the chunk whose inclusive value enters chunk `p` (`p − 1` forward, `p + 1`
/// reverse) and whether there is one.
#[cube]
fn neighbour(p: u32, num_chunks: u32, #[comptime] reverse: bool) -> u32 {
    if comptime![reverse] {
        select(p + 1 < num_chunks, p + 1, num_chunks)
    } else {
        select(p > 0, p - 1, num_chunks)
    }
}

/// Level pass 2: rescans each chunk from the neighbouring chunk's inclusive value
/// (`top_h`, the scanned aggregates; none when `has_top` is false) and writes `h`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn scan_apply_kernel(
    d: &Array<f32>,
    u: &Array<f32>,
    top_h: &Array<f32>,
    h_out: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
    #[comptime] has_top: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut h = 0.0f32;
    if comptime![has_top] {
        let q = neighbour(p, num_chunks, reverse);
        if q < num_chunks {
            h = top_h[(q * c + ch) as usize];
        }
    }
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

/// Complex level pass 1: like [`scan_aggregate_kernel()`] with complex decays `d = dr + i·di`
/// and values `u = ur + i·ui` (planar real/imaginary arrays).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn cscan_aggregate_kernel(
    dr: &Array<f32>,
    di: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    agg_dr: &mut Array<f32>,
    agg_di: &mut Array<f32>,
    agg_hr: &mut Array<f32>,
    agg_hi: &mut Array<f32>,
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
    if ch == 0 {
        agg_dr[p as usize] = pr;
        agg_di[p as usize] = pi;
    }
    agg_hr[unit as usize] = hr;
    agg_hi[unit as usize] = hi;
}

/// Complex level pass 2: rescans each chunk from the neighbouring chunk's inclusive value
/// (`top_hr`, `top_hi`), writing `hr`, `hi`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn cscan_apply_kernel(
    dr: &Array<f32>,
    di: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    top_hr: &Array<f32>,
    top_hi: &Array<f32>,
    out_r: &mut Array<f32>,
    out_i: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    #[comptime] reverse: bool,
    #[comptime] has_top: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut hr = 0.0f32;
    let mut hi = 0.0f32;
    if comptime![has_top] {
        let q = neighbour(p, num_chunks, reverse);
        if q < num_chunks {
            hr = top_hr[(q * c + ch) as usize];
            hi = top_hi[(q * c + ch) as usize];
        }
    }
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
