//! O(d log d) f64 references for REMIX's Laplace covariance model
//! `Σ = diag(u) + diag(w) K(a; λ) diag(w)`, `K_ij = e^{−λ|a_i − a_j|}`: `log det Σ`,
//! `rᵀΣ⁻¹r`, `Σ⁻¹r`, the Gaussian NLL and all their gradients (for `r`, `u`, `w`, `a`,
//! `λ`), by a Kalman filter on the sorted anchors and its hand-written reverse-mode
//! adjoint. They check the device's `LaplaceCovariance` (`covariance/lcm.rs`, the same
//! algorithm in f32) at sizes (d ≈ 4·10⁶) where the dense-Cholesky references of
//! [`remix_logdet`](super::remix_logdet) & co. are out of reach, and are themselves checked
//! against those dense references at small d (the tests at the bottom).
//!
//! Each `remix_*_kalman` function has the signature, argument checks and conventions of
//! the dense function without the suffix (see `covariance.rs`), returns the same value up
//! to rounding, and costs one sort plus a few O(d) passes, with O(d) memory.
//!
//! # The filter
//!
//! Sort the anchors stably (`o(0), …, o(d−1)`, ties in index order) and write `u_k`,
//! `w_k`, `r_k` for the entries at `o(k)`. With `Δ_k = a_{o(k)} − a_{o(k−1)}` (k ≥ 1),
//!
//! ```text
//! ρ_k = e^{−λΔ_k},  q_k = 1 − ρ_k² = −expm1(−2λΔ_k)      (k ≥ 1;  ρ_0 = 0, q_0 = 1)
//! ```
//!
//! `K` (in sorted order) is the covariance of the AR(1) chain `ζ_k = ρ_k ζ_{k−1} + √q_k ε_k`,
//! and `r_k = w_k ζ_k + √u_k η_k` has covariance `Σ`. The Kalman filter (`P_{−1}`,
//! `m_{−1}` irrelevant because `ρ_0 = 0`):
//!
//! ```text
//! P⁻_k = q_k + ρ_k² P_{k−1}          S_k = w_k² P⁻_k + u_k
//! G_k  = P⁻_k w_k / S_k              P_k = P⁻_k u_k / S_k
//! m⁻_k = ρ_k m_{k−1}                 v_k = r_k − w_k m⁻_k        m_k = m⁻_k + G_k v_k
//! log det Σ = Σ_k ln S_k             rᵀΣ⁻¹r = Σ_k v_k² / S_k
//! ```
//!
//! (Here `ρ_k` is the gap *into* position k, the device's `ρ_{k−1}`.) `v = B r` with `B`
//! unit lower triangular (sorted order) and `Var v = diag(S)`, so `Σ = B⁻¹ diag(S) B⁻ᵀ`
//! and `Σ⁻¹ r = Bᵀ (v/S)`: the **solve** is the adjoint of the mean recursion applied
//! to `v̄ = v/S` (below), i.e. `Σ⁻¹r = ∂(½ rᵀΣ⁻¹r)/∂r`.
//!
//! # The adjoint
//!
//! Every objective is a function `ℓ(v, S)` with direct adjoints `v̄ᵈ_k = ∂ℓ/∂v_k`,
//! `S̄ᵈ_k = ∂ℓ/∂S_k`:
//!
//! ```text
//! log det:      v̄ᵈ = 0,        S̄ᵈ = 1/S
//! Mahalanobis:  v̄ᵈ = 2v/S,     S̄ᵈ = −v²/S²
//! NLL:          v̄ᵈ = v/S,      S̄ᵈ = ½ (1/S − v²/S²)
//! solve VJP:    ℓ = gyᵀΣ⁻¹r = Σ_k v_k(gy) v_k(r) / S_k   (two filters, same S):
//!               v̄ᵈ(r) = v(gy)/S,  v̄ᵈ(gy) = v(r)/S,  S̄ᵈ = −v(r) v(gy)/S²
//! ```
//!
//! **Mean pass** (reverse, `m̄⁻_d = 0`, `ρ_d = 0`), for each filtered vector:
//!
//! ```text
//! m̄_k  = ρ_{k+1} m̄⁻_{k+1}        v̄_k = v̄ᵈ_k + G_k m̄_k        m̄⁻_k = m̄_k − w_k v̄_k
//! r̄_k  = v̄_k,   Ḡ_k += m̄_k v_k,   w̄_k −= v̄_k m⁻_k,   ρ̄_k += m̄⁻_k m_{k−1}
//! ```
//!
//! **Variance pass** (reverse, `P̄_{d−1} = 0`), with the `Ḡ` of all mean passes:
//!
//! ```text
//! S̄_k  = S̄ᵈ_k − Ḡ_k G_k/S_k − P̄_k P_k/S_k
//! P̄⁻_k = S̄_k w_k² + Ḡ_k w_k/S_k + P̄_k u_k/S_k
//! ū_k  = S̄_k + P̄_k P⁻_k/S_k        w̄_k += 2 w_k P⁻_k S̄_k + Ḡ_k P⁻_k/S_k
//! ρ̄_k += −2 ρ_k (1 − P_{k−1}) P̄⁻_k,   P̄_{k−1} = ρ_k² P̄⁻_k      (k ≥ 1; P⁻_k = 1 − ρ_k²(1 − P_{k−1}))
//! ```
//!
//! **Anchors and rate.** `Δ̄_k = −λ ρ_k ρ̄_k`, `λ̄ = −Σ_k Δ_k ρ_k ρ̄_k`, and
//! `ā_{o(k)} = Δ̄_k − Δ̄_{k+1}` (`Δ̄_0 = Δ̄_d = 0`). This is the exact gradient of the model
//! whose pairwise signs `sgn(a_i − a_j)` are frozen at the sorted order — i.e. of the
//! dense formula `ā_i = −λ w_i Σ_j sgn(a_i − a_j) K_ij w_j S̄_ij` (`S̄ = Σ̄ + Σ̄ᵀ`,
//! `Σ̄ = ∂ℓ/∂Σ`) with the sorted-order sign in place of `sgn`.
//!
//! # Ties
//!
//! No floor is applied: an exact tie gives `ρ = 1`, `q = 0`, `P⁻_k = P_{k−1}`, and the
//! filter stays exact as long as every `S_k > 0` (true when `u > 0`), so the values equal
//! the dense ones (the device floors `q` at 1e-8 instead, which moves `P⁻` by ≈ 1e-8 per
//! tie). `u_i = 0` is fine at untied anchors (the pure OU case, `S_k = w_k² P⁻_k`).
//!
//! For `ā` the dense references use `sgn(0) = 0` between tied anchors, whereas the chain
//! form above freezes their sorted order (`±1`). Correcting the chain form afterwards
//! would subtract the in-run pair terms (O(λ) each) from in-run gap adjoints, losing all
//! relative accuracy when the true `ā` is small (far neighbours, large λ). So at every
//! anchor `k` of a run `p..=q` of exactly tied anchors (`Δ = 0`), `ā_k` is computed
//! directly from its couplings to the anchors outside the run:
//!
//! ```text
//! ā_k = −λ w_k (Σ_{j<p} K_pj w_j S̄_kj − Σ_{j>q} K_qj w_j S̄_kj),
//! S̄_kj = β Σ⁻¹_kj − γ (z_k y_j + y_k z_j)      (j ≠ k)
//! ```
//!
//! with `(β, γ, y, z)` = log det `(2, 0)`, Mahalanobis `(0, 1, Σ⁻¹r, Σ⁻¹r)`, NLL
//! `(1, ½, Σ⁻¹r, Σ⁻¹r)`, solve VJP `(0, 1, Σ⁻¹r, Σ⁻¹gy)` (`S̄ = Σ̄ + Σ̄ᵀ`). The rank-one
//! parts are one-sided Laplace sums, scans `Lf_k = ρ_k (Lf_{k−1} + w_{k−1} f_{k−1})` and
//! `Rf_k = ρ_{k+1} (Rf_{k+1} + w_{k+1} f_{k+1})`. For `Σ⁻¹`:
//! `Σ⁻¹ = U⁻¹ − U⁻¹ W C W U⁻¹` with `C = Cov(ζ | r) = K − KWΣ⁻¹WK`, and the smoothed
//! (Rauch–Tung–Striebel) covariances of the chain are
//!
//! ```text
//! Pˢ_{d−1} = P_{d−1},  Pˢ_k = P_k + J_k² (Pˢ_{k+1} − P⁻_{k+1}),  J_k = ρ_{k+1} P_k / P⁻_{k+1}
//! C_jk = J_j J_{j+1} ⋯ J_{k−1} Pˢ_k   (j < k;  J = 1 and Pˢ constant inside a run)
//! ```
//!
//! so `Σ_{j<p} K_pj w_j Σ⁻¹_kj = −(w_k/u_k) Pˢ_p H_p` and
//! `Σ_{j>q} K_qj w_j Σ⁻¹_kj = −(w_k/u_k) R_q`, with the (nonnegative) scans
//!
//! ```text
//! H_k = ρ_k J_{k−1} (H_{k−1} + w²_{k−1}/u_{k−1})        (J_{k−1} w²_{k−1}/u_{k−1} = ρ_k G_{k−1} w_{k−1} / P⁻_k)
//! R_k = ρ_{k+1} J_k (w²_{k+1} Pˢ_{k+1}/u_{k+1} + R_{k+1})
//! ⇒ ā_k = λ [β (w_k²/u_k)(Pˢ_p H_p − R_q) + γ w_k (z_k (Ly_p − Ry_q) + y_k (Lz_p − Rz_q))]
//! ```
//!
//! (`Pˢ_j/u_j` is formed as `(P⁻_j/S_j)(1 + ρ²_{j+1} P_j (Pˢ_{j+1} − P⁻_{j+1})/P⁻²_{j+1})`,
//! finite at `u_j = 0`.) For a run of one anchor this is the plain dense formula, which
//! the tests check against the chain form at distinct anchors. It needs `u > 0` on tied
//! anchors (a run with some `u_k = 0` gets a non-finite `ā`); the values and the other
//! gradients do not. A run's total `Σ_{k∈run} ā_k` equals the chain's `Δ̄_p − Δ̄_{q+1}`
//! (moving the run together).
//!
//! **The device's convention.** The device floors `1 − ρ²` at 1e-8, passes no gradient
//! through a floored gap and gives each anchor of a run (sorted neighbours joined by
//! floored gaps) the run's mean `ā`. [`remix_tie_mean_kalman`] maps these references'
//! `ā` to that convention (runs: `−expm1(−2λΔ) <` [`OU_ONE_MINUS_RHO2_FLOOR`]); the run
//! totals agree, so the two then match up to the floor's effect on the values.

