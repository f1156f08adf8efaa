//! The exact Laplace-kernel operator `Y[j, :] = Σ_i e^{−λ|t_j − s_i|} V[i, :]` by sweeps
//! (`specs/laplace-engine.md` §2; the LAPLEX/REMIX engine): the kernels around the sweeps.
//!
//! The caller argsorts the merged anchors `z = [s; t]` stably (sources before targets at
//! ties) and these kernels work on the sorted sequence `z_0 ≤ … ≤ z_{N−1}`, `N = n + m`,
//! with `perm[k] < n` for source `perm[k]` and `perm[k] − n` for a target:
//! - [`laplace_scatter_kernel()`]: `u[k, :] = V[perm[k], :]` at sources, 0 at targets.
//! - The sweeps are anchored decay scans ([`crate::decay_scan`], every decay computed from
//!   coordinates): `L_k = Σ_{i ≤ k} e^{−λ(z_k − z_i)} u_i`,
//!   `Q_k = Σ_{i ≥ k} e^{−λ(z_i − z_k)} u_i` (then `R_k = e^{−λ(z_{k+1} − z_k)} Q_{k+1}`, the
//!   sources strictly right of k), and for gradients the first moments
//!   `gL_k = Σ_{i ≤ k} (z_k − z_i) e^{…} u_i`,
//!   `gQ_k = Σ_{i ≥ k} (z_i − z_k) e^{…} u_i`, so that
//!   `gL_k + gQ_k = Σ_i |z_k − s_i| e^{−λ|z_k − s_i|} u_i`.
//! - [`laplace_gather_kernel()`]: `Y[j] = L_k + R_k` at the target's position k.
//! - [`laplace_weighted_kernel()`]: per target, `Σ_c W[j, c]·(L^< − R)[k, c]` (the signed
//!   sum behind ∂/∂t with `sign(0) = 0`: tied sources count on neither side) and
//!   `Σ_c W[j, c]·(gL + gQ)[k, c]` (behind ∂/∂λ). `L^<_k = e^{−λ(z_k − z_a)} L_a` holds the
//!   sources strictly left of z_k, from the last position `a` with `z_a < z_k`: simply
//!   `L_k` unless k sits in a run of ties (then a short walk back, and a bisection past 16
//!   tied positions): sources tied with
//!   a target precede it in the merge, so the ones tied with k lie in `(a, k]` and nowhere
//!   else, and `R_k` holds none of them.
//!
//! The phased operator (complex λ = a + i·b) runs on the same kernels: a comptime `phased`
//! flag adds the imaginary parts (planar `*_im` arrays) and
//! `e^{−λδ} = e^{−aδ}(cos bδ − i sin bδ)`, combined by the one complex-multiply helper of
//! [`crate::complex`].

// Row ends are tested as `(k + 1) % seg != 0`: `u32::is_multiple_of` is not a function the
// cube macro expands.
#![allow(clippy::manual_is_multiple_of)]

use cubecl::prelude::*;

use crate::complex::{cmul_im, cmul_re};

/// The sorted merge of the swapped operator `K(s, t)` from that of `K(t, s)`, without a
/// second sort: the sequence reversed with its coordinates negated, `z'_k = −z_{N−1−k}`
/// (ascending again; every difference exactly the original's), and the indices relabelled
/// from `[s; t]` to `[t; s]` (`i < n_src` ↦ `N − n_src + i`, else `i − n_src`). Reversing
/// turns "sources before targets" at ties into "the new sources before the new targets",
/// so the swapped sweeps keep the tie convention; signed terms change sign with the
/// coordinates (the caller flips them back).
///
/// With rows (`seg` per row, indices within the row), each row is reversed on its own.
#[cube(launch)]
pub fn laplace_swap_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    z_out: &mut Array<f32>,
    perm_out: &mut Array<u32>,
    n_src: u32,
    total: u32,
    seg: u32,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= total {
        terminate!();
    }
    let row = k / seg;
    let j = row * seg + (seg - 1 - k % seg);
    z_out[k as usize] = -z[j as usize];
    let p = perm[j as usize];
    if p < n_src {
        perm_out[k as usize] = seg - n_src + p;
    } else {
        perm_out[k as usize] = p - n_src;
    }
}

