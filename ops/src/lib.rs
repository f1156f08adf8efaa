//! # lapis-ops
//!
//! The tensor layer of lapis: [`Device`] (CUDA or wgpu, chosen by [`Device::auto`]),
//! [`Tensor`] (a contiguous device buffer with a shape and a [`DType`]), [`LapisError`],
//! and every op as a plain function returning `Result<Tensor, LapisError>`:
//!
//! | family | functions | module |
//! | --- | --- | --- |
//! | unary | [`neg`], [`exp`], [`log`], [`sqrt`], [`abs`], [`relu`], [`gelu`], [`tanh`], [`sigmoid`], [`sign`], [`affine`] | [`elementwise`] |
//! | binary (broadcasting) | [`add`], [`sub`], [`mul`], [`div`], [`maximum`], [`minimum`], [`pow`] | [`elementwise`] |
//! | reductions (cubek-reduce) | [`sum`], [`mean`], [`max`], [`min`], [`argmax`], `*_all` | [`reduce`](mod@reduce) |
//! | matmul (cubek-matmul) | [`matmul`](fn@matmul) (batched, broadcasting) | [`matmul`](mod@matmul) |
//! | layout | [`permute`], [`transpose`], [`Tensor::reshape`], [`slice`](fn@slice), [`concat`](fn@concat), [`broadcast_to`] | [`layout`] |
//! | softmax | [`softmax`](fn@softmax), [`log_softmax`] | [`softmax`](mod@softmax) |
//! | indexing | [`gather`], [`index_select`], [`scatter_add`], [`index_add`] | [`index`] |
//! | anchored scan | [`decay_scan()`], [`decay_scan_complex`] (`h_k = Σ_i e^{−r|z_k − z_i|} u_i` over one side, decays from coordinates: the Laplace and soft top-k sweeps) | [`decay_scan`](mod@decay_scan) |
//! | scan | [`linear_scan`] (`h_k = d_k h_{k∓1} + u_k`, the Laplace engine's sweeps) | [`scan`](mod@scan) |
//! | soft top-k (LapSum) | [`soft_topk`], [`soft_topk_truncated`], [`soft_rank`], [`soft_sort`]; backward [`soft_topk_backward`] (recomputes the forward) or [`SoftTopK::backward`] / [`SoftTopKTruncated::backward`] (reuse one), [`soft_rank_backward`], [`soft_sort_backward`] | [`softtopk`] |
//! | sort | [`argsort`], [`argsort_rows`] (stable radix sort; short rows by an in-workgroup bitonic sort; NaN last) | [`sort`](mod@sort) |
//! | Laplace operator | [`laplace_apply`], [`laplace_gram`], [`laplace_gram_backward`], [`laplace_apply_backward`] (real λ), [`laplace_apply_phased`], [`laplace_apply_phased_backward`] (complex λ) | [`laplace`](mod@laplace) |
//! | FFT (cubek-fft) | [`rfft`] (power-of-two lengths) | [`fft`] |
//! | OU covariance | [`OuCovariance`]: log det, Mahalanobis, solve, sample, NLL in O(d) after a sort | [`covariance`] |
//! | REMIX covariance | [`LaplaceCovariance`] (`diag(u) + diag(w)K diag(w)`): log det, Mahalanobis, solve, sample, NLL and every gradient; [`lcm_frobenius`] | [`covariance`] |
//! | creation | [`fill`], [`zeros`], [`ones`], [`arange`], [`uniform`], [`normal`] (cubek-random, explicit seed) | [`creation`] |
//! | optimizer step | [`adam_update`] (fused Adam/AdamW, one launch per tensor) | [`optim`] |
//!
//! **Backward.** Every differentiable op has its vector–Jacobian product as a plain
//! function next to its forward, taking the output gradient `ȳ`: [`unary_backward`],
//! [`binary_backward`] (with [`sum_to_shape`] for broadcasting), [`reduce_backward`],
//! [`permute_backward`], [`slice_backward`], [`concat_backward`], [`broadcast_to_backward`],
//! [`gather_backward`], [`index_select_backward`], [`scatter_add_backward`],
//! [`index_add_backward`], [`matmul_backward`], [`softmax_backward`],
//! [`log_softmax_backward`], [`linear_scan_backward`], [`linear_scan_complex_backward`],
//! [`rfft_backward`], [`argsort_backward`], [`argsort_rows_backward`], and the Laplace,
//! covariance and soft top-k backward functions named in the table (soft top-k's is
//! [`soft_topk_backward`], or [`SoftTopK::backward`] on a forward's result). `lapis-graph` records
//! them on its tape; its gradient checks test each against finite differences of the f64
//! reference.
//!
//! **Scalar arguments.** Every scalar parameter of the Laplace and soft top-k ops (`λ`, the
//! phased `a` and `b`, soft top-k's `k` and `α`) is an `impl Into<`[`Scalar`]`>`: an `f32` or a
//! one-element f32 [`Tensor`] (soft top-k also takes a per-row `[B]` tensor). A tensor
//! scalar stays on the device: kernels read it there; see [`scalar`](mod@scalar).
//!
//! Every op checks its arguments (device, dtype, shapes, axes, sizes, host scalars)
//! before launching anything and returns a typed [`LapisError`]; none panics on user
//! input. What only the device knows — non-finite coordinates, index ranges, the range of
//! a tensor scalar — is a **deferred check** ([`checks`]): one small kernel raises a flag,
//! and the next read of device data (or [`Device::check`]) returns the typed error naming
//! the op and the argument instead of the data; [`set_strict_checks`] makes each op fail
//! at once instead. So a training step reads nothing back to the host (tested: 0 host
//! reads per step for an MLP, a LAPLEX model and a transformer). [`reference`](mod@reference) holds an f64 CPU implementation of each op, written for clarity;
//! the property tests in `lapis-tests` compare every op against it.
//!
//! ```no_run
//! use lapis_ops::{Device, Tensor, DType};
//! let dev = Device::auto()?;
//! let a = Tensor::from_slice(&dev, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let b = Tensor::from_slice(&dev, &[3], &[10.0f32, 20.0, 30.0])?;
//! let c = lapis_ops::add(&a, &b)?;                      // broadcasts b over rows
//! let s = lapis_ops::softmax(&c, 1)?;
//! assert_eq!(s.shape(), &[2, 3]);
//! # Ok::<(), lapis_ops::LapisError>(())
//! ```