use super::covariance::{RemixGrads, OU_ONE_MINUS_RHO2_FLOOR};

// ------------------------------------------------------------------ checks

/// Asserts a vector argument has length `d`.
fn check_len(op: &str, name: &str, v: &[f64], d: usize) {
    assert!(
        v.len() == d,
        "{op}: {name} has length {} but d = {d}",
        v.len()
    );
}

/// Asserts the REMIX parameters agree (`u`, `w`, `a` of one length, `λ > 0`, a NaN rate
/// let through); returns `d`.
fn check_remix(op: &str, u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> usize {
    let d = a.len();
    check_len(op, "u", u, d);
    check_len(op, "w", w, d);
    check_rate(op, lambda);
    d
}

/// Asserts `λ > 0` (a NaN rate is let through, to propagate).
fn check_rate(op: &str, lambda: f64) {
    assert!(
        lambda > 0.0 || lambda.is_nan(),
        "{op}: the rate λ must be > 0, got {lambda}"
    );
}

// ------------------------------------------------------------------ the filter

/// Stable ascending argsort of the anchors (`total_cmp`, ties in index order), with the
/// sorted anchors.
fn sort_anchors(a: &[f64]) -> (Vec<usize>, Vec<f64>) {
    let mut keyed: Vec<(f64, usize)> = a.iter().copied().zip(0..).collect();
    keyed.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    keyed.into_iter().map(|(x, i)| (i, x)).unzip()
}

/// `xs[o(k)]` for every k.
fn gather(xs: &[f64], order: &[usize]) -> Vec<f64> {
    order.iter().map(|&i| xs[i]).collect()
}

/// `out[o(k)] = xs[k]`: back to the caller's order.
fn scatter(xs: &[f64], order: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; xs.len()];
    for (k, &i) in order.iter().enumerate() {
        out[i] = xs[k];
    }
    out
}

