//! f64 references for the Laplace / Ornstein–Uhlenbeck covariance (`laplace-engine.md`
//! §4) and the REMIX covariance with a nugget (`laplace-methods.md` §0), with gradients
//! by dense matrix calculus, and the dense Cholesky they are checked against.
//!
//! Every covariance here uses the **rate** `λ > 0` (inverse length-scale, `λ = 1/ℓ`), as
//! the engine's operator does: `K(a; λ)_ij = exp(−λ|a_i − a_j|)`.
//!
//! # OU covariance `Σ = D C D`
//!
//! `D = diag(σ)`, `C_ij = exp(−λ|x_i − x_j|)` on coordinates `x ∈ R^d` (any order).
//! [`ou_cov_dense`] is that definition. The other `ou_*` functions are the O(d) AR(1)
//! forms of §4 after a stable sort `o` (`x_{o(0)} ≤ … ≤ x_{o(d−1)}`):
//!
//! ```text
//! Δ_k = x_{o(k+1)} − x_{o(k)},  ρ_k = e^{−λΔ_k},  q_k = 1 − ρ_k² = −expm1(−2λΔ_k)
//! log det Σ = 2 Σ_i ln|σ_i| + Σ_{k<d−1} ln q_k
//! z_k = r_{o(k)} / σ_{o(k)},  e_0 = z_0,  e_{k+1} = (z_{k+1} − ρ_k z_k) / √q_k,
//! rᵀ Σ⁻¹ r = Σ_k e_k²
//! (C⁻¹)_{o(k)o(k)} = A_k + B_k,  A_0 = 1, A_k = 1/q_{k−1};  B_k = ρ_k²/q_k, B_{d−1} = 0
//! (C⁻¹)_{o(k)o(k+1)} = −ρ_k / q_k,   Σ⁻¹ = D⁻¹ C⁻¹ D⁻¹  (tridiagonal in sorted order)
//! sample: ζ_{o(0)} = ε_{o(0)},  ζ_{o(k+1)} = ρ_k ζ_{o(k)} + √q_k ε_{o(k+1)},  v = σ ⊙ ζ
//! ```
//!
//! **Floor.** Coincident coordinates give `ρ = 1`, `q = 0` and a singular `C`. The O(d)
//! forms replace `q_k` by [`OU_ONE_MINUS_RHO2_FLOOR`] (1e-8, the clamp of REMIX's code)
//! whenever `q_k` is below it, and then use `ρ_k = √(1 − q_k)` so that they stay the exact
//! formulas of a valid AR(1) chain (whose covariance is `C'_ij = Π ρ_k` over the gaps
//! between i and j; `C' = C` when no gap is clamped). [`ou_cov_dense`] applies no floor.
//! With λ = 1 the floor binds for gaps below ≈ 5e-9.
//!
//! # REMIX covariance `Σ = diag(u) + diag(w) K(a; λ) diag(w)`
//!
//! `u ∈ R^d` (`u > 0`, the nugget), `w ∈ R^d`, anchors `a ∈ R^d` (any order, ties fine —
//! `Σ` stays positive definite), rate `λ > 0`. All `remix_*` values go through the dense
//! `Σ` and its Cholesky factor `Σ = L Lᵀ` ([`cholesky`]); no floor or jitter is applied.
//!
//! ```text
//! remix_logdet        = log det Σ = 2 Σ ln L_ii
//! remix_solve         = y = Σ⁻¹ r
//! remix_mahalanobis   = rᵀ Σ⁻¹ r
//! remix_nll           = ½ (rᵀ Σ⁻¹ r + log det Σ + d ln 2π)
//! remix_frobenius_fit = ‖Σ − T‖_F² = Σ_ij (Σ_ij − T_ij)²
//! remix_frobenius_batch (§0's F, V = a centred batch [B, d], S = VᵀV/B; = ‖Σ − S‖_F² − ‖S‖_F²):
//!   F = Σ u_i² + 2 Σ u_i w_i² + (w²)ᵀ K(a; 2λ) (w²)
//!       − (2/B) Σ_i u_i Σ_b V_bi² − (2/B) Σ_b (w ⊙ v_b)ᵀ K(a; λ) (w ⊙ v_b)
//! ```
//!
//! REMIX's code divides the fit by `d` or `d²` (a mean); scale the result as needed.
//!
//! **Gradients.** Each objective `f` first gives `Σ̄ = ∂f/∂Σ` (entries treated as
//! independent, `Σ̄` not necessarily symmetric) and `r̄`:
//!
//! ```text
//! log det:      Σ̄ = Σ⁻¹
//! solve:        ℓ = ḡᵀ y:  r̄ = Σ⁻¹ ḡ,  Σ̄ = −(Σ⁻¹ ḡ) yᵀ
//! Mahalanobis:  r̄ = 2y,    Σ̄ = −y yᵀ
//! NLL:          r̄ = y,     Σ̄ = ½ (Σ⁻¹ − y yᵀ)
//! Frobenius:    Σ̄ = 2 (Σ − T)   (batch form: T = S)
//! ```
//!
//! then [`remix_cov_vjp`] chains it through `Σ_ij = δ_ij u_i + w_i w_j K_ij`, with
//! `S̄_kj = Σ̄_kj + Σ̄_jk` and `sgn(0) = 0` at tied anchors (what a central difference sees):
//!
//! ```text
//! ū_k = Σ̄_kk
//! w̄_k = Σ_j S̄_kj K_kj w_j
//! ā_k = −λ w_k Σ_j sgn(a_k − a_j) K_kj w_j S̄_kj
//! λ̄   = −Σ_ij Σ̄_ij w_i w_j |a_i − a_j| K_ij
//! ```
//!
//! # Dense Cholesky
//!
//! [`cholesky`]: `L_jj = √(A_jj − Σ_{k<j} L_jk²)`, `L_ij = (A_ij − Σ_{k<j} L_ik L_jk) / L_jj`
//! for `i > j` (reads only the lower triangle of `A`); [`cholesky_solve`] does the forward
//! then backward substitution; [`cholesky_logdet`] is `2 Σ ln L_ii`.

