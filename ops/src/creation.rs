//! Creation ops: fill, zeros/ones, arange, and uniform / normal random numbers.
//!
//! Random numbers come from `cubek-random` (a Tausworthe/LCG hybrid per unit) and are
//! reproducible given the seed: every call reseeds cubek's global generator with the
//! explicit `seed` first, so the same seed, shape and device give the same values.

use std::sync::Mutex;

use lapis_kernels::layout as k;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::tensor::{arr, Tensor};
use crate::validate;
use crate::Device;
use crate::{dispatch, launch_1d};

/// A tensor of `shape` filled with `value` (finite).
pub fn fill(device: &Device, shape: &[usize], value: f32, dtype: DType) -> Result<Tensor> {
    validate::finite("fill", "value", value)?;
    let out = Tensor::empty("fill", device, shape, dtype)?;
    let n = out.numel();
    let dt = dtype.storage_type();
    launch_1d!(device, n, k::fill_kernel, |client, R| (
        arr::<R>(&out),
        n as u32,
        value,
        dt,
    ));
    Ok(out)
}

/// Zeros.
pub fn zeros(device: &Device, shape: &[usize], dtype: DType) -> Result<Tensor> {
    fill(device, shape, 0.0, dtype)
}

/// Ones.
pub fn ones(device: &Device, shape: &[usize], dtype: DType) -> Result<Tensor> {
    fill(device, shape, 1.0, dtype)
}

/// `[start, start + step, …]`, `n` values (`start + i·step` computed from `i` in f32,
/// so there is no accumulated rounding). Shape `[n]`.
pub fn arange(device: &Device, start: f32, step: f32, n: usize, dtype: DType) -> Result<Tensor> {
    validate::finite("arange", "start", start)?;
    validate::finite("arange", "step", step)?;
    let out = Tensor::empty("arange", device, &[n], dtype)?;
    let dt = dtype.storage_type();
    launch_1d!(device, n, k::arange_kernel, |client, R| (
        arr::<R>(&out),
        n as u32,
        start,
        step,
        dt,
    ));
    Ok(out)
}

/// cubek-random draws its seeds from one process-wide generator: hold this lock from
/// reseeding to launch so that concurrent calls (parallel tests) stay reproducible.
static RNG_LOCK: Mutex<()> = Mutex::new(());

fn random(
    op: &'static str,
    device: &Device,
    shape: &[usize],
    seed: u64,
    a: f32,
    b: f32,
    normal: bool,
) -> Result<Tensor> {
    let out = Tensor::empty(op, device, shape, DType::F32)?;
    let dt = DType::F32.storage_type();
    let _guard = RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    cubek::random::seed(seed);
    crate::counters::count_launch(device);
    let prof = crate::counters::profile_start(device);
    let res = dispatch!(device, |client, R| {
        let handle = cubecl::std::tensor::TensorHandle::<R>::new_contiguous(
            out.shape().to_vec(),
            out.handle().clone(),
            dt,
        );
        if normal {
            cubek::random::random_normal(client, a, b, handle.binding(), dt)
        } else {
            cubek::random::random_uniform(client, a, b, handle.binding(), dt)
        }
    });
    crate::counters::profile_end(device, "cubek::random", prof);
    res.map_err(|e| LapisError::kernel(op, format!("{e:?}")))?;
    Ok(out)
}

/// Uniform samples in `[low, high)`, f32, reproducible from `seed`.
pub fn uniform(device: &Device, shape: &[usize], low: f32, high: f32, seed: u64) -> Result<Tensor> {
    validate::finite("uniform", "low", low)?;
    validate::finite("uniform", "high", high)?;
    if low >= high {
        return Err(LapisError::invalid(
            "uniform",
            "high",
            high,
            format!("must exceed low = {low}"),
        ));
    }
    random("uniform", device, shape, seed, low, high, false)
}

/// Normal samples with `mean` and standard deviation `std > 0`, f32, reproducible from `seed`.
pub fn normal(device: &Device, shape: &[usize], mean: f32, std: f32, seed: u64) -> Result<Tensor> {
    validate::finite("normal", "mean", mean)?;
    if !(std.is_finite() && std > 0.0) {
        return Err(LapisError::invalid(
            "normal",
            "std",
            std,
            "must be finite and > 0",
        ));
    }
    random("normal", device, shape, seed, mean, std, true)
}