/// The whole merge of one short operator per cube (row `CUBE_POS`, `N = n + m ≤ 4096`
/// anchors): loads `[s_r; t_r]` as order-preserving keys with their positions, flags a
/// non-finite source or target (`flags[slot_src]`, `flags[slot_tgt]`; see
/// [`crate::checks`]), sorts the pairs by the bitonic network of
/// [`crate::sort_rows`] (stable, so sources before targets at ties), and writes the sorted
/// coordinates `z`, the positions `perm` (within the row) and the scattered values
/// `u[k, :] = V[r, perm[k], :]` at sources, 0 at targets — what the concatenation, the
/// check, the row sort and [`laplace_scatter_kernel()`] compute, in one launch.
/// `log_len = ⌈log₂ N⌉`; requires `2 ≤ N ≤ 4096` and 32 KiB of shared memory.
#[cube(launch)]
#[allow(clippy::too_many_arguments, unused_assignments)]
pub fn laplace_merge_kernel(
    src: &Array<f32>,
    tgt: &Array<f32>,
    values: &Array<f32>,
    z: &mut Array<f32>,
    perm: &mut Array<u32>,
    u: &mut Array<f32>,
    flags: &mut Array<u32>,
    rows: u32,
    n_src: u32,
    m: u32,
    c: u32,
    log_len: u32,
    slot_src: u32,
    slot_tgt: u32,
) {
    let row = CUBE_POS as u32;
    if row >= rows {
        terminate!();
    }
    let mut key = SharedMemory::<u32>::new(4096usize);
    let mut col = SharedMemory::<u32>::new(4096usize);
    let seg = n_src + m;
    let len = 1u32 << log_len;
    let mut i = UNIT_POS;
    while i < len {
        let mut kk = 0xFFFF_FFFFu32;
        let mut cc = 0xFFFF_FFFFu32;
        if i < seg {
            let mut x = 0.0f32;
            let mut slot = slot_tgt;
            if i < n_src {
                x = src[(row * n_src + i) as usize];
                slot = slot_src;
            } else {
                x = tgt[(row * m + i - n_src) as usize];
            }
            if x.is_nan() || x.is_inf() {
                flags[slot as usize] = 1u32;
            }
            kk = crate::sort::encode_key(x);
            cc = i;
        }
        key[i as usize] = kk;
        col[i as usize] = cc;
        i += CUBE_DIM;
    }
    sync_cube();
    crate::sort_rows::bitonic_network(&mut key, &mut col, len);
    let base = row * seg;
    let mut j = UNIT_POS;
    while j < seg {
        z[(base + j) as usize] = crate::sort::decode_key(key[j as usize]);
        perm[(base + j) as usize] = col[j as usize];
        j += CUBE_DIM;
    }
    let mut w = UNIT_POS;
    while w < seg * c {
        let p = col[(w / c) as usize];
        let mut v = 0.0f32;
        if p < n_src {
            v = values[((row * n_src + p) * c + w % c) as usize];
        }
        u[(base * c + w) as usize] = v;
        w += CUBE_DIM;
    }
}

/// `u[k, :] = V[perm[k], :]` for sources (`perm[k] < n_src`), 0 for targets. With rows
/// (independent operators sorted row by row, `seg = n_src + m` per row, `perm` holding
/// indices within the row), row `r` reads `V[r, perm[k], :]`; one operator is `seg = total`.
#[cube(launch)]
pub fn laplace_scatter_kernel(
    perm: &Array<u32>,
    values: &Array<f32>,
    u: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    seg: u32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let r = k / seg;
    let src = perm[k as usize];
    let mut v = 0.0f32;
    if src < n_src {
        v = values[((r * n_src + src) * c + ch) as usize];
    }
    u[unit as usize] = v;
}

/// The decay `e^{−λ(z_{k+1} − z_k)}` from position `k` to the next one in its row, as
/// `(re, im)` parts combined by the caller: `λ = a` (real) or `a + ib` (`phased`,
/// `e^{−aδ}(cos bδ − i sin bδ)`), the gap from split coordinates with `with_lo`. Callers only
/// ask within a row (`(k + 1) % seg != 0`).
#[cube]
fn next_gap(z: &Array<f32>, z_lo: &Array<f32>, k: u32, #[comptime] with_lo: bool) -> f32 {
    let k1 = (k + 1) as usize;
    let mut gap = z[k1] - z[k as usize];
    if comptime![with_lo] {
        // Split coordinates: the gap is (hi + lo) − (hi + lo).
        gap = (z[k1] - z[k as usize]) + (z_lo[k1] - z_lo[k as usize]);
    }
    gap
}