use super::laplace::{laplace_gram, sgn};
use super::tensor::RefTensor;

/// Lower bound on `1 − ρ_k²` in the O(d) OU forms (see the module docs, "Floor").
pub const OU_ONE_MINUS_RHO2_FLOOR: f64 = 1e-8;

// ------------------------------------------------------------------ dense Cholesky

/// Asserts `a` is a square matrix and returns its size.
fn check_square(op: &str, a: &RefTensor) -> usize {
    assert!(
        a.shape.len() == 2 && a.shape[0] == a.shape[1],
        "{op}: need a square matrix [d, d], got {:?}",
        a.shape
    );
    a.shape[0]
}

/// Dense Cholesky factor: the lower-triangular `L` (`[d, d]`, zeros above the diagonal)
/// with `L Lᵀ = A`, for symmetric positive definite `A`. Reads only the lower triangle.
///
/// # Panics
///
/// If `a` is not square, or is not numerically positive definite (a pivot
/// `A_jj − Σ L_jk²` that is ≤ 0 or NaN).
pub fn cholesky(a: &RefTensor) -> RefTensor {
    let d = check_square("cholesky", a);
    let mut l = vec![0.0f64; d * d];
    for j in 0..d {
        let pivot = a.data[j * d + j] - (0..j).map(|k| l[j * d + k].powi(2)).sum::<f64>();
        assert!(
            pivot > 0.0,
            "cholesky: matrix is not positive definite (pivot {pivot} at row {j})"
        );
        let ljj = pivot.sqrt();
        l[j * d + j] = ljj;
        for i in j + 1..d {
            let dot: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            l[i * d + j] = (a.data[i * d + j] - dot) / ljj;
        }
    }
    RefTensor::new(&[d, d], l)
}

/// Solves `L Lᵀ x = b` for a Cholesky factor `l` from [`cholesky`].
///
/// # Panics
///
/// If `l` is not square or `b.len()` differs from its size.
pub fn cholesky_solve(l: &RefTensor, b: &[f64]) -> Vec<f64> {
    let d = check_square("cholesky_solve", l);
    assert!(
        b.len() == d,
        "cholesky_solve: right-hand side has length {} but the factor is [{d}, {d}]",
        b.len()
    );
    // Forward: L z = b.
    let mut z = vec![0.0; d];
    for i in 0..d {
        let dot: f64 = (0..i).map(|k| l.data[i * d + k] * z[k]).sum();
        z[i] = (b[i] - dot) / l.data[i * d + i];
    }
    // Backward: Lᵀ x = z.
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let dot: f64 = (i + 1..d).map(|k| l.data[k * d + i] * x[k]).sum();
        x[i] = (z[i] - dot) / l.data[i * d + i];
    }
    x
}

