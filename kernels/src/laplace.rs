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
//!   sources strictly right of k), and for gradients the tie mass `T_k` (sources tied with
//!   position k) and the first moments `gL_k = Σ_{i ≤ k} (z_k − z_i) e^{…} u_i`,
//!   `gQ_k = Σ_{i ≥ k} (z_i − z_k) e^{…} u_i`, so that
//!   `gL_k + gQ_k = Σ_i |z_k − s_i| e^{−λ|z_k − s_i|} u_i`.
//! - [`laplace_gather_kernel()`]: `Y[j] = L_k + R_k` at the target's position k.
//! - [`laplace_weighted_kernel()`]: per target, `Σ_c W[j, c]·(L − T − R)[k, c]` (the signed
//!   sum behind ∂/∂t with `sign(0) = 0`: tied sources cancel) and
//!   `Σ_c W[j, c]·(gL + gQ)[k, c]` (behind ∂/∂λ).
//!
//! The phased (complex λ = a + i·b) kernels do the same in complex arithmetic with
//! `e^{−λδ} = e^{−aδ}(cos bδ − i sin bδ)`.

// Row ends are tested as `(k + 1) % seg != 0`: `u32::is_multiple_of` is not a function the
// cube macro expands.
#![allow(clippy::manual_is_multiple_of)]

use cubecl::prelude::*;

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

/// `e^{−λ(z_{k+1} − z_k)}`, 0 past the end of k's row (of `seg` elements).
#[cube]
fn next_decay(z: &Array<f32>, k: u32, seg: u32, lambda: f32) -> f32 {
    let mut dn = 0.0f32;
    if (k + 1) % seg != 0 {
        dn = (-(lambda * (z[(k + 1) as usize] - z[k as usize]))).exp();
    }
    dn
}

/// Real and imaginary parts of `e^{−λ(z_{k+1} − z_k)}` for `λ = a + ib`, 0 past the end of
/// k's row (of `seg` elements).
#[cube]
fn next_decay_re(z: &Array<f32>, k: u32, seg: u32, a: f32, b: f32) -> f32 {
    let mut out = 0.0f32;
    if (k + 1) % seg != 0 {
        let gap = z[(k + 1) as usize] - z[k as usize];
        out = (-(a * gap)).exp() * (b * gap).cos();
    }
    out
}

/// See [`next_decay_re`].
#[cube]
fn next_decay_im(z: &Array<f32>, k: u32, seg: u32, a: f32, b: f32) -> f32 {
    let mut out = 0.0f32;
    if (k + 1) % seg != 0 {
        let gap = z[(k + 1) as usize] - z[k as usize];
        out = -(-(a * gap)).exp() * (b * gap).sin();
    }
    out
}

/// `Y[j, ch] = L[k, ch] + e^{−λ(z_{k+1} − z_k)} Q[k+1, ch]` for every target
/// `j = perm[k] − n_src`. With rows (`seg` per row, as in [`laplace_scatter_kernel()`]), row
/// `r` writes `Y[r, j, ch]` at its own rate `rate[r]`, and nothing crosses a row's end.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn laplace_gather_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    perm: &Array<u32>,
    l: &Array<f32>,
    q: &Array<f32>,
    y: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    rate: &Array<f32>,
    seg: u32,
    #[comptime] with_lo: bool,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let row = k / seg;
    let lambda = rate[row as usize];
    let p = perm[k as usize];
    if p >= n_src {
        let mut r = 0.0f32;
        if (k + 1) % seg != 0 {
            let mut dn = next_decay(z, k, seg, lambda);
            if comptime![with_lo] {
                // Split coordinates: the gap is (hi + lo) − (hi + lo).
                let k1 = (k + 1) as usize;
                let gap = (z[k1] - z[k as usize]) + (z_lo[k1] - z_lo[k as usize]);
                dn = (-(lambda * gap)).exp();
            }
            r = dn * q[(unit + c) as usize];
        }
        let m = seg - n_src;
        y[((row * m + p - n_src) * c + ch) as usize] = l[unit as usize] + r;
    }
}

