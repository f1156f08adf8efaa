//! f64 references for the LapSum family (`softtopk-engine.md`): soft top-k with its
//! closed-form threshold and backward, the truncated (sparse) soft top-k of SoftMoE
//! (`sparse-methods.md` §1.1 item 2), soft rank and soft sort, and the hard top-k mask
//! they tend to as `α → 0`.
//!
//! # Definitions
//!
//! Laplace CDF and density ([`laplace_cdf`], [`laplace_pdf`]):
//!
//! ```text
//! F(x) = ½eˣ (x ≤ 0),  1 − ½e⁻ˣ (x > 0);     f(x) = F'(x) = ½e^{−|x|};     F(x) + F(−x) = 1
//! ```
//!
//! For a row `r ∈ Rⁿ`, a target `k ∈ (0, n)` and a temperature `α > 0` the soft top-k is
//!
//! ```text
//! p_i = F((r_i − b)/α),   b the unique root of  S(b) = Σ_i F((r_i − b)/α) = k
//! ```
//!
//! (`S` decreases strictly from `n` to `0`), so `p ∈ (0,1)ⁿ` and `Σ p = k`. The threshold
//! `b` has a closed form after one sort ([`soft_topk_threshold`], spec §2); a slow
//! bisection ([`soft_topk_threshold_bisect`]) is kept as an independent check.
//!
//! * Truncated ([`soft_topk_truncated`]): `m = min(⌈c_cap·k⌉, n)`,
//!   `τ = clamp(c_τ·k/n, p_(m), p_(1))` (`p_(j)` the j-th largest `p`), keep `p_i ≥ τ`
//!   among the first `m` entries in descending-`p` order; not renormalised (`Σ p̃ ≤ k`).
//! * Soft rank ([`soft_rank`], spec §5): `rank_i = ½ + Σ_j F((r_i − r_j)/α)`, ascending,
//!   1-based in the limit `α → 0`; `Σ_i rank_i = n(n+1)/2` for every `α`.
//! * Soft sort ([`soft_sort`], LapSum's `soft_sort.cpp`): the i-th value (0-based,
//!   ascending) is the `b_i` with `G(b_i) = Σ_j F((b_i − r_j)/α) = i + ½`. Since
//!   `G(b) = n − S(b)`, `b_i` is the soft top-k threshold for `k = n − i − ½`.
//!
//! # Backward
//!
//! Implicit differentiation of `S(b) = k` (spec §3), with `f_i = f((r_i − b)/α)`,
//! `F_Σ = Σ f_i`, upstream `g = ∂ℓ/∂p` and `ḡ = Σ f_i g_i / F_Σ`:
//!
//! ```text
//! ∂ℓ/∂r_i = (f_i/α)(g_i − ḡ),   ∂ℓ/∂k = ḡ,
//! ∂ℓ/∂α   = Σ_i g_i (f_i/α²) (Σ_j f_j (r_j − b)/F_Σ − (r_i − b))
//! ```
//!
//! The ratios `f_j / F_Σ` are formed from `e^{−(|x_j| − min_l |x_l|)}` (largest weight 1),
//! so they stay finite when every `f_j` underflows (`b` in a gap much wider than `α`).
//!
//! # Input policy
//!
//! Unlike the rest of [`reference`](super), these functions reject non-finite inputs:
//! the threshold is undefined for NaN, so every `r` must be finite, `α` finite and `> 0`,
//! `k` in the open interval `(0, n)`. Violations panic (see each `# Panics`): the
//! references are test oracles, the device ops report errors instead.

use super::tensor::RefTensor;

/// Laplace CDF: `F(x) = ½eˣ` for `x ≤ 0`, `1 − ½e⁻ˣ` for `x > 0`.
///
/// Each branch evaluates `e` to a non-positive power, so nothing overflows.
pub fn laplace_cdf(x: f64) -> f64 {
    if x <= 0.0 {
        0.5 * x.exp()
    } else {
        1.0 - 0.5 * (-x).exp()
    }
}

/// Laplace density: `f(x) = F'(x) = ½e^{−|x|}`.
pub fn laplace_pdf(x: f64) -> f64 {
    0.5 * (-x.abs()).exp()
}

