//! Linear-recurrence scan: `h_k = d_k · h_{k−1} + u_k` (forward) or
//! `h_k = d_k · h_{k+1} + u_k` (reverse), `c` channels sharing the decays.
//!
//! Every device uses the hierarchical reduce-then-scan of `lapis_kernels::scan` (two
//! launches per level of chunks of 32, no inter-workgroup waiting: correct on lavapipe and
//! on GPUs alike). Each output passes through at most 32 rounded products per level, so
//! the f32 error is `O(32·⌈log₃₂ N⌉·ε)` relative to the scan of `(|d|, |u|)` at any N
//! (a flat carry over the chunks made it grow like N·ε).
//!
//! The Laplace-kernel sweeps (`specs/laplace-engine.md` §2) do *not* use this scan with
//! rounded decays `e^{−λΔ_k}`: a product of N rounded exponentials errs by N·ε however it
//! is grouped. They use [`decay_scan`](crate::decay_scan()), which computes every decay from
//! coordinates.

use lapis_kernels::scan as k;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

/// Chunk length of every level of the hierarchical scans.
const CHUNK: usize = lapis_kernels::decay_scan::DSCAN_CHUNK as usize;

/// One level of the real scan: `u` is `[n, c]` (or `[n]`), `d` is `[n]`.
fn scan_level(d: &Tensor, u: &Tensor, c: usize, reverse: bool) -> Result<Tensor> {
    const OP: &str = "linear_scan";
    let dev = d.device();
    let n = d.numel();
    let p = n.div_ceil(CHUNK);
    let h = Tensor::empty(OP, dev, u.shape(), DType::F32)?;
    let (n32, c32, chunk32, p32) = (n as u32, c as u32, CHUNK as u32, p as u32);
    let top = if p > 1 {
        let agg_d = Tensor::empty(OP, dev, &[p], DType::F32)?;
        let agg_h = Tensor::empty(OP, dev, &[p, c], DType::F32)?;
        launch_1d!(dev, p * c, k::scan_aggregate_kernel, |client, R| (
            arr::<R>(d),
            arr::<R>(u),
            arr::<R>(&agg_d),
            arr::<R>(&agg_h),
            n32,
            c32,
            chunk32,
            p32,
            reverse,
        ));
        Some(scan_level(&agg_d, &agg_h, c, reverse)?)
    } else {
        None
    };
    let has_top = top.is_some();
    let top = top.unwrap_or_else(|| u.clone());
    launch_1d!(dev, p * c, k::scan_apply_kernel, |client, R| (
        arr::<R>(d),
        arr::<R>(u),
        arr::<R>(&top),
        arr::<R>(&h),
        n32,
        c32,
        chunk32,
        p32,
        reverse,
        has_top,
    ));
    Ok(h)
}

/// One level of the complex scan (planar tensors).
fn cscan_level(
    (dr, di): (&Tensor, &Tensor),
    (ur, ui): (&Tensor, &Tensor),
    c: usize,
    reverse: bool,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "linear_scan_complex";
    let dev = dr.device();
    let n = dr.numel();
    let p = n.div_ceil(CHUNK);
    let hr = Tensor::empty(OP, dev, ur.shape(), DType::F32)?;
    let hi = Tensor::empty(OP, dev, ur.shape(), DType::F32)?;
    let (n32, c32, chunk32, p32) = (n as u32, c as u32, CHUNK as u32, p as u32);
    let top = if p > 1 {
        let (adr, adi) = (
            Tensor::empty(OP, dev, &[p], DType::F32)?,
            Tensor::empty(OP, dev, &[p], DType::F32)?,
        );
        let (ahr, ahi) = (
            Tensor::empty(OP, dev, &[p, c], DType::F32)?,
            Tensor::empty(OP, dev, &[p, c], DType::F32)?,
        );
        launch_1d!(dev, p * c, k::cscan_aggregate_kernel, |client, R| (
            arr::<R>(dr),
            arr::<R>(di),
            arr::<R>(ur),
            arr::<R>(ui),
            arr::<R>(&adr),
            arr::<R>(&adi),
            arr::<R>(&ahr),
            arr::<R>(&ahi),
            n32,
            c32,
            chunk32,
            p32,
            reverse,
        ));
        Some(cscan_level((&adr, &adi), (&ahr, &ahi), c, reverse)?)
    } else {
        None
    };
    let has_top = top.is_some();
    let (tr, ti) = top.unwrap_or_else(|| (ur.clone(), ui.clone()));
    launch_1d!(dev, p * c, k::cscan_apply_kernel, |client, R| (
        arr::<R>(dr),
        arr::<R>(di),
        arr::<R>(ur),
        arr::<R>(ui),
        arr::<R>(&tr),
        arr::<R>(&ti),
        arr::<R>(&hr),
        arr::<R>(&hi),
        n32,
        c32,
        chunk32,
        p32,
        reverse,
        has_top,
    ));
    Ok((hr, hi))
}

