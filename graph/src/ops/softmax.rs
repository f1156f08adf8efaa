//! Softmax and log-softmax on the tape; VJPs [`lapis_ops::softmax_backward`]
//! (`x̄ = y ⊙ (ȳ − Σ ȳ ⊙ y)`) and [`lapis_ops::log_softmax_backward`]
//! (`x̄ = ȳ − e^y Σ ȳ`), both from the output.

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
            Box::new(move |g| Ok(vec![Some(ops::softmax_backward(&p, g, axis)?)])),
        ))
    }

    /// `log_softmax` along `axis`.
    pub fn log_softmax(&self, axis: usize) -> Result<Var> {
        let y = ops::log_softmax(self.value(), axis)?;
        let yy = y.clone();
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::log_softmax_backward(&yy, g, axis)?)])),
        ))
    }
}
