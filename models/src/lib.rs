//! # lapis-models
//!
//! The ten methods of lapis (SoftMoE, LAPLEX, CEDAR, REMIX, SoftSAE, DAVE, DIAMOND, EPIC,
//! ZEUS, CEC-MMR), built on `lapis-graph`, and the `lapis` command-line tool
//! (`src/main.rs`). The methods land with their issues; today this crate holds the CLI.

pub use lapis_graph;
pub use lapis_ops;