/// Scans `u [N, c]` (or `[N]`) with decays `d [N]`; returns `h` with `u`'s shape.
///
/// `d` and `u` must be f32 on the same device. Decays are not restricted, but the scan is
/// only guaranteed overflow-free for `|d_k| ≤ 1`.
pub fn linear_scan(d: &Tensor, u: &Tensor, reverse: bool) -> Result<Tensor> {
    const OP: &str = "linear_scan";
    validate::same_device(OP, d, u)?;
    for t in [d, u] {
        if t.dtype() != DType::F32 {
            return Err(LapisError::DType {
                op: OP,
                got: t.dtype(),
                msg: "the scan takes f32".into(),
            });
        }
    }
    if d.rank() != 1 {
        return Err(LapisError::shape(
            OP,
            d.shape(),
            "decays `d` must be 1-D [N]",
        ));
    }
    let n = d.numel();
    let c = match u.shape() {
        [m] if *m == n => 1,
        [m, c] if *m == n => *c,
        _ => {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: d.shape().to_vec(),
                rhs: u.shape().to_vec(),
            })
        }
    };
    if n == 0 {
        return Tensor::empty(OP, d.device(), u.shape(), DType::F32);
    }
    scan_level(d, u, c, reverse)
}

/// Complex scan `h_k = d_k h_{k∓1} + u_k` with planar real/imaginary tensors: decays
/// `(dr, di)` `[N]`, values `(ur, ui)` `[N, c]` (or `[N]`); returns `(hr, hi)`.
pub fn linear_scan_complex(
    dr: &Tensor,
    di: &Tensor,
    ur: &Tensor,
    ui: &Tensor,
    reverse: bool,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "linear_scan_complex";
    for t in [di, ur, ui] {
        validate::same_device(OP, dr, t)?;
    }
    for t in [dr, di, ur, ui] {
        if t.dtype() != DType::F32 {
            return Err(LapisError::DType {
                op: OP,
                got: t.dtype(),
                msg: "the scan takes f32".into(),
            });
        }
    }
    if dr.rank() != 1 || di.shape() != dr.shape() || ur.shape() != ui.shape() {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: dr.shape().to_vec(),
            rhs: di.shape().to_vec(),
        });
    }
    let n = dr.numel();
    let c = match ur.shape() {
        [m] if *m == n => 1,
        [m, c] if *m == n => *c,
        _ => {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: dr.shape().to_vec(),
                rhs: ur.shape().to_vec(),
            })
        }
    };
    if n == 0 {
        let e = || Tensor::empty(OP, dr.device(), ur.shape(), DType::F32);
        return Ok((e()?, e()?));
    }
    cscan_level((dr, di), (ur, ui), c, reverse)
}

// ------------------------------------------------------------------------------ backward

