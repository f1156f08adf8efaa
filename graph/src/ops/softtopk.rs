//! The LapSum soft top-k family on the tape (`specs/softtopk-engine.md`): soft top-k with
//! learnable k and temperature α, SoftMoE's truncated form, soft rank and soft sort. Each
//! VJP is the op's own backward in [`lapis_ops::softtopk`] (O(B·n) after the sort, no
//! dense Jacobian).
//!
//! `k` and `α` are [`ScalarArg`]s: an `f32` (`x.soft_topk(2.0, 0.1)`), a device tensor or a
//! Var, of shape `[B]` (one per row) or `[1]` (shared by every row, then broadcast on the
//! tape so a tracked Var's gradient is the sum over rows). An `f32` or a tensor is an
//! untracked constant; a Var is tracked if it is.

use lapis_ops::{self as ops, LapisError, Result, Tensor};

use super::scalar::ScalarArg;
use crate::var::Var;

/// The number of rows of `x` (`[n]` is one row).
fn rows(x: &Var) -> usize {
    if x.shape().len() == 2 {
        x.shape()[0]
    } else {
        1
    }
}

/// `p` as a `[B]` Var on `x`'s tape: `[B]` passes, `[1]` is broadcast.
fn per_row(
    op: &'static str,
    name: &'static str,
    x: &Var,
    p: ScalarArg<'_>,
    b: usize,
) -> Result<Var> {
    let p = &p.to_var(x, op, name)?;
    match p.shape() {
        [n] if *n == b => Ok(p.clone()),
        [1] => p.broadcast_to(&[b]),
        s => Err(LapisError::shape(
            op,
            s,
            format!("`{name}` must be [1] or [{b}] (one per row)"),
        )),
    }
}

/// The output of [`Var::soft_topk_truncated`].
pub struct TruncatedVar {
    /// Kept weights `[B, cap]` (0 in dropped slots), on the tape.
    pub values: Var,
    /// Entry index of each slot `[B, cap]` (u32, descending order of the weight).
    pub indices: Tensor,
    /// 1 where the slot is kept, else 0 `[B, cap]`.
    pub mask: Tensor,
}

/// The VJP of a row op with a per-row temperature: `ȳ ↦ (x̄, ᾱ)`.
type RowVjp = Box<dyn Fn(&Tensor) -> Result<(Tensor, Tensor)>>;