/// `Y[j, ch] = L[k, ch] + e^{−λ(z_{k+1} − z_k)} Q[k+1, ch]` for every target
/// `j = perm[k] − n_src`. With rows (`seg` per row, as in [`laplace_scatter_kernel()`]), row
/// `r` writes `Y[r, j, ch]` at its own rate, and nothing crosses a row's end. Real
/// (`λ_r = rate_a[r]`) or `phased` (`λ_r = rate_a[r] + i·rate_b[r]`: complex states and
/// outputs, planar `*_im`; without `phased` those arrays are never touched).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn laplace_gather_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    perm: &Array<u32>,
    l: &Array<f32>,
    l_im: &Array<f32>,
    q: &Array<f32>,
    q_im: &Array<f32>,
    y: &mut Array<f32>,
    y_im: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    rate_a: &Array<f32>,
    rate_b: &Array<f32>,
    seg: u32,
    #[comptime] with_lo: bool,
    #[comptime] phased: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    gather_unit(
        z, z_lo, perm, l, l_im, q, q_im, y, y_im, unit, n_src, c, rate_a, rate_b, seg, with_lo,
        phased,
    );
}

/// One `(position, channel)` unit of [`laplace_gather_kernel()`]: writes `Y` when the
/// position `unit / c` holds a target.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn gather_unit(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    perm: &Array<u32>,
    l: &Array<f32>,
    l_im: &Array<f32>,
    q: &Array<f32>,
    q_im: &Array<f32>,
    y: &mut Array<f32>,
    y_im: &mut Array<f32>,
    unit: u32,
    n_src: u32,
    c: u32,
    rate_a: &Array<f32>,
    rate_b: &Array<f32>,
    seg: u32,
    #[comptime] with_lo: bool,
    #[comptime] phased: bool,
) {
    let k = unit / c;
    let ch = unit % c;
    let row = k / seg;
    let p = perm[k as usize];
    if p >= n_src {
        let mut rr = 0.0f32;
        let mut ri = 0.0f32;
        if (k + 1) % seg != 0 {
            let gap = next_gap(z, z_lo, k, with_lo);
            let m = (-(rate_a[row as usize] * gap)).exp();
            let x = q[(unit + c) as usize];
            if comptime![phased] {
                let b = rate_b[row as usize];
                let fr = m * (b * gap).cos();
                let fi = -m * (b * gap).sin();
                let xi = q_im[(unit + c) as usize];
                rr = cmul_re(fr, fi, x, xi);
                ri = cmul_im(fr, fi, x, xi);
            } else {
                rr = m * x;
            }
        }
        let o = ((row * (seg - n_src) + p - n_src) * c + ch) as usize;
        y[o] = l[unit as usize] + rr;
        if comptime![phased] {
            y_im[o] = l_im[unit as usize] + ri;
        }
    }
}

