//! Anchored exponential-decay scans: the Laplace-kernel sweeps with every decay computed
//! from coordinates, so that no chain multiplies more than a chunk's worth of rounded
//! factors (`specs/laplace-engine.md` §2; issue 10, "accuracy at scale").
//!
//! On sorted coordinates `z_0 ≤ … ≤ z_{N−1}` cut into segments (rows) with one rate `r`
//! per segment, the forward scan is
//!
//! ```text
//! h_k = Σ_{i ≤ k, seg i = seg k} f(z_k − z_i) u_i,        f(δ) = e^{−r δ}   (or [δ = 0])
//! g_k = Σ_{i ≤ k, seg i = seg k} (z_k − z_i) f(z_k − z_i) u_i   (first moment, optional)
//! ```
//!
//! and the reverse scan mirrors it (`i ≥ k`, distance `z_i − z_k`). A state `(h, g)` held at
//! coordinate `z_p` moves to `z_k` (distance `δ ≥ 0`) as `(f h, f (g + δ h))`, so states at
//! any two coordinates combine with one `exp` of their distance.
//!
//! **Hierarchy.** A level cuts its sequence into chunks of `C` ([`DSCAN_CHUNK`]):
//! [`dscan_aggregate_kernel()`] scans each chunk locally and writes the state at the chunk's
//! last element (in scan order) together with that element's coordinate and segment — a new
//! sequence `P = ⌈N/C⌉` long, scanned recursively by the host in the same way; then
//! [`dscan_apply_kernel()`] rescans each chunk locally and adds the neighbouring chunk's
//! inclusive state moved by `f(|z_k − Z_q|)`. The old formulation multiplied up to `N`
//! independently rounded `e^{−rΔ}` (error ∝ N·ε); here every term reaches its output
//! through at most `C` local factors per level and one coordinate-computed factor per
//! level, so the relative error (to the scan of `|u|`) is `O(C · ⌈log_C N⌉ · ε)`: at
//! `C = 32`, ≲ 200 ε even at `N = 2^30`, and independent of how the gaps are spread.
//!
//! Segments: at level 0 `seg k = ⌊k / seg_len⌋` (rows of `seg_len`); above, the segment of
//! each aggregate is stored. Decays across a segment boundary are 0. Tie kind
//! (`tie = true`): `f(δ) = [δ = 0]` — the mass of the elements tied with k (no moment).
//!
//! Split coordinates (`with_lo`): each coordinate is `z + z_lo` (an f64 value as two f32s,
//! `lapis_ops::split_f64`); distances are `(z_k − z_i) + (lo_k − lo_i)`, so anchors closer
//! than the f32 spacing of their magnitude stay apart (10⁹ anchors in one range, or time
//! stamps far from 0).
//!
//! Extra factors (`with_q`): the decay into element k (from its predecessor in scan order)
//! is `f(δ)·q_k`, so the weight of `u_i` in `h_k` is `f(|z_k − z_i|)·Π q_j` over the
//! elements after i up to k. The coordinate part stays one `exp`; the `q` products are
//! formed per chunk (`agg_q`) and level by level, as in the generic scan (≤ 32 rounded
//! products per level). The Kalman filter of REMIX's covariance uses it with
//! `q = u/S`, so its `ρ = e^{−λΔ}` factors are never chained.
//!
//! Phased (`phased`): the rate of each segment is complex, `a + ib`, and
//! `f(δ) = e^{−aδ}(cos bδ − i sin bδ)`; values and states are complex (planar `*_im`
//! arrays), combined by one complex-multiply helper. The same two kernels serve the real
//! and the complex scans (a comptime flag compiles the imaginary parts out of the real
//! one), so the phased Laplace operator has every feature of the real one, segments
//! included.

use cubecl::prelude::*;

use crate::complex::{cmul_im, cmul_re};

/// Chunk length of every level of the anchored scans.
pub const DSCAN_CHUNK: u32 = 32;