/// `log det A = 2 Σ_i ln L_ii` for a Cholesky factor `l` of `A`.
///
/// # Panics
///
/// If `l` is not square.
pub fn cholesky_logdet(l: &RefTensor) -> f64 {
    let d = check_square("cholesky_logdet", l);
    2.0 * (0..d).map(|i| l.data[i * d + i].ln()).sum::<f64>()
}

/// `A⁻¹` (`[d, d]`) from the Cholesky factor of `A`, one column solve at a time.
fn cholesky_inverse(l: &RefTensor) -> RefTensor {
    let d = l.shape[0];
    let mut inv = vec![0.0; d * d];
    let mut e = vec![0.0; d];
    for j in 0..d {
        e[j] = 1.0;
        let col = cholesky_solve(l, &e);
        e[j] = 0.0;
        for i in 0..d {
            inv[i * d + j] = col[i];
        }
    }
    RefTensor::new(&[d, d], inv)
}

// ------------------------------------------------------------------ OU (AR(1))

/// Asserts the OU arguments agree (`sigma.len() == x.len()`, `λ > 0`) and returns `d`.
fn check_ou(op: &str, x: &[f64], lambda: f64, sigma: &[f64]) -> usize {
    assert!(
        sigma.len() == x.len(),
        "{op}: sigma has length {} but there are {} coordinates",
        sigma.len(),
        x.len()
    );
    check_rate(op, lambda);
    x.len()
}

/// Asserts `λ > 0` (a NaN rate is let through, to propagate).
fn check_rate(op: &str, lambda: f64) {
    assert!(
        lambda > 0.0 || lambda.is_nan(),
        "{op}: the rate λ must be > 0, got {lambda}"
    );
}

/// Asserts a vector argument has length `d`.
fn check_len(op: &str, name: &str, v: &[f64], d: usize) {
    assert!(
        v.len() == d,
        "{op}: {name} has length {} but d = {d}",
        v.len()
    );
}

/// The AR(1) chain of sorted coordinates: `order` (stable argsort, `o` in the module
/// docs), `rho[k] = ρ_k` and `q[k] = 1 − ρ_k²` for the `d − 1` gaps, with the floor
/// applied (`q < floor` ⇒ `q = floor`, `ρ = √(1 − floor)`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OuChain {
    /// `order[k]` is the index of the k-th smallest coordinate (ties keep index order).
    pub(crate) order: Vec<usize>,
    /// `ρ_k = e^{−λΔ_k}` (floored chain), length `d − 1` (0 for `d = 0`).
    pub(crate) rho: Vec<f64>,
    /// `q_k = 1 − ρ_k²` (≥ the floor), length `d − 1`.
    pub(crate) q: Vec<f64>,
}

/// Builds the [`OuChain`] of `x` at rate `lambda` (no argument checks).
pub(crate) fn ou_chain(x: &[f64], lambda: f64) -> OuChain {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let (mut rho, mut q) = (Vec::new(), Vec::new());
    for k in 1..order.len() {
        let gap = x[order[k]] - x[order[k - 1]];
        let (mut r, mut qk) = ((-lambda * gap).exp(), -(-2.0 * lambda * gap).exp_m1());
        // `qk < floor` is false for NaN, which then propagates.
        if qk < OU_ONE_MINUS_RHO2_FLOOR {
            qk = OU_ONE_MINUS_RHO2_FLOOR;
            r = (1.0 - OU_ONE_MINUS_RHO2_FLOOR).sqrt();
        }
        rho.push(r);
        q.push(qk);
    }
    OuChain { order, rho, q }
}

/// Dense OU covariance `Σ_ij = σ_i σ_j exp(−λ|x_i − x_j|)`, `[d, d]`, in the input order
/// (the plain definition: no floor).
///
/// # Panics
///
/// If `sigma.len() != x.len()` or `lambda <= 0`.
pub fn ou_cov_dense(x: &[f64], lambda: f64, sigma: &[f64]) -> RefTensor {
    let d = check_ou("ou_cov_dense", x, lambda, sigma);
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = sigma[i] * sigma[j] * (-lambda * (x[i] - x[j]).abs()).exp();
        }
    }
    RefTensor::new(&[d, d], out)
}