impl Var {
    /// LapSum soft top-k of each row of `self` (`[n]` or `[B, n]`): weights in `[0, 1]`
    /// summing to `k` per row. `k` and `alpha` are each an `f32`, a `&Tensor` or a `&Var`
    /// ([`ScalarArg`]) of shape `[B]` or `[1]`; Vars may be tracked (learnable k and
    /// temperature): `x.soft_topk(2.0, 0.1)`, `x.soft_topk(&k, &alpha)`.
    pub fn soft_topk<'a>(
        &self,
        k: impl Into<ScalarArg<'a>>,
        alpha: impl Into<ScalarArg<'a>>,
    ) -> Result<Var> {
        let b = rows(self);
        let (k, alpha) = (
            per_row("soft_topk", "k", self, k.into(), b)?,
            per_row("soft_topk", "alpha", self, alpha.into(), b)?,
        );
        let out = ops::soft_topk(self.value(), k.value(), alpha.value())?;
        let y = out.p.clone();
        Ok(self.record(
            &[self, &k, &alpha],
            y,
            Box::new(move |g| {
                let gr = out.backward(g)?;
                Ok(vec![Some(gr.x), Some(gr.k), Some(gr.alpha)])
            }),
        ))
    }

    /// SoftMoE's truncated soft top-k (see [`lapis_ops::soft_topk_truncated`]): the kept
    /// weights per row in `cap` slots; gradients flow through kept slots (the mask is
    /// piecewise constant). `k` and `alpha` as in [`Var::soft_topk`].
    pub fn soft_topk_truncated<'a>(
        &self,
        k: impl Into<ScalarArg<'a>>,
        alpha: impl Into<ScalarArg<'a>>,
        c_cap: f32,
        c_tau: f32,
    ) -> Result<TruncatedVar> {
        self.truncated(k.into(), alpha.into(), c_cap, c_tau, None)
    }

    /// [`Var::soft_topk_truncated`] with a known bound `k_max` of every row's `k`, so a
    /// tensor or Var `k` costs no host read (see [`lapis_ops::soft_topk_truncated_bounded`]).
    pub fn soft_topk_truncated_bounded<'a>(
        &self,
        k: impl Into<ScalarArg<'a>>,
        alpha: impl Into<ScalarArg<'a>>,
        c_cap: f32,
        c_tau: f32,
        k_max: f32,
    ) -> Result<TruncatedVar> {
        self.truncated(k.into(), alpha.into(), c_cap, c_tau, Some(k_max))
    }

    fn truncated(
        &self,
        k: ScalarArg<'_>,
        alpha: ScalarArg<'_>,
        c_cap: f32,
        c_tau: f32,
        k_max: Option<f32>,
    ) -> Result<TruncatedVar> {
        let b = rows(self);
        let (k, alpha) = (
            per_row("soft_topk_truncated", "k", self, k, b)?,
            per_row("soft_topk_truncated", "alpha", self, alpha, b)?,
        );
        let out = match k_max {
            None => ops::soft_topk_truncated(self.value(), k.value(), alpha.value(), c_cap, c_tau)?,
            Some(km) => ops::soft_topk_truncated_bounded(
                self.value(),
                k.value(),
                alpha.value(),
                c_cap,
                c_tau,
                km,
            )?,
        };
        let (indices, mask) = (out.indices.clone(), out.mask.clone());
        let y = out.values.clone();
        let values = self.record(
            &[self, &k, &alpha],
            y,
            Box::new(move |g| {
                let gr = out.backward(g)?;
                Ok(vec![Some(gr.x), Some(gr.k), Some(gr.alpha)])
            }),
        );
        Ok(TruncatedVar {
            values,
            indices,
            mask,
        })
    }

    /// LapSum soft rank of each row (ascending, 1-based as `α → 0`); `alpha` an `f32`, a
    /// `&Tensor` or a `&Var` ([`ScalarArg`]) of shape `[B]` or `[1]`.
    pub fn soft_rank<'a>(&self, alpha: impl Into<ScalarArg<'a>>) -> Result<Var> {
        // The forward keeps its sort and scans for the backward (no second sort).
        self.per_row_alpha_op("soft_rank", alpha.into(), |x, a| {
            let out = ops::soft_rank_sorted(x, a)?;
            let y = out.rank.clone();
            Ok((y, Box::new(move |g: &Tensor| out.backward(g))))
        })
    }

    /// LapSum soft sort of each row (ascending); `alpha` as in [`Var::soft_rank`].
    pub fn soft_sort<'a>(&self, alpha: impl Into<ScalarArg<'a>>) -> Result<Var> {
        // The forward keeps what the backward needs (no second sort or scan).
        self.per_row_alpha_op("soft_sort", alpha.into(), |x, a| {
            let out = ops::soft_sort_sorted(x, a)?;
            let y = out.values.clone();
            Ok((y, Box::new(move |g: &Tensor| out.backward(g))))
        })
    }

    /// Records a row op with a per-row temperature: `fwd(x, α)` gives the output and its
    /// VJP `ȳ ↦ (x̄, ᾱ)` (which keeps what it needs from the forward).
    fn per_row_alpha_op(
        &self,
        op: &'static str,
        alpha: ScalarArg<'_>,
        fwd: impl FnOnce(&Tensor, &Tensor) -> Result<(Tensor, RowVjp)>,
    ) -> Result<Var> {
        let alpha = per_row(op, "alpha", self, alpha, rows(self))?;
        let (y, bwd) = fwd(self.value(), alpha.value())?;
        Ok(self.record(
            &[self, &alpha],
            y,
            Box::new(move |g| {
                let (gx, ga) = bwd(g)?;
                Ok(vec![Some(gx), Some(ga)])
            }),
        ))
    }
}
