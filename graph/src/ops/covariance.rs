//! The Laplace covariance model on the tape (REMIX/LAPLEX, `specs/laplace-methods.md` §0,
//! OU covariance of `specs/laplace-engine.md` §4):
//!
//! `Σ(u, w, a; λ) = diag(u) + diag(w) K(a; λ) diag(w)`, `K_ij = e^{−λ|a_i − a_j|}`,
//!
//! with log det, Mahalanobis `rᵀΣ⁻¹r`, Gaussian NLL, solve `Σ⁻¹r`, reparameterised sampling
//! and the Frobenius fit, each O(d·c) after one sort (a Kalman filter on the sorted
//! anchors, see [`lapis_ops::LaplaceCovariance`]). Every parameter (`a`, `λ`, `u`, `w`) and
//! the residual `r` may be tracked; each VJP is the matching `*_backward` of the ops crate
//! (reverse mode through the filter: two reverse scans). The OU covariance
//! `diag(σ) K(x; λ) diag(σ)` is the case `u = 0`, `w = σ` ([`Lcm::ou`]).
//!
//! **No host reads.** `λ` stays a `[1]` device tensor (the kernels read it there; a tensor
//! or Var `λ` is range-checked on the device, as are `a`, `u`, `w`, see
//! [`lapis_ops::checks`]); every scalar result (log det, Frobenius) and every gradient,
//! `λ̄` included, is a device tensor, and upstream gradients are applied on the device. No
//! forward or backward here reads device data back to the host.

use std::cell::OnceCell;
use std::rc::Rc;

use lapis_ops::{self as ops, DType, LapisError, LaplaceCovariance, LcmGrads, Result, Tensor};

use super::scalar::ScalarArg;
use crate::var::Var;

/// The LCM's parameters on a tape: anchors `a [d]`, rate `λ` (one element, > 0), nugget
/// `u [d]` (≥ 0) and gains `w [d]`.
///
/// The factorisation (sort and Kalman variance recursion) is computed once, on the first op,
/// and shared by every op called on this `Lcm` (and its clones).
#[derive(Clone)]
pub struct Lcm {
    a: Var,
    lambda: Var,
    u: Var,
    w: Var,
    factor: Rc<OnceCell<Rc<LaplaceCovariance>>>,
}

