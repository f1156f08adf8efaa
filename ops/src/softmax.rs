//! Softmax and log-softmax along an axis.
//!
//! `softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m}` and
//! `log_softmax(x)_i = x_i − m − ln Σ_j e^{x_j − m}` with `m = max_j x_j`: subtracting the
//! max keeps every exponent ≤ 0, so any finite input gives a finite output. See
//! `lapis_kernels::softmax` for the kernel.

use lapis_kernels::softmax as k;

use crate::error::Result;
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

fn launch(op: &'static str, x: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    validate::float(op, x)?;
    validate::axis(op, x, axis)?;
    let (outer, len, inner) = validate::split_at_axis(x.shape(), axis);
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
