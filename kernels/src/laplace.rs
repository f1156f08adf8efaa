//! The exact Laplace-kernel operator `Y[j, :] = Σ_i e^{−λ|t_j − s_i|} V[i, :]` by sweeps
//! (`specs/laplace-engine.md` §2; the LAPLEX/REMIX engine). Real `λ > 0` in this module.
//!
//! The caller argsorts the merged anchors `z = [s; t]` stably (sources before targets at
//! ties) and these kernels work on the sorted sequence `z_0 ≤ … ≤ z_{N−1}`, `N = n + m`,
//! with `perm[k] < n` for source `perm[k]` and `perm[k] − n` for a target:
//! - [`laplace_prepare_kernel`]: `d_k = e^{−λ(z_k − z_{k−1})}` (`d_0 = 0`), the shifted
//!   decays `d⁺_k = d_{k+1}` (`d⁺_{N−1} = 0`), the tie indicator `τ_k = [z_k = z_{k−1}]`,
//!   and `u[k, :] = V[perm[k], :]` at sources, 0 at targets. Factors never exceed 1.
//! - The sweeps are `linear_scan`s: `L = scan→(d, u)` (sources at or left of k),
//!   `Q = scan←(d⁺, u)` with `R_k = d⁺_k Q_{k+1}` (sources strictly right of k), and for
//!   gradients `T = scan→(τ, u)` (the mass of sources tied with position k) and the first
//!   moments `gL = scan→(d, a)`, `gQ = scan←(d⁺, b)` with inputs from
//!   [`laplace_moment_inputs_kernel`]: `a_k = d_k Δ_k L_{k−1}`, `b_k = d⁺_k Δ_{k+1} Q_{k+1}`,
//!   so that `gL_k + gQ_k = Σ_i |z_k − s_i| e^{−λ|z_k − s_i|} u_i`.
//! - [`laplace_gather_kernel`]: `Y[j] = L_k + d⁺_k Q_{k+1}` at the target's position k.
//! - [`laplace_weighted_kernel`]: per target, `Σ_c W[j, c]·(L − T − R)[k, c]` (the signed
//!   sum behind ∂/∂t with `sign(0) = 0`: tied sources cancel) and
//!   `Σ_c W[j, c]·(gL + gQ)[k, c]` (behind ∂/∂λ).

use cubecl::prelude::*;

/// Decays, tie flags and the scattered values on the sorted merged sequence.
#[cube(launch)]
pub fn laplace_prepare_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    values: &Array<f32>,
    d: &mut Array<f32>,
    d_next: &mut Array<f32>,
    tie: &mut Array<f32>,
    u: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    lambda: f32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let src = perm[k as usize];
    let mut v = 0.0f32;
    if src < n_src {
        v = values[(src * c + ch) as usize];
    }
    u[unit as usize] = v;
    if ch == 0 {
        let zk = z[k as usize];
        let mut dk = 0.0f32;
        let mut tk = 0.0f32;
        if k > 0 {
            let gap = zk - z[(k - 1) as usize];
            dk = (-lambda * gap).exp();
            tk = select(gap == 0.0f32, 1.0f32, 0.0f32);
        }
        d[k as usize] = dk;
        tie[k as usize] = tk;
        let mut dn = 0.0f32;
        if k + 1 < total {
            dn = (-lambda * (z[(k + 1) as usize] - zk)).exp();
        }
        d_next[k as usize] = dn;
    }
}

/// Inputs of the first-moment sweeps: `a_k = d_k Δ_k L_{k−1}`, `b_k = d⁺_k Δ_{k+1} Q_{k+1}`.
#[cube(launch)]
pub fn laplace_moment_inputs_kernel(
    z: &Array<f32>,
    d: &Array<f32>,
    d_next: &Array<f32>,
    l: &Array<f32>,
    q: &Array<f32>,
    a: &mut Array<f32>,
    b: &mut Array<f32>,
    total: u32,
    c: u32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let mut av = 0.0f32;
    if k > 0 {
        av = d[k as usize] * (z[k as usize] - z[(k - 1) as usize]) * l[(unit - c) as usize];
    }
    let mut bv = 0.0f32;
    if k + 1 < total {
        bv = d_next[k as usize] * (z[(k + 1) as usize] - z[k as usize]) * q[(unit + c) as usize];
    }
    a[unit as usize] = av;
    b[unit as usize] = bv;
}

