//! Dense f64 references for the Laplace-kernel operator (`laplace-engine.md` §1, §3)
//! and its reverse-mode gradients, plus [`finite_diff`] for gradient checks.
//!
//! These are deliberately the naive O(n·m·c) definitions — every kernel entry is
//! evaluated — so that they can serve as oracles for the O(N·c) sorted-scan engine.
//!
//! # The operator
//!
//! Sources `s ∈ Rⁿ` carrying values `V ∈ R^{n×c}`, targets `t ∈ Rᵐ`, rate
//! `λ = a + i·b` with `a > 0` (`b = 0`: real kernel; `b ≠ 0`: "phased"):
//!
//! ```text
//! K_ji = exp(−λ |t_j − s_i|) = e^{−a|t_j−s_i|} (cos(b|t_j−s_i|) − i·sin(b|t_j−s_i|))
//! Y[j, :] = Σ_i K_ji · V[i, :]                      (m × c, complex when b ≠ 0)
//! ```
//!
//! Anchors need not be sorted and may coincide. Gram mode ([`laplace_gram`]) is the
//! same operator with `t = s = x`. λ is a *rate* (inverse length-scale), as in the
//! engine spec.
//!
//! # Gradient conventions
//!
//! `V`, `s`, `t` are real; `Y` is complex. The scalar loss is
//!
//! ```text
//! ℓ = Σ_{j,c} Ḡr[j,c]·Re Y[j,c] + Σ_{j,c} Ḡi[j,c]·Im Y[j,c]
//! ```
//!
//! with upstream gradients `Ḡr = ∂ℓ/∂Re Y` and (optionally, 0 when absent)
//! `Ḡi = ∂ℓ/∂Im Y`. Writing `G = Ḡr + i·Ḡi`, for any *real* parameter `p`
//! `∂ℓ/∂p = Re Σ conj(G) · ∂Y/∂p`. Hence, with `sgn(0) = 0`:
//!
//! ```text
//! V̄[i,c] = Re Σ_j conj(G[j,c]) K_ji                    = Re (Kᵀ conj(G))[i,c]
//! t̄_j    = Re Σ_{i,c} conj(G[j,c]) · (−λ) sgn(t_j − s_i) K_ji V[i,c]
//! s̄_i    = Re Σ_{j,c} conj(G[j,c]) · (+λ) sgn(t_j − s_i) K_ji V[i,c]
//! Q      = Σ_{j,i,c} conj(G[j,c]) · (−|t_j − s_i|) K_ji V[i,c]     (= Σ conj(G)·∂Y/∂λ)
//! ā = ∂ℓ/∂a = Re Q,      b̄ = ∂ℓ/∂b = −Im Q
//! ```
//!
//! (`Y` is holomorphic in λ, so `∂Y/∂a = ∂Y/∂λ` and `∂Y/∂b = i·∂Y/∂λ`.) The pair
//! `(ā, b̄)` is returned as `lambda_re`, `lambda_im`; as one complex number
//! `ā + i·b̄ = Σ G·conj(∂Y/∂λ) = 2 ∂ℓ/∂λ̄`, which is PyTorch's `.grad` convention for a
//! complex leaf. For a real layer that reads only `Re Y`, pass `gy_im = None`.
//!
//! **Ties.** `|t − s|` is not differentiable at `t = s`; the references use the
//! subgradient `sgn(0) = 0` (the mean of the two one-sided derivatives `±λK`), so a tied
//! pair contributes nothing to `t̄` or `s̄`. This is what a central finite difference
//! sees. Note that the engine's scan formula `t̄ ∝ −λ(L_j − R_j)`, with sources placed
//! before targets at ties, puts a tied source in `L_j` with weight `+1` — i.e. the
//! one-sided `sgn(0) = +1` — unless it subtracts the tied-source mass; the swapped pass for
//! `s̄` correspondingly gives `sgn(0) = −1`. The two cancel in Gram mode
//! (`x̄ = s̄ + t̄`), but not in rectangular mode.
//!
//! # Finite differences
//!
//! [`finite_diff`]: `g_k = (f(x + h e_k) − f(x − h e_k)) / (2h)`.

