//! Fused optimizer steps (see `lapis_kernels::optim` for the update rules).

use lapis_kernels::optim as k;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

/// The scalars of one Adam/AdamW step (the host computes them in f64).
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    /// `β₁`.
    pub beta1: f64,
    /// `β₂`.
    pub beta2: f64,
    /// The step's learning rate.
    pub lr: f64,
    /// `ε`.
    pub eps: f64,
    /// Decoupled weight decay (0 for Adam).
    pub weight_decay: f64,
    /// The step count `t ≥ 1` (bias corrections `1 − βᵗ`).
    pub t: i32,
}

/// One fused Adam/AdamW update of f32 `p` with gradient `g` and moments `m`, `v` (all of
/// one shape): returns the new `(p, m, v)` in fresh buffers, in one launch.
pub fn adam_update(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &AdamStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "adam_update";
    for t in [g, m, v] {
        validate::same_device(OP, p, t)?;
        if t.shape() != p.shape() {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: p.shape().to_vec(),
                rhs: t.shape().to_vec(),
            });
        }
    }
    for t in [p, g, m, v] {
        if t.dtype() != DType::F32 {
            return Err(LapisError::invalid(
                OP,
                "dtype",
                t.dtype().name(),
                "the fused step takes f32 tensors",
            ));
        }
    }
    if s.t < 1 {
        return Err(LapisError::invalid(
            OP,
            "t",
            s.t,
            "the step count starts at 1",
        ));
    }
    let c1 = 1.0 - s.beta1.powi(s.t);
    let c2 = 1.0 - s.beta2.powi(s.t);
    let scalars = [s.beta1, s.beta2, s.lr, s.eps, s.weight_decay, c1, c2];
    if scalars.iter().any(|x| !x.is_finite()) || c1 <= 0.0 || c2 <= 0.0 {
        return Err(LapisError::invalid(
            OP,
            "hyper-parameters",
            format!("{s:?}"),
            "need finite values and β₁, β₂ in [0, 1)",
        ));
    }
    let dev = p.device();
    let n = p.numel();
    let pn = Tensor::empty(OP, dev, p.shape(), DType::F32)?;
    let mn = Tensor::empty(OP, dev, p.shape(), DType::F32)?;
    let vn = Tensor::empty(OP, dev, p.shape(), DType::F32)?;
    if n == 0 {
        return Ok((pn, mn, vn));
    }
    launch_1d!(dev, n, k::adam_kernel, |client, R| (
        arr::<R>(p),
        arr::<R>(g),
        arr::<R>(m),
        arr::<R>(v),
        arr::<R>(&pn),
        arr::<R>(&mn),
        arr::<R>(&vn),
        n as u32,
        s.beta1 as f32,
        (1.0 - s.beta1) as f32,
        s.beta2 as f32,
        (1.0 - s.beta2) as f32,
        (s.lr / c1) as f32,
        (1.0 / c2) as f32,
        s.eps as f32,
        (1.0 - s.lr * s.weight_decay) as f32,
    ));
    Ok((pn, mn, vn))
}
