//! Reductions on the tape. Along an axis the axis is kept with length 1 (as
//! [`lapis_ops::reduce`]); the `_all` forms return shape `[1]`.
//!
//! VJPs: `Σ` broadcasts `ȳ` back; the mean broadcasts `ȳ / n`; max and min send `ȳ` to the
//! entries equal to the extremum, split equally between ties (so the gradient of a
//! constant row's max is `ȳ/n` on each entry, a valid subgradient).

use lapis_ops::{self as ops, Result, Tensor};

use crate::var::Var;

/// `1` where `x == y` (`y` broadcast), else `0`: `1 − sign(|x − y|)`.
fn eq_mask(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    ops::affine(&ops::sign(&ops::abs(&ops::sub(x, y)?)?)?, -1.0, 1.0)
}

/// The VJP of max/min along `axis` (or over everything if `axis` is `None`).
fn extremum_vjp(x: &Tensor, y: &Tensor, g: &Tensor, axis: Option<usize>) -> Result<Tensor> {
    let (yb, gb) = match axis {
        Some(_) => (y.clone(), g.clone()),
        None => {
            let ones = vec![1; x.rank()];
            (y.reshape(&ones)?, g.reshape(&ones)?)
        }
    };
    let mask = eq_mask(x, &yb)?;
    let count = match axis {
        Some(a) => ops::sum(&mask, a)?,
        None => ops::sum_all(&mask)?.reshape(&vec![1; x.rank()])?,
    };
    ops::mul(&mask, &ops::div(&gb, &count)?)
}

impl Var {
    /// `Σ` along `axis` (kept with length 1).
    pub fn sum(&self, axis: usize) -> Result<Var> {
        let shape = self.shape().to_vec();
        let y = ops::sum(self.value(), axis)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::broadcast_to(g, &shape)?)])),
        ))
    }

    /// Mean along `axis` (kept with length 1).
    pub fn mean(&self, axis: usize) -> Result<Var> {
        let shape = self.shape().to_vec();
        let y = ops::mean(self.value(), axis)?;
        let n = shape[axis] as f32;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                Ok(vec![Some(ops::broadcast_to(
                    &ops::mul_scalar(g, 1.0 / n)?,
                    &shape,
                )?)])
            }),
        ))
    }

    /// Max along `axis` (kept with length 1); ties share the gradient.
    pub fn max(&self, axis: usize) -> Result<Var> {
        let y = ops::max(self.value(), axis)?;
        self.extremum_record(y, Some(axis))
    }

    /// Min along `axis` (kept with length 1); ties share the gradient.
    pub fn min(&self, axis: usize) -> Result<Var> {
        let y = ops::min(self.value(), axis)?;
        self.extremum_record(y, Some(axis))
    }

    fn extremum_record(&self, y: Tensor, axis: Option<usize>) -> Result<Var> {
        let (x, yy) = (self.value().clone(), y.clone());
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(extremum_vjp(&x, &yy, g, axis)?)])),
        ))
    }

    /// The sum of all entries, shape `[1]`.
    pub fn sum_all(&self) -> Result<Var> {
        let shape = self.shape().to_vec();
        let y = ops::sum_all(self.value())?.reshape(&[1])?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                Ok(vec![Some(ops::broadcast_to(
                    &g.reshape(&vec![1; shape.len()])?,
                    &shape,
                )?)])
            }),
        ))
    }

    /// The mean of all entries, shape `[1]`.
    pub fn mean_all(&self) -> Result<Var> {
        let n = self.value().numel() as f32;
        self.sum_all()?.mul_scalar(1.0 / n)
    }

    /// The max of all entries, shape `[1]`; ties share the gradient.
    pub fn max_all(&self) -> Result<Var> {
        let y = ops::max_all(self.value())?.reshape(&[1])?;
        self.extremum_record(y, None)
    }

    /// The min of all entries, shape `[1]`; ties share the gradient.
    pub fn min_all(&self) -> Result<Var> {
        let y = ops::min_all(self.value())?.reshape(&[1])?;
        self.extremum_record(y, None)
    }

    /// Index of the max along `axis` (u32, untracked: an index has no gradient).
    pub fn argmax(&self, axis: usize) -> Result<Tensor> {
        ops::argmax(self.value(), axis)
    }
}