use std::ops::{Add, AddAssign, Mul, Neg, Sub};

use super::tensor::RefTensor;

/// A complex number in f64, just enough arithmetic for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct C64 {
    /// Real part.
    pub(crate) re: f64,
    /// Imaginary part.
    pub(crate) im: f64,
}

impl C64 {
    /// `re + i·im`.
    pub(crate) const fn new(re: f64, im: f64) -> Self {
        C64 { re, im }
    }

    /// Complex conjugate `re − i·im`.
    pub(crate) fn conj(self) -> Self {
        C64::new(self.re, -self.im)
    }

    /// `k · self` for real `k`.
    pub(crate) fn scale(self, k: f64) -> Self {
        C64::new(k * self.re, k * self.im)
    }

    /// The kernel value `exp(−λ·dist) = e^{−a·dist} (cos(b·dist) − i·sin(b·dist))` for
    /// `λ = a + i·b` and a real distance `dist ≥ 0`.
    pub(crate) fn exp_neg(lambda: C64, dist: f64) -> Self {
        let modulus = (-lambda.re * dist).exp();
        let phase = lambda.im * dist;
        C64::new(modulus * phase.cos(), -modulus * phase.sin())
    }
}

impl Add for C64 {
    type Output = C64;
    fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }
}

impl Sub for C64 {
    type Output = C64;
    fn sub(self, o: C64) -> C64 {
        C64::new(self.re - o.re, self.im - o.im)
    }
}

