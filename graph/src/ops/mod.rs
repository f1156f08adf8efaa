//! Every op of [`lapis_ops`] on the tape, grouped as the ops crate groups them. Each
//! records the op's forward and, as its closure, the op's backward function from
//! `lapis_ops` (where every VJP is a plain function next to its forward); only
//! composites that exist on the tape alone (softplus, the phase φ of the phased Laplace
//! operator, the `[2, …]` stacking of two-output ops) add their own few lines. Ops are methods of [`Var`](crate::Var) (multi-input ops
//! without a natural receiver, such as [`Var::concat`](crate::Var::concat) and
//! [`Var::linear_scan`](crate::Var::linear_scan), are associated functions); ops whose
//! result is an index (argmax, the permutation of a sort) return plain tensors, since an
//! index has no gradient. Ops with two real outputs (complex scan, rfft) return them stacked on a new
//! leading axis of length 2.
//!
//! Scalar arguments (soft top-k's `k` and `α`, the Laplace rates and phase, the LCM's `λ`)
//! take an `f32`, a `&Tensor` or a `&Var`: see [`ScalarArg`].
//!
//! Gradient checks for every op, against central finite differences of the f64 reference
//! ([`crate::gradcheck`]), are in `graph/tests/gradcheck.rs`.

pub mod covariance;
mod elementwise;
mod fft;
mod index;
mod laplace;
mod layout;
mod matmul;
mod reduce;
pub mod scalar;
mod scan;
mod softmax;
pub mod softtopk;
mod sort;

pub use covariance::Lcm;
pub use scalar::ScalarArg;
pub use softtopk::TruncatedVar;
