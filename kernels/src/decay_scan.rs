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

use cubecl::prelude::*;

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
/// the last state, at `last_at`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn local_pass(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    ug: &Array<f32>,
    out_h: &mut Array<f32>,
    out_g: &mut Array<f32>,
    start: u32,
    end: u32,
    ch: u32,
    c: u32,
    seg_len: u32,
    carry_h: f32,
    carry_g: f32,
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
    #[comptime] write: bool,
) {
    let mut h = 0.0f32;
    let mut g = 0.0f32;
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
        let q = (k * c + ch) as usize;
        let uk = u[q];
        let mut ugk = 0.0f32;
        if comptime![moment && !ug_zero] {
            ugk = ug[q];
        }
        let mut qk = 1.0f32;
        if comptime![with_q] {
            qk = q_in[k as usize];
            qq *= qk;
        }
        if i == 0 || sk != sp {
            h = uk;
            g = ugk;
        } else {
            let delta = dist(zk, lk, zp, lp, with_lo);
            let f = decay(delta, r, tie) * qk;
            if comptime![moment] {
                let moved = select(f > 0.0f32, f * (g + delta * h), 0.0f32);
                g = moved + ugk;
            }
            h = f * h + uk;
        }
        zp = zk;
        lp = lk;
        sp = sk;
        if comptime![write] {
            let mut oh = h;
            let mut og = g;
            if has_carry && sk == carry_seg {
                let delta = dist(zk, lk, carry_z, carry_lo, with_lo);
                let f = decay(delta, r, tie) * qq;
                oh += f * carry_h;
                if comptime![moment] {
                    og += select(f > 0.0f32, f * (carry_g + delta * carry_h), 0.0f32);
                }
            }
            out_h[q] = oh;
            if comptime![moment] {
                out_g[q] = og;
            }
        }
    }
    if comptime![!write] {
        out_h[last_at as usize] = h;
        if comptime![moment] {
            out_g[last_at as usize] = g;
        }
    }
}

/// Level pass 1: for each (chunk `p`, channel) the local scan's final state, stored at
/// `p·c + ch` in `agg_h` (`agg_g` with `moment`), and (channel 0) the coordinate and the
/// segment of the chunk's last element in scan order (`agg_z[p]`, `agg_seg[p]`).
#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
pub fn dscan_aggregate_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    ug: &Array<f32>,
    agg_z: &mut Array<f32>,
    agg_zlo: &mut Array<f32>,
    agg_seg: &mut Array<u32>,
    agg_q: &mut Array<f32>,
    agg_h: &mut Array<f32>,
    agg_g: &mut Array<f32>,
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
        q_in,
        u,
        ug,
        agg_h,
        agg_g,
        start,
        end,
        ch,
        c,
        seg_len,
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
    q_in: &Array<f32>,
    u: &Array<f32>,
    ug: &Array<f32>,
    top_z: &Array<f32>,
    top_zlo: &Array<f32>,
    top_seg: &Array<u32>,
    top_h: &Array<f32>,
    top_g: &Array<f32>,
    out_h: &mut Array<f32>,
    out_g: &mut Array<f32>,
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
    let mut ch_g = 0.0f32;
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
            ch_h = top_h[(q * c + ch) as usize];
            if comptime![moment] {
                ch_g = top_g[(q * c + ch) as usize];
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
        q_in,
        u,
        ug,
        out_h,
        out_g,
        start,
        end,
        ch,
        c,
        seg_len,
        ch_h,
        ch_g,
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
        true,
    );
}