/// Checks one row's arguments for the threshold: `n ≥ 1`, every `r_i` finite,
/// `0 < k < n`, `α` finite and `> 0`.
fn check_row(op: &str, r: &[f64], k: f64, alpha: f64) {
    let n = r.len();
    assert!(n >= 1, "{op}: the row is empty");
    assert!(
        r.iter().all(|v| v.is_finite()),
        "{op}: every r must be finite, got {r:?}"
    );
    assert!(
        k > 0.0 && k < n as f64,
        "{op}: k must lie in (0, n) = (0, {n}), got {k}"
    );
    assert!(
        alpha > 0.0 && alpha.is_finite(),
        "{op}: alpha must be finite and > 0, got {alpha}"
    );
}

/// Checks a batch `r: [B, n]` with `k`, `α` of length `B` (and each row as [`check_row`]);
/// returns `(B, n)`.
fn check_batch(op: &str, r: &RefTensor, k: &[f64], alpha: &[f64]) -> (usize, usize) {
    assert!(
        r.shape.len() == 2,
        "{op}: r must have shape [B, n], got {:?}",
        r.shape
    );
    let (rows, n) = (r.shape[0], r.shape[1]);
    assert!(
        k.len() == rows && alpha.len() == rows,
        "{op}: k and alpha need one entry per row ({rows}), got {} and {}",
        k.len(),
        alpha.len()
    );
    for b in 0..rows {
        check_row(op, &r.data[b * n..(b + 1) * n], k[b], alpha[b]);
    }
    (rows, n)
}

/// `ln(eᵃ + eᵇ)` without overflow; `−∞` is the identity.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// `ln(|m| + √(m² + X))` given `ln X` (`X ≥ 0`): a sum of non-negative terms, so there is
/// no cancellation, and `X` never has to be formed (it underflows for wide gaps).
fn ln_abs_plus_hypot(m: f64, ln_x: f64) -> f64 {
    let ln_m = m.abs().ln(); // −∞ for m = 0
    let ln_root = 0.5 * log_add_exp(2.0 * ln_m, ln_x);
    log_add_exp(ln_m, ln_root)
}

