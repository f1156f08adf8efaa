//! The Laplace / Ornstein–Uhlenbeck covariance `Σ = D C D`, `D = diag(σ)`,
//! `C_ij = e^{−λ|x_i − x_j|}` (`specs/laplace-engine.md` §4; REMIX's covariance without the
//! nugget), in O(d) after one sort of the coordinates.
//!
//! [`OuCovariance::new`] sorts `x` once and builds the AR(1) factor (`ρ_k`, `1 − ρ_k²`);
//! then, for `r` of shape `[d]` or `[d, c]` (columns are independent vectors):
//! - [`OuCovariance::logdet`]: `log det Σ = 2 Σ ln σ_i + Σ_k ln(1 − ρ_k²)`;
//! - [`OuCovariance::mahalanobis`]: `rᵀ Σ⁻¹ r = Σ_k e_k²`, `e = L⁻¹ D⁻¹ r` (AR(1) whitening);
//! - [`OuCovariance::solve`]: `Σ⁻¹ r = D⁻¹ Bᵀ S⁻² B D⁻¹ r` (the tridiagonal precision);
//! - [`OuCovariance::sample`]: `v = σ ⊙ ζ`, `ζ` the AR(1) chain driven by `ε` (a linear scan);
//! - [`OuCovariance::nll`]: `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` per column.
//!
//! Guards: tied coordinates give `ρ = 1` and a singular `C`; `1 − ρ²` is floored at 1e-8
//! (see `lapis_kernels::covariance`), so ties yield a nearly-singular but valid chain rather
//! than NaN. [`OuCovariance::nll_backward`] gives the NLL's gradients for r, σ, x and λ; the
//! gradients of every other op (log det, Mahalanobis, solve, sample) come from the general
//! model, [`LaplaceCovariance::ou`] (`u = 0`, `w = σ`), in [`lcm`].
//!
//! [`LaplaceCovariance`] is REMIX's full covariance with the nugget,
//! `diag(u) + diag(w) K diag(w)` (`specs/laplace-methods.md` §0): see [`lcm`].

use lapis_kernels::{covariance as k, sort as sk};

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};

pub mod lcm;
pub use lcm::{lcm_frobenius, lcm_frobenius_backward, LaplaceCovariance, LcmGrads};

/// Gradients of the summed Gaussian NLL (over columns of `r`).
#[derive(Debug, Clone)]
pub struct OuNllGrads {
    /// `∂/∂r = Σ⁻¹ r`, shape of `r`.
    pub r: Tensor,
    /// `∂/∂σ_i = (c − Σ_c z_i w_i) / σ_i` with `z = r/σ`, `w = C⁻¹ z`.
    pub sigma: Tensor,
    /// `∂/∂x_i` (through the gaps; 0 across floored ties).
    pub x: Tensor,
    /// `∂/∂λ`.
    pub lambda: f32,
}