/// `log det Σ = 2 Σ ln|σ_i| + Σ_k ln q_k` by the AR(1) formula (floored `q_k`).
///
/// # Panics
///
/// If `sigma.len() != x.len()` or `lambda <= 0`.
pub fn ou_logdet(x: &[f64], lambda: f64, sigma: &[f64]) -> f64 {
    check_ou("ou_logdet", x, lambda, sigma);
    let chain = ou_chain(x, lambda);
    2.0 * sigma.iter().map(|s| s.abs().ln()).sum::<f64>()
        + chain.q.iter().map(|q| q.ln()).sum::<f64>()
}

/// Mahalanobis `rᵀ Σ⁻¹ r = Σ_k e_k²` by AR(1) whitening of `z = r/σ` in sorted order.
///
/// # Panics
///
/// If `sigma` or `r` has a length other than `x.len()`, or `lambda <= 0`.
pub fn ou_mahalanobis(x: &[f64], lambda: f64, sigma: &[f64], r: &[f64]) -> f64 {
    let d = check_ou("ou_mahalanobis", x, lambda, sigma);
    check_len("ou_mahalanobis", "r", r, d);
    if d == 0 {
        return 0.0;
    }
    let chain = ou_chain(x, lambda);
    let z: Vec<f64> = chain.order.iter().map(|&i| r[i] / sigma[i]).collect();
    let mut total = z[0] * z[0];
    for k in 0..d - 1 {
        let e = (z[k + 1] - chain.rho[k] * z[k]) / chain.q[k].sqrt();
        total += e * e;
    }
    total
}

/// The tridiagonal precision `Σ⁻¹` of the OU covariance, stored in sorted order: the
/// entry `Σ⁻¹[order[k], order[k]]` is `diag[k]`, the entries
/// `Σ⁻¹[order[k], order[k+1]] = Σ⁻¹[order[k+1], order[k]]` are `offdiag[k]`, and every
/// other entry is 0.
#[derive(Debug, Clone, PartialEq)]
pub struct OuPrecision {
    /// `order[k]` = index (in the input order) of the k-th smallest coordinate.
    pub order: Vec<usize>,
    /// `(A_k + B_k) / σ_{o(k)}²`, length `d`.
    pub diag: Vec<f64>,
    /// `−ρ_k / (q_k σ_{o(k)} σ_{o(k+1)})`, length `d − 1` (0 for `d = 0`).
    pub offdiag: Vec<f64>,
}

impl OuPrecision {
    /// The dense `[d, d]` precision in the input order.
    pub fn to_dense(&self) -> RefTensor {
        let d = self.order.len();
        let mut out = vec![0.0; d * d];
        for (k, &i) in self.order.iter().enumerate() {
            out[i * d + i] = self.diag[k];
            if k + 1 < d {
                let j = self.order[k + 1];
                out[i * d + j] = self.offdiag[k];
                out[j * d + i] = self.offdiag[k];
            }
        }
        RefTensor::new(&[d, d], out)
    }
}

/// The tridiagonal (in sorted order) precision `Σ⁻¹ = D⁻¹ C⁻¹ D⁻¹` from the AR(1)
/// formulas of the module docs (floored `q_k`).
///
/// # Panics
///
/// If `sigma.len() != x.len()` or `lambda <= 0`.
pub fn ou_precision_tridiag(x: &[f64], lambda: f64, sigma: &[f64]) -> OuPrecision {
    let d = check_ou("ou_precision_tridiag", x, lambda, sigma);
    let chain = ou_chain(x, lambda);
    let o = &chain.order;
    let diag = (0..d)
        .map(|k| {
            let a = if k == 0 { 1.0 } else { 1.0 / chain.q[k - 1] };
            let b = if k + 1 < d {
                chain.rho[k].powi(2) / chain.q[k]
            } else {
                0.0
            };
            (a + b) / sigma[o[k]].powi(2)
        })
        .collect();
    let offdiag = (0..d.saturating_sub(1))
        .map(|k| -chain.rho[k] / chain.q[k] / (sigma[o[k]] * sigma[o[k + 1]]))
        .collect();
    OuPrecision {
        order: chain.order,
        diag,
        offdiag,
    }
}

