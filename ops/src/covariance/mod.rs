//! The Laplace / Ornstein–Uhlenbeck covariance `Σ = D C D`, `D = diag(σ)`,
//! `C_ij = e^{−λ|x_i − x_j|}` (`specs/laplace-engine.md` §4; REMIX's covariance without the
//! nugget), in O(d) after one sort of the coordinates.
//!
//! On sorted coordinates `C` is the covariance of the AR(1) chain
//! `ζ_k = ρ_{k−1} ζ_{k−1} + s_k ε_k` (`ρ_k = e^{−λ(x_{k+1} − x_k)}`, `s_k² = 1 − ρ_{k−1}²`),
//! so, for `r` of shape `[d]` or `[d, c]` (columns are independent vectors):
//! - [`OuCovariance::logdet`]: `log det Σ = 2 Σ ln σ_i + Σ_k ln(1 − ρ_k²)`;
//! - [`OuCovariance::mahalanobis`]: `rᵀ Σ⁻¹ r = Σ_k e_k²`, `e = L⁻¹ D⁻¹ r` (AR(1) whitening,
//!   `e_k = (z_k − ρ_{k−1} z_{k−1}) / s_k`, `z = r/σ`);
//! - [`OuCovariance::solve`]: `Σ⁻¹ r = D⁻¹ Bᵀ S⁻² B D⁻¹ r` (the tridiagonal precision);
//! - [`OuCovariance::sample`]: `v = σ ⊙ ζ`, `ζ` the AR(1) chain driven by `ε` (a linear scan);
//! - [`OuCovariance::nll`]: `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` per column;
//! - [`OuCovariance::nll_backward`]: the NLL's gradients for r, σ, x and λ.
//!
//! **One operator, one implementation.** `Σ` is exactly REMIX's covariance
//! `diag(u) + diag(w) C diag(w)` ([`LaplaceCovariance`], [`lcm`]) at `u = 0`, `w = σ`, and
//! [`OuCovariance`] is that case ([`LaplaceCovariance::ou`]) with the OU contract (`σ > 0`)
//! and names: its ops and gradients are the Kalman filter's of [`lcm`]. At `u = 0` the
//! filter *is* the whitening above: `P_k = P⁻_k u_k / S_k = 0`, so `P⁻_k = s_k²`,
//! `S_k = σ_k² s_k²` (`Σ_k ln S_k` is the log det above), the gain is `G_k = 1/σ_k`, the
//! filtered mean `m_k = r_k/σ_k`, and the innovation `v_k = r_k − σ_k ρ_{k−1} m_{k−1} = σ_k s_k e_k`,
//! so `Σ_k v_k²/S_k = Σ_k e_k²`. (The Riccati recursion the general model runs is trivial
//! here, `P = 0`: O(d) work like the rest.)
//!
//! Guards: tied coordinates give `ρ = 1` and a singular `C`; `1 − ρ²` is floored at 1e-8
//! (see `lapis_kernels::covariance`), so ties yield a nearly-singular but valid chain rather
//! than NaN; no gradient flows through a floored gap, and a run of tied coordinates shares
//! its coordinate gradient equally (see [`lcm`]).
//!
//! [`LaplaceCovariance`] is REMIX's full covariance with the nugget,
//! `diag(u) + diag(w) K diag(w)` (`specs/laplace-methods.md` §0): see [`lcm`].
//!
//! **What stays on the device; no host reads.** `λ` is an `impl Into<`[`Scalar`]`>`: an
//! `f32` (checked at once: finite and `> 0`, an immediate typed error) or a one-element f32
//! tensor (a learnable rate's value), and is kept as a `[1]` device tensor that the kernels
//! read there (`lambda[0]`). The value checks on device data — finite coordinates, `σ > 0`
//! here; finite `a` and `w`, `u ≥ 0`, `u + w² > 0` and a tensor `λ > 0` in [`lcm`] — are
//! deferred device checks ([`crate::checks`]): a failure surfaces as
//! [`LapisError::InvalidArgument`] naming the op and the argument at the next read of device
//! data (or [`crate::Device::check`]; at once in strict mode). Shapes, dtypes and devices
//! are still checked on the host, at once. Every scalar result (log det, NLL, the Frobenius
//! objective) and every scalar gradient (`λ̄`) is a `[1]` device tensor, combined on the
//! device (`sum_all` and elementwise ops). No op of the family — construction, log det,
//! Mahalanobis, solve, sample, NLL, Frobenius, or any backward — reads device data back to
//! the host (counted in `tests/tests/counters.rs`).