/// Per target `j` at position `k`, with weights `W[j, c]` (complex with `phased`) and
/// `S = Σ_c W·(L^< − R)[k, c]` (module docs): `signed[j] = scale·Re(λ·S)` (the anchor gradient with
/// `scale = ±1`; for real λ simply `scale·λ·S`), and `moment[j] = Σ_c W·(gL + gQ)[k, c]`
/// (behind ∂/∂λ; only with `with_moment`; complex, planar `[m, 2]`, with `phased`). Rows
/// and rates as in [`laplace_gather_kernel()`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn laplace_weighted_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    l: &Array<f32>,
    l_im: &Array<f32>,
    q: &Array<f32>,
    q_im: &Array<f32>,
    gl: &Array<f32>,
    gl_im: &Array<f32>,
    gq: &Array<f32>,
    gq_im: &Array<f32>,
    w: &Array<f32>,
    w_im: &Array<f32>,
    signed: &mut Array<f32>,
    moment: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    rate_a: &Array<f32>,
    rate_b: &Array<f32>,
    scale: f32,
    seg: u32,
    #[comptime] with_moment: bool,
    #[comptime] phased: bool,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= total {
        terminate!();
    }
    let row = k / seg;
    let ra = rate_a[row as usize];
    let mut rb = 0.0f32;
    if comptime![phased] {
        rb = rate_b[row as usize];
    }
    let p = perm[k as usize];
    if p >= n_src {
        let j = row * (seg - n_src) + p - n_src;
        let has_next = (k + 1) % seg != 0;
        let mut fr = 0.0f32;
        let mut fi = 0.0f32;
        if has_next {
            let gap = z[(k + 1) as usize] - z[k as usize];
            let m = (-(ra * gap)).exp();
            fr = m;
            if comptime![phased] {
                fr = m * (rb * gap).cos();
                fi = -m * (rb * gap).sin();
            }
        }
        // The sources strictly left of the target's coordinate: the forward sweep at the
        // last position `a` with z_a < z_k, moved to z_k.
        let start = row * seg;
        let zk = z[k as usize];
        // Without a tie at k (z_{k−1} < z_k, or k first in its row) no source is tied with
        // the target, so L^< = L_k: factor 1 at a = k, no exp.
        let mut a = k;
        let mut has_left = true;
        let mut lr = 1.0f32;
        let mut li = 0.0f32;
        if k > start && z[(k - 1) as usize] >= zk {
            // In a run of ties: walk back over it, and bisect on [start, i) only past 16
            // tied positions (a long run costs log n, not its length).
            let floor = k - min(k - start, 17u32);
            let mut i = k - 1u32;
            loop {
                if i <= floor || z[i as usize] < zk {
                    break;
                }
                i -= 1u32;
            }
            has_left = false;
            if z[i as usize] < zk {
                a = i;
                has_left = true;
            } else if i > start {
                let mut lo = start;
                let mut hi = i;
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if z[mid as usize] < zk {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                if lo > start {
                    a = lo - 1;
                    has_left = true;
                }
            }
            if has_left {
                let gap = zk - z[a as usize];
                let m = (-(ra * gap)).exp();
                lr = m;
                if comptime![phased] {
                    lr = m * (rb * gap).cos();
                    li = -m * (rb * gap).sin();
                }
            }
        }
        let mut sr = 0.0f32;
        let mut si = 0.0f32;
        let mut mr = 0.0f32;
        let mut mi = 0.0f32;
        for ch in 0..c {
            let qa = (a * c + ch) as usize;
            let qk = k * c + ch;
            let wi_ = (j * c + ch) as usize;
            if comptime![phased] {
                let mut rr = 0.0f32;
                let mut ri = 0.0f32;
                if has_next {
                    let x = q[(qk + c) as usize];
                    let y = q_im[(qk + c) as usize];
                    rr = cmul_re(fr, fi, x, y);
                    ri = cmul_im(fr, fi, x, y);
                }
                let mut pr = 0.0f32;
                let mut pi = 0.0f32;
                if has_left {
                    pr = cmul_re(lr, li, l[qa], l_im[qa]);
                    pi = cmul_im(lr, li, l[qa], l_im[qa]);
                }
                let xr = pr - rr;
                let xi = pi - ri;
                let a = w[wi_];
                let b = w_im[wi_];
                sr += cmul_re(a, b, xr, xi);
                si += cmul_im(a, b, xr, xi);
                if comptime![with_moment] {
                    let gr = gl[qk as usize] + gq[qk as usize];
                    let gi = gl_im[qk as usize] + gq_im[qk as usize];
                    mr += cmul_re(a, b, gr, gi);
                    mi += cmul_im(a, b, gr, gi);
                }
            } else {
                let mut r = 0.0f32;
                if has_next {
                    r = fr * q[(qk + c) as usize];
                }
                let mut left = 0.0f32;
                if has_left {
                    left = lr * l[qa];
                }
                let wv = w[wi_];
                sr += wv * (left - r);
                if comptime![with_moment] {
                    mr += wv * (gl[qk as usize] + gq[qk as usize]);
                }
            }
        }
        if comptime![phased] {
            signed[j as usize] = scale * (ra * sr - rb * si);
            if comptime![with_moment] {
                moment[(j * 2) as usize] = mr;
                moment[(j * 2 + 1) as usize] = mi;
            }
        } else {
            signed[j as usize] = scale * ra * sr;
            if comptime![with_moment] {
                moment[j as usize] = mr;
            }
        }
    }
}

/// A phased head's output: `y = Re(e^{iφ}(yr + i·yi)) = cos φ·yr − sin φ·yi`, `φ = phi[0]`.
/// With rows of `seg` elements, row `r` uses `phi[r]`.
#[cube(launch)]
pub fn phase_real_kernel(
    yr: &Array<f32>,
    yi: &Array<f32>,
    phi: &Array<f32>,
    y: &mut Array<f32>,
    n: u32,
    seg: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i >= n {
        terminate!();
    }
    let p = phi[(i / seg) as usize];
    y[i as usize] = p.cos() * yr[i as usize] - p.sin() * yi[i as usize];
}

/// The VJP of [`phase_real_kernel()`] for `ȳ = g`: `ḡr = cos φ·g`, `ḡi = −sin φ·g`, and the
/// per-element terms of `φ̄ = Σ g·(−sin φ·yr − cos φ·yi)` (summed by the caller).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn phase_real_backward_kernel(
    g: &Array<f32>,
    yr: &Array<f32>,
    yi: &Array<f32>,
    phi: &Array<f32>,
    g_re: &mut Array<f32>,
    g_im: &mut Array<f32>,
    dphi: &mut Array<f32>,
    n: u32,
    seg: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i >= n {
        terminate!();
    }
    let p = phi[(i / seg) as usize];
    let c = p.cos();
    let s = p.sin();
    let gv = g[i as usize];
    g_re[i as usize] = c * gv;
    g_im[i as usize] = -s * gv;
    dphi[i as usize] = -gv * (s * yr[i as usize] + c * yi[i as usize]);
}