/// `Σ⁻¹ r` as the tridiagonal precision ([`ou_precision_tridiag`]) times `r`, O(d)
/// after the sort; the result is in the input order.
///
/// # Panics
///
/// If `sigma` or `r` has a length other than `x.len()`, or `lambda <= 0`.
pub fn ou_solve(x: &[f64], lambda: f64, sigma: &[f64], r: &[f64]) -> Vec<f64> {
    let d = check_ou("ou_solve", x, lambda, sigma);
    check_len("ou_solve", "r", r, d);
    let p = ou_precision_tridiag(x, lambda, sigma);
    let o = &p.order;
    let mut y = vec![0.0; d];
    for k in 0..d {
        let mut acc = p.diag[k] * r[o[k]];
        if k > 0 {
            acc += p.offdiag[k - 1] * r[o[k - 1]];
        }
        if k + 1 < d {
            acc += p.offdiag[k] * r[o[k + 1]];
        }
        y[o[k]] = acc;
    }
    y
}

/// An OU sample `v = σ ⊙ ζ` (zero mean; add μ yourself) from standard-normal draws
/// `eps` (indexed like `x`) by the AR(1) recursion of the module docs: `v = D L ε` with
/// `L` the (permuted) Cholesky factor of the floored chain's `C'`, so over `ε ~ N(0, I)`
/// the covariance is exactly `D C' D` (`= Σ` when no gap is floored).
///
/// # Panics
///
/// If `sigma` or `eps` has a length other than `x.len()`, or `lambda <= 0`.
pub fn ou_sample(x: &[f64], lambda: f64, sigma: &[f64], eps: &[f64]) -> Vec<f64> {
    let d = check_ou("ou_sample", x, lambda, sigma);
    check_len("ou_sample", "eps", eps, d);
    let chain = ou_chain(x, lambda);
    let o = &chain.order;
    let mut zeta = vec![0.0; d];
    for k in 0..d {
        zeta[o[k]] = if k == 0 {
            eps[o[0]]
        } else {
            chain.rho[k - 1] * zeta[o[k - 1]] + chain.q[k - 1].sqrt() * eps[o[k]]
        };
    }
    zeta.iter().zip(sigma).map(|(z, s)| s * z).collect()
}

// ------------------------------------------------------------------ REMIX

/// Asserts the REMIX parameters agree (`u`, `w`, `a` of one length, `λ > 0`); returns `d`.
fn check_remix(op: &str, u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> usize {
    let d = a.len();
    check_len(op, "u", u, d);
    check_len(op, "w", w, d);
    check_rate(op, lambda);
    d
}

/// Dense REMIX covariance `Σ_ij = δ_ij u_i + w_i w_j exp(−λ|a_i − a_j|)`, `[d, d]`.
///
/// # Panics
///
/// If `u`, `w`, `a` differ in length or `lambda <= 0`.
pub fn remix_cov_dense(u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> RefTensor {
    let d = check_remix("remix_cov_dense", u, w, a, lambda);
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = w[i] * w[j] * (-lambda * (a[i] - a[j]).abs()).exp();
        }
        out[i * d + i] += u[i];
    }
    RefTensor::new(&[d, d], out)
}

