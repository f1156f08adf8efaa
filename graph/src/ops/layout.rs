//! Layout ops on the tape: reshape, permute/transpose, slice, concat, broadcast, copy.
//! Every VJP is the adjoint data movement ([`lapis_ops::permute_backward`],
//! [`lapis_ops::slice_backward`], [`lapis_ops::concat_backward`],
//! [`lapis_ops::broadcast_to_backward`]; reshape back; transpose again).

use lapis_ops::{self as ops, LapisError, Result, Tensor};

use crate::var::Var;

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
        let perm = perm.to_vec();
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::permute_backward(g, &perm)?)])),
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
            Box::new(move |g| Ok(vec![Some(ops::slice_backward(g, &shape, axis, start)?)])),
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
                Ok(ops::concat_backward(g, &lens, axis)?
                    .into_iter()
                    .map(Some)
                    .collect())
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
            Box::new(move |g| Ok(vec![Some(ops::broadcast_to_backward(g, &from)?)])),
        ))
    }

    /// A contiguous copy (a new buffer); the gradient passes through.
    pub fn copy(&self) -> Result<Var> {
        let y = ops::copy(self.value())?;
        Ok(self.record(&[self], y, Box::new(|g| Ok(vec![Some(g.clone())]))))
    }
}