pub mod checks;
pub mod counters;
pub mod covariance;
pub mod creation;
pub mod decay_scan;
pub mod device;
pub mod dtype;
pub mod elementwise;
pub mod error;
pub mod fft;
pub mod grouped;
pub mod index;
pub mod kinds;
pub mod laplace;
pub mod layout;
pub mod matmul;
pub mod optim;
pub mod reduce;
pub mod reference;
pub mod scalar;
pub mod scan;
pub mod softmax;
pub mod softtopk;
pub mod sort;
pub mod tensor;
pub mod timing;
mod validate;

pub use checks::{set_strict_checks, strict_checks};
pub use counters::{profile, set_profiling, Counters, PoolUsage, ProfileRow};
pub use covariance::{
    lcm_frobenius, lcm_frobenius_backward, LaplaceCovariance, LcmGrads, OuCovariance, OuNllGrads,
};
pub use creation::{arange, fill, normal, ones, uniform, zeros};
pub use cubecl;
pub use decay_scan::{decay_scan, decay_scan_complex, split_f64, DecayScan};
pub use device::{list_devices, Device, DeviceInfo, DeviceKind};
pub use dtype::{DType, Element};
pub use elementwise::{
    abs, add, add_scalar, affine, binary, binary_backward, broadcast_shape, div, exp, gelu, log,
    maximum, minimum, mul, mul_scalar, neg, pow, relu, sigmoid, sign, sqrt, sub, sum_to_shape,
    tanh, to_dtype, unary, unary_backward,
};
pub use error::{LapisError, Result};
pub use fft::{rfft, rfft_backward};
pub use grouped::{
    group_order, grouped_linear, grouped_linear_backward, GroupOrder, GroupedLinearGrads,
};
pub use index::{
    gather, gather_backward, index_add, index_add_backward, index_select, index_select_backward,
    scatter_add, scatter_add_backward,
};
pub use kinds::{BinaryOp, ReduceOp, UnaryOp};
pub use lapis_kernels;
pub use laplace::{
    laplace_apply, laplace_apply_backward, laplace_apply_backward_sorted, laplace_apply_heads,
    laplace_apply_heads_sorted, laplace_apply_phased, laplace_apply_phased_backward,
    laplace_apply_phased_backward_sorted, laplace_apply_phased_heads_sorted,
    laplace_apply_phased_sorted, laplace_apply_sorted, laplace_apply_split, laplace_gram,
    laplace_gram_backward, phase_real, phase_real_backward, LaplaceGrads, LaplaceSort,
};
pub use layout::{
    broadcast_to, broadcast_to_backward, concat, concat_backward, copy, permute, permute_backward,
    slice, slice_backward, transpose,
};
pub use matmul::{matmul, matmul_backward, matmul_t, matmul_t_backward};
pub use optim::{adam_update, AdamStep};
pub use reduce::{
    argmax, max, max_all, mean, mean_all, min, min_all, reduce, reduce_all, reduce_backward, sum,
    sum_all,
};
pub use scalar::Scalar;
pub use scan::{
    linear_scan, linear_scan_backward, linear_scan_complex, linear_scan_complex_backward,
};
pub use softmax::{log_softmax, log_softmax_backward, softmax, softmax_backward};
pub use softtopk::{
    soft_rank, soft_rank_backward, soft_rank_sorted, soft_sort, soft_sort_backward,
    soft_sort_sorted, soft_topk, soft_topk_backward, soft_topk_closed_form_threshold,
    soft_topk_truncated, soft_topk_truncated_bounded, RowParam, SoftRank, SoftSort, SoftTopK,
    SoftTopKGrads, SoftTopKTruncated,
};
pub use sort::{argsort, argsort_backward, argsort_rows, argsort_rows_backward};
pub use tensor::{contiguous_strides, Tensor};
