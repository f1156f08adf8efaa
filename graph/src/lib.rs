//! # lapis-graph
//!
//! The tape-based autodiff layer of lapis:
//!
//! - [`var`]: [`Tape`], [`Var`], [`backward`] (reverse mode in topological order,
//!   accumulation for reused Vars, [`Var::detach`] and [`Tape::no_grad`], intermediate
//!   buffers freed as they are consumed, gradients for inputs as well as parameters);
//! - [`ops`]: every op of `lapis_ops` on the tape, each VJP next to its forward — the
//!   foundation ops, the Laplace operator (real and phased), the Laplace covariance model
//!   ([`Lcm`]) and the LapSum soft top-k family;
//! - [`gradcheck`]: device gradients of any graph function against central finite
//!   differences of its f64 reference;
//! - [`nn`]: the named parameter registry and the layers (LAPLEX included);
//! - [`optim`]: SGD with momentum, Adam/AdamW, clipping, warmup + cosine;
//! - [`checkpoint`]: named tensors as safetensors files, typed errors for broken files.
//!
//! It re-exports the tensor layer it builds on.

pub use lapis_ops;

pub mod checkpoint;
pub mod gradcheck;
pub mod ops;
pub mod var;

pub use ops::{Lcm, TruncatedVar};
pub use var::{backward, Grads, Tape, Var};
pub mod nn;
pub mod optim;
