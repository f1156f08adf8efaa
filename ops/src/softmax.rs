//! Softmax and log-softmax along an axis.
//!
//! `softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m}` and
//! `log_softmax(x)_i = x_i − m − ln Σ_j e^{x_j − m}` with `m = max_j x_j`: subtracting the
//! max keeps every exponent ≤ 0, so any finite input gives a finite output. Lines up to 4096
//! long use one unit each (`lapis_kernels::softmax`); longer lines use cubek reductions for
//! the max and the sum.

use lapis_kernels::softmax as k;

use crate::error::Result;
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

/// Lines longer than this go through reductions (cubek) instead of one unit per line:
/// faster for long rows, and llvmpipe stops a unit's loops after 65 535 iterations.
const ONE_UNIT_MAX_LEN: usize = 4096;

fn launch(op: &'static str, x: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    validate::float(op, x)?;
    validate::axis(op, x, axis)?;
    let (outer, len, inner) = validate::split_at_axis(x.shape(), axis);
    if len > ONE_UNIT_MAX_LEN {
        // m = max, e = exp(x − m), s = Σ e: the same formulas with whole-tensor ops.
        let m = crate::max(x, axis)?;
        let z = crate::sub(x, &m)?;
        let s = crate::sum(&crate::exp(&z)?, axis)?;
        return if log {
            crate::sub(&z, &crate::log(&s)?)
        } else {
            crate::div(&crate::exp(&z)?, &s)
        };
    }
    let out = Tensor::empty(op, x.device(), x.shape(), x.dtype())?;
    let lines = outer * inner;
    let dt = x.dtype().storage_type();
    launch_1d!(x.device(), lines, k::softmax_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(&out),
        outer as u32,
        len as u32,
        inner as u32,
        log,
        dt,
    ));
    Ok(out)
}

/// Softmax along `axis`.
pub fn softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    launch("softmax", x, axis, false)
}

/// Log-softmax along `axis`.
pub fn log_softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    launch("log_softmax", x, axis, true)
}

/// The VJP of [`softmax`] from its output `y`: `x̄ = y ⊙ (ȳ − Σ_axis ȳ ⊙ y)`.
pub fn softmax_backward(y: &Tensor, g: &Tensor, axis: usize) -> Result<Tensor> {
    validate::same_shape("softmax_backward", y, g)?;
    validate::axis("softmax_backward", y, axis)?;
    let s = crate::sum(&crate::mul(g, y)?, axis)?;
    crate::mul(y, &crate::sub(g, &s)?)
}

/// The VJP of [`log_softmax`] from its output `y`: `x̄ = ȳ − e^y · Σ_axis ȳ`.
pub fn log_softmax_backward(y: &Tensor, g: &Tensor, axis: usize) -> Result<Tensor> {
    validate::same_shape("log_softmax_backward", y, g)?;
    validate::axis("log_softmax_backward", y, axis)?;
    let s = crate::sum(g, axis)?;
    crate::sub(g, &crate::mul(&crate::exp(y)?, &s)?)
}