/// Cholesky factor of the REMIX covariance, after the argument checks.
fn remix_factor(op: &str, u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> RefTensor {
    check_remix(op, u, w, a, lambda);
    cholesky(&remix_cov_dense(u, w, a, lambda))
}

/// `log det Σ` of the REMIX covariance via dense Cholesky.
///
/// # Panics
///
/// If `u`, `w`, `a` differ in length, `lambda <= 0`, or `Σ` is not numerically positive
/// definite (e.g. some `u_i <= 0`).
pub fn remix_logdet(u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> f64 {
    cholesky_logdet(&remix_factor("remix_logdet", u, w, a, lambda))
}

/// `Σ⁻¹ r` for the REMIX covariance via dense Cholesky.
///
/// # Panics
///
/// As [`remix_logdet`], and if `r.len() != a.len()`.
pub fn remix_solve(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> Vec<f64> {
    let l = remix_factor("remix_solve", u, w, a, lambda);
    check_len("remix_solve", "r", r, a.len());
    cholesky_solve(&l, r)
}

/// `rᵀ Σ⁻¹ r` for the REMIX covariance via dense Cholesky.
///
/// # Panics
///
/// As [`remix_solve`].
pub fn remix_mahalanobis(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> f64 {
    let y = remix_solve(u, w, a, lambda, r);
    dot(r, &y)
}

/// Gaussian negative log-likelihood `½ (rᵀ Σ⁻¹ r + log det Σ + d ln 2π)` of the residual
/// `r = x − μ` under the REMIX covariance, via dense Cholesky.
///
/// # Panics
///
/// As [`remix_solve`].
pub fn remix_nll(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> f64 {
    let l = remix_factor("remix_nll", u, w, a, lambda);
    check_len("remix_nll", "r", r, a.len());
    let y = cholesky_solve(&l, r);
    nll_from_parts(dot(r, &y), cholesky_logdet(&l), a.len())
}

/// `½ (maha + logdet + d ln 2π)`.
fn nll_from_parts(maha: f64, logdet: f64, d: usize) -> f64 {
    0.5 * (maha + logdet + d as f64 * (2.0 * std::f64::consts::PI).ln())
}

/// `Σ_i x_i y_i`.
fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Asserts `target` is `[d, d]`.
fn check_target(op: &str, target: &RefTensor, d: usize) {
    assert!(
        target.shape == [d, d],
        "{op}: target must have shape [{d}, {d}], got {:?}",
        target.shape
    );
}

/// Frobenius fit `‖Σ − T‖_F² = Σ_ij (Σ_ij − T_ij)²` of the REMIX covariance to `target`.
///
/// # Panics
///
/// If `u`, `w`, `a` differ in length, `lambda <= 0`, or `target` is not `[d, d]`.
pub fn remix_frobenius_fit(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    target: &RefTensor,
) -> f64 {
    let d = check_remix("remix_frobenius_fit", u, w, a, lambda);
    check_target("remix_frobenius_fit", target, d);
    let sigma = remix_cov_dense(u, w, a, lambda);
    sigma
        .data
        .iter()
        .zip(&target.data)
        .map(|(s, t)| (s - t).powi(2))
        .sum()
}

/// Asserts `v` is a batch `[B, d]` and returns `B`.
fn check_batch(op: &str, v: &RefTensor, d: usize) -> usize {
    assert!(
        v.shape.len() == 2 && v.shape[1] == d && v.shape[0] > 0,
        "{op}: the batch must have shape [B, {d}] with B > 0, got {:?}",
        v.shape
    );
    v.shape[0]
}

/// The matvec form `F` of the Frobenius fit to a centred batch `v` (`[B, d]`, rows
/// `v_b`), `laplace-methods.md` §0 — the five-term formula of the module docs with
/// Gram-mode kernel matvecs at rates `2λ` and `λ`. Equals `‖Σ − S‖_F² − ‖S‖_F²` with
/// `S = VᵀV/B`. The batch is used as given (centre it first).
///
/// # Panics
///
/// If `u`, `w`, `a` differ in length, `lambda <= 0`, or `v` is not `[B, d]` with `B > 0`.
pub fn remix_frobenius_batch(u: &[f64], w: &[f64], a: &[f64], lambda: f64, v: &RefTensor) -> f64 {
    let d = check_remix("remix_frobenius_batch", u, w, a, lambda);
    let b = check_batch("remix_frobenius_batch", v, d);
    let bf = b as f64;
    let diag_terms: f64 = (0..d).map(|i| u[i] * u[i] + 2.0 * u[i] * w[i] * w[i]).sum();
    // (w²)ᵀ K(a; 2λ) (w²), as a one-channel Gram matvec.
    let w2 = RefTensor::new(&[d, 1], w.iter().map(|x| x * x).collect());
    let (kw2, _) = laplace_gram(a, &w2, (2.0 * lambda, 0.0));
    let quad_w2 = dot(&w2.data, &kw2.data);
    // Σ_i u_i Σ_b V_bi².
    let u_s: f64 = (0..d)
        .map(|i| u[i] * (0..b).map(|r| v.data[r * d + i].powi(2)).sum::<f64>())
        .sum();
    // Σ_b (w ⊙ v_b)ᵀ K(a; λ) (w ⊙ v_b): channels = batch rows, Z[i, b] = w_i V_bi.
    let mut z = vec![0.0; d * b];
    for r in 0..b {
        for i in 0..d {
            z[i * b + r] = w[i] * v.data[r * d + i];
        }
    }
    let z = RefTensor::new(&[d, b], z);
    let (kz, _) = laplace_gram(a, &z, (lambda, 0.0));
    let quad_z = dot(&z.data, &kz.data);
    diag_terms + quad_w2 - 2.0 / bf * u_s - 2.0 / bf * quad_z
}

/// Gradients of a scalar REMIX objective.
#[derive(Debug, Clone, PartialEq)]
pub struct RemixGrads {
    /// `∂f/∂r`, length `d`; empty for objectives that take no `r`.
    pub r: Vec<f64>,
    /// `∂f/∂u`, length `d`.
    pub u: Vec<f64>,
    /// `∂f/∂w`, length `d`.
    pub w: Vec<f64>,
    /// `∂f/∂a` (anchors), length `d`; tied anchors use `sgn(0) = 0`.
    pub a: Vec<f64>,
    /// `∂f/∂λ`.
    pub lambda: f64,
}

/// Vector–Jacobian product of `Σ(u, w, a, λ)`: given `Σ̄ = ∂f/∂Σ` (`[d, d]`, entries as
/// independent variables, not necessarily symmetric) returns `ū, w̄, ā, λ̄` by the chain
/// rule of the module docs (`r` left empty).
///
/// # Panics
///
/// If `u`, `w`, `a` differ in length, `lambda <= 0`, or `sigma_bar` is not `[d, d]`.
pub fn remix_cov_vjp(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    sigma_bar: &RefTensor,
) -> RemixGrads {
    let d = check_remix("remix_cov_vjp", u, w, a, lambda);
    check_target("remix_cov_vjp", sigma_bar, d);
    let sb = |i: usize, j: usize| sigma_bar.data[i * d + j];
    let mut gu = vec![0.0; d];
    let mut gw = vec![0.0; d];
    let mut ga = vec![0.0; d];
    let mut gl = 0.0;
    for k in 0..d {
        gu[k] = sb(k, k);
        for j in 0..d {
            let dist = (a[k] - a[j]).abs();
            let kkj = (-lambda * dist).exp();
            let s_sym = sb(k, j) + sb(j, k);
            gw[k] += s_sym * kkj * w[j];
            ga[k] += -lambda * w[k] * sgn(a[k] - a[j]) * kkj * w[j] * s_sym;
            gl -= sb(k, j) * w[k] * w[j] * dist * kkj;
        }
    }
    RemixGrads {
        r: Vec::new(),
        u: gu,
        w: gw,
        a: ga,
        lambda: gl,
    }
}

/// Gradients of [`remix_logdet`]: `Σ̄ = Σ⁻¹` chained by [`remix_cov_vjp`] (`r` empty).
///
/// # Panics
///
/// As [`remix_logdet`].
pub fn remix_logdet_grad(u: &[f64], w: &[f64], a: &[f64], lambda: f64) -> RemixGrads {
    let l = remix_factor("remix_logdet_grad", u, w, a, lambda);
    remix_cov_vjp(u, w, a, lambda, &cholesky_inverse(&l))
}

/// Scaled outer product `k x yᵀ`: `out_ij = k x_i y_j`.
fn outer(x: &[f64], y: &[f64], k: f64) -> RefTensor {
    let d = x.len();
    let mut out = vec![0.0; d * y.len()];
    for i in 0..d {
        for j in 0..y.len() {
            out[i * y.len() + j] = k * x[i] * y[j];
        }
    }
    RefTensor::new(&[d, y.len()], out)
}

/// Gradients of `ℓ = gyᵀ y` for `y = `[`remix_solve`]`(r)`: `r̄ = Σ⁻¹ gy`,
/// `Σ̄ = −(Σ⁻¹ gy) yᵀ`.
///
/// # Panics
///
/// As [`remix_solve`], and if `gy.len() != a.len()`.
pub fn remix_solve_grad(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    r: &[f64],
    gy: &[f64],
) -> RemixGrads {
    let op = "remix_solve_grad";
    let l = remix_factor(op, u, w, a, lambda);
    check_len(op, "r", r, a.len());
    check_len(op, "gy", gy, a.len());
    let y = cholesky_solve(&l, r);
    let r_bar = cholesky_solve(&l, gy);
    let mut g = remix_cov_vjp(u, w, a, lambda, &outer(&r_bar, &y, -1.0));
    g.r = r_bar;
    g
}

/// Gradients of [`remix_mahalanobis`]: `r̄ = 2y`, `Σ̄ = −y yᵀ`, `y = Σ⁻¹ r`.
///
/// # Panics
///
/// As [`remix_solve`].
pub fn remix_mahalanobis_grad(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    r: &[f64],
) -> RemixGrads {
    let y = remix_solve(u, w, a, lambda, r);
    let mut g = remix_cov_vjp(u, w, a, lambda, &outer(&y, &y, -1.0));
    g.r = y.iter().map(|v| 2.0 * v).collect();
    g
}

/// Gradients of [`remix_nll`]: `r̄ = y`, `Σ̄ = ½ (Σ⁻¹ − y yᵀ)`, `y = Σ⁻¹ r`.
///
/// # Panics
///
/// As [`remix_solve`].
pub fn remix_nll_grad(u: &[f64], w: &[f64], a: &[f64], lambda: f64, r: &[f64]) -> RemixGrads {
    let op = "remix_nll_grad";
    let l = remix_factor(op, u, w, a, lambda);
    check_len(op, "r", r, a.len());
    let y = cholesky_solve(&l, r);
    let mut sigma_bar = cholesky_inverse(&l);
    let yy = outer(&y, &y, 1.0);
    for (s, o) in sigma_bar.data.iter_mut().zip(&yy.data) {
        *s = 0.5 * (*s - o);
    }
    let mut g = remix_cov_vjp(u, w, a, lambda, &sigma_bar);
    g.r = y;
    g
}

/// Gradients of [`remix_frobenius_fit`]: `Σ̄ = 2 (Σ − T)` (`r` empty; no gradient for
/// the target).
///
/// # Panics
///
/// As [`remix_frobenius_fit`].
pub fn remix_frobenius_fit_grad(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    target: &RefTensor,
) -> RemixGrads {
    let d = check_remix("remix_frobenius_fit_grad", u, w, a, lambda);
    check_target("remix_frobenius_fit_grad", target, d);
    let mut sigma_bar = remix_cov_dense(u, w, a, lambda);
    for (s, t) in sigma_bar.data.iter_mut().zip(&target.data) {
        *s = 2.0 * (*s - t);
    }
    remix_cov_vjp(u, w, a, lambda, &sigma_bar)
}

/// Gradients of [`remix_frobenius_batch`]: `Σ̄ = 2 (Σ − S)`, `S = VᵀV/B` (`r` empty; no
/// gradient for the batch).
///
/// # Panics
///
/// As [`remix_frobenius_batch`].
pub fn remix_frobenius_batch_grad(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    v: &RefTensor,
) -> RemixGrads {
    let d = check_remix("remix_frobenius_batch_grad", u, w, a, lambda);
    let b = check_batch("remix_frobenius_batch_grad", v, d);
    remix_frobenius_fit_grad(u, w, a, lambda, &batch_second_moment(v, b, d))
}

/// `S = VᵀV / B` (`[d, d]`) for a batch `v` of shape `[B, d]`.
pub(crate) fn batch_second_moment(v: &RefTensor, b: usize, d: usize) -> RefTensor {
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            s[i * d + j] = (0..b)
                .map(|r| v.data[r * d + i] * v.data[r * d + j])
                .sum::<f64>()
                / b as f64;
        }
    }
    RefTensor::new(&[d, d], s)
}

/// A REMIX sample `√u ⊙ ε₁ + w ⊙ ζ` (zero mean), ζ the AR(1) sample of the anchors
/// ([`ou_sample`] with `σ = 1` and draws `eps_w`). Its covariance over standard-normal
/// draws is `diag(u) + diag(w) C' diag(w)`, i.e. exactly `Σ` unless tied anchors engage
/// the [`OU_ONE_MINUS_RHO2_FLOOR`].
///
/// # Panics
///
/// If `u`, `w`, `a`, `eps_u`, `eps_w` differ in length or `lambda <= 0`.
pub fn remix_sample(
    u: &[f64],
    w: &[f64],
    a: &[f64],
    lambda: f64,
    eps_u: &[f64],
    eps_w: &[f64],
) -> Vec<f64> {
    let d = check_remix("remix_sample", u, w, a, lambda);
    check_len("remix_sample", "eps_u", eps_u, d);
    let zeta = ou_sample(a, lambda, &vec![1.0; d], eps_w);
    (0..d)
        .map(|i| u[i].sqrt() * eps_u[i] + w[i] * zeta[i])
        .collect()
}