/// Per target `j` at position `k`: `signed[j] = scale·λ·Σ_c W[j,c]·(L − T − R)[k,c]` (the
/// anchor gradient with `scale = ±1`) and `moment[j] = Σ_c W[j,c]·(gL + gQ)[k,c]` (moment
/// only when `with_moment`). `rate[0]` is λ.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn laplace_weighted_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    l: &Array<f32>,
    q: &Array<f32>,
    t: &Array<f32>,
    gl: &Array<f32>,
    gq: &Array<f32>,
    w: &Array<f32>,
    signed: &mut Array<f32>,
    moment: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    rate: &Array<f32>,
    scale: f32,
    seg: u32,
    #[comptime] with_moment: bool,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= total {
        terminate!();
    }
    let row = k / seg;
    let lambda = rate[row as usize];
    let p = perm[k as usize];
    if p >= n_src {
        let j = row * (seg - n_src) + p - n_src;
        let dn = next_decay(z, k, seg, lambda);
        let mut s = 0.0f32;
        let mut mo = 0.0f32;
        for ch in 0..c {
            let q_idx = k * c + ch;
            let mut r = 0.0f32;
            if (k + 1) % seg != 0 {
                r = dn * q[(q_idx + c) as usize];
            }
            let wv = w[(j * c + ch) as usize];
            s += wv * (l[q_idx as usize] - t[q_idx as usize] - r);
            if comptime![with_moment] {
                mo += wv * (gl[q_idx as usize] + gq[q_idx as usize]);
            }
        }
        signed[j as usize] = scale * lambda * s;
        if comptime![with_moment] {
            moment[j as usize] = mo;
        }
    }
}

/// Phased gather: `Y[j] = L_k + e^{−λ(z_{k+1} − z_k)} Q_{k+1}` in complex arithmetic,
/// planar outputs.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn laplace_gather_phased_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    lr: &Array<f32>,
    li: &Array<f32>,
    qr: &Array<f32>,
    qi: &Array<f32>,
    yr: &mut Array<f32>,
    yi: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    rate_a: &Array<f32>,
    rate_b: &Array<f32>,
    seg: u32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let row = k / seg;
    let ra = rate_a[row as usize];
    let rb = rate_b[row as usize];
    let p = perm[k as usize];
    if p >= n_src {
        let mut rr = 0.0f32;
        let mut ri = 0.0f32;
        if (k + 1) % seg != 0 {
            let a = next_decay_re(z, k, seg, ra, rb);
            let b = next_decay_im(z, k, seg, ra, rb);
            let x = qr[(unit + c) as usize];
            let y = qi[(unit + c) as usize];
            rr = a * x - b * y;
            ri = a * y + b * x;
        }
        let o = ((row * (seg - n_src) + p - n_src) * c + ch) as usize;
        yr[o] = lr[unit as usize] + rr;
        yi[o] = li[unit as usize] + ri;
    }
}

/// Phased weighted sums per target `j` at position `k`, with complex weights `w`: with
/// `S = Σ_c w·(L − T − R)`, `signed[j] = scale·Re(λ·S)` (`[m]`, the anchor gradient with
/// `scale = ±1`), and `moment[j] = Σ_c w·(gL + gQ)` (complex, planar `[m, 2]`: re, im).
/// `λ = rate_a[0] + i·rate_b[0]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn laplace_weighted_phased_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    lr: &Array<f32>,
    li: &Array<f32>,
    qr: &Array<f32>,
    qi: &Array<f32>,
    tr: &Array<f32>,
    ti: &Array<f32>,
    glr: &Array<f32>,
    gli: &Array<f32>,
    wr: &Array<f32>,
    wi: &Array<f32>,
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
) {
    let k = ABSOLUTE_POS as u32;
    if k >= total {
        terminate!();
    }
    let row = k / seg;
    let ra = rate_a[row as usize];
    let rb = rate_b[row as usize];
    let p = perm[k as usize];
    if p >= n_src {
        let j = row * (seg - n_src) + p - n_src;
        let dnr = next_decay_re(z, k, seg, ra, rb);
        let dni = next_decay_im(z, k, seg, ra, rb);
        let mut sr = 0.0f32;
        let mut si = 0.0f32;
        let mut mr = 0.0f32;
        let mut mi = 0.0f32;
        for ch in 0..c {
            let q = k * c + ch;
            let mut rr = 0.0f32;
            let mut ri = 0.0f32;
            if (k + 1) % seg != 0 {
                let a = dnr;
                let b = dni;
                let x = qr[(q + c) as usize];
                let y = qi[(q + c) as usize];
                rr = a * x - b * y;
                ri = a * y + b * x;
            }
            let xr = lr[q as usize] - tr[q as usize] - rr;
            let xi = li[q as usize] - ti[q as usize] - ri;
            let a = wr[(j * c + ch) as usize];
            let b = wi[(j * c + ch) as usize];
            sr += a * xr - b * xi;
            si += a * xi + b * xr;
            if comptime![with_moment] {
                // gL + gQ arrive pre-summed in (glr, gli).
                let gr = glr[q as usize];
                let gi = gli[q as usize];
                mr += a * gr - b * gi;
                mi += a * gi + b * gr;
            }
        }
        signed[j as usize] = scale * (ra * sr - rb * si);
        if comptime![with_moment] {
            moment[(j * 2) as usize] = mr;
            moment[(j * 2 + 1) as usize] = mi;
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
