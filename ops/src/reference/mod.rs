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

mod compare;
mod elementwise;
mod index;
mod layout;
mod matmul;
mod reduce;
mod softmax;
mod tensor;

#[cfg(test)]
mod tests;

pub use compare::{assert_close, max_rel_err};
pub use elementwise::{binary, binary_scalar, unary, unary_scalar};
pub use index::{gather, index_add, index_select, scatter_add};
pub use layout::{broadcast_to, concat, permute, reshape, slice, transpose};
pub use matmul::matmul;
pub use reduce::{argmax, reduce, reduce_all};
pub use softmax::{log_softmax, softmax};
pub use tensor::{arange, broadcast_shape, contiguous_strides, fill, RefTensor};