impl Mul for C64 {
    type Output = C64;
    fn mul(self, o: C64) -> C64 {
        C64::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

impl Neg for C64 {
    type Output = C64;
    fn neg(self) -> C64 {
        C64::new(-self.re, -self.im)
    }
}

impl AddAssign for C64 {
    fn add_assign(&mut self, o: C64) {
        *self = *self + o;
    }
}

/// `sgn(x)`: 1 for `x > 0`, −1 for `x < 0`, 0 for ±0 (the tie subgradient), NaN for NaN.
pub(crate) fn sgn(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else if x == 0.0 {
        0.0
    } else {
        f64::NAN
    }
}

/// Checks the operator's arguments and returns the channel count `c`.
pub(crate) fn check_operator(op: &str, s: &[f64], v: &RefTensor, lambda: (f64, f64)) -> usize {
    assert!(
        v.shape.len() == 2 && v.shape[0] == s.len(),
        "{op}: values must have shape [n, c] with n = {} sources, got {:?}",
        s.len(),
        v.shape
    );
    assert!(
        lambda.0 > 0.0 || lambda.0.is_nan(),
        "{op}: the rate's real part must be > 0, got λ = {} + {}i",
        lambda.0,
        lambda.1
    );
    v.shape[1]
}

/// Checks that an upstream gradient has shape `[m, c]`.
pub(crate) fn check_upstream(op: &str, name: &str, g: &RefTensor, m: usize, c: usize) {
    assert!(
        g.shape == [m, c],
        "{op}: {name} must have shape [{m}, {c}] (the output's), got {:?}",
        g.shape
    );
}

/// The dense kernel matrix `K_ji = exp(−λ|t_j − s_i|)` as `(Re K, Im K)`, each `[m, n]`
/// (`m = t.len()` rows, `n = s.len()` columns); `λ = lambda.0 + i·lambda.1`.
///
/// # Panics
///
/// If `lambda.0 <= 0` (a NaN rate propagates instead).
pub fn laplace_kernel(s: &[f64], t: &[f64], lambda: (f64, f64)) -> (RefTensor, RefTensor) {
    let dummy = RefTensor::new(&[s.len(), 0], vec![]);
    check_operator("laplace_kernel", s, &dummy, lambda);
    let lam = C64::new(lambda.0, lambda.1);
    let (m, n) = (t.len(), s.len());
    let (mut re, mut im) = (vec![0.0; m * n], vec![0.0; m * n]);
    for j in 0..m {
        for i in 0..n {
            let k = C64::exp_neg(lam, (t[j] - s[i]).abs());
            re[j * n + i] = k.re;
            im[j * n + i] = k.im;
        }
    }
    (RefTensor::new(&[m, n], re), RefTensor::new(&[m, n], im))
}

/// The Laplace operator `Y[j, :] = Σ_i exp(−λ|t_j − s_i|) V[i, :]`, returned as
/// `(Re Y, Im Y)`, each `[m, c]` (`Im Y` is all zeros when `lambda.1 == 0`).
///
/// `s`: `n` source anchors, `t`: `m` target anchors (any order, ties allowed),
/// `v`: `[n, c]` values, `lambda = (a, b)` for `λ = a + i·b`. Sums run over `i` in index
/// order.
///
/// # Panics
///
/// If `v` is not `[s.len(), c]` or `lambda.0 <= 0` (a NaN rate propagates instead).
pub fn laplace_apply(
    s: &[f64],
    t: &[f64],
    v: &RefTensor,
    lambda: (f64, f64),
) -> (RefTensor, RefTensor) {
    let c = check_operator("laplace_apply", s, v, lambda);
    let lam = C64::new(lambda.0, lambda.1);
    let m = t.len();
    let (mut re, mut im) = (vec![0.0; m * c], vec![0.0; m * c]);
    for (j, &tj) in t.iter().enumerate() {
        for (i, &si) in s.iter().enumerate() {
            let k = C64::exp_neg(lam, (tj - si).abs());
            for ch in 0..c {
                let vi = v.data[i * c + ch];
                re[j * c + ch] += k.re * vi;
                im[j * c + ch] += k.im * vi;
            }
        }
    }
    (RefTensor::new(&[m, c], re), RefTensor::new(&[m, c], im))
}

/// Gram mode `y = K(x, x) V`: [`laplace_apply`] with `s = t = x`.
///
/// # Panics
///
/// As [`laplace_apply`].
pub fn laplace_gram(x: &[f64], v: &RefTensor, lambda: (f64, f64)) -> (RefTensor, RefTensor) {
    laplace_apply(x, x, v, lambda)
}

/// Gradients of `ℓ = Σ Ḡr·Re Y + Σ Ḡi·Im Y` for the rectangular operator (see the
/// module docs for the formulas and the complex convention).
#[derive(Debug, Clone, PartialEq)]
pub struct LaplaceGrads {
    /// `∂ℓ/∂V`, shape `[n, c]`.
    pub v: RefTensor,
    /// `∂ℓ/∂s_i`, length `n` (tied pairs contribute 0).
    pub s: Vec<f64>,
    /// `∂ℓ/∂t_j`, length `m` (tied pairs contribute 0).
    pub t: Vec<f64>,
    /// `∂ℓ/∂a`, `a = Re λ`.
    pub lambda_re: f64,
    /// `∂ℓ/∂b`, `b = Im λ` (`ā + i·b̄` is PyTorch's complex `.grad`).
    pub lambda_im: f64,
}

/// Gradients of `ℓ = Σ Ḡr·Re Y + Σ Ḡi·Im Y` for Gram mode `Y = K(x, x) V`.
#[derive(Debug, Clone, PartialEq)]
pub struct LaplaceGramGrads {
    /// `∂ℓ/∂V`, shape `[n, c]`.
    pub v: RefTensor,
    /// `∂ℓ/∂x_i = s̄_i + t̄_i` (x plays both roles), length `n`.
    pub x: Vec<f64>,
    /// `∂ℓ/∂a`, `a = Re λ`.
    pub lambda_re: f64,
    /// `∂ℓ/∂b`, `b = Im λ`.
    pub lambda_im: f64,
}

/// Reverse-mode gradients of [`laplace_apply`] for the loss
/// `ℓ = Σ gy_re·Re Y + Σ gy_im·Im Y` (`gy_im = None` means 0), computed term by term
/// from the closed forms in the module docs (`sgn(0) = 0` at ties).
///
/// # Panics
///
/// As [`laplace_apply`], and if `gy_re` or `gy_im` is not `[t.len(), c]`.
pub fn laplace_apply_grad(
    s: &[f64],
    t: &[f64],
    v: &RefTensor,
    lambda: (f64, f64),
    gy_re: &RefTensor,
    gy_im: Option<&RefTensor>,
) -> LaplaceGrads {
    let op = "laplace_apply_grad";
    let c = check_operator(op, s, v, lambda);
    let (n, m) = (s.len(), t.len());
    check_upstream(op, "gy_re", gy_re, m, c);
    if let Some(g) = gy_im {
        check_upstream(op, "gy_im", g, m, c);
    }
    let lam = C64::new(lambda.0, lambda.1);
    // conj(G[j, ch]) = Ḡr − i·Ḡi.
    let g_conj = |j: usize, ch: usize| {
        let gi = gy_im.map_or(0.0, |g| g.data[j * c + ch]);
        C64::new(gy_re.data[j * c + ch], gi).conj()
    };

    let mut v_bar = vec![0.0; n * c];
    let mut s_bar = vec![0.0; n];
    let mut t_bar = vec![0.0; m];
    let mut q = C64::default();
    for (j, &tj) in t.iter().enumerate() {
        for (i, &si) in s.iter().enumerate() {
            let dist = (tj - si).abs();
            let k = C64::exp_neg(lam, dist);
            let sign = sgn(tj - si);
            // ∂K_ji/∂t_j = −λ sgn K_ji, ∂K_ji/∂s_i = +λ sgn K_ji, ∂K_ji/∂λ = −|t_j − s_i| K_ji.
            let dk_dt = -(lam * k).scale(sign);
            let dk_dlam = k.scale(-dist);
            for ch in 0..c {
                let gc = g_conj(j, ch);
                let vi = v.data[i * c + ch];
                v_bar[i * c + ch] += (gc * k).re;
                let dt = (gc * dk_dt).re * vi;
                t_bar[j] += dt;
                s_bar[i] -= dt;
                q += (gc * dk_dlam).scale(vi);
            }
        }
    }
    LaplaceGrads {
        v: RefTensor::new(&[n, c], v_bar),
        s: s_bar,
        t: t_bar,
        lambda_re: q.re,
        lambda_im: -q.im,
    }
}

/// Reverse-mode gradients of [`laplace_gram`] for `ℓ = Σ gy_re·Re Y + Σ gy_im·Im Y`:
/// [`laplace_apply_grad`] with `s = t = x`, and `x̄ = s̄ + t̄`.
///
/// # Panics
///
/// As [`laplace_apply_grad`].
pub fn laplace_gram_grad(
    x: &[f64],
    v: &RefTensor,
    lambda: (f64, f64),
    gy_re: &RefTensor,
    gy_im: Option<&RefTensor>,
) -> LaplaceGramGrads {
    let g = laplace_apply_grad(x, x, v, lambda, gy_re, gy_im);
    LaplaceGramGrads {
        v: g.v,
        x: g.s.iter().zip(&g.t).map(|(a, b)| a + b).collect(),
        lambda_re: g.lambda_re,
        lambda_im: g.lambda_im,
    }
}

/// Central finite-difference gradient of `f` at `x`:
/// `g_k = (f(x + h e_k) − f(x − h e_k)) / (2h)` (error `O(h²)` plus rounding
/// `≈ ε|f|/h`; `h ≈ 1e-6` relative to the scale of `x` suits smooth f64 functions).
///
/// # Panics
///
/// If `h` is not a finite positive number.
pub fn finite_diff(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    assert!(
        h > 0.0 && h.is_finite(),
        "finite_diff: step must be finite and > 0, got {h}"
    );
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|k| {
            xp[k] = x[k] + h;
            let fp = f(&xp);
            xp[k] = x[k] - h;
            let fm = f(&xp);
            xp[k] = x[k];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

#[cfg(test)]
#[path = "laplace_tests.rs"]
mod tests;