/// Segment of element `k` at this level.
#[cube]
fn seg_of(seg: &Array<u32>, k: u32, seg_len: u32, #[comptime] seg_from_len: bool) -> u32 {
    if comptime![seg_from_len] {
        k / seg_len
    } else {
        seg[k as usize]
    }
}

/// `|z_k − z_p|` from (hi, lo) pairs (lo ignored without `with_lo`).
#[cube]
fn dist(zk: f32, lk: f32, zp: f32, lp: f32, #[comptime] with_lo: bool) -> f32 {
    if comptime![with_lo] {
        ((zk - zp) + (lk - lp)).abs()
    } else {
        (zk - zp).abs()
    }
}

/// `f(δ)` for rate `r` (0 for `δ = +∞` or an overflowing `r δ`).
#[cube]
fn decay(delta: f32, r: f32, #[comptime] tie: bool) -> f32 {
    if comptime![tie] {
        select(delta == 0.0f32, 1.0f32, 0.0f32)
    } else {
        let f = (-(r * delta)).exp();
        // r·δ = 0·∞ gives NaN, which fails `f ≥ 0`: treat it as far away.
        select(f >= 0.0f32, f, 0.0f32)
    }
}

/// One level's local pass over chunk `p`, channel `ch`: the state after each element,
/// starting from nothing at the chunk's first element (in scan order). With `write`,
/// stores every state plus the carried-in neighbour state at its element; otherwise only
/// the last state, at `last_at`. With `phased` the rate of segment `s` is complex,
/// `rate[s] + i·rate_b[s]`, so is every state (`*_im` the imaginary parts) and
/// `f(δ) = e^{−rδ}(cos bδ − i sin bδ)`; without it the `*_im` arrays are never touched.
#[cube]
#[allow(clippy::too_many_arguments)]
fn local_pass(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    rate_b: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    u_im: &Array<f32>,
    ug: &Array<f32>,
    ug_im: &Array<f32>,
    out_h: &mut Array<f32>,
    out_h_im: &mut Array<f32>,
    out_g: &mut Array<f32>,
    out_g_im: &mut Array<f32>,
    start: u32,
    end: u32,
    ch: u32,
    c: u32,
    seg_len: u32,
    carry_h: f32,
    carry_hi: f32,
    carry_g: f32,
    carry_gi: f32,
    carry_z: f32,
    carry_lo: f32,
    carry_seg: u32,
    has_carry: bool,
    last_at: u32,
    #[comptime] reverse: bool,
    #[comptime] moment: bool,
    #[comptime] tie: bool,
    #[comptime] seg_from_len: bool,
    #[comptime] ug_zero: bool,
    #[comptime] with_q: bool,
    #[comptime] with_lo: bool,
    #[comptime] phased: bool,
    #[comptime] write: bool,
) {
    let mut h = 0.0f32;
    let mut hi = 0.0f32;
    let mut g = 0.0f32;
    let mut gi = 0.0f32;
    let mut zp = 0.0f32;
    let mut lp = 0.0f32;
    let mut sp = 0u32;
    // Running product of the extra factors from the chunk's first element to k.
    let mut qq = 1.0f32;
    let len = end - start;
    for i in 0..len {
        let mut k = start + i;
        if comptime![reverse] {
            k = end - 1 - i;
        }
        let zk = z[k as usize];
        let mut lk = 0.0f32;
        if comptime![with_lo] {
            lk = z_lo[k as usize];
        }
        let sk = seg_of(seg, k, seg_len, seg_from_len);
        let r = rate[sk as usize];
        let mut rb = 0.0f32;
        if comptime![phased] {
            rb = rate_b[sk as usize];
        }
        let q = (k * c + ch) as usize;
        let uk = u[q];
        let mut uik = 0.0f32;
        if comptime![phased] {
            uik = u_im[q];
        }
        let mut ugk = 0.0f32;
        let mut ugik = 0.0f32;
        if comptime![moment && !ug_zero] {
            ugk = ug[q];
            if comptime![phased] {
                ugik = ug_im[q];
            }
        }
        let mut qk = 1.0f32;
        if comptime![with_q] {
            qk = q_in[k as usize];
            qq *= qk;
        }
        if i == 0 || sk != sp {
            h = uk;
            hi = uik;
            g = ugk;
            gi = ugik;
        } else {
            let delta = dist(zk, lk, zp, lp, with_lo);
            let m = decay(delta, r, tie) * qk;
            if comptime![phased] {
                let fr = m * (rb * delta).cos();
                let fi = -m * (rb * delta).sin();
                if comptime![moment] {
                    // f · (g + δ h)
                    let yr = g + delta * h;
                    let yi = gi + delta * hi;
                    let live = m > 0.0f32;
                    g = select(live, cmul_re(fr, fi, yr, yi), 0.0f32) + ugk;
                    gi = select(live, cmul_im(fr, fi, yr, yi), 0.0f32) + ugik;
                }
                let nh = cmul_re(fr, fi, h, hi) + uk;
                hi = cmul_im(fr, fi, h, hi) + uik;
                h = nh;
            } else {
                if comptime![moment] {
                    let moved = select(m > 0.0f32, m * (g + delta * h), 0.0f32);
                    g = moved + ugk;
                }
                h = m * h + uk;
            }
        }
        zp = zk;
        lp = lk;
        sp = sk;
        if comptime![write] {
            let mut oh = h;
            let mut ohi = hi;
            let mut og = g;
            let mut ogi = gi;
            if has_carry && sk == carry_seg {
                let delta = dist(zk, lk, carry_z, carry_lo, with_lo);
                let m = decay(delta, r, tie) * qq;
                if comptime![phased] {
                    let fr = m * (rb * delta).cos();
                    let fi = -m * (rb * delta).sin();
                    oh += cmul_re(fr, fi, carry_h, carry_hi);
                    ohi += cmul_im(fr, fi, carry_h, carry_hi);
                    if comptime![moment] {
                        let yr = carry_g + delta * carry_h;
                        let yi = carry_gi + delta * carry_hi;
                        let live = m > 0.0f32;
                        og += select(live, cmul_re(fr, fi, yr, yi), 0.0f32);
                        ogi += select(live, cmul_im(fr, fi, yr, yi), 0.0f32);
                    }
                } else {
                    oh += m * carry_h;
                    if comptime![moment] {
                        og += select(m > 0.0f32, m * (carry_g + delta * carry_h), 0.0f32);
                    }
                }
            }
            out_h[q] = oh;
            if comptime![phased] {
                out_h_im[q] = ohi;
            }
            if comptime![moment] {
                out_g[q] = og;
                if comptime![phased] {
                    out_g_im[q] = ogi;
                }
            }
        }
    }
    if comptime![!write] {
        out_h[last_at as usize] = h;
        if comptime![phased] {
            out_h_im[last_at as usize] = hi;
        }
        if comptime![moment] {
            out_g[last_at as usize] = g;
            if comptime![phased] {
                out_g_im[last_at as usize] = gi;
            }
        }
    }
}

