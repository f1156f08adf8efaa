//! One type for the scalar arguments of the tape ops: an `f32`, a device [`Tensor`] or a
//! [`Var`].
//!
//! The soft top-k family's `k` and `α` and the Laplace operator's rates take
//! `impl Into<ScalarArg<'a>>`, so constants need no wrapping and learnable values stay
//! tracked:
//!
//! ```no_run
//! use lapis_graph::lapis_ops::{self, Device};
//! use lapis_graph::{backward, Tape};
//! let dev = Device::auto()?;
//! let tape = Tape::new();
//! let x = tape.leaf(lapis_ops::normal(&dev, &[4, 16], 0.0, 1.0, 1)?);
//! let p = x.soft_topk(2.0, 0.1)?; // constant k and α
//! let k = tape.leaf(lapis_ops::fill(&dev, &[1], 3.0, lapis_ops::DType::F32)?);
//! let q = x.soft_topk(&k, 0.1)?; // learnable k, constant α
//! let g = backward(&p.add(&q)?.sum_all()?)?;
//! assert!(g.get(&x).is_some() && g.get(&k).is_some());
//! # Ok::<(), lapis_graph::lapis_ops::LapisError>(())
//! ```
//!
//! An `f32` becomes an untracked constant `[1]` on the receiver's tape, a `&Tensor` an
//! untracked constant of its own shape (a one-element tensor is taken as `[1]`), and a
//! `&Var` is used as is (tracked when it is; it must live on the receiver's tape). The op
//! then checks the shape as for a Var (one element for the Laplace rates, `[1]` or `[B]`
//! for soft top-k's `k` and `α`).

use lapis_ops::{LapisError, Result, Tensor};

use crate::var::Var;

/// A scalar argument of a tape op: a host value, a device tensor (both untracked) or a Var.
#[derive(Clone, Copy, Debug)]
pub enum ScalarArg<'a> {
    /// A constant on the host (becomes an untracked `[1]` constant).
    Value(f32),
    /// A constant on the device (becomes an untracked constant).
    Tensor(&'a Tensor),
    /// A Var of the receiver's tape (tracked if it is).
    Var(&'a Var),
}

impl From<f32> for ScalarArg<'_> {
    fn from(v: f32) -> Self {
        ScalarArg::Value(v)
    }
}

impl<'a> From<&'a Tensor> for ScalarArg<'a> {
    fn from(t: &'a Tensor) -> Self {
        ScalarArg::Tensor(t)
    }
}

impl<'a> From<&'a Var> for ScalarArg<'a> {
    fn from(v: &'a Var) -> Self {
        ScalarArg::Var(v)
    }
}

impl ScalarArg<'_> {
    /// This argument as a Var on `on`'s tape, for argument `name` of `op`: a value becomes
    /// an untracked `[1]` constant on `on`'s device, a tensor an untracked constant (`[1]`
    /// if it holds one element; it must live on `on`'s device), a Var is checked to share
    /// `on`'s tape and returned.
    pub fn to_var(self, on: &Var, op: &'static str, name: &'static str) -> Result<Var> {
        match self {
            ScalarArg::Value(v) => {
                Ok(on.constant(Tensor::from_slice(on.value().device(), &[1], &[v])?))
            }
            ScalarArg::Tensor(t) => {
                if t.device() != on.value().device() {
                    return Err(LapisError::DeviceMismatch {
                        op,
                        lhs: on.value().device().kind().name().into(),
                        rhs: t.device().kind().name().into(),
                    });
                }
                let t = if t.numel() == 1 {
                    t.reshape(&[1])?
                } else {
                    t.clone()
                };
                Ok(on.constant(t))
            }
            ScalarArg::Var(v) => {
                on.same_tape(v, op).map_err(|_| {
                    LapisError::invalid(
                        op,
                        name,
                        "a Var of another tape",
                        "must live on the receiver's tape",
                    )
                })?;
                Ok(v.clone())
            }
        }
    }
}
