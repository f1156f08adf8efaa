//! f64 CPU reference implementations of every op: the oracles the property tests
//! compare the device kernels against.
//!
//! Everything here is written for clarity and obvious correctness, not speed: each op
//! is a direct transcription of its mathematical definition, computed in `f64` on a
//! dense row-major [`RefTensor`]. A test runs the device kernel (in f32, f16, …),
//! converts its output to `f64`, runs the reference on the same (converted) inputs and
//! compares the two with [`assert_close`] or [`max_rel_err`].
//!
//! # Conventions
//!
//! * Tensors are contiguous row-major: element `x[i_0, …, i_{r-1}]` lives at flat offset
//!   `Σ_d i_d · stride_d` with `stride_{r-1} = 1`, `stride_d = stride_{d+1} · shape_{d+1}`
//!   (see [`contiguous_strides`]). A rank-0 tensor (shape `[]`) holds one element.
//! * Broadcasting follows numpy: shapes are aligned on the right, missing leading dims
//!   count as 1, and two dims are compatible when equal or when one of them is 1 (the
//!   result takes the other; see [`broadcast_shape`]).
//! * Reductions along an axis keep that axis with length 1.
//! * Index tensors are `u32`, as on the device.
//! * Shape mismatches and out-of-range indices are preconditions: the functions
//!   `assert!` them with a message naming the op and the offending shapes, and document
//!   them in a `# Panics` section. Nothing else panics; in particular NaN and ±∞ inputs
//!   simply propagate as IEEE arithmetic dictates.
//!
//! # The ops
//!
//! | op | definition |
//! |----|------------|
//! | [`unary`] | `y_i = f(x_i)` for the [`UnaryOp`](crate::kinds::UnaryOp) `f` |
//! | [`binary`] | `z[p] = f(a[p↓a], b[p↓b])`, `p↓t` = `p` broadcast down to `t`'s shape |
//! | [`reduce`] | `y[…, 0, …] = R_{i} x[…, i, …]` for `R` ∈ {Σ, mean, max, min} |
//! | [`reduce_all`] | `y[0] = R_{all p} x[p]` |
//! | [`argmax`] | `y[…, 0, …] = min { i : x[…, i, …] = max_j x[…, j, …] }` |
//! | [`matmul`] | `c[β, i, j] = Σ_p a[β↓a, i, p] · b[β↓b, p, j]` |
//! | [`transpose`] / [`permute`] | `y[i] = x[j]` with `j[perm[d]] = i[d]` |
//! | [`reshape`] | same flat data, new shape |
//! | [`broadcast_to`] | `y[p] = x[p↓x]` |
//! | [`softmax`] | `y_i = e^{x_i − m} / Σ_j e^{x_j − m}`, `m = max_j x_j` |
//! | [`log_softmax`] | `y_i = x_i − m − ln Σ_j e^{x_j − m}` |
//! | [`gather`] | `y[p] = x[p with p[axis] := idx[p]]` |
//! | [`index_select`] | `y[…, j, …] = x[…, idx[j], …]` |
//! | [`index_add`] | `y[…, r, …] = Σ_{j: idx[j]=r} x[…, j, …]` (adjoint of index_select) |
//! | [`scatter_add`] | `y = base; y[p with p[axis] := idx[p]] += src[p]` |
//! | [`concat()`] | the inputs laid end to end along `axis` |
//! | [`slice()`] | `y[…, i, …] = x[…, start + i, …]`, `0 ≤ i < end − start` |
//! | [`fill`] | `y[p] = value` |
//! | [`arange`] | `y[i] = start + i · step` |
//! | [`argsort`] | stable ascending permutation, NaN last, −0 before +0 |
//! | [`rfft`] | `X_k = Σ_j x_j e^{−2πi jk/n}`, `k ≤ n/2` (definition, O(n²)) |
//! | [`linear_scan`] | `h_k = d_k h_{k∓1} + u_k`, forward or reverse, per channel |
//! | [`laplace_kernel`] | `K_ji = exp(−λ|t_j − s_i|)`, `λ = a + i·b`, as `(Re K, Im K)` |
//! | [`laplace_apply`] | `Y[j, :] = Σ_i exp(−λ|t_j − s_i|) V[i, :]`, as `(Re Y, Im Y)` |
//! | [`laplace_gram`] | `laplace_apply` with `t = s = x` |
//! | [`laplace_apply_grad`] | `V̄, s̄, t̄, ∂ℓ/∂a, ∂ℓ/∂b` of `ℓ = Σ Ḡr·Re Y + Σ Ḡi·Im Y` (`sgn(0) = 0`) |
//! | [`laplace_gram_grad`] | `V̄, x̄ = s̄ + t̄, ∂ℓ/∂a, ∂ℓ/∂b` in Gram mode |
//! | [`laplace_apply_sweep`] / [`laplace_apply_grad_sweep`] / [`laplace_gram_grad_sweep`] | the same three by O((n+m) log(n+m)) blocked sweeps (for large `n`) |
//! | [`finite_diff`] | `g_k = (f(x + h e_k) − f(x − h e_k)) / 2h` |
//! | [`cholesky`] | lower `L` with `L Lᵀ = A` (dense) |
//! | [`cholesky_solve`] / [`cholesky_logdet`] | `(L Lᵀ)⁻¹ b` / `2 Σ ln L_ii` |
//! | [`ou_cov_dense`] | `Σ_ij = σ_i σ_j exp(−λ|x_i − x_j|)` |
//! | [`ou_logdet`] | `2 Σ ln|σ_i| + Σ_k ln(1 − ρ_k²)`, `ρ_k = e^{−λΔ_k}` on sorted gaps (AR(1)) |
//! | [`ou_mahalanobis`] | `rᵀΣ⁻¹r = Σ e_k²`, AR(1) whitening of `r/σ` |
//! | [`ou_precision_tridiag`] | `Σ⁻¹ = D⁻¹ C⁻¹ D⁻¹`, tridiagonal in sorted order ([`OuPrecision`]) |
//! | [`ou_solve`] | `Σ⁻¹ r` via the tridiagonal precision |
//! | [`ou_sample`] | `v = σ ⊙ ζ`, `ζ_{k+1} = ρ_k ζ_k + √(1 − ρ_k²) ε_{k+1}` in sorted order |
//! | [`remix_cov_dense`] | `Σ = diag(u) + diag(w) K(a; λ) diag(w)` |
//! | [`remix_logdet`] / [`remix_solve`] / [`remix_mahalanobis`] | `log det Σ` / `Σ⁻¹ r` / `rᵀΣ⁻¹r` (dense Cholesky) |
//! | [`remix_nll`] | `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` |
//! | [`remix_frobenius_fit`] | `‖Σ − T‖_F²` |
//! | [`remix_frobenius_batch`] | `‖Σ − S‖_F² − ‖S‖_F²`, `S = VᵀV/B`, by the matvec formula |
//! | [`remix_cov_vjp`] | `ū, w̄, ā, λ̄` from `Σ̄ = ∂f/∂Σ` |
//! | `remix_*_grad` | `r̄, ū, w̄, ā, λ̄` of each REMIX objective ([`RemixGrads`]) |
//! | `remix_*_kalman` | the same values and gradients in O(d log d): Kalman filter on sorted anchors + its adjoint |
//! | [`remix_sample`] | `√u ⊙ ε₁ + w ⊙ ζ(ε₂)` |
//! | [`laplace_cdf`] / [`laplace_pdf`] | `F(x) = ½eˣ (x ≤ 0), 1 − ½e⁻ˣ (x > 0)` / `f = F′ = ½e^{−abs(x)}` |
//! | [`soft_topk_threshold`] | `b` with `Σ_i F((r_i − b)/α) = k` (closed form after a sort) |
//! | [`soft_topk`] | `p_i = F((r_i − b)/α)` per row of `[B, n]`, `Σ p = k` |
//! | [`soft_topk_backward`] | `∂r_i = (f_i/α)(g_i − ḡ)`, `∂k = ḡ`, `∂α` (implicit in `b`) |
//! | [`soft_topk_truncated`] | keep `p_i ≥ τ = clamp(c_τk/n, p_(m), p_(1))` among the top `m = min(⌈c_cap k⌉, n)` |
//! | [`soft_rank`] | `rank_i = ½ + Σ_j F((r_i − r_j)/α)` |
//! | [`soft_sort`] | `b_i` with `Σ_j F((b_i − r_j)/α) = i + ½` |
//! | [`hard_topk_mask`] | `1` at the `k` largest, ties to the lower index |

