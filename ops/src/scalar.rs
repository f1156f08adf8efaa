//! One type for every scalar argument of the ops: a host `f32` or a one-element device
//! tensor.
//!
//! The Laplace operator's rates (`λ`, the phased `a` and `b`) and the soft top-k family's
//! `k` and `α` all take `impl Into<Scalar<'a>>`, so a call site passes whichever it holds:
//!
//! ```no_run
//! use lapis_ops::{Device, Scalar, Tensor};
//! let dev = Device::auto()?;
//! let s = Tensor::from_slice(&dev, &[3], &[0.0f32, 1.0, 2.5])?;
//! let v = Tensor::from_slice(&dev, &[3], &[1.0f32, -1.0, 0.5])?;
//! let lam = Tensor::from_slice(&dev, &[1], &[0.7f32])?;
//! let a = lapis_ops::laplace_apply(&s, &s, &v, 0.7)?; // an f32
//! let b = lapis_ops::laplace_apply(&s, &s, &v, &lam)?; // a one-element tensor
//! let c = lapis_ops::laplace_apply(&s, &s, &v, Scalar::Value(0.7))?; // spelled out
//! # Ok::<(), lapis_ops::LapisError>(())
//! ```
//!
//! **Where the value lives.** A [`Scalar::Tensor`] stays on the device: the kernels read
//! it there (no download, so the queue never waits on it), and its range (`λ > 0`,
//! `k ∈ (0, n)`, …) is a deferred device check ([`crate::checks`]). A [`Scalar::Value`] is
//! checked on the host at once and uploaded as a one-element tensor.
//!
//! **Checks.** A tensor scalar must hold exactly one f32 element (any shape with one
//! element: `[1]`, `[1, 1]`, ...) and live on the device of the op's other operands; anything else
//! is a [`LapisError::InvalidArgument`] (or [`LapisError::DeviceMismatch`]) naming the op
//! and the argument. The soft top-k family also accepts a per-row `[B]` tensor for `k` and
//! `α` (see [`crate::softtopk`]). Range checks (`λ > 0`, `k ∈ (0, n)`, ...) are the op's.

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::tensor::Tensor;

/// A scalar argument: a host value or a one-element f32 device tensor.
///
/// Built with `.into()` from an `f32` or a `&Tensor`; ops take `impl Into<Scalar<'a>>`.
/// (The soft top-k family's former name for it is [`crate::RowParam`].)
#[derive(Clone, Copy, Debug)]
pub enum Scalar<'a> {
    /// A value on the host.
    Value(f32),
    /// A one-element f32 tensor (for the soft top-k family also a per-row `[B]` tensor).
    Tensor(&'a Tensor),
}

impl From<f32> for Scalar<'_> {
    fn from(v: f32) -> Self {
        Scalar::Value(v)
    }
}

impl<'a> From<&'a Tensor> for Scalar<'a> {
    fn from(t: &'a Tensor) -> Self {
        Scalar::Tensor(t)
    }
}

impl Scalar<'_> {
    /// The value on the host, for argument `name` of `op`: a [`Scalar::Value`] as is, a
    /// [`Scalar::Tensor`] read back once (it must hold one f32 element and, when `like` is
    /// given, live on `like`'s device). No range check.
    pub fn host_value(
        self,
        op: &'static str,
        name: &'static str,
        like: Option<&Tensor>,
    ) -> Result<f32> {
        match self {
            Scalar::Value(v) => Ok(v),
            Scalar::Tensor(t) => {
                check_one(op, name, t)?;
                if let Some(x) = like {
                    crate::validate::same_device(op, x, t)?;
                }
                t.to_scalar()
            }
        }
    }
}

impl Scalar<'_> {
    /// The value as a `[1]` f32 tensor on `like`'s device, for argument `name` of `op`,
    /// never read back: a [`Scalar::Value`] is checked on the host against `accept` (an
    /// immediate error naming the argument) and uploaded; a [`Scalar::Tensor`] must hold
    /// one f32 element on `like`'s device and is checked on the device (a deferred check,
    /// see [`crate::checks`]). `msg` says what is accepted.
    pub(crate) fn device_value(
        self,
        op: &'static str,
        name: &'static str,
        like: &Tensor,
        accept: crate::checks::Accept,
        msg: &str,
    ) -> Result<Tensor> {
        match self {
            Scalar::Value(v) => {
                if !accept.accepts(v) {
                    return Err(LapisError::invalid(op, name, v, msg));
                }
                Tensor::from_slice(like.device(), &[1], &[v])
            }
            Scalar::Tensor(t) => {
                check_one(op, name, t)?;
                crate::validate::same_device(op, like, t)?;
                crate::checks::check_f32(op, name, t, accept, msg)?;
                t.reshape(&[1])
            }
        }
    }
}

impl Scalar<'_> {
    /// The value as a `[rows]` f32 tensor on `like`'s device (one per row, head or segment),
    /// never read back, with the host value when it was an `f32`: an `f32` is checked on
    /// the host against `accept` (an immediate error) and filled; a one-element tensor is
    /// shared by every row (broadcast on the device); a `[rows]` tensor gives one value per
    /// row. Tensor values are checked on the device (a deferred check, see
    /// [`crate::checks`]). Any other tensor is an `InvalidArgument` naming `op` and `name`.
    pub(crate) fn device_rows(
        self,
        op: &'static str,
        name: &'static str,
        like: &Tensor,
        rows: usize,
        accept: crate::checks::Accept,
        msg: &str,
    ) -> Result<(Tensor, Option<f32>)> {
        match self {
            Scalar::Value(v) => {
                if !accept.accepts(v) {
                    return Err(LapisError::invalid(op, name, v, msg));
                }
                Ok((crate::fill(like.device(), &[rows], v, DType::F32)?, Some(v)))
            }
            Scalar::Tensor(t) => {
                crate::validate::same_device(op, like, t)?;
                let one = t.numel() == 1;
                if !(one || t.shape() == [rows]) || t.dtype() != DType::F32 {
                    return Err(LapisError::invalid(
                        op,
                        name,
                        format!("a {} tensor of shape {:?}", t.dtype().name(), t.shape()),
                        format!("must be an f32 scalar (one element) or one f32 per row [{rows}]"),
                    ));
                }
                crate::checks::check_f32(op, name, t, accept, msg)?;
                let t = if one && rows != 1 {
                    crate::broadcast_to(&t.reshape(&[1])?, &[rows])?
                } else {
                    t.reshape(&[rows])?
                };
                Ok((t, None))
            }
        }
    }
}

/// `t` holds exactly one f32 element (typed error naming `op` and `name` otherwise).
pub(crate) fn check_one(op: &'static str, name: &'static str, t: &Tensor) -> Result<()> {
    if t.numel() != 1 || t.dtype() != DType::F32 {
        return Err(LapisError::invalid(
            op,
            name,
            format!("a {} tensor of shape {:?}", t.dtype().name(), t.shape()),
            "a tensor scalar must hold exactly one f32 element",
        ));
    }
    Ok(())
}
