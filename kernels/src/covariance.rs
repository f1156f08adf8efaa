//! The Laplace / Ornstein–Uhlenbeck covariance `Σ = D C D`, `D = diag(σ)`,
//! `C_ij = e^{−λ|x_i − x_j|}`, in O(d) after sorting the coordinates
//! (`specs/laplace-engine.md` §4; the pure-OU case of REMIX's covariance).
//!
//! On sorted coordinates, `C` is the covariance of the AR(1) chain
//! `ζ_0 = ε_0`, `ζ_{k+1} = ρ_k ζ_k + s_{k+1} ε_{k+1}` with `ρ_k = e^{−λ(x_{k+1} − x_k)}` and
//! `s_{k+1} = √(1 − ρ_k²)` (`s_0 = 1`). So `C = L Lᵀ` with `L⁻¹ = S⁻¹ B`, `B` unit lower
//! bidiagonal with `−ρ_{k−1}` below the diagonal, and `C⁻¹ = Bᵀ S⁻² B` (tridiagonal).
//! The ops (`lapis_ops::covariance`) run every covariance, the pure OU one included
//! (`u = 0`), through the Kalman filter of REMIX's `diag(u) + diag(w) C diag(w)`: the
//! kernels here prepare the chain ([`ou_prepare_kernel()`]), run its variance recursion
//! and chain `ρ`'s adjoint to the coordinates and `λ`; the rest is elementwise ops and
//! anchored scans.
//!
//! Numerics: `1 − ρ² = 1 − e^{−2λΔ}` is evaluated by a 3-term series when `2λΔ < 1e-3`
//! (the direct difference would lose digits to cancellation), and floored at `1e-8` for
//! tied coordinates (`ρ → 1`, singular `C`); at the floor `ρ` is reset to `√(1 − 1e-8)`, so
//! the result is still the exact covariance of a valid chain (the same choice as
//! `reference::OU_ONE_MINUS_RHO2_FLOOR`).
//!
//! The rate `λ` is a one-element device array read inside the kernels (`lambda[0]`), never
//! a launch argument: a learnable rate stays on the device and no launch waits on a read.

use cubecl::prelude::*;

/// Floor on `1 − ρ²`.
pub const ONE_MINUS_RHO2_FLOOR: f32 = 1e-8;

/// A gap whose `1 − ρ²` (as stored, in f32) is at most this is a tie: it sits on the floor
/// (floored entries equal [`ONE_MINUS_RHO2_FLOOR`] exactly; the factor only absorbs the
/// rounding of a comparison). No gradient flows through it and its anchors form a run
/// that shares its gradient.
pub const TIE_ONE_MINUS_RHO2: f32 = ONE_MINUS_RHO2_FLOOR * 1.0001;

/// Per sorted position k: `rho[k] = ρ_k` (0 for the last), `om[k] = s_k² = 1 − ρ_{k−1}²`
/// (1 for the first). The rate `λ` is read on the device (`lambda[0]`).
#[cube(launch)]
pub fn ou_prepare_kernel(
    x: &Array<f32>,
    lambda: &Array<f32>,
    rho: &mut Array<f32>,
    om: &mut Array<f32>,
    d: u32,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= d {
        terminate!();
    }
    let lam = lambda[0];
    let mut r = 0.0f32;
    if k + 1 < d {
        r = rho_of(2.0f32 * lam * (x[(k + 1) as usize] - x[k as usize]));
    }
    rho[k as usize] = r;
    let mut o = 1.0f32;
    if k > 0 {
        o = one_minus_rho2(2.0f32 * lam * (x[k as usize] - x[(k - 1) as usize]));
    }
    om[k as usize] = o;
}

/// `1 − ρ²` for `y = 2λ(b − a)`, with the series and the floor of the module docs.
#[cube]
fn one_minus_rho2(y: f32) -> f32 {
    let series = y * (1.0f32 - y * (0.5f32 - y / 6.0f32));
    let direct = 1.0f32 - (-y).exp();
    max(select(y < 1e-3f32, series, direct), ONE_MINUS_RHO2_FLOOR)
}

/// `ρ = e^{−y/2}`, reset to `√(1 − floor)` where `1 − ρ²` hits the floor.
#[cube]
fn rho_of(y: f32) -> f32 {
    let floor_rho = (1.0f32 - ONE_MINUS_RHO2_FLOOR).sqrt();
    let series = y * (1.0f32 - y * (0.5f32 - y / 6.0f32));
    let direct = 1.0f32 - (-y).exp();
    let om = select(y < 1e-3f32, series, direct);
    select(om < ONE_MINUS_RHO2_FLOOR, floor_rho, (-0.5f32 * y).exp())
}

