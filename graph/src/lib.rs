//! # lapis-graph
//!
//! The tape-based autodiff layer of lapis (`Var`, `backward`, gradient checks, layers,
//! optimizers, safetensors checkpoints). It lands with its own issue; today it re-exports
//! the tensor layer it builds on.

pub use lapis_ops;
