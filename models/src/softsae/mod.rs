//! # SoftSAE: sparse autoencoders with an input-dependent number of active latents
//!
//! Stępień et al., "SoftSAE" (arXiv 2605.06610), following the official code
//! (github.com/St0pien/SoftSAE, `soft_sae_clip/soft_sae.py`, `dictionary_learning/trainers/
//! soft_sae.py`) as `specs/sparse-methods.md` §2 describes it.
//!
//! **Model** (input `x ∈ R^d`, dictionary size `F`):
//! - encoder `a = ReLU(W_enc(x − b_dec) + b_enc) ∈ R^F`;
//! - k-estimator, a separate MLP: `k̂(x) = clamp(k_max·σ(w₂ᵀ ReLU(W_k(x − b_dec) + b_k) + c), 1, F)`;
//! - soft phase: `w = STK(a; k̂(x), α)` per row (LapSum soft top-k, `Σ_i w_i = k̂(x)`), `f = a ⊙ w`;
//! - hard phase and inference: keep the `⌊k̂(x)⌋` largest entries of `a` (no gradient
//!   through the selection or `k̂`, as the official code);
//! - decoder `x̂ = W_dec f + b_dec`; L0 = `⌊k̂(x)⌋`, input-dependent.
//!
//! **Init** (official): decoder atoms random unit-norm, `W_enc = W_decᵀ`, `b_enc = 0`,
//! `W_k = W_enc`, `b_k = 0`, `(w₂, c)` uniform `±1/√F` (torch's `nn.Linear` default),
//! `b_dec` = geometric median of the first batch (Weiszfeld, ≤ 100 iterations, host f64).
//!
//! **Loss**: `ℒ = mean_b ‖x − x̂‖² + λ_k·softplus_β(mean_b k̂ − k_t) + λ_aux·L_auxK`,
//! `softplus_β(u) = ln(1 + e^{βu})/β` (β = 5, λ_k = 1, λ_aux = 1/32). The k-loss is
//! one-sided; the estimator's per-row gradient is the STK's `∂k = ḡ`. AuxK (Gao et al.
//! 2024): latents that have not fired (`Σ_b f_b > 0`) for `T_dead` samples are dead; the
//! `k_aux = d/2` largest dead activations reconstruct the detached residual `e = x − x̂`
//! through `W_dec` (no bias), divided by `Σ_b ‖e_b − ē‖²`.
//!
//! **Schedules**: `k_t` linear from `d` down to the target `k` over the first steps (config
//! A: 30), then constant; `α` linear `0.99 → 1e-4` (config A: over 300 steps, activation
//! units); hard phase the last steps (config A: 300; k-loss off; only `W_dec`, `b_dec` and,
//! through AuxK, the encoder rows of dead latents learn); Adam (0.9, 0.999); lr with linear
//! warmup, constant, linear decay to 0 (config A: warmup 100, decay from 2400 of 3000);
//! clip 1.0; before each step the decoder gradient's component along each atom is
//! removed, after it each atom is renormalised to unit norm.
//!
//! **TopK baseline** (Gao et al. 2024, the official `top_k.py`): the same model without the
//! k-estimator, `f` = the top-k entries of `a` (gradient through the kept values), the same
//! init, loss without the k term, the same schedule (k annealed from `d`).
//!
//! **Our choices \[O\]** (spec §2.3): the small experiment (MiniLM sentence embeddings of
//! the fortunes corpus, config A, data B of known complexity), `k_max = 32` for `k = 16`,
//! and how the hard top-k runs on the device: a row sort, the descending rank `r` of each
//! slot, the row threshold `t` = the smallest sorted value with `r ≤ k̂` (exact for integer
//! ranks, so `⌊k̂⌋` needs no floor op), `keep = [a ≥ t]` (ties at `t` are zeros of the
//! ReLU, which add nothing). A latent counts as fired when its code is > 0 in the batch,
//! for both models (the official TopK trainer also counts a selected index whose value is
//! 0; that differs only for rows with fewer than k positive activations). The step schedule is shifted by one against the official trainer (which updates
//! `k_t` and `α` after each step); in the hard phase the official code skips the encoder's
//! Adam update when no latent is dead (its gradient is `None`): we read that one flag per
//! hard-phase step to do the same.
//!
//! `lapis reproduce softsae` computes the claims S1–S5 of spec §2.4 ([`reproduce`]);
//! `lapis softsae fit|encode` fits a SoftSAE on a user's embeddings and encodes them.