/// The variance (Riccati) recursion of the Kalman filter for REMIX's covariance
/// `Σ = diag(u) + diag(w) C diag(w)` on sorted anchors (`specs/laplace-methods.md` §0):
/// `P⁻_k = s_k² + ρ_{k−1}² P_{k−1}` (`P⁻_0 = 1`), `S_k = w_k² P⁻_k + u_k`,
/// `P_k = P⁻_k u_k / S_k`, for `k ∈ [start, end)` (continuing from `p[start − 1]`). It does
/// not depend on the data, is nonlinear, and runs in one unit (O(d) work, depth d) — used
/// for short chains; long ones use the chunked form of [`riccati_compose_kernel()`]. Every
/// other LCM step is elementwise or a linear scan. All three quantities stay in `[0, 1]`
/// (resp. `[u, u + w²]`), so f32 is safe here where the tridiagonal `C⁻¹ + diag(w²/u)` would
/// lose digits to its `1/(1 − ρ²)` entries.
///
/// llvmpipe (lavapipe) silently stops a shader invocation's loops after 65 535 iterations
/// in total, so on wgpu the host launches this kernel on segments of at most
/// [`SEQUENTIAL_SEGMENT`] positions.
#[cube(launch)]
pub fn lcm_riccati_kernel(
    rho: &Array<f32>,
    om: &Array<f32>,
    u: &Array<f32>,
    w: &Array<f32>,
    pminus: &mut Array<f32>,
    s: &mut Array<f32>,
    p: &mut Array<f32>,
    start: u32,
    end: u32,
) {
    if ABSOLUTE_POS != 0 {
        terminate!();
    }
    let mut prev = 0.0f32;
    if start > 0 {
        prev = p[(start - 1) as usize];
    }
    riccati_run(rho, om, u, w, pminus, s, p, start, end, prev);
}

/// The Riccati recursion over `k ∈ [start, end)` from `prev = P_{start−1}`, writing `P⁻`, `S`
/// and `P` (shared by the one-unit and the chunked kernels).
#[cube]
#[allow(clippy::too_many_arguments)]
fn riccati_run(
    rho: &Array<f32>,
    om: &Array<f32>,
    u: &Array<f32>,
    w: &Array<f32>,
    pminus: &mut Array<f32>,
    s: &mut Array<f32>,
    p: &mut Array<f32>,
    start: u32,
    end: u32,
    prev_in: f32,
) {
    let mut prev = prev_in;
    for k in start..end {
        let mut pm = om[k as usize];
        if k > 0 {
            let r = rho[(k - 1) as usize];
            pm += r * r * prev;
        }
        let wk = w[k as usize];
        let uk = u[k as usize];
        let sk = wk * wk * pm + uk;
        let pk = pm * uk / sk;
        pminus[k as usize] = pm;
        s[k as usize] = sk;
        p[k as usize] = pk;
        prev = pk;
    }
}

/// The chunked Riccati recursion, depth `O(L + d/L)` for chunks of `L` positions instead of
/// `d`. The step `P_{k−1} ↦ P_k` is a Möbius (linear-fractional) map,
///
/// ```text
/// P_k = (a P_{k−1} + b) / (c P_{k−1} + e),
/// M_k = [[a, b], [c, e]] = [[u ρ², u s²], [w² ρ², w² s² + u]]     (ρ = ρ_{k−1}, s² = 1 − ρ²)
/// ```
///
/// and maps compose as 2 × 2 matrix products. Pass 1 ([`riccati_compose_kernel()`], one unit
/// per chunk) multiplies each chunk's matrices; pass 2 ([`riccati_carry_kernel()`], one unit)
/// applies the chunk maps in turn to get the `P` entering every chunk; pass 3
/// ([`riccati_chunk_kernel()`], one unit per chunk) runs the plain recursion from there. Every
/// matrix entry is ≥ 0 (no cancellation), each product is rescaled by its largest entry
/// (the map is homogeneous), and `P ∈ [0, 1]`, so the composed maps are as accurate as the
/// sequential recursion (a few ulps per step, contracted downstream).
#[cube(launch)]
pub fn riccati_compose_kernel(
    rho: &Array<f32>,
    om: &Array<f32>,
    u: &Array<f32>,
    w: &Array<f32>,
    mats: &mut Array<f32>,
    d: u32,
    chunk: u32,
    chunks: u32,
) {
    let c = ABSOLUTE_POS as u32;
    if c >= chunks {
        terminate!();
    }
    let start = c * chunk;
    let end = min(start + chunk, d);
    // T = identity; T ← M_k T for k in the chunk.
    let mut t00 = 1.0f32;
    let mut t01 = 0.0f32;
    let mut t10 = 0.0f32;
    let mut t11 = 1.0f32;
    for k in start..end {
        let mut r2 = 0.0f32;
        if k > 0 {
            let r = rho[(k - 1) as usize];
            r2 = r * r;
        }
        let s2 = om[k as usize];
        let uk = u[k as usize];
        let w2 = w[k as usize] * w[k as usize];
        let m00 = uk * r2;
        let m01 = uk * s2;
        let m10 = w2 * r2;
        let m11 = w2 * s2 + uk;
        let n00 = m00 * t00 + m01 * t10;
        let n01 = m00 * t01 + m01 * t11;
        let n10 = m10 * t00 + m11 * t10;
        let n11 = m10 * t01 + m11 * t11;
        let big = max(max(n00, n01), max(n10, n11));
        let inv = 1.0f32 / big;
        t00 = n00 * inv;
        t01 = n01 * inv;
        t10 = n10 * inv;
        t11 = n11 * inv;
    }
    let o = (4 * c) as usize;
    mats[o] = t00;
    mats[o + 1] = t01;
    mats[o + 2] = t10;
    mats[o + 3] = t11;
}