impl Lcm {
    /// `Σ = diag(u) + diag(w) K(a; λ) diag(w)` (all on one tape). `lambda` is an `f32`, a
    /// one-element `&Tensor` (untracked constants) or a one-element `&Var`
    /// ([`ScalarArg`]).
    pub fn new<'a>(a: &Var, lambda: impl Into<ScalarArg<'a>>, u: &Var, w: &Var) -> Result<Self> {
        let lambda = &lambda.into().to_var(a, "Lcm::new", "lambda")?;
        for o in [lambda, u, w] {
            a.same_tape(o, "Lcm::new")?;
        }
        if lambda.value().numel() != 1 {
            return Err(LapisError::invalid(
                "Lcm::new",
                "lambda",
                format!("{:?}", lambda.shape()),
                "must hold one element",
            ));
        }
        Ok(Lcm {
            a: a.clone(),
            lambda: lambda.clone(),
            u: u.clone(),
            w: w.clone(),
            factor: Rc::default(),
        })
    }

    /// The OU covariance `diag(σ) K(x; λ) diag(σ)` (`u = 0` untracked, `w = σ`); `lambda` as
    /// in [`Lcm::new`].
    pub fn ou<'a>(x: &Var, lambda: impl Into<ScalarArg<'a>>, sigma: &Var) -> Result<Self> {
        let u = x.constant(ops::zeros(x.value().device(), x.shape(), DType::F32)?);
        Self::new(x, lambda, &u, sigma)
    }

    fn factor(&self) -> Result<Rc<LaplaceCovariance>> {
        if let Some(f) = self.factor.get() {
            return Ok(f.clone());
        }
        let f = Rc::new(LaplaceCovariance::new(
            self.a.value(),
            self.lambda.value(),
            self.u.value(),
            self.w.value(),
        )?);
        Ok(self.factor.get_or_init(|| f).clone())
    }

    /// Gradients for `[a, λ, u, w]`, scaled on the device by the upstream gradient `g` of a
    /// `[1]` output when given.
    fn param_grads(&self, gr: &LcmGrads, g: Option<&Tensor>) -> Result<Vec<Option<Tensor>>> {
        let s = |t: &Tensor| -> Result<Tensor> {
            match g {
                Some(g) => ops::mul(t, &g.reshape(&[1])?),
                None => Ok(t.clone()),
            }
        };
        let lam = s(&gr.lambda)?.reshape(self.lambda.shape())?;
        Ok(vec![
            Some(s(&gr.a)?),
            Some(lam),
            Some(s(&gr.u)?),
            Some(s(&gr.w)?),
        ])
    }

    fn inputs(&self) -> [&Var; 4] {
        [&self.a, &self.lambda, &self.u, &self.w]
    }

    /// `log det Σ`, shape `[1]`.
    pub fn logdet(&self) -> Result<Var> {
        let cov = self.factor()?;
        let y = cov.logdet()?;
        let me = self.clone();
        Ok(self.a.record(
            &self.inputs(),
            y,
            Box::new(move |g| me.param_grads(&cov.logdet_backward(g)?, None)),
        ))
    }

    fn with_r(
        &self,
        r: &Var,
        y: Tensor,
        cov: Rc<LaplaceCovariance>,
        bw: impl FnOnce(&LaplaceCovariance, &Tensor, &Tensor) -> Result<LcmGrads> + 'static,
    ) -> Result<Var> {
        self.a.same_tape(r, "lcm")?;
        let me = self.clone();
        let rv = r.value().clone();
        let mut inputs = self.inputs().to_vec();
        inputs.push(r);
        Ok(self.a.record(
            &inputs,
            y,
            Box::new(move |g| {
                let gr = bw(&cov, &rv, g)?;
                let mut out = me.param_grads(&gr, None)?;
                out.push(gr.r);
                Ok(out)
            }),
        ))
    }

    /// `rᵀ Σ⁻¹ r` per column: `[1]` for `r [d]`, `[1, c]` for `r [d, c]`.
    pub fn mahalanobis(&self, r: &Var) -> Result<Var> {
        let cov = self.factor()?;
        let y = cov.mahalanobis(r.value())?;
        self.with_r(r, y, cov, |c, r, g| c.mahalanobis_backward(r, g))
    }

    /// Gaussian NLL `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` per column (shape as
    /// [`Lcm::mahalanobis`]).
    pub fn nll(&self, r: &Var) -> Result<Var> {
        let cov = self.factor()?;
        let y = cov.nll(r.value())?;
        self.with_r(r, y, cov, |c, r, g| c.nll_backward(r, g))
    }

    /// `Σ⁻¹ r` (shape of `r`).
    pub fn solve(&self, r: &Var) -> Result<Var> {
        let cov = self.factor()?;
        let y = cov.solve(r.value())?;
        self.with_r(r, y, cov, |c, r, g| c.solve_backward(r, g))
    }

    /// A reparameterised draw `x = √u ⊙ ε_u + w ⊙ ζ(ε_w)` with `Cov x = Σ`; `eps_u`,
    /// `eps_w` standard normal `[d]` or `[d, c]` (constants).
    pub fn sample(&self, eps_u: &Tensor, eps_w: &Tensor) -> Result<Var> {
        let cov = self.factor()?;
        let y = cov.sample(eps_u, eps_w)?;
        let me = self.clone();
        let (eu, ew) = (eps_u.clone(), eps_w.clone());
        Ok(self.a.record(
            &self.inputs(),
            y,
            Box::new(move |g| me.param_grads(&cov.sample_backward(&eu, &ew, g)?, None)),
        ))
    }

    /// REMIX's Frobenius objective `‖Σ − VᵀV/B‖²_F − ‖VᵀV/B‖²_F` for a centred batch
    /// `v [B, d]` (constant), shape `[1]`.
    pub fn frobenius(&self, v: &Tensor) -> Result<Var> {
        let (a, lam, u, w) = (
            self.a.value().clone(),
            self.lambda.value().clone(),
            self.u.value().clone(),
            self.w.value().clone(),
        );
        let y = ops::lcm_frobenius(&a, &lam, &u, &w, v)?;
        let me = self.clone();
        let v = v.clone();
        Ok(self.a.record(
            &self.inputs(),
            y,
            Box::new(move |g| {
                let gr = ops::lcm_frobenius_backward(&a, &lam, &u, &w, &v)?;
                me.param_grads(&gr, Some(g))
            }),
        ))
    }
}
