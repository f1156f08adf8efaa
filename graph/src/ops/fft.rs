//! The real FFT on the tape.
//!
//! `X_k = Σ_n x_n e^{−2πikn/N}`, `k = 0 … N/2`, so with `θ = 2πkn/N`
//! `∂Re X_k/∂x_n = cos θ`, `∂Im X_k/∂x_n = −sin θ` and
//! `x̄_n = Σ_k (R̄_k cos θ − Ī_k sin θ)`. Both sums are read off forward rffts of the
//! zero-padded gradients `a = pad(R̄)`, `b = pad(Ī)` (length N):
//! `Σ_k a_k cos θ = Re â_{m(n)}` with `m(n) = min(n, N−n)`, and
//! `Σ_k b_k sin θ = ∓Im b̂_{m(n)}` (`−` for `n ≤ N/2`, `+` above, by the symmetry
//! `sin θ_{k,N−n} = −sin θ_{k,n}`). So the VJP costs one batched rfft and a gather: no
//! inverse transform or dense DFT matrix is needed.

use lapis_ops::{self as ops, DType, Result, Tensor};

use crate::var::Var;

impl Var {
    /// `rfft` along the last axis (length a power of two): returns `[2, …, N/2 + 1]`
    /// (`Re X` then `Im X`; take them with [`Var::slice`] on axis 0).
    pub fn rfft(&self) -> Result<Var> {
        let (re, im) = ops::rfft(self.value())?;
        let mut one = vec![1];
        one.extend_from_slice(re.shape());
        let y = ops::concat(&[&re.reshape(&one)?, &im.reshape(&one)?], 0)?;
        let xshape = self.shape().to_vec();
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(rfft_vjp(g, &xshape)?)])),
        ))
    }
}

/// `x̄` from `g = [2, …, N/2 + 1]` (see the module docs).
fn rfft_vjp(g: &Tensor, xshape: &[usize]) -> Result<Tensor> {
    let r = xshape.len();
    let n = xshape[r - 1];
    let half = n / 2 + 1;
    let dev = g.device();
    // Zero-pad the last axis from N/2 + 1 to N.
    let padded = if n > half {
        let mut zs = g.shape().to_vec();
        zs[r] = n - half;
        ops::concat(&[g, &ops::zeros(dev, &zs, DType::F32)?], r)?
    } else {
        ops::slice(g, r, 0, n)?
    };
    let (re, im) = ops::rfft(&padded)?; // each [2, …, N/2 + 1]
    let idx: Vec<u32> = (0..n).map(|i| i.min(n - i) as u32).collect();
    let sign: Vec<f32> = (0..n)
        .map(|i| if i <= n / 2 { 1.0 } else { -1.0 })
        .collect();
    let idx = Tensor::from_slice(dev, &[n], &idx)?;
    let sign = Tensor::from_slice(dev, &[n], &sign)?;
    let re = ops::index_select(&re, r, &idx)?;
    let im = ops::index_select(&im, r, &idx)?;
    // x̄ = Re â_m + sign·Im b̂_m  (a = pad(R̄) is plane 0, b = pad(Ī) is plane 1)
    let a = ops::slice(&re, 0, 0, 1)?.reshape(xshape)?;
    let b = ops::slice(&im, 0, 1, 2)?.reshape(xshape)?;
    ops::add(&a, &ops::mul(&b, &sign)?)
}
