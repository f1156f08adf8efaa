//! LapSum soft top-k kernels ("LapSum — One Method to Differentiate Them All", Struski et
//! al., ICML 2025; `specs/softtopk-engine.md`). Rows `[B, n]` are flattened to `B·n`
//! positions; `row = pos / n`, `j = pos % n`. The caller sorts each row ascending
//! (`o_0 ≤ … ≤ o_{n−1}`) and runs two anchored decay scans per row
//! ([`crate::decay_scan`], rate `1/α`, every long-range decay computed from coordinates, so
//! the error does not grow with n); [`stk_prepare_kernel()`] gives the one-step decays used
//! next to them:
//!
//! ```text
//! P_j = Σ_{i≤j} e^{(o_i − o_j)/α} = dp_j P_{j−1} + 1,   dp_j = e^{(o_{j−1} − o_j)/α}
//! Q_j = Σ_{i≥j} e^{−(o_i − o_j)/α} = dq_j Q_{j+1} + 1,  dq_j = e^{(o_j − o_{j+1})/α}
//! ```
//!
//! Every factor is ≤ 1, so no sum overflows for any spread or temperature. Then
//! `S(o_j) = Σ_i F((o_i − o_j)/α) = ½P_j + (n − 1 − j) − ½ dq_j Q_{j+1}` (decreasing in j),
//! the threshold `b` with `S(b) = k` has a closed form inside the bracketing interval
//! ([`threshold()`]), and `p_i = F((x_i − b)/α)` with the Laplace CDF
//! `F(z) = ½e^z (z ≤ 0), 1 − ½e^{−z} (z > 0)`.

use cubecl::prelude::*;

/// Laplace CDF `F(z)`, evaluated without overflow for any finite or infinite `z`.
#[cube]
pub fn laplace_cdf(z: f32) -> f32 {
    let e = 0.5f32 * (-z.abs()).exp();
    select(z <= 0.0f32, e, 1.0f32 - e)
}

/// Per position: `dq_j = e^{(o_j − o_{j+1})/α}` (0 at a row's last position), the one-step
/// decay next to the scans in `S(o_j)` and the threshold.
#[cube(launch)]
pub fn stk_prepare_kernel(
    o: &Array<f32>,
    alpha: &Array<f32>,
    dq: &mut Array<f32>,
    n: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / n;
    let j = pos % n;
    let inv = 1.0f32 / alpha[row as usize];
    let mut b = 0.0f32;
    if j + 1 < n {
        b = ((o[pos as usize] - o[(pos + 1) as usize]) * inv).exp();
    }
    dq[pos as usize] = b;
}

/// `S(o_j)` at sorted position `pos` (see the module docs).
#[cube]
fn s_at(p: &Array<f32>, q: &Array<f32>, dq: &Array<f32>, pos: u32, j: u32, n: u32) -> f32 {
    let mut s = 0.5f32 * p[pos as usize] + f32::cast_from(n - 1 - j);
    if j + 1 < n {
        s -= 0.5f32 * dq[pos as usize] * q[(pos + 1) as usize];
    }
    s
}

/// `ind[pos] = 1` where `S(o_j) ≥ k_row`, else 0; a row sum of `ind` counts the positions
/// left of the threshold.
#[cube(launch)]
pub fn stk_count_kernel(
    p: &Array<f32>,
    q: &Array<f32>,
    dq: &Array<f32>,
    k: &Array<f32>,
    ind: &mut Array<f32>,
    n: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / n;
    let s = s_at(p, q, dq, pos, pos % n, n);
    ind[pos as usize] = select(s >= k[row as usize], 1.0f32, 0.0f32);
}