/// The sorted chain and the variance (Riccati) recursion: everything that does not
/// depend on the data `r`. All vectors are in sorted order, length `d`.
struct Chain {
    lambda: f64,
    /// `o`: `order[k]` is the index of the k-th smallest anchor.
    order: Vec<usize>,
    /// The sorted anchors `a_{o(k)}`.
    a: Vec<f64>,
    /// `ρ_k` (gap into k); `rho[0] = 0`.
    rho: Vec<f64>,
    u: Vec<f64>,
    w: Vec<f64>,
    /// `P⁻_k`.
    pm: Vec<f64>,
    /// `S_k`.
    s: Vec<f64>,
    /// `P_k`.
    p: Vec<f64>,
}

impl Chain {
    /// Sorts the anchors and runs the variance recursion.
    fn new(u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> Chain {
        let d = a.len();
        let (order, a) = sort_anchors(a);
        let (u, w) = (gather(u, &order), gather(w, &order));
        let mut rho = vec![0.0; d];
        let (mut pm, mut s, mut p) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        let mut p_prev = 0.0;
        for k in 0..d {
            let q = if k == 0 {
                1.0
            } else {
                let gap = a[k] - a[k - 1];
                let q = -(-2.0 * lambda * gap).exp_m1();
                if q < OU_ONE_MINUS_RHO2_FLOOR && TIE_FLOOR.with(|f| f.get()) {
                    rho[k] = (1.0 - OU_ONE_MINUS_RHO2_FLOOR).sqrt();
                    OU_ONE_MINUS_RHO2_FLOOR
                } else {
                    rho[k] = (-lambda * gap).exp();
                    q
                }
            };
            pm[k] = q + rho[k] * rho[k] * p_prev;
            s[k] = w[k] * w[k] * pm[k] + u[k];
            p[k] = pm[k] * u[k] / s[k];
            p_prev = p[k];
        }
        Chain {
            lambda,
            order,
            a,
            rho,
            u,
            w,
            pm,
            s,
            p,
        }
    }

    fn dim(&self) -> usize {
        self.order.len()
    }

    /// `Δ_k = a_{o(k)} − a_{o(k−1)}` (k ≥ 1).
    fn gap(&self, k: usize) -> f64 {
        self.a[k] - self.a[k - 1]
    }

    /// Gain `G_k = P⁻_k w_k / S_k`.
    fn gain(&self, k: usize) -> f64 {
        self.pm[k] * self.w[k] / self.s[k]
    }

    /// `log det Σ = Σ_k ln S_k`.
    fn logdet(&self) -> f64 {
        self.s.iter().map(|s| s.ln()).sum()
    }

    /// The mean recursion for a data vector given in the caller's order.
    fn filter(&self, r: &[f64]) -> Innovations {
        let d = self.dim();
        let (mut mm, mut m, mut v) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        let mut m_prev = 0.0;
        for k in 0..d {
            mm[k] = self.rho[k] * m_prev;
            v[k] = r[self.order[k]] - self.w[k] * mm[k];
            m[k] = mm[k] + self.gain(k) * v[k];
            m_prev = m[k];
        }
        Innovations { mm, m, v }
    }

    /// Adjoint of the mean recursion of `f` for direct innovation adjoints `vd` (sorted):
    /// returns `r̄ = v̄` (sorted) and, given `adj`, accumulates `Ḡ`, `w̄`, `ρ̄` into it.
    fn mean_adjoint(&self, f: &Innovations, vd: &[f64], mut adj: Option<&mut Adj>) -> Vec<f64> {
        let d = self.dim();
        let mut rbar = vec![0.0; d];
        let mut mbm_next = 0.0; // m̄⁻_{k+1}
        for k in (0..d).rev() {
            let rho_next = if k + 1 < d { self.rho[k + 1] } else { 0.0 };
            let mbar = rho_next * mbm_next;
            let vbar = vd[k] + self.gain(k) * mbar;
            let mbm = mbar - self.w[k] * vbar;
            if let Some(adj) = adj.as_deref_mut() {
                adj.g[k] += mbar * f.v[k];
                adj.w[k] -= vbar * f.mm[k];
                if k > 0 {
                    adj.rho[k] += mbm * f.m[k - 1];
                }
            }
            rbar[k] = vbar;
            mbm_next = mbm;
        }
        rbar
    }

    /// Adjoint of the variance recursion for the direct `S̄ᵈ` (sorted) and the `Ḡ`
    /// already in `adj`; accumulates `ū`, `w̄`, `ρ̄`.
    fn variance_adjoint(&self, sd: &[f64], adj: &mut Adj) {
        let mut pbar = 0.0; // P̄_k
        for k in (0..self.dim()).rev() {
            let (pm, s, p, u, w) = (self.pm[k], self.s[k], self.p[k], self.u[k], self.w[k]);
            let gbar = adj.g[k];
            let sbar = sd[k] - gbar * self.gain(k) / s - pbar * p / s;
            let pmbar = sbar * w * w + gbar * w / s + pbar * u / s;
            adj.u[k] += sbar + pbar * pm / s;
            adj.w[k] += 2.0 * w * pm * sbar + gbar * pm / s;
            if k > 0 {
                let rho = self.rho[k];
                adj.rho[k] += -2.0 * rho * (1.0 - self.p[k - 1]) * pmbar;
                pbar = rho * rho * pmbar;
            }
        }
    }

    /// The RTS smoothed variances `Pˢ_k = Var(ζ_k | r)` (sorted).
    fn smoothed_variance(&self) -> Vec<f64> {
        let d = self.dim();
        let mut ps = self.p.clone();
        for k in (0..d.saturating_sub(1)).rev() {
            // P⁻_{k+1} = 0 only if ζ_k is known exactly (P_k = 0) and tied to k + 1.
            if self.pm[k + 1] > 0.0 {
                let j = self.rho[k + 1] * self.p[k] / self.pm[k + 1];
                ps[k] = self.p[k] + j * j * (ps[k + 1] - self.pm[k + 1]);
            }
        }
        ps
    }

    /// Chains `ρ̄` to `ā` and `λ̄`, replaces `ā` at tied anchors by the `sgn(0) = 0` form,
    /// and returns the gradients in the caller's order (`r̄` given sorted, or empty).
    fn finish(&self, adj: Adj, rbar: Option<&[f64]>, ties: TieTerms<'_>) -> RemixGrads {
        let mut ga = self.chain_anchor_grads(&adj.rho);
        let gl = (1..self.dim())
            .map(|k| -self.gap(k) * self.rho[k] * adj.rho[k])
            .sum();
        if (1..self.dim()).any(|k| self.gap(k) == 0.0) {
            self.direct_anchor_grads(&ties, &mut ga, false);
        }
        RemixGrads {
            r: rbar.map_or_else(Vec::new, |r| scatter(r, &self.order)),
            u: scatter(&adj.u, &self.order),
            w: scatter(&adj.w, &self.order),
            a: scatter(&ga, &self.order),
            lambda: gl,
        }
    }

    /// `ā_k = Δ̄_k − Δ̄_{k+1}`, `Δ̄_k = −λ ρ_k ρ̄_k` (sorted): the frozen-order gradient.
    fn chain_anchor_grads(&self, rho_bar: &[f64]) -> Vec<f64> {
        let d = self.dim();
        let mut ga = vec![0.0; d];
        for k in 1..d {
            let dbar = -self.lambda * self.rho[k] * rho_bar[k];
            ga[k] += dbar;
            ga[k - 1] -= dbar;
        }
        ga
    }

    /// Writes the direct `sgn(0) = 0` anchor gradient (module docs, "Ties") into `ga` at
    /// every anchor of a run of ≥ 2 exactly tied anchors, or at every anchor when `all`
    /// (singletons are runs of one; a test checks this against the chain form).
    fn direct_anchor_grads(&self, t: &TieTerms<'_>, ga: &mut [f64], all: bool) {
        let d = self.dim();
        let (w, rho, pm, p) = (&self.w, &self.rho, &self.pm, &self.p);
        // J_{k−1} = ρ_k P_{k−1} / P⁻_k (0 where P⁻_k = 0: ζ_{k−1} known and tied to ζ_k).
        let jgain = |k: usize| {
            if pm[k] > 0.0 {
                rho[k] * p[k - 1] / pm[k]
            } else {
                0.0
            }
        };
        let (mut h, mut ly, mut lz) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        let (mut rr, mut ry, mut rz) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        let ps = if t.beta != 0.0 {
            self.smoothed_variance()
        } else {
            Vec::new()
        };
        for k in 1..d {
            if t.beta != 0.0 && pm[k] > 0.0 {
                // H_k = ρ_k J_{k−1} (H_{k−1} + w²_{k−1}/u_{k−1}), with J w²/u = ρ G w / P⁻.
                h[k] =
                    rho[k] * (jgain(k) * h[k - 1] + rho[k] * self.gain(k - 1) * w[k - 1] / pm[k]);
            }
            if t.gamma != 0.0 {
                ly[k] = rho[k] * (ly[k - 1] + w[k - 1] * t.y[k - 1]);
                lz[k] = rho[k] * (lz[k - 1] + w[k - 1] * t.z[k - 1]);
            }
        }
        for k in (0..d.saturating_sub(1)).rev() {
            if t.beta != 0.0 {
                // R_k = ρ_{k+1} J_k (w²_{k+1} Pˢ_{k+1}/u_{k+1} + R_{k+1}).
                let ps_over_u = self.smoothed_over_nugget(&ps, k + 1);
                rr[k] = rho[k + 1] * jgain(k + 1) * (w[k + 1] * w[k + 1] * ps_over_u + rr[k + 1]);
            }
            if t.gamma != 0.0 {
                ry[k] = rho[k + 1] * (ry[k + 1] + w[k + 1] * t.y[k + 1]);
                rz[k] = rho[k + 1] * (rz[k + 1] + w[k + 1] * t.z[k + 1]);
            }
        }
        let mut start = 0;
        while start < d {
            let mut end = start;
            while end + 1 < d && self.gap(end + 1) == 0.0 {
                end += 1;
            }
            if all || end > start {
                let (a, b) = (start, end);
                for k in a..=b {
                    let mut g = 0.0;
                    if t.beta != 0.0 {
                        g += t.beta * w[k] * w[k] / self.u[k] * (ps[a] * h[a] - rr[b]);
                    }
                    if t.gamma != 0.0 {
                        g += t.gamma * w[k] * (t.z[k] * (ly[a] - ry[b]) + t.y[k] * (lz[a] - rz[b]));
                    }
                    ga[k] = self.lambda * g;
                }
            }
            start = end + 1;
        }
    }

    /// `Pˢ_j / u_j = (P⁻_j/S_j) (1 + ρ²_{j+1} P_j (Pˢ_{j+1} − P⁻_{j+1}) / P⁻²_{j+1})`: finite
    /// also at `u_j = 0`.
    fn smoothed_over_nugget(&self, ps: &[f64], j: usize) -> f64 {
        let base = self.pm[j] / self.s[j];
        if j + 1 < self.dim() && self.pm[j + 1] > 0.0 {
            let (rho, pmn) = (self.rho[j + 1], self.pm[j + 1]);
            base * (1.0 + rho * rho * self.p[j] * (ps[j + 1] - pmn) / (pmn * pmn))
        } else {
            base
        }
    }
}

/// The mean recursion's states for one data vector (sorted order).
struct Innovations {
    /// `m⁻_k`.
    mm: Vec<f64>,
    /// `m_k`.
    m: Vec<f64>,
    /// `v_k`.
    v: Vec<f64>,
}

/// Parameter adjoints, sorted order.
struct Adj {
    u: Vec<f64>,
    w: Vec<f64>,
    /// `∂ℓ/∂ρ_k` (gap into k).
    rho: Vec<f64>,
    /// `Ḡ_k`.
    g: Vec<f64>,
}

impl Adj {
    fn zeros(d: usize) -> Adj {
        Adj {
            u: vec![0.0; d],
            w: vec![0.0; d],
            rho: vec![0.0; d],
            g: vec![0.0; d],
        }
    }
}

/// An objective's `S̄_kj = β Σ⁻¹_kj − γ (z_k y_j + y_k z_j)` (`j ≠ k`; sorted `y`, `z`), for
/// the direct anchor gradient at ties.
struct TieTerms<'a> {
    beta: f64,
    gamma: f64,
    y: &'a [f64],
    z: &'a [f64],
}

