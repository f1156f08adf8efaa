//! # lapis-benches
//!
//! Criterion benches (`benches/`) and the `scale` binary (`src/bin/scale.rs`). The timing
//! helpers live in `lapis_ops::timing` so that the `lapis bench` CLI uses the same ones.

pub use lapis_ops::timing::{parse_sizes, time_op};
