//! # REMIX: data-free class-incremental learning with Laplace-covariance model inversion
//!
//! REMIX (official code `pkrukowski1/REMIX-Model-Inversion-via-Laplace-Kernel`, spec
//! `laplace-methods.md` §0, §2, §3 E4) plugs a Laplace covariance model (LCM) of each
//! BatchNorm layer's inputs into model-inversion data-free class-incremental learning
//! (PMI / R-DFCIL). lapis runs it on class-incremental digits.
//!
//! **Net** ([`Net`]): `64 → 128 (BN1d, ReLU) → 128 (BN1d, ReLU) →` linear head (growing:
//! a task-t model uses the first `2t` of 10 class columns). 5 tasks × 2 classes, class
//! order a per-seed permutation ([`task_data`]); Adam lr 1e-3, 60 epochs per task.
//!
//! **LCM fit** ([`LcmCorr`]), after each task on that task's real BN inputs `h` (C = 128):
//! empirical correlation `R_t`; blend `R = r_old·R_LCM,old + r_new·R_t`, `r_new =
//! n_new/n_seen`; Adam (lr 0.01, 200 steps over `a, w, ũ`) on `mean((R_LCM − R)²)`, where
//! `R_LCM = diag(u') + diag(w') K(a) diag(w')`, `K_ij = e^{−|a_i − a_j|}`,
//! `u' = u/(u + w²)`, `w' = w/√(u + w²)`, `u = softplus(ũ) + 1e-6`. `R_LCM` is built densely
//! on the host in f64 with exact analytic gradients (C = 128: 16 384 entries).
//!
//! **Inversion** ([`invert`]), before each task `t ≥ 2`, from the frozen teacher (model
//! after `t − 1`, eval mode): `150·n_old` samples, labels uniform over the old classes, one
//! mixed-class batch, `x̂ ~ N(0, I)` in standardised pixel space, Adam lr 0.05, loss
//!
//! `CE(teacher(x̂), y) + Σ_l(‖μ̂_l − μ_l‖² + ‖σ̂_l² − σ_l²‖²) + α_frob·L_LCM + 0.01·TV(8×8)`
//!
//! with `μ̂_l, σ̂_l²` the batch mean and (biased) variance of the BN inputs, `μ_l, σ_l²` the
//! teacher's running statistics, TV the anisotropic total variation summed per image and
//! averaged over images, and
//!
//! `L_LCM = mean_l mean_h ½(C log 2π + log det Σ_l + (h − μ_l)ᵀ Σ_l⁻¹ (h − μ_l)) / C`,
//! `Σ_l = diag(σ_l) R_LCM diag(σ_l) + 1e-5·I`, `σ_l² = running_var + 1e-5`,
//!
//! computed by `lapis_graph::Lcm::nll` with the correlation→covariance rewrite
//! `u'' = σ²u' + 1e-5`, `w'' = σw'` (exact O(C) per vector; the gradient reaches `x̂`).
//! Baseline: `α_frob = 0`.
//!
//! **Continual step** ([`continual`], PMI / R-DFCIL as spec §2): on `[real; synthetic]`
//! batches, `λ_ce·CE(new-class logits, real) + λ_ft·CE(head(detached features), all rows) +
//! λ_hkd·L1(old-class logits, teacher logits; synthetic) + λ_rkd·MSE(features, teacher
//! features; real)`, `κ = log2(n_new/2 + 1)`, `β = √(n_old/n_new)`, `λ_ce = 0.75(1+1/κ)/β`,
//! `λ_ft = 1.5(1+1/κ)/β`, `λ_hkd = 0.15κβ`, `λ_rkd = 0.5κβ` (added, as the spec says);
//! then head fine-tuning on `[real; synthetic]` with the body frozen.
//!
//! **Our choices \[D\]**: batch 64 real + 64 synthetic rows (drawn with replacement from
//! the buffer); a fresh Adam per task; head fine-tuning for `epochs/6` epochs; the LCM fit
//! warm-starts from the previous task's fit; the BN inputs for the fit and for the claim-5
//! evaluation are taken in eval mode.
//!
//! `lapis reproduce remix` ([`reproduce`]) runs REMIX, the baseline, joint training and
//! fine-tuning on seeds 1–3 after choosing α_frob on seed 0 with a validation split, and
//! checks claims 5–6 of spec §4.

mod continual;
mod invert;
mod lcm_fit;
mod net;
mod repro;

pub use continual::{continual, fit_lcms, run, task1, InvStats, Kind, RunConfig, RunResult, Start};
pub use invert::{
    invert, lcm_nll_term, teacher_targets, tv8, tv_matrix, InvConfig, InvProblem, Inverted,
    LayerTarget,
};
pub use lcm_fit::{
    cholesky, correlation, covariance, frobenius_distance, gaussian_ll_per_dim, FitLog, LcmCorr,
    JITTER, U_EPS,
};
pub use net::{
    epoch_batches, one_hot, step, task_data, train_ce, EvalOut, Frozen, Fwd, Net, Opt, Split,
    TaskData, CLASSES, D_IN, HIDDEN, PER_TASK,
};
pub use repro::{config as repro_config, reproduce, ALPHA_GRID, DEFAULT_CUT, EPOCHS, INV_STEPS};