mod compare;
mod covariance;
mod covariance_kalman;
mod elementwise;
mod fft;
mod grouped;
mod index;
mod laplace;
mod laplace_sweep;
mod layout;
mod matmul;
mod optim;
mod reduce;
mod scan;
mod softmax;
mod softtopk;
mod sort;
mod tensor;

#[cfg(test)]
mod tests;

pub use compare::{assert_close, max_rel_err};
pub use covariance::{
    cholesky, cholesky_logdet, cholesky_solve, ou_cov_dense, ou_logdet, ou_mahalanobis,
    ou_precision_tridiag, ou_sample, ou_solve, remix_cov_dense, remix_cov_vjp,
    remix_frobenius_batch, remix_frobenius_batch_grad, remix_frobenius_fit,
    remix_frobenius_fit_grad, remix_logdet, remix_logdet_grad, remix_mahalanobis,
    remix_mahalanobis_grad, remix_nll, remix_nll_grad, remix_sample, remix_solve, remix_solve_grad,
    OuPrecision, RemixGrads, OU_ONE_MINUS_RHO2_FLOOR,
};
pub use covariance_kalman::{
    remix_logdet_grad_kalman, remix_logdet_kalman, remix_mahalanobis_grad_kalman,
    remix_mahalanobis_kalman, remix_nll_grad_kalman, remix_nll_kalman, remix_solve_grad_kalman,
    remix_solve_kalman, remix_tie_mean_kalman, with_device_tie_floor,
};
pub use elementwise::{binary, binary_scalar, unary, unary_scalar};
pub use fft::rfft;
pub use grouped::{grouped_linear, grouped_linear_backward};
pub use index::{gather, index_add, index_select, scatter_add};
pub use laplace::{
    finite_diff, laplace_apply, laplace_apply_grad, laplace_gram, laplace_gram_grad,
    laplace_kernel, LaplaceGrads, LaplaceGramGrads,
};
pub use laplace_sweep::{laplace_apply_grad_sweep, laplace_apply_sweep, laplace_gram_grad_sweep};
pub use layout::{broadcast_to, concat, permute, reshape, slice, transpose};
pub use matmul::matmul;
pub use optim::adam_step;
pub use reduce::{argmax, reduce, reduce_all};
pub use scan::linear_scan;
pub use softmax::{log_softmax, softmax};
pub use softtopk::{
    hard_topk_mask, laplace_cdf, laplace_pdf, soft_rank, soft_rank_backward, soft_sort,
    soft_sort_backward, soft_topk, soft_topk_backward, soft_topk_threshold,
    soft_topk_threshold_bisect, soft_topk_truncated, soft_topk_truncated_backward,
    soft_topk_truncated_dense,
};
pub use sort::{argsort, key_order};
pub use tensor::{arange, broadcast_shape, contiguous_strides, fill, RefTensor};