/// `v_k / S_k` (sorted).
fn scaled(c: &Chain, f: &Innovations) -> Vec<f64> {
    f.v.iter().zip(&c.s).map(|(v, s)| v / s).collect()
}

/// `½ (maha + logdet + d ln 2π)`.
fn nll_from_parts(maha: f64, logdet: f64, d: usize) -> f64 {
    0.5 * (maha + logdet + d as f64 * (2.0 * std::f64::consts::PI).ln())
}

thread_local! {
    static TIE_FLOOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the device's tie policy applied by every `*_kalman` reference called in
/// it (on this thread): a gap with `1 − ρ² < 1e-8` ([`OU_ONE_MINUS_RHO2_FLOOR`], exact
/// ties included) gets `1 − ρ² = 1e-8` and `ρ = √(1 − 1e-8)`, as
/// `lapis_ops::LaplaceCovariance` does (the chain of a valid AR(1) process with the tied
/// anchors a hair apart). Without it the references take exact ties (`ρ = 1`), like the
/// dense ones. With many ties (10⁷ anchors in [−1, 1) rounded to f32) the two differ by far
/// more than f32 rounding: 0.9 × 10⁻³ relative in `Σ⁻¹r` at d = 2^25.
pub fn with_device_tie_floor<T>(f: impl FnOnce() -> T) -> T {
    let old = TIE_FLOOR.with(|c| c.replace(true));
    let out = f();
    TIE_FLOOR.with(|c| c.set(old));
    out
}

/// The chain for `r`'s objectives, after checking `r`'s length.
fn chain_with_r(op: &str, u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> Chain {
    let d = check_remix(op, u, w, a, lambda);
    check_len(op, "r", r, d);
    Chain::new(u, w, a, lambda)
}

// ------------------------------------------------------------------ values

/// `log det Σ = Σ_k ln S_k` by the Kalman filter (module docs), O(d log d).
///
/// # Panics
///
/// If `u`, `w`, `a` differ in length or `lambda <= 0`.
pub fn remix_logdet_kalman(u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> f64 {
    check_remix("remix_logdet_kalman", u, w, a, lambda);
    Chain::new(u, w, a, lambda).logdet()
}

/// `rᵀ Σ⁻¹ r = Σ_k v_k² / S_k` by the Kalman filter, O(d log d).
///
/// # Panics
///
/// As [`remix_logdet_kalman`], and if `r.len() != a.len()`.
pub fn remix_mahalanobis_kalman(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> f64 {
    let c = chain_with_r("remix_mahalanobis_kalman", u, w, a, lambda, r);
    let f = c.filter(r);
    f.v.iter().zip(&c.s).map(|(v, s)| v * v / s).sum()
}

/// `Σ⁻¹ r = Bᵀ (v/S)`: the filter, then the adjoint of its mean recursion, O(d log d).
///
/// # Panics
///
/// As [`remix_mahalanobis_kalman`].
pub fn remix_solve_kalman(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> Vec<f64> {
    let c = chain_with_r("remix_solve_kalman", u, w, a, lambda, r);
    let f = c.filter(r);
    let y = c.mean_adjoint(&f, &scaled(&c, &f), None);
    scatter(&y, &c.order)
}

/// Gaussian NLL `½ (rᵀ Σ⁻¹ r + log det Σ + d ln 2π)` by the Kalman filter, O(d log d).
///
/// # Panics
///
/// As [`remix_mahalanobis_kalman`].
pub fn remix_nll_kalman(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> f64 {
    let c = chain_with_r("remix_nll_kalman", u, w, a, lambda, r);
    let f = c.filter(r);
    let maha = f.v.iter().zip(&c.s).map(|(v, s)| v * v / s).sum();
    nll_from_parts(maha, c.logdet(), c.dim())
}

// ------------------------------------------------------------------ gradients

/// Gradients of [`remix_logdet_kalman`] (`r` empty): the variance adjoint with
/// `S̄ᵈ = 1/S`. Tied anchors use `sgn(0) = 0` as [`remix_logdet_grad`](super::remix_logdet_grad)
/// (needs `u > 0` on them).
///
/// # Panics
///
/// As [`remix_logdet_kalman`].
pub fn remix_logdet_grad_kalman(u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> RemixGrads {
    check_remix("remix_logdet_grad_kalman", u, w, a, lambda);
    let c = Chain::new(u, w, a, lambda);
    let mut adj = Adj::zeros(c.dim());
    let sd: Vec<f64> = c.s.iter().map(|s| 1.0 / s).collect();
    c.variance_adjoint(&sd, &mut adj);
    let ties = TieTerms {
        beta: 2.0,
        gamma: 0.0,
        y: &[],
        z: &[],
    };
    c.finish(adj, None, ties)
}

/// Gradients of [`remix_mahalanobis_kalman`]: `v̄ᵈ = 2v/S`, `S̄ᵈ = −v²/S²`, so
/// `r̄ = 2 Σ⁻¹ r`. Tied anchors as in [`remix_logdet_grad_kalman`].
///
/// # Panics
///
/// As [`remix_mahalanobis_kalman`].
pub fn remix_mahalanobis_grad_kalman(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    r: &[f64],
) -> RemixGrads {
    let c = chain_with_r("remix_mahalanobis_grad_kalman", u, w, a, lambda, r);
    let f = c.filter(r);
    let vs = scaled(&c, &f);
    let vd: Vec<f64> = vs.iter().map(|x| 2.0 * x).collect();
    let sd: Vec<f64> = vs.iter().map(|x| -x * x).collect();
    let mut adj = Adj::zeros(c.dim());
    let rbar = c.mean_adjoint(&f, &vd, Some(&mut adj));
    c.variance_adjoint(&sd, &mut adj);
    let y: Vec<f64> = rbar.iter().map(|x| 0.5 * x).collect();
    let ties = TieTerms {
        beta: 0.0,
        gamma: 1.0,
        y: &y,
        z: &y,
    };
    c.finish(adj, Some(&rbar), ties)
}

/// Gradients of `ℓ = gyᵀ y` for `y = `[`remix_solve_kalman`]`(r)`: two filters (of `r`
/// and `gy`) through the bilinear form `Σ_k v_k(gy) v_k(r) / S_k`; `r̄ = Σ⁻¹ gy`. Tied
/// anchors as in [`remix_logdet_grad_kalman`].
///
/// # Panics
///
/// As [`remix_solve_kalman`], and if `gy.len() != a.len()`.
pub fn remix_solve_grad_kalman(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    r: &[f64],
    gy: &[f64],
) -> RemixGrads {
    let op = "remix_solve_grad_kalman";
    let c = chain_with_r(op, u, w, a, lambda, r);
    check_len(op, "gy", gy, c.dim());
    let (f1, f2) = (c.filter(r), c.filter(gy));
    let (vs1, vs2) = (scaled(&c, &f1), scaled(&c, &f2));
    let sd: Vec<f64> = vs1.iter().zip(&vs2).map(|(a, b)| -a * b).collect();
    let mut adj = Adj::zeros(c.dim());
    let rbar = c.mean_adjoint(&f1, &vs2, Some(&mut adj)); // Σ⁻¹ gy
    let y = c.mean_adjoint(&f2, &vs1, Some(&mut adj)); // Σ⁻¹ r
    c.variance_adjoint(&sd, &mut adj);
    let ties = TieTerms {
        beta: 0.0,
        gamma: 1.0,
        y: &y,
        z: &rbar,
    };
    c.finish(adj, Some(&rbar), ties)
}

/// Gradients of [`remix_nll_kalman`]: `v̄ᵈ = v/S`, `S̄ᵈ = ½ (1/S − v²/S²)`, so
/// `r̄ = Σ⁻¹ r`. Tied anchors as in [`remix_logdet_grad_kalman`].
///
/// # Panics
///
/// As [`remix_mahalanobis_kalman`].
pub fn remix_nll_grad_kalman(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    r: &[f64],
) -> RemixGrads {
    let c = chain_with_r("remix_nll_grad_kalman", u, w, a, lambda, r);
    let f = c.filter(r);
    let vs = scaled(&c, &f);
    let sd: Vec<f64> = vs
        .iter()
        .zip(&c.s)
        .map(|(x, s)| 0.5 * (1.0 / s - x * x))
        .collect();
    let mut adj = Adj::zeros(c.dim());
    let y = c.mean_adjoint(&f, &vs, Some(&mut adj));
    c.variance_adjoint(&sd, &mut adj);
    let ties = TieTerms {
        beta: 1.0,
        gamma: 0.5,
        y: &y,
        z: &y,
    };
    c.finish(adj, Some(&y), ties)
}

/// The device's anchor-gradient convention from these references' `ā`: every run of
/// sorted anchors joined by gaps with `1 − ρ² = −expm1(−2λΔ) <`
/// [`OU_ONE_MINUS_RHO2_FLOOR`] (floored on the device; exact ties included) gets the run's
/// mean gradient. Returns the new `ā` in the caller's order; entries outside runs are
/// copied.
///
/// # Panics
///
/// If `ga.len() != a.len()` or `lambda <= 0`.
pub fn remix_tie_mean_kalman(a: &[f64], lambda: f64, ga: &[f64]) -> Vec<f64> {
    let op = "remix_tie_mean_kalman";
    check_rate(op, lambda);
    check_len(op, "ga", ga, a.len());
    let (order, _) = sort_anchors(a);
    let d = a.len();
    let tied = |k: usize| {
        -(-2.0 * lambda * (a[order[k]] - a[order[k - 1]])).exp_m1() < OU_ONE_MINUS_RHO2_FLOOR
    };
    let mut out = ga.to_vec();
    let mut p = 0;
    while p < d {
        let mut q = p;
        while q + 1 < d && tied(q + 1) {
            q += 1;
        }
        let mean = (p..=q).map(|k| ga[order[k]]).sum::<f64>() / (q - p + 1) as f64;
        (p..=q).for_each(|k| out[order[k]] = mean);
        p = q + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::covariance::{
        remix_logdet, remix_logdet_grad, remix_mahalanobis, remix_mahalanobis_grad, remix_nll,
        remix_nll_grad, remix_solve, remix_solve_grad,
    };
    use super::*;

    /// splitmix64, mapped to [0, 1).
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        }
        fn vec(&mut self, d: usize, lo: f64, hi: f64) -> Vec<f64> {
            (0..d).map(|_| self.uniform(lo, hi)).collect()
        }
    }

    struct Case {
        u: Vec<f64>,
        w: Vec<f64>,
        a: Vec<f64>,
        lambda: f64,
        r: Vec<f64>,
        gy: Vec<f64>,
    }

    /// Anchors uniform in [−1, 1); with `ties`, about a third copy an earlier anchor.
    fn case(rng: &mut Rng, d: usize, lambda: f64, ties: bool) -> Case {
        let mut a = rng.vec(d, -1.0, 1.0);
        if ties {
            for i in 1..d {
                if rng.uniform(0.0, 1.0) < 0.35 {
                    a[i] = a[(rng.next_u64() % i as u64) as usize];
                }
            }
        }
        Case {
            u: rng.vec(d, 0.05, 1.0),
            w: rng.vec(d, -1.0, 1.0),
            a,
            lambda,
            r: rng.vec(d, -1.0, 1.0),
            gy: rng.vec(d, -1.0, 1.0),
        }
    }

    fn scalar_err(got: f64, want: f64) -> f64 {
        if got == want {
            0.0
        } else {
            (got - want).abs() / want.abs()
        }
    }

    /// `max |got − want| / max |want|`.
    fn vec_err(got: &[f64], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let diff = got
            .iter()
            .zip(want)
            .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
        if diff == 0.0 {
            0.0
        } else {
            diff / scale
        }
    }

    /// Max error over the five parts of two gradient sets.
    fn grads_err(got: &RemixGrads, want: &RemixGrads) -> [f64; 5] {
        [
            vec_err(&got.r, &want.r),
            vec_err(&got.u, &want.u),
            vec_err(&got.w, &want.w),
            vec_err(&got.a, &want.a),
            scalar_err(got.lambda, want.lambda),
        ]
    }

    /// `[value error, 0, 0, 0, 0]`.
    fn value(e: f64) -> [f64; 5] {
        [e, 0.0, 0.0, 0.0, 0.0]
    }

    /// Errors of the eight `_kalman` functions against the dense ones on `c`.
    fn errors(c: &Case) -> [[f64; 5]; 8] {
        let (u, w, a, l, r, gy) = (&c.u[..], &c.w[..], &c.a[..], c.lambda, &c.r[..], &c.gy[..]);
        [
            value(scalar_err(
                remix_logdet_kalman(u, w, a, l),
                remix_logdet(u, w, a, l),
            )),
            value(scalar_err(
                remix_mahalanobis_kalman(u, w, a, l, r),
                remix_mahalanobis(u, w, a, l, r),
            )),
            value(vec_err(
                &remix_solve_kalman(u, w, a, l, r),
                &remix_solve(u, w, a, l, r),
            )),
            value(scalar_err(
                remix_nll_kalman(u, w, a, l, r),
                remix_nll(u, w, a, l, r),
            )),
            grads_err(
                &remix_logdet_grad_kalman(u, w, a, l),
                &remix_logdet_grad(u, w, a, l),
            ),
            grads_err(
                &remix_mahalanobis_grad_kalman(u, w, a, l, r),
                &remix_mahalanobis_grad(u, w, a, l, r),
            ),
            grads_err(
                &remix_solve_grad_kalman(u, w, a, l, r, gy),
                &remix_solve_grad(u, w, a, l, r, gy),
            ),
            grads_err(
                &remix_nll_grad_kalman(u, w, a, l, r),
                &remix_nll_grad(u, w, a, l, r),
            ),
        ]
    }

    const TOL: f64 = 1e-9;

    #[test]
    fn matches_the_dense_references() {
        let mut rng = Rng(0x5EED_CAFE);
        // Maximum error per function: values, then r, u, w, a, λ of each gradient.
        let names = [
            "logdet",
            "mahalanobis",
            "solve",
            "nll",
            "logdet_grad",
            "mahalanobis_grad",
            "solve_grad",
            "nll_grad",
        ];
        let mut worst = [[0.0f64; 5]; 8];
        for ties in [false, true] {
            for d in [1, 2, 3, 10, 57, 300] {
                for lambda in [0.01, 0.5, 5.0, 50.0] {
                    let c = case(&mut rng, d, lambda, ties);
                    let errs = errors(&c);
                    for (f, e) in errs.iter().enumerate() {
                        for (i, &x) in e.iter().enumerate() {
                            assert!(
                                x <= TOL,
                                "{} part {i}: error {x:e} at d = {d}, λ = {lambda}, ties = {ties}",
                                names[f]
                            );
                            worst[f][i] = worst[f][i].max(x);
                        }
                    }
                }
            }
        }
        for (f, e) in worst.iter().enumerate() {
            let e: Vec<String> = e.iter().map(|x| format!("{x:.1e}")).collect();
            eprintln!(
                "{:>16}: max err [value|r, u, w, a, λ] = {}",
                names[f],
                e.join(", ")
            );
        }
    }

    /// The pure-OU corner: `u = 0` on some (untied) anchors.
    #[test]
    fn zero_nugget_at_distinct_anchors() {
        let mut rng = Rng(7);
        for lambda in [0.5, 5.0, 50.0] {
            let mut c = case(&mut rng, 40, lambda, false);
            for i in (0..40).step_by(3) {
                c.u[i] = 0.0;
            }
            let (u, w, a, r) = (&c.u, &c.w, &c.a, &c.r);
            let e1 = scalar_err(
                remix_nll_kalman(u, w, a, lambda, r),
                remix_nll(u, w, a, lambda, r),
            );
            let e2 = grads_err(
                &remix_nll_grad_kalman(u, w, a, lambda, r),
                &remix_nll_grad(u, w, a, lambda, r),
            );
            let worst = e2.iter().fold(e1, |m, &x| m.max(x));
            eprintln!("u = 0 corner, λ = {lambda}: max err {worst:.1e}");
            assert!(
                worst <= TOL,
                "λ = {lambda}: error {worst:e} ({e1:e}, {e2:?})"
            );
        }
    }

    /// At distinct anchors the direct outside-coupling form of `ā` (used at ties) equals
    /// the chain form `Δ̄_k − Δ̄_{k+1}`, for every objective's `(β, γ, y, z)`.
    #[test]
    fn direct_anchor_form_matches_the_chain() {
        let mut rng = Rng(5);
        let mut worst = 0.0f64;
        for d in [1, 2, 5, 40] {
            for lambda in [0.01, 0.5, 5.0, 50.0] {
                let c = case(&mut rng, d, lambda, false);
                let (u, w, a, r, gy) = (&c.u, &c.w, &c.a, &c.r, &c.gy);
                let ch = Chain::new(u, w, a, lambda);
                let y = gather(&remix_solve_kalman(u, w, a, lambda, r), &ch.order);
                let z = gather(&remix_solve_kalman(u, w, a, lambda, gy), &ch.order);
                let grads = [
                    (remix_logdet_grad_kalman(u, w, a, lambda), 2.0, 0.0, &y),
                    (
                        remix_mahalanobis_grad_kalman(u, w, a, lambda, r),
                        0.0,
                        1.0,
                        &y,
                    ),
                    (remix_nll_grad_kalman(u, w, a, lambda, r), 1.0, 0.5, &y),
                    (
                        remix_solve_grad_kalman(u, w, a, lambda, r, gy),
                        0.0,
                        1.0,
                        &z,
                    ),
                ];
                for (g, beta, gamma, z) in grads {
                    let ties = TieTerms {
                        beta,
                        gamma,
                        y: &y,
                        z,
                    };
                    let mut direct = vec![f64::NAN; d];
                    ch.direct_anchor_grads(&ties, &mut direct, true);
                    let e = vec_err(&scatter(&direct, &ch.order), &g.a);
                    assert!(e <= TOL, "d = {d}, λ = {lambda}, β = {beta}: error {e:e}");
                    worst = worst.max(e);
                }
            }
        }
        eprintln!("direct vs chain ā: max err {worst:.1e}");
    }

    /// A run's total anchor gradient is the derivative of moving the run together (central
    /// difference of the Kalman NLL), and the tie mean shares it equally.
    #[test]
    fn tie_runs_move_together() {
        let mut rng = Rng(11);
        let lambda = 0.5;
        let mut c = case(&mut rng, 12, lambda, false);
        for i in [3, 7, 9] {
            c.a[i] = c.a[1];
        }
        let (u, w, r) = (&c.u, &c.w, &c.r);
        let g = remix_nll_grad_kalman(u, w, &c.a, lambda, r);
        let run = [1, 3, 7, 9];
        let h = 1e-5;
        let shifted = |s: f64| {
            let mut a = c.a.clone();
            run.iter().for_each(|&i| a[i] += s);
            remix_nll_kalman(u, w, &a, lambda, r)
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
        let total: f64 = run.iter().map(|&i| g.a[i]).sum();
        assert!(
            (fd - total).abs() <= 1e-7 * fd.abs().max(1.0),
            "fd {fd}, total {total}"
        );
        let m = remix_tie_mean_kalman(&c.a, lambda, &g.a);
        for &i in &run {
            assert!((m[i] - total / 4.0).abs() <= 1e-14 * total.abs().max(1.0));
        }
        for i in (0..12).filter(|i| !run.contains(i)) {
            assert_eq!(m[i], g.a[i]);
        }
    }

    /// Times three calls of `remix_nll_grad_kalman` at d = 2²² (release: `cargo test --release -p
    /// lapis-ops --lib covariance_kalman -- --ignored --nocapture`).
    #[test]
    #[ignore = "timing only"]
    fn time_nll_grad_4m() {
        let mut rng = Rng(3);
        let c = case(&mut rng, 1 << 22, 5.0, false);
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let g = remix_nll_grad_kalman(&c.u, &c.w, &c.a, c.lambda, &c.r);
            let el = t.elapsed();
            assert!(g.lambda.is_finite());
            eprintln!("remix_nll_grad_kalman, d = 2^22: {el:?}");
        }
    }
}