/// The threshold `b` with `S(b) = k` for the row starting at `base`, given `cnt` = the
/// number of sorted positions with `S(o_j) ≥ k` (spec §2):
/// - `cnt = 0`: `b = o_0 + α ln(2(n − k)/Q_0)`;
/// - `cnt = n`: `b = o_{n−1} − α ln(2k/P_{n−1})`;
/// - else `j = cnt − 1`, `m = n − 1 − j − k`, and `v = e^{(b − o_j)/α} ∈ [1, 1/dq_j]` solves
///   `Q_{j+1} dq_j v² − 2mv − P_j = 0`. For `m > 0`, `b = o_{j+1} + α(ln(m + √(m² + Q dq P))
///   − ln Q)` (measured from the right end, so an underflowed `dq` does no harm); for
///   `m ≤ 0`, `v = P/(√(m² + Q dq P) − m)` (cancellation-free), or `½ ln(P/(Q dq))` in the
///   log domain when `m = 0` and `Q dq P` underflows. The offset is clamped to the interval.
#[cube]
pub fn threshold(
    o: &Array<f32>,
    p: &Array<f32>,
    q: &Array<f32>,
    dq: &Array<f32>,
    base: u32,
    n: u32,
    cnt: u32,
    k: f32,
    alpha: f32,
) -> f32 {
    if cnt == 0 {
        o[base as usize] + alpha * (2.0f32 * (f32::cast_from(n) - k) / q[base as usize]).ln()
    } else if cnt >= n {
        let last = base + n - 1;
        o[last as usize] - alpha * (2.0f32 * k / p[last as usize]).ln()
    } else {
        let pos = base + cnt - 1;
        let j = cnt - 1;
        let pj = p[pos as usize];
        let qn = q[(pos + 1) as usize];
        let d = dq[pos as usize];
        let ln_d = (o[pos as usize] - o[(pos + 1) as usize]) / alpha;
        let m = f32::cast_from(n - 1 - j) - k;
        let t = qn * d * pj;
        let root = (m * m + t).sqrt();
        if m > 0.0f32 {
            // From the right end: b = o_{j+1} + α(ln v + ln dq), never ∞ − ∞.
            let w = ((m + root).ln() - qn.ln()).clamp(ln_d, 0.0f32);
            o[(pos + 1) as usize] + alpha * w
        } else {
            // v = P/(√(m² + QdP) − m); at m = 0 with QdP underflowed, v = √(P/(Q dq)).
            let den = root - m;
            let lnv = if den > 0.0f32 {
                (pj / den).ln()
            } else {
                0.5f32 * (pj.ln() - qn.ln() - ln_d)
            };
            o[pos as usize] + alpha * lnv.clamp(0.0f32, -ln_d)
        }
    }
}

/// One unit per row: `b[row]` from the row's count (a float sum of [`stk_count_kernel()`]).
#[cube(launch)]
pub fn stk_threshold_kernel(
    o: &Array<f32>,
    p: &Array<f32>,
    q: &Array<f32>,
    dq: &Array<f32>,
    k: &Array<f32>,
    alpha: &Array<f32>,
    cnt: &Array<f32>,
    b: &mut Array<f32>,
    n: u32,
    rows: u32,
) {
    let row = ABSOLUTE_POS as u32;
    if row >= rows {
        terminate!();
    }
    let c = u32::cast_from(cnt[row as usize] + 0.5f32);
    b[row as usize] = threshold(
        o,
        p,
        q,
        dq,
        row * n,
        n,
        c,
        k[row as usize],
        alpha[row as usize],
    );
}

/// Soft rank on sorted positions: `rank_j = j + 1 + ½(Q_j − P_j)`
/// (`= ½ + Σ_i F((o_j − o_i)/α)`, ties included since `F(0) = ½` from either side).
#[cube(launch)]
pub fn stk_rank_kernel(p: &Array<f32>, q: &Array<f32>, out: &mut Array<f32>, n: u32, total: u32) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let j = pos % n;
    out[pos as usize] = f32::cast_from(j + 1) + 0.5f32 * (q[pos as usize] - p[pos as usize]);
}

/// `out[row, perm[row, j]] = v[row, j]` (undo a row sort).
#[cube(launch)]
pub fn row_scatter_kernel(
    v: &Array<f32>,
    perm: &Array<u32>,
    out: &mut Array<f32>,
    n: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / n;
    let dst = row * n + perm[pos as usize];
    out[dst as usize] = v[pos as usize];
}

/// `out[row, j] = v[row, perm[row, j]]` (apply a row sort).
#[cube(launch)]
pub fn row_gather_kernel(
    v: &Array<f32>,
    perm: &Array<u32>,
    out: &mut Array<f32>,
    n: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / n;
    out[pos as usize] = v[(row * n + perm[pos as usize]) as usize];
}