mod model;
mod repro;

pub use model::{
    geometric_median, hard_topk_mask, train_topk_sae, EvalStats, Sae, SaeConfig, SaeKind, TopKSae,
    TrainLog,
};
pub use repro::{reproduce, spearman, stk_k_gradcheck};

use std::path::PathBuf;

use lapis_ops::{Device, LapisError, Result};

/// The `lapis softsae …` subcommand.
pub fn command() -> clap::Command {
    use clap::{value_parser, Arg, Command};
    let emb = || {
        Arg::new("emb")
            .long("emb")
            .required(true)
            .value_parser(value_parser!(PathBuf))
            .help("embeddings file (safetensors, tensor `embeddings` [N, d], e.g. from `lapis embed`)")
    };
    let out = || {
        Arg::new("out")
            .long("out")
            .required(true)
            .value_parser(value_parser!(PathBuf))
    };
    Command::new("softsae")
        .about("SoftSAE: sparse autoencoder with an input-dependent number of active latents")
        .subcommand_required(true)
        .subcommand(
            Command::new("fit")
                .about("fit a SoftSAE (or a TopK SAE) on embeddings; the rows are centred and scaled as spec §2.3")
                .arg(emb())
                .arg(out().help("model file to write (safetensors)"))
                .arg(Arg::new("latents").long("latents").default_value("1536").value_parser(value_parser!(usize)))
                .arg(Arg::new("k").long("k").default_value("16").value_parser(value_parser!(usize)))
                .arg(Arg::new("steps").long("steps").default_value("3000").value_parser(value_parser!(usize)))
                .arg(Arg::new("batch").long("batch").default_value("256").value_parser(value_parser!(usize)))
                .arg(Arg::new("seed").long("seed").default_value("0").value_parser(value_parser!(u64)))
                .arg(Arg::new("topk").long("topk").action(clap::ArgAction::SetTrue).help("train the TopK baseline instead"))
                .arg(Arg::new("quiet").long("quiet").action(clap::ArgAction::SetTrue)),
        )
        .subcommand(
            Command::new("encode")
                .about("encode embeddings with a fitted model: codes [N, F] and k̂ [N]")
                .arg(Arg::new("model").long("model").required(true).value_parser(value_parser!(PathBuf)))
                .arg(emb())
                .arg(out().help("codes file to write (safetensors: `codes`, `k_hat`)")),
        )
}

/// Runs `lapis softsae …`.
pub fn run(m: &clap::ArgMatches) -> Result<()> {
    match m.subcommand() {
        Some(("fit", a)) => repro::cli_fit(
            a.get_one::<PathBuf>("emb").expect("required"),
            a.get_one::<PathBuf>("out").expect("required"),
            *a.get_one::<usize>("latents").expect("default"),
            *a.get_one::<usize>("k").expect("default"),
            *a.get_one::<usize>("steps").expect("default"),
            *a.get_one::<usize>("batch").expect("default"),
            *a.get_one::<u64>("seed").expect("default"),
            a.get_flag("topk"),
            a.get_flag("quiet"),
        ),
        Some(("encode", a)) => repro::cli_encode(
            a.get_one::<PathBuf>("model").expect("required"),
            a.get_one::<PathBuf>("emb").expect("required"),
            a.get_one::<PathBuf>("out").expect("required"),
        ),
        _ => Err(LapisError::invalid(
            "softsae",
            "command",
            "",
            "use `lapis softsae fit` or `lapis softsae encode`",
        )),
    }
}

fn device() -> Result<Device> {
    Device::auto()
}