use crate::checks::Accept;
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::scalar::Scalar;
use crate::tensor::Tensor;

pub mod lcm;
pub use lcm::{lcm_frobenius, lcm_frobenius_backward, LaplaceCovariance, LcmGrads};

/// Gradients of the summed Gaussian NLL (over columns of `r`).
#[derive(Debug, Clone)]
pub struct OuNllGrads {
    /// `∂/∂r = Σ⁻¹ r`, shape of `r`.
    pub r: Tensor,
    /// `∂/∂σ_i = (c − Σ_c z_i w_i) / σ_i` with `z = r/σ`, `w = C⁻¹ z`.
    pub sigma: Tensor,
    /// `∂/∂x_i` (through the gaps; 0 across floored ties, whose runs share their total).
    pub x: Tensor,
    /// `∂/∂λ`, a `[1]` device tensor.
    pub lambda: Tensor,
}

/// The OU covariance of `d` coordinates, factored once (sorted order kept inside): REMIX's
/// covariance at `u = 0`, `w = σ` (see the module docs).
pub struct OuCovariance {
    cov: LaplaceCovariance,
}

/// `x` (`[d]` or `[d, c]`) moved one row along axis 0, the vacated row set to 0:
/// `[0, x_0, …, x_{d−2}]` when `right`, else `[x_1, …, x_{d−1}, 0]`.
pub(crate) fn shift1(x: &Tensor, right: bool) -> Result<Tensor> {
    let d = x.shape()[0];
    let mut zshape = x.shape().to_vec();
    zshape[0] = 1;
    let zero = crate::zeros(x.device(), &zshape, DType::F32)?;
    if d == 1 {
        return Ok(zero);
    }
    if right {
        crate::concat(&[&zero, &crate::slice(x, 0, 0, d - 1)?], 0)
    } else {
        crate::concat(&[&crate::slice(x, 0, 1, d)?, &zero], 0)
    }
}

/// The rate `λ` of the covariance ops as a checked `[1]` device tensor (finite, `> 0`): a
/// host value is checked at once, a tensor on the device (deferred, [`crate::checks`]).
pub(crate) fn lambda_arg<'a>(
    op: &'static str,
    lambda: impl Into<Scalar<'a>>,
    like: &Tensor,
) -> Result<Tensor> {
    lambda.into().device_value(
        op,
        "lambda",
        like,
        Accept::Positive,
        "must be finite and > 0",
    )
}

/// The anchored decay scan on sorted anchors `xs` (`[d]`) of `x` (`[d]` or `[d, c]`) with
/// decays `e^{−rate·Δ}·q_k` into each element: `ρ` products computed from the anchors, never
/// chained ([`crate::decay_scan()`]); `q` the data-dependent factors, if any. `rate` is a
/// `[1]` device tensor (never read back).
pub(crate) fn anchored_scan(
    xs: &Tensor,
    rate: &Tensor,
    q: Option<&Tensor>,
    x: &Tensor,
    reverse: bool,
) -> Result<Tensor> {
    let spec = crate::DecayScan {
        rate,
        seg_len: xs.numel(),
        reverse,
        moment: false,
        tie: false,
        factors: q,
        coords_lo: None,
    };
    Ok(crate::decay_scan(xs, x, &spec)?.0)
}

