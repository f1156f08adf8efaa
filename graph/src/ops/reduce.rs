//! Reductions on the tape. Along an axis the axis is kept with length 1 (as
//! [`lapis_ops::reduce`]); the `_all` forms return shape `[1]`. VJP:
//! [`lapis_ops::reduce_backward`] (broadcast back; max/min to the extremal entries, ties
//! sharing equally).

use lapis_ops::{self as ops, ReduceOp, Result, Tensor};

use crate::var::Var;

impl Var {
    /// Records the reduction `op` along `axis` (`None`: over everything, shape `[1]`).
    fn reduce_rec(&self, op: ReduceOp, axis: Option<usize>) -> Result<Var> {
        let x = self.value().clone();
        let y = match axis {
            Some(a) => ops::reduce(op, &x, a)?,
            None => ops::reduce_all(op, &x)?.reshape(&[1])?,
        };
        let yy = y.clone();
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::reduce_backward(op, &x, &yy, g, axis)?)])),
        ))
    }

    /// `Σ` along `axis` (kept with length 1).
    pub fn sum(&self, axis: usize) -> Result<Var> {
        self.reduce_rec(ReduceOp::Sum, Some(axis))
    }

    /// Mean along `axis` (kept with length 1).
    pub fn mean(&self, axis: usize) -> Result<Var> {
        self.reduce_rec(ReduceOp::Mean, Some(axis))
    }

    /// Max along `axis` (kept with length 1); ties share the gradient.
    pub fn max(&self, axis: usize) -> Result<Var> {
        self.reduce_rec(ReduceOp::Max, Some(axis))
    }

    /// Min along `axis` (kept with length 1); ties share the gradient.
    pub fn min(&self, axis: usize) -> Result<Var> {
        self.reduce_rec(ReduceOp::Min, Some(axis))
    }

    /// The sum of all entries, shape `[1]`.
    pub fn sum_all(&self) -> Result<Var> {
        self.reduce_rec(ReduceOp::Sum, None)
    }

    /// The mean of all entries, shape `[1]`.
    pub fn mean_all(&self) -> Result<Var> {
        self.reduce_rec(ReduceOp::Mean, None)
    }

    /// The max of all entries, shape `[1]`; ties share the gradient.
    pub fn max_all(&self) -> Result<Var> {
        self.reduce_rec(ReduceOp::Max, None)
    }

    /// The min of all entries, shape `[1]`; ties share the gradient.
    pub fn min_all(&self) -> Result<Var> {
        self.reduce_rec(ReduceOp::Min, None)
    }

    /// Index of the max along `axis` (u32, untracked: an index has no gradient).
    pub fn argmax(&self, axis: usize) -> Result<Tensor> {
        ops::argmax(self.value(), axis)
    }
}
