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
    res.map_err(|e| LapisError::kernel(OP, format!("{e:?}")))?;
    Ok((re, im))
}
