//! # lapis-models
//!
//! The ten methods of lapis (SoftMoE, LAPLEX, CEDAR, REMIX, SoftSAE, DAVE, DIAMOND, EPIC,
//! ZEUS, CEC-MMR), built on `lapis-graph`, and the `lapis` command-line tool
//! (`src/main.rs`).
//!
//! Layout: a folder per method or engine (`laplace_engine/`, `softtopk_engine/`, and each
//! method as its issue lands: config, model, training and evaluation), on shared modules:
//!
//! - [`data`]: datasets, CSV and PNG loaders, standardisation, seeded shuffling batches,
//!   one-hot, the shipped data files;
//! - [`train`]: the one training loop (tape per step, loss, backward, clipping, optimizer
//!   and schedule, evaluation, metrics as JSON lines, checkpoints with exact resume);
//! - [`losses`]: cross-entropy, NLL, MSE, … each gradient-checked;
//! - [`reproduce`]: claims, reports, the three run sizes of `lapis reproduce`;
//! - [`plot`]: PNG plots with an embedded font; [`progress`]: progress bars or log lines;
//! - [`methods`]: the table the CLI registers methods from.

pub use lapis_graph;
pub use lapis_ops;

pub mod data;
pub mod losses;
pub mod methods;
pub mod minilm;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod train;

pub mod laplace_engine;
pub mod softtopk_engine;

pub mod cedar;
pub mod laplex;
pub mod remix;
pub mod softmoe;
pub mod softsae;