/// Column of the `i`-th largest entry of row `base..base + n` in stable descending order
/// (ties in index order), read from the row's stable ascending sort (`o` the sorted values,
/// `perm` their columns): position `n − 1 − i` ascending, moved within its run of equal
/// values (two binary searches) so that tied entries keep their index order.
#[cube]
fn desc_index(o: &Array<f32>, perm: &Array<u32>, base: u32, n: u32, i: u32) -> u32 {
    let a = n - 1 - i;
    let v = o[(base + a) as usize];
    // lo: the first position with o ≥ v; hi: the last with o ≤ v.
    let mut lo = 0u32;
    let mut top = a;
    while lo < top {
        let mid = (lo + top) / 2;
        if o[(base + mid) as usize] < v {
            lo = mid + 1;
        } else {
            top = mid;
        }
    }
    let mut after = a + 1;
    top = n;
    while after < top {
        let mid = (after + top) / 2;
        if o[(base + mid) as usize] <= v {
            after = mid + 1;
        } else {
            top = mid;
        }
    }
    // The run [lo, after) comes first in descending order at position n − after.
    perm[(base + lo + i - (n - after)) as usize]
}

/// SoftMoE's truncation (`specs/sparse-methods.md` §1.1): per row, with `perm` the row's
/// order by descending `p` (ties by index) and `m = min(⌈c_cap·k⌉, n)`,
/// `τ = clamp(c_τ·k/n, p_(m), p_(1))`; output slot `i < cap` holds index `perm[i]` and
/// value `p·1[i < m and p ≥ τ]` (so slots past the kept entries carry valid indices with
/// value 0), and `mask` is that indicator.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn stk_truncate_kernel(
    p: &Array<f32>,
    o: &Array<f32>,
    perm: &Array<u32>,
    k: &Array<f32>,
    idx: &mut Array<u32>,
    val: &mut Array<f32>,
    mask: &mut Array<f32>,
    n: u32,
    cap: u32,
    total: u32,
    c_cap: f32,
    c_tau: f32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / cap;
    let i = pos % cap;
    let kr = k[row as usize];
    let m = min(u32::cast_from((c_cap * kr).ceil()), n);
    let base = row * n;
    let p1 = p[(base + desc_index(o, perm, base, n, 0u32)) as usize];
    let pm = p[(base + desc_index(o, perm, base, n, m - 1)) as usize];
    let tau = (c_tau * kr / f32::cast_from(n)).clamp(pm, p1);
    let src = desc_index(o, perm, base, n, i);
    let v = p[(base + src) as usize];
    let keep = i < m && v >= tau;
    idx[pos as usize] = src;
    val[pos as usize] = select(keep, v, 0.0f32);
    mask[pos as usize] = select(keep, 1.0f32, 0.0f32);
}

/// Dense `g [B, n]` from slot gradients: `out[row, idx] = gv · mask` (`out` zeroed first;
/// indices within a row are distinct).
#[cube(launch)]
pub fn stk_untruncate_kernel(
    gv: &Array<f32>,
    idx: &Array<u32>,
    mask: &Array<f32>,
    out: &mut Array<f32>,
    n: u32,
    cap: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / cap;
    let dst = row * n + idx[pos as usize];
    out[dst as usize] = gv[pos as usize] * mask[pos as usize];
}

