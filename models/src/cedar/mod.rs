//! # CEDAR: an orthogonal rotation of embeddings with a top-k bottleneck
//!
//! Kubaty et al., *CEDAR* (arXiv 2605.22679): post-hoc interpretability of frozen
//! embeddings by a learned invertible map of the same dimension whose top-k bottleneck
//! concentrates meaning on few, nameable axes. The paper's code is not public and only its
//! abstract and summaries were read (`specs/sparse-methods.md` §3.1), so **everything below
//! is our design \[O\]** following spec §3.2; lapis is the first public implementation.
//!
//! ## Model
//!
//! For an embedding `x ∈ R^d` with train mean `μ`:
//!
//! ```text
//! u = x − μ,   z = Q u   (Q ∈ O(d), rows = axes),   h = z ⊙ m,   x̂ = Qᵀ h + μ
//! ```
//!
//! Since `Q` is orthogonal, `‖x − x̂‖ = ‖z − h‖` and cosines are preserved; with `m = 1`
//! (k = d) the map is exactly invertible. The mask `m` is
//! - the **hard per-row top-k** of `|z|` at evaluation and in the final training phase;
//! - during the **soft phase** the LapSum soft top-k `m = STK(|z|; k, α)` (`Var::soft_topk`:
//!   `m_i = F((|z_i| − b)/α)`, `Σ_i m_i = k`), an assumption: the paper's bottleneck may be
//!   hard top-k only.
//!
//! ## Loss and training
//!
//! `ℒ = Σ_b ‖z_b − h_b‖² / Σ_b ‖z_b‖² = Σ_b Σ_i (1 − m_bi)² z_bi² / Σ_b ‖z_b‖²` (the x-space
//! fraction of variance unexplained); option: the mean of `ℒ` over several k (e.g. {4, 8,
//! 16, 32}: one `Q` for the whole trade-off curve). Batch 512, Adam 1e-3, 2000 steps; α
//! from `0.5·rms(z)` to `0.01·rms(z)` geometrically over the first 60 % of the steps, then
//! the hard top-k ([`fit::FitConfig`]).
//!
//! Orthogonality, two ways:
//! - **Newton–Schulz retraction** (default): a free `W ∈ R^{d×d}` initialized with the
//!   PCA basis (covariance eigenvectors as rows, host f64 Jacobi, [`linalg`]; identity or
//!   random as ablations), an Adam step, then 3 iterations of `W ← 1.5 W − 0.5 W WᵀW` on
//!   the device outside the tape; `Q = W`. At the end a 2-step f64 polish on the host
//!   makes the stored `Q` orthogonal to f32 rounding (the device-only error is logged).
//! - **In-tape exponential**: `Q = exp(P − Pᵀ) Q₀` (`Q₀` the initial basis, `P` init 0)
//!   by scaling and squaring with a degree-10 Taylor series, matmuls only
//!   ([`model::expm_taylor`]), so the tape differentiates it.
//!
//! ## Naming axes
//!
//! For a vocabulary `V` of word embeddings `e_w`, `c_w = Q(e_w − μ)`; axis `j` is labelled
//! by `argmax_w |c_wj|/‖c_w‖` with its sign ([`Cedar::name_axes`]).
//!
//! ## Library use
//!
//! ```no_run
//! use lapis_models::cedar::{fit, Cedar, FitConfig};
//! use lapis_ops::Device;
//! # fn main() -> lapis_ops::Result<()> {
//! let dev = Device::auto()?;
//! let (x, _n, d) = lapis_models::data::read_embeddings("emb.safetensors".as_ref())?;
//! let (model, _log) = fit(&dev, &x, d, &FitConfig::default(), None)?;
//! let codes = model.encode_rows(&dev, &x, 16)?;      // 16 non-zeros per row
//! model.save("cedar.safetensors")?;
//! let again = Cedar::load(&dev, "cedar.safetensors")?;
//! # let _ = (codes, again); Ok(()) }
//! ```
//!
//! CLI: `lapis cedar fit --emb E.safetensors --out M.safetensors [--k 16 --steps 2000]`,
//! `lapis cedar encode --model M --emb E --out codes.safetensors`, `lapis cedar name-axes
//! --model M --vocab-emb words.safetensors --vocab words.txt`. `lapis reproduce cedar`
//! computes the claims C1–C5 of spec §3.4 ([`repro`]).

pub mod cli;
pub mod fit;
pub mod linalg;
pub mod model;
pub mod repro;

pub use fit::{cedar_loss, fit, fvu_loss, FitConfig, FitLog, Init, Param};
pub use model::{expm_taylor, newton_schulz, topk_mask, AxisNames, Cedar};

use lapis_ops::Result;

use crate::reproduce::{Context, Report};

/// `lapis reproduce cedar` (see [`repro`]).
pub fn reproduce(ctx: &Context) -> Result<Report> {
    repro::reproduce(ctx)
}

/// The `lapis cedar …` subcommand.
pub fn command() -> clap::Command {
    cli::command()
}

/// Runs `lapis cedar …`.
pub fn run(m: &clap::ArgMatches) -> Result<()> {
    cli::run(m)
}