/// `Y[j, ch] = L[k, ch] + d⁺_k Q[k+1, ch]` for every target `j = perm[k] − n_src`.
#[cube(launch)]
pub fn laplace_gather_kernel(
    perm: &Array<u32>,
    d_next: &Array<f32>,
    l: &Array<f32>,
    q: &Array<f32>,
    y: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let p = perm[k as usize];
    if p >= n_src {
        let mut r = 0.0f32;
        if k + 1 < total {
            r = d_next[k as usize] * q[(unit + c) as usize];
        }
        y[((p - n_src) * c + ch) as usize] = l[unit as usize] + r;
    }
}

/// Per target `j` at position `k`: `signed[j] = Σ_c W[j,c]·(L − T − R)[k,c]` and
/// `moment[j] = Σ_c W[j,c]·(gL + gQ)[k,c]` (moment only when `with_moment`).
#[cube(launch)]
pub fn laplace_weighted_kernel(
    perm: &Array<u32>,
    d_next: &Array<f32>,
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
    #[comptime] with_moment: bool,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= total {
        terminate!();
    }
    let p = perm[k as usize];
    if p >= n_src {
        let j = p - n_src;
        let mut s = 0.0f32;
        let mut mo = 0.0f32;
        for ch in 0..c {
            let q_idx = k * c + ch;
            let mut r = 0.0f32;
            if k + 1 < total {
                r = d_next[k as usize] * q[(q_idx + c) as usize];
            }
            let wv = w[(j * c + ch) as usize];
            s += wv * (l[q_idx as usize] - t[q_idx as usize] - r);
            if comptime![with_moment] {
                mo += wv * (gl[q_idx as usize] + gq[q_idx as usize]);
            }
        }
        signed[j as usize] = s;
        if comptime![with_moment] {
            moment[j as usize] = mo;
        }
    }
}

/// Phased (complex λ = a + i·b) preparation: decays `d_k = e^{−λΔ_k}` and `d⁺_k = d_{k+1}`
/// as planar (re, im) pairs, modulus `e^{−aΔ} ≤ 1`; tie flags and complex values `u` as
/// in [`laplace_prepare_kernel`].
#[cube(launch)]
pub fn laplace_prepare_phased_kernel(
    z: &Array<f32>,
    perm: &Array<u32>,
    values: &Array<f32>,
    values_im: &Array<f32>,
    dr: &mut Array<f32>,
    di: &mut Array<f32>,
    dnr: &mut Array<f32>,
    dni: &mut Array<f32>,
    tie: &mut Array<f32>,
    u: &mut Array<f32>,
    u_im: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
    a: f32,
    b: f32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let src = perm[k as usize];
    let mut v = 0.0f32;
    let mut vi = 0.0f32;
    if src < n_src {
        v = values[(src * c + ch) as usize];
        vi = values_im[(src * c + ch) as usize];
    }
    u[unit as usize] = v;
    u_im[unit as usize] = vi;
    if ch == 0 {
        let zk = z[k as usize];
        let mut tk = 0.0f32;
        if k > 0 {
            tk = select(zk == z[(k - 1) as usize], 1.0f32, 0.0f32);
        }
        tie[k as usize] = tk;
        let mut r0 = 0.0f32;
        let mut i0 = 0.0f32;
        if k > 0 {
            let gap = zk - z[(k - 1) as usize];
            let m = (-a * gap).exp();
            r0 = m * (b * gap).cos();
            i0 = -m * (b * gap).sin();
        }
        dr[k as usize] = r0;
        di[k as usize] = i0;
        let mut r1 = 0.0f32;
        let mut i1 = 0.0f32;
        if k + 1 < total {
            let gap = z[(k + 1) as usize] - zk;
            let m = (-a * gap).exp();
            r1 = m * (b * gap).cos();
            i1 = -m * (b * gap).sin();
        }
        dnr[k as usize] = r1;
        dni[k as usize] = i1;
    }
}

