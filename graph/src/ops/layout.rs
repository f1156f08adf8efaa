//! Layout ops on the tape: reshape, permute/transpose, slice, concat, broadcast, copy.
//! Every VJP is the adjoint data movement: reshape back, the inverse permutation, the
//! gradient placed in a zero tensor (slice), split (concat), summed over the broadcast
//! axes (broadcast).

use lapis_ops::{self as ops, LapisError, Result, Tensor};

use crate::var::{sum_to_shape, Var};

impl Var {
    /// The same data under a new shape (same element count).
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let from = self.shape().to_vec();
        let y = self.value().reshape(shape)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(g.reshape(&from)?)])),
        ))
    }

    /// Permutes axes: `out.shape[i] = self.shape[perm[i]]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Var> {
        let y = ops::permute(self.value(), perm)?;
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::permute(g, &inv)?)])),
        ))
    }

    /// Swaps axes `d0` and `d1`.
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Var> {
        let y = ops::transpose(self.value(), d0, d1)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::transpose(g, d0, d1)?)])),
        ))
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&self, axis: usize, start: usize, end: usize) -> Result<Var> {
        let shape = self.shape().to_vec();
        let y = ops::slice(self.value(), axis, start, end)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                let dev = g.device();
                let side = |len: usize| -> Result<Option<Tensor>> {
                    if len == 0 {
                        return Ok(None);
                    }
                    let mut s = shape.clone();
                    s[axis] = len;
                    ops::zeros(dev, &s, g.dtype()).map(Some)
                };
                let (lo, hi) = (side(start)?, side(shape[axis] - end)?);
                let parts: Vec<&Tensor> = [lo.as_ref(), Some(g), hi.as_ref()]
                    .into_iter()
                    .flatten()
                    .collect();
                Ok(vec![Some(ops::concat(&parts, axis)?)])
            }),
        ))
    }

    /// Concatenates `xs` (one tape) along `axis`.
    pub fn concat(xs: &[&Var], axis: usize) -> Result<Var> {
        let first = xs
            .first()
            .ok_or_else(|| LapisError::invalid("concat", "xs", "[]", "need at least one Var"))?;
        for x in xs {
            first.same_tape(x, "concat")?;
        }
        let values: Vec<&Tensor> = xs.iter().map(|x| x.value()).collect();
        let y = ops::concat(&values, axis)?;
        let lens: Vec<usize> = xs.iter().map(|x| x.shape()[axis]).collect();
        Ok(first.record(
            xs,
            y,
            Box::new(move |g| {
                let mut at = 0;
                lens.iter()
                    .map(|&l| {
                        let part = ops::slice(g, axis, at, at + l)?;
                        at += l;
                        Ok(Some(part))
                    })
                    .collect()
            }),
        ))
    }

    /// Broadcasts to `shape` (numpy rules).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var> {
        let from = self.shape().to_vec();
        let y = ops::broadcast_to(self.value(), shape)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(sum_to_shape(g, &from)?)])),
        ))
    }

    /// A contiguous copy (a new buffer); the gradient passes through.
    pub fn copy(&self) -> Result<Var> {
        let y = ops::copy(self.value())?;
        Ok(self.record(&[self], y, Box::new(|g| Ok(vec![Some(g.clone())]))))
    }
}
