//! Sorting on the tape. The sorted values are a permutation of the input, `y_i = x_{π(i)}`,
//! so the VJP ([`lapis_ops::argsort_backward`], [`lapis_ops::argsort_rows_backward`])
//! sends each output gradient back to the entry it came from: `x̄_{π(i)} = ȳ_i`. The permutation itself is an
//! index and has no gradient; between tied keys the stable order is kept, and the
//! gradient is that of the chosen permutation (the sort is not differentiable at a tie;
//! see [`Var::soft_sort`] for a smooth one).

use lapis_ops::{self as ops, LapisError, Result, Tensor};

use crate::var::Var;

impl Var {
    /// Stable ascending sort of 1-D `self`: `(sorted, perm)` with `sorted[i] = x[perm[i]]`.
    pub fn sort(&self) -> Result<(Var, Tensor)> {
        let (y, perm) = ops::argsort(self.value())?;
        let p = perm.clone();
        let v = self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::argsort_backward(g, &p)?)])),
        );
        Ok((v, perm))
    }

    /// Stable ascending sort of each row of `self [B, n]`: `(sorted, perm)` with
    /// `sorted[b, i] = x[b, perm[b, i]]`.
    pub fn sort_rows(&self) -> Result<(Var, Tensor)> {
        if self.shape().len() != 2 {
            return Err(LapisError::shape("sort_rows", self.shape(), "need [B, n]"));
        }
        let (y, perm) = ops::argsort_rows(self.value())?;
        let p = perm.clone();
        let v = self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::argsort_rows_backward(g, &p)?)])),
        );
        Ok((v, perm))
    }
}