/// The soft top-k threshold: the `b` with `Σ_i F((r_i − b)/α) = k`, by the closed form of
/// `softtopk-engine.md` §2.
///
/// Sort ascending, `o_1 ≤ … ≤ o_n`, `d_j = e^{−(o_{j+1} − o_j)/α}` and the scaled sums
///
/// ```text
/// P_j = Σ_{i≤j} e^{(o_i − o_j)/α} = d_{j−1} P_{j−1} + 1,   Q_j = Σ_{i≥j} e^{−(o_i − o_j)/α} = d_j Q_{j+1} + 1
/// S(o_j) = ½P_j + (n − j) − ½ d_j Q_{j+1}      (last term absent for j = n)
/// ```
///
/// (every factor is ≤ 1, nothing overflows). Then, with `m_j = n − j − k`:
///
/// * `k ≥ S(o_1)`: `b = o_1 + α ln(2(n − k)/Q_1)`;
/// * `k ≤ S(o_n)`: `b = o_n − α ln(2k/P_n)`;
/// * otherwise the first `j` with `S(o_{j+1}) ≤ k` (so `S(o_j) > k`): on `[o_j, o_{j+1}]`,
///   `v = e^{(b − o_j)/α}` solves `Q_{j+1} d_j v² − 2 m_j v − P_j = 0`. With
///   `X = d_j P_j Q_{j+1}` the root is `v = P_j / (√(m² + X) − m)` (the cancellation-free
///   form for `m < 0`) or `v = (m + √(m² + X)) / (Q_{j+1} d_j)` (for `m ≥ 0`). The second
///   overflows when `d_j` underflows (a gap ≫ α), so it is written for
///   `w = e^{(o_{j+1} − b)/α} = e^{δ}/v = Q_{j+1}/(m + √(m² + X))` instead, and both
///   are evaluated in log space (`ln X = ln P_j + ln Q_{j+1} − δ`, `δ = (o_{j+1} − o_j)/α`):
///
///   ```text
///   L = ln(|m| + √(m² + X))
///   m < 0:  b = o_j     + α (ln P_j     − L)
///   m ≥ 0:  b = o_{j+1} − α (ln Q_{j+1} − L)
///   ```
///
///   and `b` is clamped to `[o_j, o_{j+1}]` (only rounding can put it outside).
///
/// The comparisons use `S(o_j) − k = ½P_j + m_j − ½ d_j Q_{j+1}`, which keeps full
/// precision when `k` is close to an integer.
///
/// # Panics
///
/// If `r` is empty or has a non-finite entry, `k ∉ (0, n)`, or `α` is not finite and `> 0`.
pub fn soft_topk_threshold(r: &[f64], k: f64, alpha: f64) -> f64 {
    check_row("soft_topk_threshold", r, k, alpha);
    let n = r.len();
    let mut o = r.to_vec();
    o.sort_by(f64::total_cmp);
    // 0-based from here on: index j is the spec's j + 1, so its `n − j` is `n − 1 − j`.
    let d: Vec<f64> = (0..n - 1)
        .map(|j| (-(o[j + 1] - o[j]) / alpha).exp())
        .collect();
    let mut p = vec![1.0; n];
    for j in 1..n {
        p[j] = d[j - 1] * p[j - 1] + 1.0;
    }
    let mut q = vec![1.0; n];
    for j in (0..n - 1).rev() {
        q[j] = d[j] * q[j + 1] + 1.0;
    }
    let m_at = |j: usize| (n - 1 - j) as f64 - k;
    // S(o_j) − k.
    let excess = |j: usize| {
        let right = if j + 1 < n {
            0.5 * d[j] * q[j + 1]
        } else {
            0.0
        };
        0.5 * p[j] + m_at(j) - right
    };

    if excess(0) <= 0.0 {
        return o[0] + alpha * ((2.0 * (n as f64 - k)).ln() - q[0].ln());
    }
    if excess(n - 1) >= 0.0 {
        return o[n - 1] - alpha * ((2.0 * k).ln() - p[n - 1].ln());
    }
    // excess(0) > 0 > excess(n − 1), so n ≥ 2 and the first j with excess(j + 1) ≤ 0 exists.
    let j = (0..n - 1)
        .find(|&j| excess(j + 1) <= 0.0)
        .expect("excess(n − 1) < 0 ends the search");
    let m = m_at(j);
    let delta = (o[j + 1] - o[j]) / alpha;
    let l = ln_abs_plus_hypot(m, p[j].ln() + q[j + 1].ln() - delta);
    let b = if m < 0.0 {
        o[j] + alpha * (p[j].ln() - l)
    } else {
        o[j + 1] - alpha * (q[j + 1].ln() - l)
    };
    b.clamp(o[j], o[j + 1])
}

