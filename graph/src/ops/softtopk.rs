//! The LapSum soft top-k family on the tape (`specs/softtopk-engine.md`): soft top-k with
//! learnable k and temperature α, SoftMoE's truncated form, soft rank and soft sort. Each
//! VJP is the op's own backward in [`lapis_ops::softtopk`] (O(B·n) after the sort, no
//! dense Jacobian).
//!
//! `k` and `α` are Vars of shape `[B]` (one per row) or `[1]` (shared by every row, then
//! broadcast on the tape so its gradient is the sum over rows).

use lapis_ops::{self as ops, LapisError, Result, Tensor};

use crate::var::Var;

/// The number of rows of `x` (`[n]` is one row).
fn rows(x: &Var) -> usize {
    if x.shape().len() == 2 {
        x.shape()[0]
    } else {
        1
    }
}

/// `p` as a `[B]` Var: `[B]` passes, `[1]` is broadcast.
fn per_row(op: &'static str, name: &'static str, p: &Var, b: usize) -> Result<Var> {
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

impl Var {
    /// LapSum soft top-k of each row of `self` (`[n]` or `[B, n]`): weights in `[0, 1]`
    /// summing to `k` per row. `k` and `alpha` are `[B]` or `[1]` and may be tracked
    /// (learnable k and temperature).
    pub fn soft_topk(&self, k: &Var, alpha: &Var) -> Result<Var> {
        self.same_tape(k, "soft_topk")?;
        self.same_tape(alpha, "soft_topk")?;
        let b = rows(self);
        let (k, alpha) = (
            per_row("soft_topk", "k", k, b)?,
            per_row("soft_topk", "alpha", alpha, b)?,
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
    /// piecewise constant).
    pub fn soft_topk_truncated(
        &self,
        k: &Var,
        alpha: &Var,
        c_cap: f32,
        c_tau: f32,
    ) -> Result<TruncatedVar> {
        self.same_tape(k, "soft_topk_truncated")?;
        self.same_tape(alpha, "soft_topk_truncated")?;
        let b = rows(self);
        let (k, alpha) = (
            per_row("soft_topk_truncated", "k", k, b)?,
            per_row("soft_topk_truncated", "alpha", alpha, b)?,
        );
        let out = ops::soft_topk_truncated(self.value(), k.value(), alpha.value(), c_cap, c_tau)?;
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

    /// LapSum soft rank of each row (ascending, 1-based as `α → 0`); `alpha` `[B]` or `[1]`.
    pub fn soft_rank(&self, alpha: &Var) -> Result<Var> {
        self.per_row_alpha_op(
            "soft_rank",
            alpha,
            |x, a| ops::soft_rank(x, a),
            |x, a, g| ops::soft_rank_backward(x, a, g),
        )
    }

    /// LapSum soft sort of each row (ascending); `alpha` `[B]` or `[1]`.
    pub fn soft_sort(&self, alpha: &Var) -> Result<Var> {
        self.per_row_alpha_op(
            "soft_sort",
            alpha,
            |x, a| ops::soft_sort(x, a),
            |x, a, g| ops::soft_sort_backward(x, a, g),
        )
    }

    /// Records a row op with a per-row temperature: `fwd(x, α)`, VJP `bwd(x, α, ȳ) = (x̄, ᾱ)`.
    fn per_row_alpha_op(
        &self,
        op: &'static str,
        alpha: &Var,
        fwd: fn(&Tensor, &Tensor) -> Result<Tensor>,
        bwd: fn(&Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor)>,
    ) -> Result<Var> {
        self.same_tape(alpha, op)?;
        let alpha = per_row(op, "alpha", alpha, rows(self))?;
        let (x, a) = (self.value().clone(), alpha.value().clone());
        let y = fwd(&x, &a)?;
        Ok(self.record(
            &[self, &alpha],
            y,
            Box::new(move |g| {
                let (gx, ga) = bwd(&x, &a, g)?;
                Ok(vec![Some(gx), Some(ga)])
            }),
        ))
    }
}
