//! The linear-recurrence scan on the tape (real and complex).
//!
//! Forward scan `h_k = d_k h_{k−1} + u_k` (`h_{−1} = 0`). Its adjoint is the same scan run
//! the other way with the decays shifted by one:
//! `ū_k = ȳ_k + d_{k+1} ū_{k+1}` (a reverse scan with decays `d_{k+1}`), and
//! `d̄_k = Σ_c ū_k h_{k−1}` (channels share the decays). The reverse scan mirrors this.
//! For complex values (gradients as `∂ℓ/∂Re + i ∂ℓ/∂Im`) the adjoint scan uses `conj(d)`
//! and `d̄_k = Σ_c ū_k conj(h_{k−1})`.

use lapis_ops::{self as ops, Result, Tensor};

use crate::var::Var;

/// `x` moved by one step along axis 0 with a zero entering: `toward_end` gives
/// `out_k = x_{k−1}`, otherwise `out_k = x_{k+1}`.
fn shift(x: &Tensor, toward_end: bool) -> Result<Tensor> {
    let n = x.shape()[0];
    let mut zs = x.shape().to_vec();
    zs[0] = 1;
    let zero = ops::zeros(x.device(), &zs, x.dtype())?;
    if n == 1 {
        return Ok(zero);
    }
    if toward_end {
        ops::concat(&[&zero, &ops::slice(x, 0, 0, n - 1)?], 0)
    } else {
        ops::concat(&[&ops::slice(x, 0, 1, n)?, &zero], 0)
    }
}

/// `Σ_c` over the channel axis of `[N, c]` (identity for `[N]`), shape `[N]`.
fn channel_sum(x: &Tensor) -> Result<Tensor> {
    let n = x.shape()[0];
    if x.rank() == 1 {
        Ok(x.clone())
    } else {
        ops::sum(x, 1)?.reshape(&[n])
    }
}

impl Var {
    /// `h_k = d_k h_{k∓1} + u_k` with decays `d [N]` and values `u [N]` or `[N, c]`
    /// (`reverse` runs from the end); both may be tracked.
    pub fn linear_scan(d: &Var, u: &Var, reverse: bool) -> Result<Var> {
        d.same_tape(u, "linear_scan")?;
        let (dv, uv) = (d.value().clone(), u.value().clone());
        let h = ops::linear_scan(&dv, &uv, reverse)?;
        let hh = h.clone();
        Ok(d.record(
            &[d, u],
            h,
            Box::new(move |g| {
                let d_adj = shift(&dv, reverse)?;
                let ubar = ops::linear_scan(&d_adj, g, !reverse)?;
                let h_prev = shift(&hh, !reverse)?;
                let dbar = channel_sum(&ops::mul(&ubar, &h_prev)?)?;
                Ok(vec![Some(dbar), Some(ubar)])
            }),
        ))
    }

    /// Complex scan with planar parts: decays `(dr, di)` `[N]`, values `(ur, ui)` `[N]` or
    /// `[N, c]`. Returns `[2, …u.shape]` (`Re h` then `Im h`; take them with
    /// [`Var::slice`] on axis 0).
    pub fn linear_scan_complex(
        dr: &Var,
        di: &Var,
        ur: &Var,
        ui: &Var,
        reverse: bool,
    ) -> Result<Var> {
        for o in [di, ur, ui] {
            dr.same_tape(o, "linear_scan_complex")?;
        }
        let (drv, div) = (dr.value().clone(), di.value().clone());
        let (hr, hi) = ops::linear_scan_complex(&drv, &div, ur.value(), ui.value(), reverse)?;
        let mut one = vec![1];
        one.extend_from_slice(hr.shape());
        let y = ops::concat(&[&hr.reshape(&one)?, &hi.reshape(&one)?], 0)?;
        Ok(dr.record(
            &[dr, di, ur, ui],
            y,
            Box::new(move |g| {
                let s = &one[1..];
                let gr = ops::slice(g, 0, 0, 1)?.reshape(s)?;
                let gi = ops::slice(g, 0, 1, 2)?.reshape(s)?;
                let (adr, adi) = (shift(&drv, reverse)?, ops::neg(&shift(&div, reverse)?)?);
                let (ubr, ubi) = ops::linear_scan_complex(&adr, &adi, &gr, &gi, !reverse)?;
                let (pr, pi) = (shift(&hr, !reverse)?, shift(&hi, !reverse)?);
                // d̄ = Σ_c ū · conj(h_prev)
                let dbr = ops::add(&ops::mul(&ubr, &pr)?, &ops::mul(&ubi, &pi)?)?;
                let dbi = ops::sub(&ops::mul(&ubi, &pr)?, &ops::mul(&ubr, &pi)?)?;
                Ok(vec![
                    Some(channel_sum(&dbr)?),
                    Some(channel_sum(&dbi)?),
                    Some(ubr),
                    Some(ubi),
                ])
            }),
        ))
    }
}