/// The soft top-k threshold by bisection on the sign of `S(b) − k` (200 halvings), for
/// tests only: an independent check of [`soft_topk_threshold`] that needs no sort.
///
/// Bracket: every term of `S` is `≥ F(L)` at `b = min r − αL` and `≤ ½e^{−L}` at
/// `b = max r + αL`, so `S ≥ k` at `lo = min r − α(max(0, ln(n/(2(n − k)))) + 1)` and
/// `S ≤ k` at `hi = max r + α(max(0, ln(n/(2k))) + 1)`. With `x_i = (r_i − b)/α` and
/// `c = #{x_i > 0} − k`,
///
/// ```text
/// S(b) − k = [Σ_{x_i ≤ 0} ½e^{x_i} + max(c, 0)] − [Σ_{x_i > 0} ½e^{−x_i} + max(−c, 0)]
/// ```
///
/// and the two brackets are compared by their logarithms (log-sum-exp). A plain sum would
/// round to exactly `0` over most of a gap ≫ α when `k` is an integer (both sums
/// underflow), and the bisection would stop anywhere in the gap; in log space the sign
/// stays exact. Likewise `k` close to an integer (`k = n − 10⁻⁹`) loses nothing. After 200
/// halvings `lo` and `hi` are adjacent floats (or equal); their midpoint is returned.
///
/// # Panics
///
/// As [`soft_topk_threshold`].
pub fn soft_topk_threshold_bisect(r: &[f64], k: f64, alpha: f64) -> f64 {
    check_row("soft_topk_threshold_bisect", r, k, alpha);
    let n = r.len() as f64;
    // ln Σ e^{v_i}; −∞ for no terms.
    let log_sum_exp = |v: &[f64]| {
        let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top == f64::NEG_INFINITY {
            top
        } else {
            top + v.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
        }
    };
    // S(b) > k, decided in log space.
    let above = |b: f64| {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        let mut c = -k;
        for &ri in r {
            let x = (ri - b) / alpha;
            if x <= 0.0 {
                up.push(x - std::f64::consts::LN_2);
            } else {
                c += 1.0;
                down.push(-x - std::f64::consts::LN_2);
            }
        }
        if c > 0.0 {
            up.push(c.ln());
        } else if c < 0.0 {
            down.push((-c).ln());
        }
        log_sum_exp(&up) > log_sum_exp(&down)
    };
    let r_min = r.iter().copied().fold(f64::INFINITY, f64::min);
    let r_max = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut lo = r_min - alpha * ((n / (2.0 * (n - k))).ln().max(0.0) + 1.0);
    let mut hi = r_max + alpha * ((n / (2.0 * k)).ln().max(0.0) + 1.0);
    for _ in 0..200 {
        let mid = lo + 0.5 * (hi - lo);
        if above(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo + 0.5 * (hi - lo)
}

/// Soft top-k of each row of `r: [B, n]`: `p_i = F((r_i − b)/α)` with `b` the
/// [`soft_topk_threshold`] of the row for its `k` and `α`. Output `[B, n]`; `Σ_i p_i = k`
/// up to rounding (rounding of `b` itself dominates when `ulp(b) ≫ α`, e.g. `|r| ~ 1e30`
/// with `α = 1`).
///
/// # Panics
///
/// If `r` is not `[B, n]`, `k` or `alpha` does not have `B` entries, or a row fails the
/// checks of [`soft_topk_threshold`].
pub fn soft_topk(r: &RefTensor, k: &[f64], alpha: &[f64]) -> RefTensor {
    let (rows, n) = check_batch("soft_topk", r, k, alpha);
    let mut out = Vec::with_capacity(rows * n);
    for b in 0..rows {
        let row = &r.data[b * n..(b + 1) * n];
        let thr = soft_topk_threshold(row, k[b], alpha[b]);
        out.extend(row.iter().map(|&ri| laplace_cdf((ri - thr) / alpha[b])));
    }
    RefTensor::new(&[rows, n], out)
}

/// VJP of one soft top-k row (module doc, "Backward"): `(∂ℓ/∂r, ∂ℓ/∂k, ∂ℓ/∂α)` for
/// upstream `g = ∂ℓ/∂p`. `f_i/α` is formed directly (it may underflow to 0, correctly);
/// the normalised weights `f_j/F_Σ` are formed from `e^{−(|x_j| − min|x|)}`.
fn soft_topk_row_backward(r: &[f64], k: f64, alpha: f64, g: &[f64]) -> (Vec<f64>, f64, f64) {
    let thr = soft_topk_threshold(r, k, alpha);
    let x: Vec<f64> = r.iter().map(|&ri| (ri - thr) / alpha).collect();
    let x_min = x.iter().map(|v| v.abs()).fold(f64::INFINITY, f64::min);
    // w_j = f_j / f(x_min) ∈ (0, 1], largest 1; f_j/F_Σ = w_j / Σ w.
    let w: Vec<f64> = x.iter().map(|v| (-(v.abs() - x_min)).exp()).collect();
    let w_sum: f64 = w.iter().sum();
    let g_bar = w.iter().zip(g).map(|(wi, gi)| wi * gi).sum::<f64>() / w_sum;
    // Σ_j f_j (r_j − b)/F_Σ = α Σ_j w_j x_j / Σ w.
    let mean_offset = alpha * w.iter().zip(&x).map(|(wi, xi)| wi * xi).sum::<f64>() / w_sum;
    let mut grad_r = Vec::with_capacity(r.len());
    let mut grad_alpha = 0.0;
    for (xi, gi) in x.iter().zip(g) {
        let fi = laplace_pdf(*xi);
        grad_r.push(fi / alpha * (gi - g_bar));
        grad_alpha += gi * fi / (alpha * alpha) * (mean_offset - alpha * xi);
    }
    (grad_r, g_bar, grad_alpha)
}

/// Checks that `g` has the shape `[B, n]` of the forward's input.
fn check_upstream(op: &str, g: &RefTensor, rows: usize, n: usize) {
    assert!(
        g.shape == [rows, n],
        "{op}: g must have the shape [B, n] = {:?} of r, got {:?}",
        [rows, n],
        g.shape
    );
}

/// Backward of [`soft_topk`] (`softtopk-engine.md` §3): for upstream `g = ∂ℓ/∂p: [B, n]`
/// returns `(∂ℓ/∂r: [B, n], ∂ℓ/∂k: [B], ∂ℓ/∂α: [B])` with, per row,
///
/// ```text
/// ∂ℓ/∂r_i = (f_i/α)(g_i − ḡ),  ∂ℓ/∂k = ḡ = Σ f_i g_i / F_Σ,
/// ∂ℓ/∂α = Σ_i g_i (f_i/α²)(Σ_j f_j (r_j − b)/F_Σ − (r_i − b)),   f_i = f((r_i − b)/α)
/// ```
///
/// # Panics
///
/// As [`soft_topk`], or if `g` does not have the shape of `r`.
pub fn soft_topk_backward(
    r: &RefTensor,
    k: &[f64],
    alpha: &[f64],
    g: &RefTensor,
) -> (RefTensor, Vec<f64>, Vec<f64>) {
    let (rows, n) = check_batch("soft_topk_backward", r, k, alpha);
    check_upstream("soft_topk_backward", g, rows, n);
    let mut grad_r = Vec::with_capacity(rows * n);
    let mut grad_k = Vec::with_capacity(rows);
    let mut grad_alpha = Vec::with_capacity(rows);
    for b in 0..rows {
        let span = b * n..(b + 1) * n;
        let (gr, gk, ga) =
            soft_topk_row_backward(&r.data[span.clone()], k[b], alpha[b], &g.data[span]);
        grad_r.extend(gr);
        grad_k.push(gk);
        grad_alpha.push(ga);
    }
    (RefTensor::new(&[rows, n], grad_r), grad_k, grad_alpha)
}

/// Per row of a truncation: how many entries it may keep (`m`) and which it keeps, in
/// output order (descending `p`, ties by lower index).
struct TruncatedRow {
    m: usize,
    kept: Vec<usize>,
}

/// The truncation rule of `sparse-methods.md` §1.1 item 2 on one row of `p`
/// (see [`soft_topk_truncated`]).
fn truncate_row(p: &[f64], k: f64, c_cap: f64, c_tau: f64) -> TruncatedRow {
    let n = p.len();
    let m = ((c_cap * k).ceil() as usize).clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    // Descending p, ties by lower index (sort_by is stable).
    order.sort_by(|&i, &j| p[j].total_cmp(&p[i]));
    let (p_first, p_mth) = (p[order[0]], p[order[m - 1]]);
    let tau = (c_tau * k / n as f64).max(p_mth).min(p_first);
    let kept = order[..m]
        .iter()
        .copied()
        .take_while(|&i| p[i] >= tau)
        .collect();
    TruncatedRow { m, kept }
}

/// Checks the truncation constants: `c_cap` finite and `> 0`, `c_τ` finite and `≥ 0`.
fn check_truncation(op: &str, c_cap: f64, c_tau: f64) {
    assert!(
        c_cap > 0.0 && c_cap.is_finite(),
        "{op}: c_cap must be finite and > 0, got {c_cap}"
    );
    assert!(
        c_tau >= 0.0 && c_tau.is_finite(),
        "{op}: c_tau must be finite and >= 0, got {c_tau}"
    );
}

/// The truncation of each row of `p = soft_topk(r, k, α)`, as `kept` lists of row indices.
fn truncate_all(
    op: &str,
    r: &RefTensor,
    k: &[f64],
    alpha: &[f64],
    c_cap: f64,
    c_tau: f64,
) -> (RefTensor, Vec<TruncatedRow>) {
    check_truncation(op, c_cap, c_tau);
    let p = soft_topk(r, k, alpha);
    let (rows, n) = (r.shape[0], r.shape[1]);
    let rules = (0..rows)
        .map(|b| truncate_row(&p.data[b * n..(b + 1) * n], k[b], c_cap, c_tau))
        .collect();
    (p, rules)
}

/// Truncated soft top-k (SoftMoE, `sparse-methods.md` §1.1 item 2), sparse form. Per row,
/// with `p = soft_topk(r, k, α)`:
///
/// ```text
/// m = min(⌈c_cap·k⌉, n),   τ = clamp(c_τ·k/n, p_(m), p_(1)),   p̃_i = p_i · 1[i kept]
/// ```
///
/// `p_(j)` is the j-th largest `p`. The candidates are the first `m` entries in the order
/// *descending `p`, ties by lower index*; of them those with `p_i ≥ τ` are kept. (Taking
/// the first `m` matters only for ties at `p_(m)`: without it more than `m` entries could
/// pass `p_i ≥ τ = p_(m)`.) So `1 ≤ kept ≤ m`: `τ ≤ p_(1)` always keeps the largest.
/// Values are not renormalised: `Σ p̃ ≤ k`.
///
/// Returns `(indices, values)`, one `Vec` of length `m` (the row's capacity) per row:
/// the kept entries first, in the order above, with `values[j] = p[indices[j]]` (the dense
/// `p` exactly); the remaining `m − kept` slots are padding, index `u32::MAX` and value `0`.
///
/// # Panics
///
/// As [`soft_topk`], or if `c_cap` is not finite and `> 0`, or `c_τ` is not finite and `≥ 0`.
pub fn soft_topk_truncated(
    r: &RefTensor,
    k: &[f64],
    alpha: &[f64],
    c_cap: f64,
    c_tau: f64,
) -> (Vec<Vec<u32>>, Vec<Vec<f64>>) {
    let (p, rules) = truncate_all("soft_topk_truncated", r, k, alpha, c_cap, c_tau);
    let n = r.shape[1];
    let mut indices = Vec::with_capacity(rules.len());
    let mut values = Vec::with_capacity(rules.len());
    for (b, rule) in rules.iter().enumerate() {
        let row = &p.data[b * n..(b + 1) * n];
        let mut idx: Vec<u32> = rule.kept.iter().map(|&i| i as u32).collect();
        let mut val: Vec<f64> = rule.kept.iter().map(|&i| row[i]).collect();
        idx.resize(rule.m, u32::MAX);
        val.resize(rule.m, 0.0);
        indices.push(idx);
        values.push(val);
    }
    (indices, values)
}

/// Dense view of [`soft_topk_truncated`]: `[B, n]` with `p̃_i = p_i` for kept entries and
/// `0` elsewhere.
///
/// # Panics
///
/// As [`soft_topk_truncated`].
pub fn soft_topk_truncated_dense(
    r: &RefTensor,
    k: &[f64],
    alpha: &[f64],
    c_cap: f64,
    c_tau: f64,
) -> RefTensor {
    let (p, rules) = truncate_all("soft_topk_truncated_dense", r, k, alpha, c_cap, c_tau);
    let n = r.shape[1];
    let mut out = vec![0.0; p.data.len()];
    for (b, rule) in rules.iter().enumerate() {
        for &i in &rule.kept {
            out[b * n + i] = p.data[b * n + i];
        }
    }
    RefTensor::new(&p.shape, out)
}

/// Backward of [`soft_topk_truncated_dense`] for upstream `g = ∂ℓ/∂p̃: [B, n]` (dense; a
/// sparse upstream scatters to it): the mask is a constant, so kept entries pass `g_i`
/// into the [`soft_topk_backward`] VJP and dropped ones pass 0 (a shifted ReLU with
/// sub-gradient 0 at `τ`):
///
/// ```text
/// (∂ℓ/∂r, ∂ℓ/∂k, ∂ℓ/∂α) = soft_topk_backward(r, k, α, g ⊙ 1[kept])
/// ```
///
/// # Panics
///
/// As [`soft_topk_truncated`], or if `g` does not have the shape of `r`.
pub fn soft_topk_truncated_backward(
    r: &RefTensor,
    k: &[f64],
    alpha: &[f64],
    c_cap: f64,
    c_tau: f64,
    g: &RefTensor,
) -> (RefTensor, Vec<f64>, Vec<f64>) {
    let op = "soft_topk_truncated_backward";
    let (_, rules) = truncate_all(op, r, k, alpha, c_cap, c_tau);
    let (rows, n) = (r.shape[0], r.shape[1]);
    check_upstream(op, g, rows, n);
    let mut masked = vec![0.0; g.data.len()];
    for (b, rule) in rules.iter().enumerate() {
        for &i in &rule.kept {
            masked[b * n + i] = g.data[b * n + i];
        }
    }
    soft_topk_backward(r, k, alpha, &RefTensor::new(&g.shape, masked))
}

/// Checks `α` finite and `> 0` and every `r` finite (soft rank / soft sort).
fn check_rank_args(op: &str, r: &[f64], alpha: f64) {
    assert!(
        r.iter().all(|v| v.is_finite()),
        "{op}: every r must be finite, got {r:?}"
    );
    assert!(
        alpha > 0.0 && alpha.is_finite(),
        "{op}: alpha must be finite and > 0, got {alpha}"
    );
}

/// Soft rank (ascending, `softtopk-engine.md` §5), by its O(n²) definition:
///
/// ```text
/// rank_i = ½ + Σ_j F((r_i − r_j)/α)
/// ```
///
/// The `j = i` term is `F(0) = ½`, so `rank_i ≥ 1`; as `α → 0` it tends to the 1-based
/// hard rank for distinct values (tied values share the mean of their ranks). Since
/// `F(x) + F(−x) = 1`, `Σ_i rank_i = n/2 + n²/2 = n(n+1)/2` for every `α`.
///
/// # Panics
///
/// If some `r_i` is not finite or `α` is not finite and `> 0`.
pub fn soft_rank(r: &[f64], alpha: f64) -> Vec<f64> {
    check_rank_args("soft_rank", r, alpha);
    r.iter()
        .map(|&ri| {
            0.5 + r
                .iter()
                .map(|&rj| laplace_cdf((ri - rj) / alpha))
                .sum::<f64>()
        })
        .collect()
}

/// Backward of [`soft_rank`] for upstream `g = ∂ℓ/∂rank`: `(∂ℓ/∂r, ∂ℓ/∂α)` with
/// `x_ij = (r_i − r_j)/α`,
///
/// ```text
/// ∂ℓ/∂r_l = (1/α) Σ_j f(x_lj) (g_l − g_j),     ∂ℓ/∂α = −(1/α) Σ_{i,j} g_i f(x_ij) x_ij
/// ```
///
/// (`∂rank_i/∂r_l = (δ_il Σ_j f(x_ij) − f(x_il))/α`; the `j = i` terms cancel.)
///
/// # Panics
///
/// As [`soft_rank`], or if `g.len() != r.len()`.
pub fn soft_rank_backward(r: &[f64], alpha: f64, g: &[f64]) -> (Vec<f64>, f64) {
    check_rank_args("soft_rank_backward", r, alpha);
    assert!(
        g.len() == r.len(),
        "soft_rank_backward: g has {} entries, r has {}",
        g.len(),
        r.len()
    );
    let n = r.len();
    let mut grad_r = vec![0.0; n];
    let mut grad_alpha = 0.0;
    for l in 0..n {
        for j in 0..n {
            let x = (r[l] - r[j]) / alpha;
            let fx = laplace_pdf(x);
            grad_r[l] += fx * (g[l] - g[j]) / alpha;
            grad_alpha -= g[l] * fx * x / alpha;
        }
    }
    (grad_r, grad_alpha)
}

/// Soft sort (ascending; LapSum `sort/cpu/soft_sort.cpp`, `sparse-methods.md` §0): the
/// i-th value (0-based) is the `b_i` with
///
/// ```text
/// G(b_i) = Σ_j F((b_i − r_j)/α) = i + ½
/// ```
///
/// `G` increases strictly from 0 to `n`, so `b_0 < b_1 < … < b_{n−1}` (up to rounding), and
/// as `α → 0`, `b_i → r_(i)` (the i-th smallest) for distinct values. As
/// `F((b − r_j)/α) = 1 − F((r_j − b)/α)`, `G(b) = n − S(b)`: `b_i` is the
/// [`soft_topk_threshold`] of `r` for `k = n − i − ½ ∈ (0, n)`.
///
/// # Panics
///
/// If some `r_i` is not finite or `α` is not finite and `> 0`.
pub fn soft_sort(r: &[f64], alpha: f64) -> Vec<f64> {
    check_rank_args("soft_sort", r, alpha);
    let n = r.len();
    (0..n)
        .map(|i| soft_topk_threshold(r, n as f64 - i as f64 - 0.5, alpha))
        .collect()
}

/// Backward of [`soft_sort`] for upstream `g = ∂ℓ/∂b`: `(∂ℓ/∂r, ∂ℓ/∂α)`, by implicit
/// differentiation of `G(b_i) = i + ½` with `f_ij = f((b_i − r_j)/α)`:
///
/// ```text
/// ∂b_i/∂r_j = f_ij / Σ_l f_il,     ∂b_i/∂α = Σ_j f_ij (b_i − r_j)/α / Σ_l f_il
/// ```
///
/// The ratios are formed from `e^{−(|x_ij| − min_l |x_il|)}`, as in [`soft_topk_backward`].
///
/// # Panics
///
/// As [`soft_sort`], or if `g.len() != r.len()`.
pub fn soft_sort_backward(r: &[f64], alpha: f64, g: &[f64]) -> (Vec<f64>, f64) {
    assert!(
        g.len() == r.len(),
        "soft_sort_backward: g has {} entries, r has {}",
        g.len(),
        r.len()
    );
    let sorted = soft_sort(r, alpha);
    let mut grad_r = vec![0.0; r.len()];
    let mut grad_alpha = 0.0;
    for (bi, gi) in sorted.iter().zip(g) {
        let x: Vec<f64> = r.iter().map(|&rj| (bi - rj) / alpha).collect();
        let x_min = x.iter().map(|v| v.abs()).fold(f64::INFINITY, f64::min);
        let w: Vec<f64> = x.iter().map(|v| (-(v.abs() - x_min)).exp()).collect();
        let w_sum: f64 = w.iter().sum();
        for (grj, wj) in grad_r.iter_mut().zip(&w) {
            *grj += gi * wj / w_sum;
        }
        grad_alpha += gi * w.iter().zip(&x).map(|(wj, xj)| wj * xj).sum::<f64>() / w_sum;
    }
    (grad_r, grad_alpha)
}

/// Hard top-k mask of a row: `1` at the `k` largest entries, `0` elsewhere; ties go to the
/// lower index (a stable descending order). The `α → 0` limit of [`soft_topk`] for
/// distinct values and integer `k`.
///
/// # Panics
///
/// If `k > r.len()` or some `r_i` is NaN.
pub fn hard_topk_mask(r: &[f64], k: usize) -> Vec<f64> {
    assert!(
        k <= r.len(),
        "hard_topk_mask: k = {k} exceeds the row length {}",
        r.len()
    );
    assert!(
        r.iter().all(|v| !v.is_nan()),
        "hard_topk_mask: r has a NaN: {r:?}"
    );
    let mut order: Vec<usize> = (0..r.len()).collect();
    // Numeric order (−0 ties +0), descending; sort_by is stable, so ties keep index order.
    order.sort_by(|&i, &j| r[j].partial_cmp(&r[i]).expect("no NaN, checked above"));
    let mut mask = vec![0.0; r.len()];
    for &i in &order[..k] {
        mask[i] = 1.0;
    }
    mask
}

#[cfg(test)]
#[path = "softtopk_tests.rs"]
mod tests;