impl OuCovariance {
    /// Factors `Σ = diag(σ) e^{−λ|x_i − x_j|} diag(σ)`: `x`, `sigma` f32 `[d]`, `σ > 0`,
    /// `λ > 0` (an `f32`, checked at once, or a one-element tensor, kept and checked on the
    /// device), finite coordinates. The value checks on `x` and `σ` are deferred device
    /// checks ([`crate::checks`]); nothing is read back.
    pub fn new<'a>(x: &Tensor, lambda: impl Into<Scalar<'a>>, sigma: &Tensor) -> Result<Self> {
        const OP: &str = "ou_covariance";
        crate::validate::same_device(OP, x, sigma)?;
        if x.rank() != 1 || x.dtype() != DType::F32 {
            return Err(LapisError::shape(
                OP,
                x.shape(),
                "coordinates must be f32 [d]",
            ));
        }
        if sigma.shape() != x.shape() || sigma.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: x.shape().to_vec(),
                rhs: sigma.shape().to_vec(),
            });
        }
        let lambda = lambda_arg(OP, lambda, x)?;
        let msg = "every σ must be finite and > 0";
        crate::checks::check_f32(OP, "sigma", sigma, Accept::Positive, msg)?;
        let msg = "coordinates must be finite";
        crate::checks::check_f32(OP, "x", x, Accept::Finite, msg)?;
        // u = 0, w = σ: checked above (σ > 0 gives u + w² > 0).
        let u = crate::zeros(x.device(), x.shape(), DType::F32)?;
        Ok(OuCovariance {
            cov: LaplaceCovariance::factor(x, lambda, &u, sigma, None)?,
        })
    }

    /// The same covariance as REMIX's model (`u = 0`, `w = σ`), for its other gradients
    /// (log det, Mahalanobis, solve, sample: `∂/∂σ` in [`LcmGrads::w`], `∂/∂x` in
    /// [`LcmGrads::a`]).
    pub fn as_lcm(&self) -> &LaplaceCovariance {
        &self.cov
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.cov.dim()
    }

    /// `log det Σ`, a `[1]` device tensor (`.to_scalar()` reads it).
    pub fn logdet(&self) -> Result<Tensor> {
        self.cov.logdet()
    }

    /// `rᵀ Σ⁻¹ r` per column: shape `[1]` for `r [d]`, `[1, c]` for `r [d, c]`.
    pub fn mahalanobis(&self, r: &Tensor) -> Result<Tensor> {
        self.cov.check_r("ou_mahalanobis", r)?;
        self.cov.mahalanobis(r)
    }

    /// `Σ⁻¹ r`, shape of `r`.
    pub fn solve(&self, r: &Tensor) -> Result<Tensor> {
        self.cov.check_r("ou_solve", r)?;
        self.cov.solve(r)
    }

    /// A draw `v = σ ⊙ ζ` with `Cov v = Σ`, from standard normal `eps` (shape `[d]` or
    /// `[d, c]`, original order; consumed in sorted order).
    pub fn sample(&self, eps: &Tensor) -> Result<Tensor> {
        self.cov.check_r("ou_sample", eps)?;
        // The nugget's term √u ⊙ ε_u is 0 at u = 0 (any finite ε_u).
        self.cov.sample(eps, eps)
    }

    /// Gaussian negative log-likelihood `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` per column
    /// (shape as [`Self::mahalanobis`]), combined on the device.
    pub fn nll(&self, r: &Tensor) -> Result<Tensor> {
        self.cov.check_r("ou_nll", r)?;
        self.cov.nll(r)
    }

    /// Gradients of `Σ_columns nll(r)` w.r.t. `r`, `σ`, `x` and `λ`, all O(d·c): the
    /// reverse-mode Kalman filter of [`lcm`] at `u = 0` (`r̄ = Σ⁻¹ r`,
    /// `σ̄_i = (c − Σ_c z_i w_i)/σ_i` with `z = r/σ`, `w = C⁻¹z`; `x̄`, `λ̄` through
    /// `ρ = e^{−λΔ}`).
    pub fn nll_backward(&self, r: &Tensor) -> Result<OuNllGrads> {
        let c = self.cov.check_r("ou_nll_backward", r)?;
        let shape: &[usize] = if r.rank() == 1 { &[1] } else { &[1, c] };
        let ones = crate::ones(r.device(), shape, DType::F32)?;
        let g = self.cov.nll_backward(r, &ones)?;
        Ok(OuNllGrads {
            r: g.r.expect("the NLL has an r gradient"),
            sigma: g.w,
            x: g.a,
            lambda: g.lambda,
        })
    }
}

/// `½(m + log det + d ln 2π)` for the per-column Mahalanobis `m` (`[1]` or `[1, c]`) and a
/// `[1]` log det, on the device (broadcast add).
pub(crate) fn nll_from(m: &Tensor, logdet: &Tensor, d: usize) -> Result<Tensor> {
    let konst = 0.5 * d as f32 * (2.0 * std::f32::consts::PI).ln();
    crate::add(
        &crate::affine(m, 0.5, 0.0)?,
        &crate::affine(logdet, 0.5, konst)?,
    )
}