/// Level pass 1: for each (chunk `p`, channel) the local scan's final state, stored at
/// `p·c + ch` in `agg_h` (`agg_g` with `moment`; the `*_im` parts with `phased`), and
/// (channel 0) the coordinate and the segment of the chunk's last element in scan order
/// (`agg_z[p]`, `agg_seg[p]`).
#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
pub fn dscan_aggregate_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    rate_b: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    u_im: &Array<f32>,
    ug: &Array<f32>,
    ug_im: &Array<f32>,
    agg_z: &mut Array<f32>,
    agg_zlo: &mut Array<f32>,
    agg_seg: &mut Array<u32>,
    agg_q: &mut Array<f32>,
    agg_h: &mut Array<f32>,
    agg_h_im: &mut Array<f32>,
    agg_g: &mut Array<f32>,
    agg_g_im: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    seg_len: u32,
    #[comptime] reverse: bool,
    #[comptime] moment: bool,
    #[comptime] tie: bool,
    #[comptime] seg_from_len: bool,
    #[comptime] ug_zero: bool,
    #[comptime] with_q: bool,
    #[comptime] with_lo: bool,
    #[comptime] phased: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    local_pass(
        z,
        z_lo,
        seg,
        rate,
        rate_b,
        q_in,
        u,
        u_im,
        ug,
        ug_im,
        agg_h,
        agg_h_im,
        agg_g,
        agg_g_im,
        start,
        end,
        ch,
        c,
        seg_len,
        0.0f32,
        0.0f32,
        0.0f32,
        0.0f32,
        0.0f32,
        0.0f32,
        0u32,
        false,
        unit,
        reverse,
        moment,
        tie,
        seg_from_len,
        ug_zero,
        with_q,
        with_lo,
        phased,
        false,
    );
    if comptime![with_q] {
        if ch == 0 {
            let mut prod = 1.0f32;
            for k in start..end {
                prod *= q_in[k as usize];
            }
            agg_q[p as usize] = prod;
        }
    }
    if ch == 0 {
        let mut last = end - 1;
        if comptime![reverse] {
            last = start;
        }
        agg_z[p as usize] = z[last as usize];
        if comptime![with_lo] {
            agg_zlo[p as usize] = z_lo[last as usize];
        }
        agg_seg[p as usize] = seg_of(seg, last, seg_len, seg_from_len);
    }
}

