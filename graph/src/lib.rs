//! # lapis-graph
//!
//! The tape-based autodiff layer of lapis (`Var`, `backward`, gradient checks, layers,
//! optimizers, safetensors checkpoints), landing piece by piece with issue 5. Today:
//! [`checkpoint`] (named tensors as safetensors files, typed errors for broken files); it
//! re-exports the tensor layer it builds on.

pub use lapis_ops;

pub mod checkpoint;
pub mod gradcheck;
pub mod ops;
pub mod var;

pub use ops::{Lcm, TruncatedVar};
pub use var::{backward, Grads, Tape, Var};
pub mod nn;
pub mod optim;