/// Complex (phased) local pass: `f(δ) = e^{−(a + ib)δ}` with one segment; states `(h, g)`
/// complex, planar. Writes like [`local_pass`]; the carried state is `(c_hr, c_hi, c_gr,
/// c_gi)` at `carry_z`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn clocal_pass(
    z: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    ugr: &Array<f32>,
    ugi: &Array<f32>,
    oh_r: &mut Array<f32>,
    oh_i: &mut Array<f32>,
    og_r: &mut Array<f32>,
    og_i: &mut Array<f32>,
    start: u32,
    end: u32,
    ch: u32,
    c: u32,
    a: f32,
    b: f32,
    c_hr: f32,
    c_hi: f32,
    c_gr: f32,
    c_gi: f32,
    carry_z: f32,
    has_carry: bool,
    last_at: u32,
    #[comptime] reverse: bool,
    #[comptime] moment: bool,
    #[comptime] ug_zero: bool,
    #[comptime] write: bool,
) {
    let mut hr = 0.0f32;
    let mut hi = 0.0f32;
    let mut gr = 0.0f32;
    let mut gi = 0.0f32;
    let mut zp = 0.0f32;
    let len = end - start;
    for i in 0..len {
        let mut k = start + i;
        if comptime![reverse] {
            k = end - 1 - i;
        }
        let zk = z[k as usize];
        let q = (k * c + ch) as usize;
        let mut xr = 0.0f32;
        let mut xi = 0.0f32;
        if comptime![moment && !ug_zero] {
            xr = ugr[q];
            xi = ugi[q];
        }
        if i == 0 {
            hr = ur[q];
            hi = ui[q];
            gr = xr;
            gi = xi;
        } else {
            let delta = (zk - zp).abs();
            let m = (-(a * delta)).exp();
            let fr = m * (b * delta).cos();
            let fi = -m * (b * delta).sin();
            if comptime![moment] {
                // f · (g + δ h)
                let yr = gr + delta * hr;
                let yi = gi + delta * hi;
                let live = m > 0.0f32;
                gr = select(live, fr * yr - fi * yi, 0.0f32) + xr;
                gi = select(live, fr * yi + fi * yr, 0.0f32) + xi;
            }
            let nhr = fr * hr - fi * hi + ur[q];
            hi = fr * hi + fi * hr + ui[q];
            hr = nhr;
        }
        zp = zk;
        if comptime![write] {
            let mut vr = hr;
            let mut vi = hi;
            let mut wr = gr;
            let mut wi = gi;
            if has_carry {
                let delta = (zk - carry_z).abs();
                let m = (-(a * delta)).exp();
                let fr = m * (b * delta).cos();
                let fi = -m * (b * delta).sin();
                vr += fr * c_hr - fi * c_hi;
                vi += fr * c_hi + fi * c_hr;
                if comptime![moment] {
                    let yr = c_gr + delta * c_hr;
                    let yi = c_gi + delta * c_hi;
                    let live = m > 0.0f32;
                    wr += select(live, fr * yr - fi * yi, 0.0f32);
                    wi += select(live, fr * yi + fi * yr, 0.0f32);
                }
            }
            oh_r[q] = vr;
            oh_i[q] = vi;
            if comptime![moment] {
                og_r[q] = wr;
                og_i[q] = wi;
            }
        }
    }
    if comptime![!write] {
        oh_r[last_at as usize] = hr;
        oh_i[last_at as usize] = hi;
        if comptime![moment] {
            og_r[last_at as usize] = gr;
            og_i[last_at as usize] = gi;
        }
    }
}

/// Complex level pass 1 (see [`dscan_aggregate_kernel()`]): the state `(h, g)` at each
/// chunk's last element (planar `[P, c]` arrays), `agg_z[p]` its coordinate.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn cdscan_aggregate_kernel(
    z: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    ugr: &Array<f32>,
    ugi: &Array<f32>,
    agg_z: &mut Array<f32>,
    agg_hr: &mut Array<f32>,
    agg_hi: &mut Array<f32>,
    agg_gr: &mut Array<f32>,
    agg_gi: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    rate_a: &Array<f32>,
    rate_b: &Array<f32>,
    #[comptime] reverse: bool,
    #[comptime] moment: bool,
    #[comptime] ug_zero: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let a = rate_a[0];
    let b = rate_b[0];
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    clocal_pass(
        z, ur, ui, ugr, ugi, agg_hr, agg_hi, agg_gr, agg_gi, start, end, ch, c, a, b, 0.0f32,
        0.0f32, 0.0f32, 0.0f32, 0.0f32, false, unit, reverse, moment, ug_zero, false,
    );
    if ch == 0 {
        let mut last = end - 1;
        if comptime![reverse] {
            last = start;
        }
        agg_z[p as usize] = z[last as usize];
    }
}

/// Complex level pass 2 (see [`dscan_apply_kernel()`]); `top_*` are the scanned aggregates.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn cdscan_apply_kernel(
    z: &Array<f32>,
    ur: &Array<f32>,
    ui: &Array<f32>,
    ugr: &Array<f32>,
    ugi: &Array<f32>,
    top_z: &Array<f32>,
    top_hr: &Array<f32>,
    top_hi: &Array<f32>,
    top_gr: &Array<f32>,
    top_gi: &Array<f32>,
    oh_r: &mut Array<f32>,
    oh_i: &mut Array<f32>,
    og_r: &mut Array<f32>,
    og_i: &mut Array<f32>,
    n: u32,
    c: u32,
    chunk: u32,
    num_chunks: u32,
    rate_a: &Array<f32>,
    rate_b: &Array<f32>,
    #[comptime] reverse: bool,
    #[comptime] moment: bool,
    #[comptime] ug_zero: bool,
    #[comptime] has_top: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let a = rate_a[0];
    let b = rate_b[0];
    let p = unit / c;
    let ch = unit % c;
    let start = p * chunk;
    let end = min(start + chunk, n);
    let mut has_carry = false;
    let mut c_hr = 0.0f32;
    let mut c_hi = 0.0f32;
    let mut c_gr = 0.0f32;
    let mut c_gi = 0.0f32;
    let mut cz = 0.0f32;
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
            c_hr = top_hr[o];
            c_hi = top_hi[o];
            if comptime![moment] {
                c_gr = top_gr[o];
                c_gi = top_gi[o];
            }
            cz = top_z[q as usize];
        }
    }
    clocal_pass(
        z, ur, ui, ugr, ugi, oh_r, oh_i, og_r, og_i, start, end, ch, c, a, b, c_hr, c_hi, c_gr,
        c_gi, cz, has_carry, 0u32, reverse, moment, ug_zero, true,
    );
}
