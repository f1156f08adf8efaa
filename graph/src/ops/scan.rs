//! The linear-recurrence scan on the tape (real and complex); VJPs
//! [`lapis_ops::linear_scan_backward`] and [`lapis_ops::linear_scan_complex_backward`]
//! (the same scan run the other way with the decays shifted by one).

use lapis_ops::{self as ops, Result};

use crate::var::Var;

impl Var {
    /// `h_k = d_k h_{k∓1} + u_k` with decays `d [N]` and values `u [N]` or `[N, c]`
    /// (`reverse` runs from the end); both may be tracked.
    pub fn linear_scan(d: &Var, u: &Var, reverse: bool) -> Result<Var> {
        d.same_tape(u, "linear_scan")?;
        let dv = d.value().clone();
        let h = ops::linear_scan(&dv, u.value(), reverse)?;
        let hh = h.clone();
        Ok(d.record(
            &[d, u],
            h,
            Box::new(move |g| {
                let (dbar, ubar) = ops::linear_scan_backward(&dv, &hh, g, reverse)?;
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
                let grads = ops::linear_scan_complex_backward(
                    (&drv, &div),
                    (&hr, &hi),
                    (&gr, &gi),
                    reverse,
                )?;
                Ok(grads.into_iter().map(Some).collect())
            }),
        ))
    }
}
