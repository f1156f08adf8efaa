//! Argument checks shared by the ops. Each runs before any launch and names the op.

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::tensor::Tensor;

/// `a` and `b` live on the same device.
pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() == b.device() {
        Ok(())
    } else {
        Err(LapisError::DeviceMismatch {
            op,
            lhs: a.device().kind().name().into(),
            rhs: b.device().kind().name().into(),
        })
    }
}

/// `a` and `b` have the same dtype.
pub(crate) fn same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() == b.dtype() {
        Ok(())
    } else {
        Err(LapisError::DType {
            op,
            got: b.dtype(),
            msg: format!("operands must share a dtype; lhs is {}", a.dtype().name()),
        })
    }
}

/// `t` holds floats.
pub(crate) fn float(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(LapisError::DType {
            op,
            got: t.dtype(),
            msg: "expected f32, f16 or bf16".into(),
        })
    }
}

/// `t` holds u32 indices.
pub(crate) fn index(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() == DType::U32 {
        Ok(())
    } else {
        Err(LapisError::DType {
            op,
            got: t.dtype(),
            msg: "indices must be u32".into(),
        })
    }
}

/// `axis < rank`.
pub(crate) fn axis(op: &'static str, t: &Tensor, axis: usize) -> Result<()> {
    if axis < t.rank() {
        Ok(())
    } else {
        Err(LapisError::invalid(
            op,
            "axis",
            axis,
            format!("tensor of shape {:?} has rank {}", t.shape(), t.rank()),
        ))
    }
}

/// `value` is finite.
pub(crate) fn finite(op: &'static str, name: &'static str, value: f32) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(LapisError::invalid(op, name, value, "must be finite"))
    }
}

/// `[outer, len, inner]` view of `shape` around `axis`.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// `a` and `b` have the same shape (a gradient and the value it is the gradient of).
pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(LapisError::ShapeMismatch {
            op,
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        })
    }
}