/// `x` moved one step along axis 0 with a zero entering: `toward_end` gives
/// `out_k = x_{k−1}`, otherwise `out_k = x_{k+1}`.
fn shift(x: &Tensor, toward_end: bool) -> Result<Tensor> {
    let n = x.shape()[0];
    let mut zs = x.shape().to_vec();
    zs[0] = 1;
    let zero = crate::zeros(x.device(), &zs, x.dtype())?;
    if n == 1 {
        return Ok(zero);
    }
    if toward_end {
        crate::concat(&[&zero, &crate::slice(x, 0, 0, n - 1)?], 0)
    } else {
        crate::concat(&[&crate::slice(x, 0, 1, n)?, &zero], 0)
    }
}

/// Decays `[N]` (N ≥ 1) and values of one shape `[N]` or `[N, c]`.
fn check_backward(op: &'static str, decays: &[&Tensor], values: &[&Tensor]) -> Result<()> {
    let n = decays[0].shape().first().copied().unwrap_or(0);
    let bad_d = decays
        .iter()
        .find(|t| t.rank() != 1 || t.shape()[0] != n || n == 0);
    if let Some(t) = bad_d {
        return Err(LapisError::shape(
            op,
            t.shape(),
            "decays must be [N] with N ≥ 1",
        ));
    }
    let first = values[0];
    for t in values {
        let ok =
            t.shape() == first.shape() && (t.rank() == 1 || t.rank() == 2) && t.shape()[0] == n;
        if !ok {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: decays[0].shape().to_vec(),
                rhs: t.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// `Σ_c` over the channel axis of `[N, c]` (identity for `[N]`), shape `[N]`.
fn channel_sum(x: &Tensor) -> Result<Tensor> {
    if x.rank() == 1 {
        Ok(x.clone())
    } else {
        crate::sum(x, 1)?.reshape(&[x.shape()[0]])
    }
}

/// The VJP of [`linear_scan`] from the decays `d`, the output `h` and `g = h̄`:
/// `(d̄, ū)`. For the forward scan `h_k = d_k h_{k−1} + u_k` the adjoint is the reverse scan
/// `ū_k = ȳ_k + d_{k+1} ū_{k+1}` (decays shifted by one), and `d̄_k = Σ_c ū_k h_{k−1}`
/// (channels share the decays); the reverse scan mirrors it.
pub fn linear_scan_backward(
    d: &Tensor,
    h: &Tensor,
    g: &Tensor,
    reverse: bool,
) -> Result<(Tensor, Tensor)> {
    check_backward("linear_scan_backward", &[d], &[h, g])?;
    let ubar = linear_scan(&shift(d, reverse)?, g, !reverse)?;
    let dbar = channel_sum(&crate::mul(&ubar, &shift(h, !reverse)?)?)?;
    Ok((dbar, ubar))
}

/// The VJP of [`linear_scan_complex`] (gradients as `∂ℓ/∂Re + i ∂ℓ/∂Im`): the adjoint
/// scan runs with `conj(d)` shifted by one, and `d̄_k = Σ_c ū_k conj(h_{k∓1})`. Returns
/// `[d̄r, d̄i, ūr, ūi]`.
pub fn linear_scan_complex_backward(
    (dr, di): (&Tensor, &Tensor),
    (hr, hi): (&Tensor, &Tensor),
    (gr, gi): (&Tensor, &Tensor),
    reverse: bool,
) -> Result<[Tensor; 4]> {
    check_backward("linear_scan_complex_backward", &[dr, di], &[hr, hi, gr, gi])?;
    let (adr, adi) = (shift(dr, reverse)?, crate::neg(&shift(di, reverse)?)?);
    let (ubr, ubi) = linear_scan_complex(&adr, &adi, gr, gi, !reverse)?;
    let (pr, pi) = (shift(hr, !reverse)?, shift(hi, !reverse)?);
    // d̄ = Σ_c ū · conj(h_prev)
    let dbr = crate::add(&crate::mul(&ubr, &pr)?, &crate::mul(&ubi, &pi)?)?;
    let dbi = crate::sub(&crate::mul(&ubi, &pr)?, &crate::mul(&ubr, &pi)?)?;
    Ok([channel_sum(&dbr)?, channel_sum(&dbi)?, ubr, ubi])
}
