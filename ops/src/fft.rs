//! Real FFT through `cubek-fft`: `X_k = Σ_j x_j e^{−2πi jk/n}`, `k = 0 … n/2`, along the last
//! axis (other axes are batch). Unnormalised, as numpy's `rfft`. `n` must be a power of
//! two (cubek's kernels are radix-2; other lengths are refused before launch); f32 only.

use crate::dispatch;
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::tensor::Tensor;

/// `(Re X, Im X)`, each of `x`'s shape with the last axis `n/2 + 1`.
pub fn rfft(x: &Tensor) -> Result<(Tensor, Tensor)> {
    const OP: &str = "rfft";
    if x.dtype() != DType::F32 {
        return Err(LapisError::DType {
            op: OP,
            got: x.dtype(),
            msg: "rfft takes f32".into(),
        });
    }
    let dim = x.rank() - 1;
    let n = x.shape()[dim];
    if !n.is_power_of_two() || n < 2 {
        return Err(LapisError::invalid(
            OP,
            "n",
            n,
            "the last axis must be a power of two ≥ 2",
        ));
    }
    let mut out_shape = x.shape().to_vec();
    out_shape[dim] = n / 2 + 1;
    let re = Tensor::empty(OP, x.device(), &out_shape, DType::F32)?;
    let im = Tensor::empty(OP, x.device(), &out_shape, DType::F32)?;
    let dt = DType::F32.storage_type();
    crate::counters::count_launch(x.device());
    let prof = crate::counters::profile_start(x.device());
    let res = dispatch!(x.device(), |client, R| {
        use cubecl::std::tensor::TensorHandle;
        let h = |t: &Tensor| {
            TensorHandle::<R>::new_contiguous(t.shape().to_vec(), t.handle().clone(), dt)
        };
        cubek::fft::rfft_launch::<R>(
            client,
            h(x).binding(),
            h(&re).binding(),
            h(&im).binding(),
            dim,
            dt,
        )
    });
    crate::counters::profile_end(x.device(), "cubek::fft", prof);
    res.map_err(|e| LapisError::kernel(OP, format!("{e:?}")))?;
    Ok((re, im))
}

/// The VJP of [`rfft`] for an input whose last axis has length `n`, from
/// `(R̄, Ī)` = the gradients of `(Re X, Im X)`.
///
/// `∂Re X_k/∂x_j = cos θ`, `∂Im X_k/∂x_j = −sin θ` (`θ = 2πjk/n`), so
/// `x̄_j = Σ_k (R̄_k cos θ − Ī_k sin θ)`. Both sums are read off forward rffts of the
/// zero-padded gradients `a = pad(R̄)`, `b = pad(Ī)` (length n): `Σ_k a_k cos θ = Re â_{m}`
/// with `m = min(j, n−j)`, and `Σ_k b_k sin θ = ∓Im b̂_{m}` (`−` for `j ≤ n/2`, `+`
/// above, since `sin θ_{k,n−j} = −sin θ_{k,j}`). One batched rfft and a gather: no
/// inverse transform and no dense DFT matrix.
pub fn rfft_backward(g_re: &Tensor, g_im: &Tensor, n: usize) -> Result<Tensor> {
    const OP: &str = "rfft_backward";
    let half = n / 2 + 1;
    if g_re.shape() != g_im.shape() || g_re.rank() == 0 || g_re.shape()[g_re.rank() - 1] != half {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: g_re.shape().to_vec(),
            rhs: g_im.shape().to_vec(),
        });
    }
    let r = g_re.rank();
    let dev = g_re.device();
    let mut one = vec![1];
    one.extend_from_slice(g_re.shape());
    let g = crate::concat(&[&g_re.reshape(&one)?, &g_im.reshape(&one)?], 0)?;
    // Zero-pad the last axis from n/2 + 1 to n.
    let padded = if n > half {
        let mut zs = g.shape().to_vec();
        zs[r] = n - half;
        crate::concat(&[&g, &crate::zeros(dev, &zs, DType::F32)?], r)?
    } else {
        crate::slice(&g, r, 0, n)?
    };
    let (re, im) = rfft(&padded)?; // each [2, …, n/2 + 1]
    let idx: Vec<u32> = (0..n).map(|i| i.min(n - i) as u32).collect();
    let sign: Vec<f32> = (0..n)
        .map(|i| if i <= n / 2 { 1.0 } else { -1.0 })
        .collect();
    let idx = Tensor::from_slice(dev, &[n], &idx)?;
    let sign = Tensor::from_slice(dev, &[n], &sign)?;
    let re = crate::index_select(&re, r, &idx)?;
    let im = crate::index_select(&im, r, &idx)?;
    let mut xshape = g_re.shape().to_vec();
    xshape[r - 1] = n;
    // x̄ = Re â_m + sign·Im b̂_m  (a = pad(R̄) is plane 0, b = pad(Ī) is plane 1)
    let a = crate::slice(&re, 0, 0, 1)?.reshape(&xshape)?;
    let b = crate::slice(&im, 0, 1, 2)?.reshape(&xshape)?;
    crate::add(&a, &crate::mul(&b, &sign)?)
}