/// The OU covariance of `d` coordinates, factored once (sorted order kept inside).
pub struct OuCovariance {
    xs: Tensor,
    lambda: f32,
    perm: Tensor,
    inv: Tensor,
    sigma_sorted: Tensor,
    rho: Tensor,
    om: Tensor,
    d: usize,
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

/// The anchored decay scan on sorted anchors `xs` (`[d]`) of `x` (`[d]` or `[d, c]`) with
/// decays `e^{−rate·Δ}·q_k` into each element: `ρ` products computed from the anchors, never
/// chained ([`crate::decay_scan()`]); `q` the data-dependent factors, if any.
pub(crate) fn anchored_scan(
    xs: &Tensor,
    rate: f32,
    q: Option<&Tensor>,
    x: &Tensor,
    reverse: bool,
) -> Result<Tensor> {
    let rate = Tensor::from_slice(xs.device(), &[1], &[rate])?;
    let spec = crate::DecayScan {
        rate: &rate,
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
    /// `λ > 0`, finite coordinates.
    pub fn new(x: &Tensor, lambda: f32, sigma: &Tensor) -> Result<Self> {
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
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(LapisError::invalid(
                OP,
                "lambda",
                lambda,
                "must be finite and > 0",
            ));
        }
        let min_sigma = crate::min_all(sigma)?.to_scalar()?;
        if min_sigma <= 0.0 || crate::validate::count_nonfinite(sigma)? > 0.0 {
            return Err(LapisError::invalid(
                OP,
                "sigma",
                min_sigma,
                "every σ must be finite and > 0",
            ));
        }
        if crate::validate::count_nonfinite(x)? > 0.0 {
            return Err(LapisError::invalid(
                OP,
                "x",
                "non-finite entries",
                "coordinates must be finite",
            ));
        }
        let d = x.numel();
        let (xs, perm) = crate::argsort(x)?;
        let dev = x.device();
        let inv = Tensor::empty(OP, dev, &[d], DType::U32)?;
        launch_1d!(dev, d, sk::invert_perm_kernel, |client, R| (
            arr::<R>(&perm),
            arr::<R>(&inv),
            d as u32
        ));
        let sigma_sorted = crate::index::take_rows_unchecked(sigma, &perm)?;
        let rho = Tensor::empty(OP, dev, &[d], DType::F32)?;
        let om = Tensor::empty(OP, dev, &[d], DType::F32)?;
        launch_1d!(dev, d, k::ou_prepare_kernel, |client, R| (
            arr::<R>(&xs),
            arr::<R>(&rho),
            arr::<R>(&om),
            d as u32,
            lambda,
        ));
        Ok(OuCovariance {
            xs,
            lambda,
            perm,
            inv,
            sigma_sorted,
            rho,
            om,
            d,
        })
    }

    /// `log det Σ`.
    pub fn logdet(&self) -> Result<f32> {
        let a = crate::sum_all(&crate::log(&self.sigma_sorted)?)?.to_scalar()?;
        let b = crate::sum_all(&crate::log(&self.om)?)?.to_scalar()?;
        Ok(2.0 * a + b)
    }

    fn check_r(&self, op: &'static str, r: &Tensor) -> Result<usize> {
        match r.shape() {
            [a] if *a == self.d => Ok(1),
            [a, c] if *a == self.d => Ok(*c),
            _ => Err(LapisError::ShapeMismatch {
                op,
                lhs: vec![self.d],
                rhs: r.shape().to_vec(),
            }),
        }
    }

    /// `z = D⁻¹ r` in sorted order, `[d, c]`.
    fn scaled_sorted(&self, r: &Tensor, c: usize) -> Result<Tensor> {
        let rs = crate::index::take_rows_unchecked(&r.reshape(&[self.d, c])?, &self.perm)?;
        crate::div(&rs, &self.sigma_sorted.reshape(&[self.d, 1])?)
    }

    fn kernel2(&self, z: &Tensor, c: usize, whiten: bool) -> Result<Tensor> {
        let out = Tensor::empty("ou_covariance", z.device(), z.shape(), DType::F32)?;
        let (d32, c32) = (self.d as u32, c as u32);
        if whiten {
            launch_1d!(z.device(), self.d * c, k::ou_whiten_kernel, |client, R| (
                arr::<R>(z),
                arr::<R>(&self.rho),
                arr::<R>(&self.om),
                arr::<R>(&out),
                d32,
                c32,
            ));
        } else {
            launch_1d!(
                z.device(),
                self.d * c,
                k::ou_precision_kernel,
                |client, R| (
                    arr::<R>(z),
                    arr::<R>(&self.rho),
                    arr::<R>(&self.om),
                    arr::<R>(&out),
                    d32,
                    c32,
                )
            );
        }
        Ok(out)
    }

    /// `rᵀ Σ⁻¹ r` per column: shape `[1]` for `r [d]`, `[1, c]` for `r [d, c]`.
    pub fn mahalanobis(&self, r: &Tensor) -> Result<Tensor> {
        let c = self.check_r("ou_mahalanobis", r)?;
        let e = self.kernel2(&self.scaled_sorted(r, c)?, c, true)?;
        let m = crate::sum(&crate::mul(&e, &e)?, 0)?;
        if r.rank() == 1 {
            m.reshape(&[1])
        } else {
            Ok(m)
        }
    }

    /// `Σ⁻¹ r`, shape of `r`.
    pub fn solve(&self, r: &Tensor) -> Result<Tensor> {
        let c = self.check_r("ou_solve", r)?;
        let w = self.kernel2(&self.scaled_sorted(r, c)?, c, false)?;
        let w = crate::div(&w, &self.sigma_sorted.reshape(&[self.d, 1])?)?;
        crate::index::take_rows_unchecked(&w, &self.inv)?.reshape(r.shape())
    }

    /// A draw `v = σ ⊙ ζ` with `Cov v = Σ`, from standard normal `eps` (shape `[d]` or
    /// `[d, c]`, original order; consumed in sorted order).
    pub fn sample(&self, eps: &Tensor) -> Result<Tensor> {
        let c = self.check_r("ou_sample", eps)?;
        let es = crate::index::take_rows_unchecked(&eps.reshape(&[self.d, c])?, &self.perm)?;
        // ζ_k = ρ_{k−1} ζ_{k−1} + s_k ε_k: the anchored decay scan (every ρ product from
        // the coordinates, `crate::decay_scan`), rate λ.
        let u = crate::mul(&es, &crate::sqrt(&self.om)?.reshape(&[self.d, 1])?)?;
        let zeta = anchored_scan(&self.xs, self.lambda, None, &u, false)?;
        let v = crate::mul(&zeta, &self.sigma_sorted.reshape(&[self.d, 1])?)?;
        crate::index::take_rows_unchecked(&v, &self.inv)?.reshape(eps.shape())
    }

    /// Gaussian negative log-likelihood `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` per column.
    pub fn nll(&self, r: &Tensor) -> Result<Tensor> {
        let m = self.mahalanobis(r)?;
        let konst = self.logdet()? + self.d as f32 * (2.0 * std::f32::consts::PI).ln();
        crate::affine(&m, 0.5, 0.5 * konst)
    }

    /// Gradients of `Σ_columns nll(r)` w.r.t. `r`, `σ`, `x` and `λ`, all O(d·c).
    ///
    /// With `z = r/σ` (sorted), `e = L⁻¹z`, `w = C⁻¹z`: `r̄ = w/σ`,
    /// `σ̄_i = (c − Σ_c z_i w_i)/σ_i`, and through `ρ_k = e^{−λΔ_k}`:
    /// `∂/∂ρ_{k−1} = Σ_c e_k(e_k ρ/s_k² − z_{k−1}/s_k) − c ρ/s_k²`,
    /// `∂ρ/∂Δ = −λρ`, `∂ρ/∂λ = −Δρ`, `x̄_k = Δ̄_{k−1} − Δ̄_k` (sorted order).
    pub fn nll_backward(&self, r: &Tensor) -> Result<OuNllGrads> {
        let c = self.check_r("ou_nll_backward", r)?;
        let dev = r.device();
        let z = self.scaled_sorted(r, c)?;
        let e = self.kernel2(&z, c, true)?;
        let w = self.kernel2(&z, c, false)?;
        let sig = self.sigma_sorted.reshape(&[self.d, 1])?;
        let r_bar = crate::index::take_rows_unchecked(&crate::div(&w, &sig)?, &self.inv)?
            .reshape(r.shape())?;
        // σ̄ = (c − Σ_c z·w) / σ
        let zw = crate::sum(&crate::mul(&z, &w)?, 1)?;
        let sigma_bar_sorted = crate::div(&crate::affine(&zw, -1.0, c as f32)?, &sig)?;
        let sigma_bar =
            crate::index::take_rows_unchecked(&sigma_bar_sorted, &self.inv)?.reshape(&[self.d])?;
        let gdelta = Tensor::empty("ou_nll_backward", dev, &[self.d], DType::F32)?;
        let glam = Tensor::empty("ou_nll_backward", dev, &[self.d], DType::F32)?;
        let (d32, c32, lam) = (self.d as u32, c as u32, self.lambda);
        launch_1d!(dev, self.d, k::ou_nll_rho_grad_kernel, |client, R| (
            arr::<R>(&self.xs),
            arr::<R>(&z),
            arr::<R>(&e),
            arr::<R>(&self.rho),
            arr::<R>(&self.om),
            arr::<R>(&gdelta),
            arr::<R>(&glam),
            d32,
            c32,
            lam,
        ));
        // x̄_k = Δ̄_k(as stored at k) − Δ̄_{k+1}
        let next = shift1(&gdelta, false)?;
        let x_bar_sorted = crate::sub(&gdelta, &next)?;
        let x_bar = crate::index::take_rows_unchecked(&x_bar_sorted, &self.inv)?;
        let lambda = crate::sum_all(&glam)?.to_scalar()?;
        Ok(OuNllGrads {
            r: r_bar,
            sigma: sigma_bar,
            x: x_bar,
            lambda,
        })
    }
}