/// LapSum soft sort: output `(row, i)` is the `b` with `Σ_j F((b − o_j)/α) = i + ½`, i.e. the
/// soft top-k threshold for `k_i = n − i − ½` (ascending in i). The bracketing interval is
/// found by a binary search over the row's decreasing `S(o_j)`; then [`threshold()`].
/// Also writes, for the backward, `F_i = Σ_j f((b_i − o_j)/α)` and the ratio
/// `A_i/F_i = Σ_j f_ij (b_i − o_j)/α / F_i` (from the moment scans
/// `ML_j = Σ_{i≤j} e^{−(o_j−o_i)/α}(o_j − o_i)/α` and its mirror `MR`); both use exponentials relative to the nearer interval end,
/// so the ratio never becomes 0/0, and `F_i` is floored at 1e-30.
#[cube(launch)]
pub fn stk_soft_sort_kernel(
    o: &Array<f32>,
    p: &Array<f32>,
    q: &Array<f32>,
    dq: &Array<f32>,
    ml: &Array<f32>,
    mr: &Array<f32>,
    alpha: &Array<f32>,
    out: &mut Array<f32>,
    fsum: &mut Array<f32>,
    ratio: &mut Array<f32>,
    n: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / n;
    let i = pos % n;
    let base = row * n;
    let a = alpha[row as usize];
    let k = f32::cast_from(n - i) - 0.5f32;
    // cnt = #{j : S(o_j) ≥ k}; S is decreasing in j.
    let mut lo = 0u32;
    let mut hi = n;
    for _ in 0..33u32 {
        if lo < hi {
            let mid = (lo + hi) / 2;
            if s_at(p, q, dq, base + mid, mid, n) >= k {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
    }
    let b = threshold(o, p, q, dq, base, n, lo, k, a);
    out[pos as usize] = b;
    // Left part: sorted points ≤ b up to index lo − 1; right part from lo.
    let mut left_f = 0.0f32;
    let mut left_a = 0.0f32;
    let mut dl = 0.0f32;
    let mut has_left = false;
    if lo > 0 {
        let jl = base + lo - 1;
        dl = max(b - o[jl as usize], 0.0f32) / a;
        left_f = p[jl as usize];
        left_a = dl * p[jl as usize] + ml[jl as usize];
        has_left = true;
    }
    let mut right_f = 0.0f32;
    let mut right_a = 0.0f32;
    let mut dr = 0.0f32;
    let mut has_right = false;
    if lo < n {
        let jr = base + lo;
        dr = max(o[jr as usize] - b, 0.0f32) / a;
        right_f = q[jr as usize];
        right_a = dr * q[jr as usize] + mr[jr as usize];
        has_right = true;
    }
    // Scale by e^{min distance}: the nearer side's factor is 1.
    let mut m = dl;
    if !has_left || (has_right && dr < dl) {
        m = dr;
    }
    let el = select(has_left, (m - dl).exp(), 0.0f32);
    let er = select(has_right, (m - dr).exp(), 0.0f32);
    let fs = el * left_f + er * right_f;
    let am = el * left_a - er * right_a;
    ratio[pos as usize] = am / fs;
    fsum[pos as usize] = max(0.5f32 * fs * (-m).exp(), 1e-30f32);
}

/// `p = F(z)` and `f = F'(z) = ½e^{−|z|}` for `z = (x − b_row)/α_row` (one pass for a
/// Newton step on the threshold).
#[cube(launch)]
pub fn stk_prob_density_kernel(
    x: &Array<f32>,
    b: &Array<f32>,
    alpha: &Array<f32>,
    p: &mut Array<f32>,
    f: &mut Array<f32>,
    n: u32,
    total: u32,
) {
    let pos = ABSOLUTE_POS as u32;
    if pos >= total {
        terminate!();
    }
    let row = pos / n;
    let z = (x[pos as usize] - b[row as usize]) / alpha[row as usize];
    p[pos as usize] = laplace_cdf(z);
    f[pos as usize] = 0.5f32 * (-z.abs()).exp();
}

/// One safeguarded Newton step on `Σ_i F((x_i − b)/α) = k` per row: `res = Σp − k`,
/// `slope = Σf/α` (`∂Σp/∂b = −slope`), candidate `b + res/slope` with the step clamped to
/// `±4α` (0 where the slope is 0). [`stk_pick_kernel()`] keeps it only if it lowers `|res|`.
#[cube(launch)]
pub fn stk_newton_kernel(
    b: &Array<f32>,
    psum: &Array<f32>,
    fsum: &Array<f32>,
    k: &Array<f32>,
    alpha: &Array<f32>,
    out: &mut Array<f32>,
    res: &mut Array<f32>,
    rows: u32,
) {
    let row = ABSOLUTE_POS as u32;
    if row >= rows {
        terminate!();
    }
    let a = alpha[row as usize];
    let r = psum[row as usize] - k[row as usize];
    let slope = fsum[row as usize] / a;
    let mut step = 0.0f32;
    if slope > 0.0f32 {
        step = (r / slope).clamp(-4.0f32 * a, 4.0f32 * a);
    }
    out[row as usize] = b[row as usize] + step;
    res[row as usize] = r;
}

/// `b0` ← `b1` where `|res1| ≤ |res0|` (the Newton step helped), per row.
#[cube(launch)]
pub fn stk_pick_kernel(
    b0: &mut Array<f32>,
    res0: &Array<f32>,
    b1: &Array<f32>,
    psum1: &Array<f32>,
    k: &Array<f32>,
    rows: u32,
) {
    let row = ABSOLUTE_POS as u32;
    if row >= rows {
        terminate!();
    }
    let r1 = psum1[row as usize] - k[row as usize];
    if r1.abs() <= res0[row as usize].abs() {
        b0[row as usize] = b1[row as usize];
    }
}
