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
//! untracked constants) or a one-element [`Var`] (tracked if it is). They stay on the
//! device in forward and backward (the kernels read them there; their ranges are deferred
//! device checks, see [`lapis_ops::checks`]), and so do their gradients: neither op reads
//! device data back to the host.
//!
//! [`Tensor`]: lapis_ops::Tensor

use lapis_ops::{self as ops, Result, Tensor};

use super::scalar::ScalarArg;
use crate::var::Var;

impl Var {
    /// `Y = K(t, s; λ) V` with `self` the values `V [n]` or `[n, c]`, anchors `s [n]`,
    /// `t [m]` and the rate `lambda` (> 0): an `f32`, a one-element `&Tensor` or a
    /// one-element `&Var` ([`ScalarArg`]; kept on the device). `V`, `s`, `t` and a Var
    /// `lambda` may be tracked.
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
        let ls = lambda.shape().to_vec();
        let vv = self.value().clone();
        // The forward's sort is kept for the backward (one sort per step, not two).
        let (y, sort) = ops::laplace_apply_sorted(s.value(), t.value(), &vv, lambda.value())?;
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
    /// a one-element `&Var` ([`ScalarArg`]; kept on the device). All six inputs may be
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
        // The forward's sort is kept for the backward (one sort per step, not two).
        let fwd = ops::laplace_apply_phased_sorted(
            s.value(),
            t.value(),
            self.value(),
            a.value(),
            b.value(),
        )?;
        self.record_phased([s, t, a, b, phi], fwd)
    }

    /// Records a phased forward `((Y_re, Y_im), sort)` of `self` with inputs `[s, t, a, b, φ]`:
    /// the output `Re(e^{iφ}(Y_re + iY_im)) = cos φ Y_re − sin φ Y_im` (one launch), and the
    /// VJP `(cos φ Ȳ, −sin φ Ȳ)`, `φ̄ = Σ Ȳ (−sin φ Y_re − cos φ Y_im)` (one launch + a sum)
    /// fed to the backward on the kept sort. Shared by the one-head and multi-head ops.
    fn record_phased(
        &self,
        ins: [&Var; 5],
        fwd: ((Tensor, Tensor), ops::LaplaceSort),
    ) -> Result<Var> {
        let [s, t, a, b, phi] = ins;
        let shapes = [a.shape().to_vec(), b.shape().to_vec(), phi.shape().to_vec()];
        let ((yr, yi), sort) = fwd;
        let vv = self.value().clone();
        let ph = phi.value().clone();
        let y = ops::phase_real(&yr, &yi, &ph)?;
        Ok(self.record(
            &[self, s, t, a, b, phi],
            y,
            Box::new(move |g| {
                let (gre, gim, gphi) = ops::phase_real_backward(&yr, &yi, &ph, g)?;
                let (gr, gb) = ops::laplace_apply_phased_backward_sorted(&sort, &vv, &gre, &gim)?;
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

    /// `H` Laplace operators in one pass (LAPLEX's heads): `self` the values `V [H, n]` or
    /// `[H, n, c]`, anchors `s [H, n]`, `t [H, m]`, one rate per head `lambda [H]` (all
    /// Vars, all may be tracked); returns `Y [H, m]` or `[H, m, c]` with
    /// `Y[h] = K(t_h, s_h; λ_h) V[h]` ([`lapis_ops::laplace_apply_heads_sorted`]: the heads
    /// are sorted and swept together, so launches do not grow with `H`).
    pub fn laplace_apply_heads(&self, s: &Var, t: &Var, lambda: &Var) -> Result<Var> {
        const OP: &str = "laplace_apply_heads";
        for o in [s, t, lambda] {
            self.same_tape(o, OP)?;
        }
        let ls = lambda.shape().to_vec();
        let vv = self.value().clone();
        let (y, sort) = ops::laplace_apply_heads_sorted(s.value(), t.value(), &vv, lambda.value())?;
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

    /// The phased operator for `H` heads in one pass: `Re(e^{iφ_h} K(t_h, s_h; a_h + ib_h) V[h])`
    /// for `self = V [H, n]` or `[H, n, c]`, `s [H, n]`, `t [H, m]` and `a`, `b`, `phi` of
    /// `[H]` (all Vars, all may be tracked); see [`Var::laplace_apply_heads`] and
    /// [`Var::laplace_apply_phased`].
    pub fn laplace_apply_phased_heads(
        &self,
        s: &Var,
        t: &Var,
        a: &Var,
        b: &Var,
        phi: &Var,
    ) -> Result<Var> {
        const OP: &str = "laplace_apply_phased_heads";
        for o in [s, t, a, b, phi] {
            self.same_tape(o, OP)?;
        }
        let (v, av, bv) = (self.value(), a.value(), b.value());
        let fwd = ops::laplace_apply_phased_heads_sorted(s.value(), t.value(), v, av, bv)?;
        self.record_phased([s, t, a, b, phi], fwd)
    }
}