/// Level pass 2: rescans each chunk and adds the inclusive state of the neighbouring chunk
/// (`p − 1` forward, `p + 1` reverse; from the scanned aggregates `top_*`) moved to each
/// element by `f(|z_k − Z_q|)`. Without `has_top` (a level of one chunk) nothing is added.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn dscan_apply_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    rate_b: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    u_im: &Array<f32>,
    ug: &Array<f32>,
    ug_im: &Array<f32>,
    top_z: &Array<f32>,
    top_zlo: &Array<f32>,
    top_seg: &Array<u32>,
    top_h: &Array<f32>,
    top_h_im: &Array<f32>,
    top_g: &Array<f32>,
    top_g_im: &Array<f32>,
    out_h: &mut Array<f32>,
    out_h_im: &mut Array<f32>,
    out_g: &mut Array<f32>,
    out_g_im: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    seg_len: u32,
    #[comptime] reverse: bool,
    #[comptime] moment: bool,
    #[comptime] tie: bool,
    #[comptime] seg_from_len: bool,
    #[comptime] ug_zero: bool,
    #[comptime] with_q: bool,
    #[comptime] with_lo: bool,
    #[comptime] phased: bool,
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
    let mut has_carry = false;
    let mut ch_h = 0.0f32;
    let mut ch_hi = 0.0f32;
    let mut ch_g = 0.0f32;
    let mut ch_gi = 0.0f32;
    let mut ch_z = 0.0f32;
    let mut ch_lo = 0.0f32;
    let mut ch_s = 0u32;
    if comptime![has_top] {
        let mut q = p;
        if comptime![reverse] {
            has_carry = p + 1 < num_chunks;
            q = p + 1;
        } else {
            has_carry = p > 0;
            if p > 0 {
                q = p - 1;
            }
        }
        if has_carry {
            let o = (q * c + ch) as usize;
            ch_h = top_h[o];
            if comptime![phased] {
                ch_hi = top_h_im[o];
            }
            if comptime![moment] {
                ch_g = top_g[o];
                if comptime![phased] {
                    ch_gi = top_g_im[o];
                }
            }
            ch_z = top_z[q as usize];
            if comptime![with_lo] {
                ch_lo = top_zlo[q as usize];
            }
            ch_s = top_seg[q as usize];
        }
    }
    local_pass(
        z,
        z_lo,
        seg,
        rate,
        rate_b,
        q_in,
        u,
        u_im,
        ug,
        ug_im,
        out_h,
        out_h_im,
        out_g,
        out_g_im,
        start,
        end,
        ch,
        c,
        seg_len,
        ch_h,
        ch_hi,
        ch_g,
        ch_gi,
        ch_z,
        ch_lo,
        ch_s,
        has_carry,
        0u32,
        reverse,
        moment,
        tie,
        seg_from_len,
        ug_zero,
        with_q,
        with_lo,
        phased,
        true,
    );
}