/// Phased gather: `Y[j] = L_k + d⁺_k Q_{k+1}` in complex arithmetic, planar outputs.
#[cube(launch)]
pub fn laplace_gather_phased_kernel(
    perm: &Array<u32>,
    dnr: &Array<f32>,
    dni: &Array<f32>,
    lr: &Array<f32>,
    li: &Array<f32>,
    qr: &Array<f32>,
    qi: &Array<f32>,
    yr: &mut Array<f32>,
    yi: &mut Array<f32>,
    n_src: u32,
    total: u32,
    c: u32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let ch = unit % c;
    let p = perm[k as usize];
    if p >= n_src {
        let mut rr = 0.0f32;
        let mut ri = 0.0f32;
        if k + 1 < total {
            let a = dnr[k as usize];
            let b = dni[k as usize];
            let x = qr[(unit + c) as usize];
            let y = qi[(unit + c) as usize];
            rr = a * x - b * y;
            ri = a * y + b * x;
        }
        let o = ((p - n_src) * c + ch) as usize;
        yr[o] = lr[unit as usize] + rr;
        yi[o] = li[unit as usize] + ri;
    }
}

/// Phased moment inputs: `a_k = d_k Δ_k L_{k−1}`, `b_k = d⁺_k Δ_{k+1} Q_{k+1}` (complex).
#[cube(launch)]
pub fn laplace_moment_inputs_phased_kernel(
    z: &Array<f32>,
    dr: &Array<f32>,
    di: &Array<f32>,
    dnr: &Array<f32>,
    dni: &Array<f32>,
    lr: &Array<f32>,
    li: &Array<f32>,
    qr: &Array<f32>,
    qi: &Array<f32>,
    ar: &mut Array<f32>,
    ai: &mut Array<f32>,
    br: &mut Array<f32>,
    bi: &mut Array<f32>,
    total: u32,
    c: u32,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= total * c {
        terminate!();
    }
    let k = unit / c;
    let mut xr = 0.0f32;
    let mut xi = 0.0f32;
    if k > 0 {
        let g = z[k as usize] - z[(k - 1) as usize];
        let pr = dr[k as usize] * g;
        let pi = di[k as usize] * g;
        let yr = lr[(unit - c) as usize];
        let yi = li[(unit - c) as usize];
        xr = pr * yr - pi * yi;
        xi = pr * yi + pi * yr;
    }
    let mut wr = 0.0f32;
    let mut wi = 0.0f32;
    if k + 1 < total {
        let g = z[(k + 1) as usize] - z[k as usize];
        let pr = dnr[k as usize] * g;
        let pi = dni[k as usize] * g;
        let yr = qr[(unit + c) as usize];
        let yi = qi[(unit + c) as usize];
        wr = pr * yr - pi * yi;
        wi = pr * yi + pi * yr;
    }
    ar[unit as usize] = xr;
    ai[unit as usize] = xi;
    br[unit as usize] = wr;
    bi[unit as usize] = wi;
}

/// Phased weighted sums per target `j` at position `k`, with complex weights `w`:
/// `signed[j] = Σ_c w·(L − T − R)` and `moment[j] = Σ_c w·(gL + gQ)` (complex; outputs
/// are planar `[m, 2]`: re, im).
#[cube(launch)]
pub fn laplace_weighted_phased_kernel(
    perm: &Array<u32>,
    dnr: &Array<f32>,
    dni: &Array<f32>,
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
    #[comptime] with_moment: bool,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= total {
        terminate!();
    }
    let p = perm[k as usize];
    if p >= n_src {
        let j = p - n_src;
        let mut sr = 0.0f32;
        let mut si = 0.0f32;
        let mut mr = 0.0f32;
        let mut mi = 0.0f32;
        for ch in 0..c {
            let q = k * c + ch;
            let mut rr = 0.0f32;
            let mut ri = 0.0f32;
            if k + 1 < total {
                let a = dnr[k as usize];
                let b = dni[k as usize];
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
        signed[(j * 2) as usize] = sr;
        signed[(j * 2 + 1) as usize] = si;
        if comptime![with_moment] {
            moment[(j * 2) as usize] = mr;
            moment[(j * 2 + 1) as usize] = mi;
        }
    }
}