/// Pass 2 of the chunked Riccati recursion: `entry[c]` = the `P` entering chunk `c`
/// (`P_{−1} = 0`; the first map ignores it since `ρ_{−1} = 0`).
#[cube(launch)]
pub fn riccati_carry_kernel(mats: &Array<f32>, entry: &mut Array<f32>, chunks: u32) {
    if ABSOLUTE_POS != 0 {
        terminate!();
    }
    let mut x = 0.0f32;
    for c in 0..chunks {
        entry[c as usize] = x;
        let o = (4 * c) as usize;
        x = (mats[o] * x + mats[o + 1]) / (mats[o + 2] * x + mats[o + 3]);
    }
}

/// Pass 3 of the chunked Riccati recursion: each chunk runs the recursion of
/// [`lcm_riccati_kernel()`] from its entry value.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn riccati_chunk_kernel(
    rho: &Array<f32>,
    om: &Array<f32>,
    u: &Array<f32>,
    w: &Array<f32>,
    entry: &Array<f32>,
    pminus: &mut Array<f32>,
    s: &mut Array<f32>,
    p: &mut Array<f32>,
    d: u32,
    chunk: u32,
    chunks: u32,
) {
    let c = ABSOLUTE_POS as u32;
    if c >= chunks {
        terminate!();
    }
    let start = c * chunk;
    let end = min(start + chunk, d);
    riccati_run(rho, om, u, w, pminus, s, p, start, end, entry[c as usize]);
}

/// Longest run of a sequential kernel's loop per launch on wgpu (llvmpipe's limit is 65 535
/// loop iterations per invocation).
pub const SEQUENTIAL_SEGMENT: u32 = 32_768;

/// Chains `rbar[k] = ∂ℓ/∂ρ_{k−1}` (sorted position k ≥ 1) through `ρ = e^{−λΔ}`:
/// `gdelta[k] = −λ ρ rbar[k]` (`Δ = x_k − x_{k−1}`) and `glam[k] = −Δ ρ rbar[k]`; 0 at
/// `k = 0` and where `1 − ρ²` sits on its floor (`ρ` is constant there). `λ` is read on
/// the device (`lambda[0]`).
#[cube(launch)]
pub fn rho_chain_kernel(
    x: &Array<f32>,
    rho: &Array<f32>,
    om: &Array<f32>,
    rbar: &Array<f32>,
    lambda: &Array<f32>,
    gdelta: &mut Array<f32>,
    glam: &mut Array<f32>,
    d: u32,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= d {
        terminate!();
    }
    let lam = lambda[0];
    let mut gd = 0.0f32;
    let mut gl = 0.0f32;
    // (om[0] = 1, so the second test alone would pass at k = 0; both are needed.)
    if k > 0 && om[k as usize] > TIE_ONE_MINUS_RHO2 {
        let g = rho[(k - 1) as usize] * rbar[k as usize];
        gd = -lam * g;
        gl = -(x[k as usize] - x[(k - 1) as usize]) * g;
    }
    gdelta[k as usize] = gd;
    glam[k as usize] = gl;
}

/// `out[k] = Σ_c gx[k, c] ε[k, c] / (2√u_k)` (the nugget's share of a sample's gradient,
/// `x = √u ε + …`), and 0 where `u_k = 0` (`√u` has no derivative there; the subgradient 0
/// is used).
#[cube(launch)]
pub fn sqrt_nugget_grad_kernel(
    gx: &Array<f32>,
    eps: &Array<f32>,
    u: &Array<f32>,
    out: &mut Array<f32>,
    d: u32,
    c: u32,
) {
    let k = ABSOLUTE_POS as u32;
    if k >= d {
        terminate!();
    }
    let uk = u[k as usize];
    let mut acc = 0.0f32;
    if uk > 0.0f32 {
        for ch in 0..c {
            acc += gx[(k * c + ch) as usize] * eps[(k * c + ch) as usize];
        }
        acc /= 2.0f32 * uk.sqrt();
    }
    out[k as usize] = acc;
}
