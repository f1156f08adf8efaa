//! The real FFT on the tape; VJP [`lapis_ops::rfft_backward`] (one batched forward rfft of
//! the zero-padded gradients and a gather: no inverse transform).

use lapis_ops::{self as ops, Result};

use crate::var::Var;

impl Var {
    /// `rfft` along the last axis (length a power of two): returns `[2, …, N/2 + 1]`
    /// (`Re X` then `Im X`; take them with [`Var::slice`] on axis 0).
    pub fn rfft(&self) -> Result<Var> {
        let (re, im) = ops::rfft(self.value())?;
        let mut one = vec![1];
        one.extend_from_slice(re.shape());
        let y = ops::concat(&[&re.reshape(&one)?, &im.reshape(&one)?], 0)?;
        let n = *self.shape().last().expect("rfft checked the rank");
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                let s = &one[1..];
                let gr = ops::slice(g, 0, 0, 1)?.reshape(s)?;
                let gi = ops::slice(g, 0, 1, 2)?.reshape(s)?;
                Ok(vec![Some(ops::rfft_backward(&gr, &gi, n)?)])
            }),
        ))
    }
}
