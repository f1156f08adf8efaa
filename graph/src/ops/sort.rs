//! Sorting on the tape. The sorted values are a permutation of the input, `y_i = x_{π(i)}`,
//! so the VJP sends each output gradient back to the entry it came from:
//! `x̄_{π(i)} = ȳ_i` (an index-add along the sorted axis). The permutation itself is an
//! index and has no gradient; between tied keys the stable order is kept, and the
//! gradient is that of the chosen permutation (the sort is not differentiable at a tie;
//! see [`Var::soft_sort`] for a smooth one).

use lapis_ops::{self as ops, LapisError, Result, Tensor};

use crate::var::Var;

impl Var {
    /// Stable ascending sort of 1-D `self`: `(sorted, perm)` with `sorted[i] = x[perm[i]]`.
    pub fn sort(&self) -> Result<(Var, Tensor)> {
        let (y, perm) = ops::argsort(self.value())?;
        let (n, p) = (self.shape()[0], perm.clone());
        let v = self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::index_add(g, 0, &p, n)?)])),
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
        let (shape, p) = (self.shape().to_vec(), perm.clone());
        let v = self.record(
            &[self],
            y,
            Box::new(move |g| {
                let zero = ops::zeros(g.device(), &shape, g.dtype())?;
                Ok(vec![Some(ops::scatter_add(&zero, 1, &p, g)?)])
            }),
        );
        Ok((v, perm))
    }
}
