//! The Laplace operator on the tape (`specs/laplace-engine.md` §1–3, LAPLEX).
//!
//! `Y = K(t, s; λ) V`, `K_ji = e^{−λ|t_j − s_i|}`, computed exactly in O((n + m) log(n + m))
//! by a sort and two exponential-decay scans; its VJP (values, both anchor sets, the rate)
//! is [`lapis_ops::laplace_apply_backward`], the same sweeps run on `Ȳ`. The phased form
//! takes `λ = a + ib` and a phase `φ` and returns the real part `Re(e^{iφ} K V)` (LAPLEX's
//! head output; `φ = −π/2` gives `Im(K V)`), with the VJP of
//! [`lapis_ops::laplace_apply_phased_backward`] fed `(cos φ Ȳ, −sin φ Ȳ)` and
//! `φ̄ = Σ Ȳ ⊙ Re(i e^{iφ} K V)`.
//!
//! The rates and the phase are [`ScalarArg`]s: an `f32`, a one-element [`Tensor`] (both
//! untracked constants) or a one-element [`Var`] (tracked if it is). Their values are read
//! on the host once per call (as `lapis_ops` does today); their gradients stay on the
//! device.

use lapis_ops::{self as ops, LapisError, Result};

use super::scalar::ScalarArg;
use crate::var::Var;

/// The host value of a one-element f32 Var (typed error naming `op` and `name` otherwise).
fn scalar(op: &'static str, name: &'static str, v: &Var) -> Result<f32> {
    ops::Scalar::Tensor(v.value()).host_value(op, name, None)
}

impl Var {
    /// `Y = K(t, s; λ) V` with `self` the values `V [n]` or `[n, c]`, anchors `s [n]`,
    /// `t [m]` and the rate `lambda` (> 0): an `f32`, a one-element `&Tensor` or a
    /// one-element `&Var` ([`ScalarArg`]; its value is read on the host). `V`, `s`, `t` and a
    /// Var `lambda` may be tracked.
    pub fn laplace_apply<'a>(
        &self,
        s: &Var,
        t: &Var,
        lambda: impl Into<ScalarArg<'a>>,
    ) -> Result<Var> {
        for o in [s, t] {
            self.same_tape(o, "laplace_apply")?;
        }
        let lambda = &lambda.into().to_var(self, "laplace_apply", "lambda")?;
        let lam = scalar("laplace_apply", "lambda", lambda)?;
        let ls = lambda.shape().to_vec();
        let vv = self.value().clone();
        // The forward's sort is kept for the backward (one sort per step, not two).
        let (y, sort) = ops::laplace_apply_sorted(s.value(), t.value(), &vv, lam)?;
        Ok(self.record(
            &[self, s, t, lambda],
            y,
            Box::new(move |g| {
                let gr = ops::laplace_apply_backward_sorted(&sort, &vv, g)?;
                Ok(vec![
                    Some(gr.values),
                    Some(gr.sources),
                    Some(gr.targets),
                    Some(gr.lambda.reshape(&ls)?),
                ])
            }),
        ))
    }

    /// Gram mode `Y = K(x, x; λ) V` (the anchors play both roles; their gradient is the sum
    /// of both roles', accumulated by the tape); `lambda` as in [`Var::laplace_apply`].
    pub fn laplace_gram<'a>(&self, x: &Var, lambda: impl Into<ScalarArg<'a>>) -> Result<Var> {
        self.laplace_apply(x, x, lambda)
    }

    /// `Re(e^{iφ} K(t, s; a + ib) V)` for real `V [n]` or `[n, c]`: the phased operator with
    /// rate `a > 0`, frequency `b` and phase `φ`, each an `f32`, a one-element `&Tensor` or
    /// a one-element `&Var` ([`ScalarArg`]; values read on the host). All six inputs may be
    /// tracked (the scalars when they are Vars).
    pub fn laplace_apply_phased<'a>(
        &self,
        s: &Var,
        t: &Var,
        a: impl Into<ScalarArg<'a>>,
        b: impl Into<ScalarArg<'a>>,
        phi: impl Into<ScalarArg<'a>>,
    ) -> Result<Var> {
        const OP: &str = "laplace_apply_phased";
        for o in [s, t] {
            self.same_tape(o, OP)?;
        }
        let a = &a.into().to_var(self, OP, "a")?;
        let b = &b.into().to_var(self, OP, "b")?;
        let phi = &phi.into().to_var(self, OP, "phi")?;
        let (av, bv, ph) = (
            scalar(OP, "a", a)?,
            scalar(OP, "b", b)?,
            scalar(OP, "phi", phi)?,
        );
        let shapes = [a.shape().to_vec(), b.shape().to_vec(), phi.shape().to_vec()];
        if !ph.is_finite() {
            return Err(LapisError::invalid(OP, "phi", ph, "must be finite"));
        }
        let vv = self.value().clone();
        // The forward's sort is kept for the backward (one sort per step, not two).
        let ((yr, yi), sort) = ops::laplace_apply_phased_sorted(s.value(), t.value(), &vv, av, bv)?;
        let (c, sn) = (ph.cos(), ph.sin());
        // Re(e^{iφ}(Yr + iYi)) = cos φ Yr − sin φ Yi
        let y = ops::sub(&ops::mul_scalar(&yr, c)?, &ops::mul_scalar(&yi, sn)?)?;
        Ok(self.record(
            &[self, s, t, a, b, phi],
            y,
            Box::new(move |g| {
                let gre = ops::mul_scalar(g, c)?;
                let gim = ops::mul_scalar(g, -sn)?;
                let (gr, gb) = ops::laplace_apply_phased_backward_sorted(&sort, &vv, &gre, &gim)?;
                // ∂/∂φ Re(e^{iφ}Y) = −sin φ Yr − cos φ Yi
                let dphi = ops::add(&ops::mul_scalar(&yr, -sn)?, &ops::mul_scalar(&yi, -c)?)?;
                let gphi = ops::sum_all(&ops::mul(g, &dphi)?)?;
                Ok(vec![
                    Some(gr.values),
                    Some(gr.sources),
                    Some(gr.targets),
                    Some(gr.lambda.reshape(&shapes[0])?),
                    Some(gb.reshape(&shapes[1])?),
                    Some(gphi.reshape(&shapes[2])?),
                ])
            }),
        ))
    }
}
