//! Softmax and log-softmax on the tape.
//!
//! `y = softmax(x)`: `x̄ = y ⊙ (ȳ − Σ_axis ȳ ⊙ y)`. `y = log_softmax(x)`:
//! `x̄ = ȳ − softmax(x) · Σ_axis ȳ`.

use lapis_ops::{self as ops, Result};

use crate::var::Var;

impl Var {
    /// Softmax along `axis`.
    pub fn softmax(&self, axis: usize) -> Result<Var> {
        let y = ops::softmax(self.value(), axis)?;
        let p = y.clone();
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                let s = ops::sum(&ops::mul(g, &p)?, axis)?;
                Ok(vec![Some(ops::mul(&p, &ops::sub(g, &s)?)?)])
            }),
        ))
    }

    /// `log_softmax` along `axis`.
    pub fn log_softmax(&self, axis: usize) -> Result<Var> {
        let y = ops::log_softmax(self.value(), axis)?;
        let p = ops::exp(&y)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                let s = ops::sum(g, axis)?;
                Ok(vec![Some(ops::sub(g, &ops::mul(&p, &s)?)?)])
            }),
        ))
    }
}
