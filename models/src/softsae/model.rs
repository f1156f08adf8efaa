//! The SoftSAE and TopK-SAE models, their loss, their training loop and their evaluation
//! (the math is in the parent module's docs).

// `usize::is_multiple_of` is newer than the crate's rust-version (1.85).
#![allow(clippy::manual_is_multiple_of)]

use std::path::Path;
use std::time::Instant;

use lapis_graph::checkpoint;
use lapis_graph::nn::{Param, ParamVars, Params};
use lapis_graph::optim::{clip_grad_norm, Adam, Optimizer};
use lapis_graph::{backward, Tape, Var};
use lapis_ops::{self as ops, DType, Device, LapisError, Result, Tensor};
use serde::Serialize;

use crate::data::{Batches, Preprocess, SplitMix64};
use crate::progress::Progress;

/// Which sparse autoencoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SaeKind {
    /// SoftSAE: per-input `k̂(x)` from the k-estimator, soft then hard top-k.
    Soft,
    /// TopK SAE (Gao et al. 2024): a fixed `k` per row, hard top-k throughout.
    TopK,
}

impl SaeKind {
    /// `softsae` or `topk`.
    pub fn name(self) -> &'static str {
        match self {
            SaeKind::Soft => "softsae",
            SaeKind::TopK => "topk",
        }
    }
}

/// Training configuration (spec §2.2, config A of §2.3 by [`SaeConfig::config_a`]).
#[derive(Clone, Debug, Serialize)]
pub struct SaeConfig {
    /// Dictionary size `F`.
    pub latents: usize,
    /// Target `k` (SoftSAE: the budget of the k-loss; TopK: the fixed k).
    pub k: usize,
    /// `k_max` of the k-estimator (`k̂ = clamp(k_max·σ(·), 1, F)`).
    pub k_max: f32,
    /// Batch size.
    pub batch: usize,
    /// Steps in all.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warmup steps.
    pub warmup: usize,
    /// Linear decay to 0 from this step to the end.
    pub decay_start: usize,
    /// `k_t` goes linearly from the input width `d` down to `k` over this many steps.
    pub k_anneal: usize,
    /// Soft top-k temperature at step 0 (activation units).
    pub alpha_start: f32,
    /// Temperature after the anneal.
    pub alpha_end: f32,
    /// Steps of the linear temperature anneal.
    pub alpha_anneal: usize,
    /// SoftSAE's hard phase: steps `s > steps − hard_steps` use the hard top-⌊k̂⌋ (no
    /// gradient through the selection) and no k-loss.
    pub hard_steps: usize,
    /// A latent silent for this many samples is dead (AuxK).
    pub t_dead: usize,
    /// `λ_k` of the k-loss.
    pub lambda_k: f32,
    /// `β` of the k-loss softplus.
    pub beta: f32,
    /// `λ_aux` of AuxK.
    pub lambda_aux: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
}

impl SaeConfig {
    /// Config A of spec §2.3: F = 1536, k = 16, k_max = 32, batch 256, 3000 steps, lr
    /// 6.5e-4, warmup 100, k-anneal 30, α 0.99 → 1e-4 over 300, hard phase the last 300,
    /// decay from 2400, T_dead = 50k samples, λ_k = 1, β = 5, λ_aux = 1/32, clip 1.
    pub fn config_a(seed: u64) -> SaeConfig {
        SaeConfig {
            latents: 1536,
            k: 16,
            k_max: 32.0,
            batch: 256,
            steps: 3000,
            lr: 6.5e-4,
            warmup: 100,
            decay_start: 2400,
            k_anneal: 30,
            alpha_start: 0.99,
            alpha_end: 1e-4,
            alpha_anneal: 300,
            hard_steps: 300,
            t_dead: 50_000,
            lambda_k: 1.0,
            beta: 5.0,
            lambda_aux: 1.0 / 32.0,
            clip: 1.0,
            seed,
        }
    }

    /// The same schedule with `steps` steps: every step count (warmup, anneals, hard
    /// phase, decay start) scaled by `steps / self.steps` (each ≥ 1).
    pub fn with_steps(&self, steps: usize) -> SaeConfig {
        let f = steps as f64 / self.steps.max(1) as f64;
        let sc = |n: usize| ((n as f64 * f).round() as usize).max(1);
        SaeConfig {
            steps,
            warmup: sc(self.warmup),
            decay_start: sc(self.decay_start).min(steps),
            k_anneal: sc(self.k_anneal),
            alpha_anneal: sc(self.alpha_anneal),
            hard_steps: if self.hard_steps == 0 {
                0
            } else {
                sc(self.hard_steps)
            },
            ..self.clone()
        }
    }

    /// The learning rate of step `s` (dictionary_learning's `get_lr_schedule`: linear
    /// warmup `(s+1)/warmup`, constant, linear decay to 0 from `decay_start`).
    pub fn lr_at(&self, s: usize) -> f32 {
        let f = if s < self.warmup {
            (s + 1) as f32 / self.warmup as f32
        } else if s >= self.decay_start && self.steps > self.decay_start {
            (self.steps - s) as f32 / (self.steps - self.decay_start) as f32
        } else {
            1.0
        };
        self.lr * f
    }

    /// `k_t` at step `s` for input width `d`: `⌊d(1 − r) + k r⌋`, `r = min(s, K)/K`.
    pub fn k_target_at(&self, s: usize, d: usize) -> usize {
        let r = s.min(self.k_anneal) as f64 / self.k_anneal.max(1) as f64;
        let v = (d.max(self.k) as f64) * (1.0 - r) + self.k as f64 * r;
        (v.floor() as usize).clamp(1, self.latents)
    }

    /// The soft top-k temperature at step `s`.
    pub fn alpha_at(&self, s: usize) -> f32 {
        let r = s.min(self.alpha_anneal) as f32 / self.alpha_anneal.max(1) as f32;
        self.alpha_start + (self.alpha_end - self.alpha_start) * r
    }

    /// Whether step `s` is in SoftSAE's hard phase.
    pub fn is_hard(&self, s: usize) -> bool {
        self.hard_steps > 0 && s + self.hard_steps > self.steps
    }

    /// Checks every field (typed error naming the first bad one).
    pub fn validate(&self, dim: usize) -> Result<()> {
        let bad = |arg: &'static str, v: String, msg: &str| {
            Err(LapisError::invalid("SaeConfig", arg, v, msg.to_string()))
        };
        if dim == 0 {
            return bad("dim", "0".into(), "the input width must be ≥ 1");
        }
        if self.latents < 2 {
            return bad("latents", self.latents.to_string(), "must be ≥ 2");
        }
        if self.k == 0 || self.k >= self.latents {
            return bad(
                "k",
                self.k.to_string(),
                &format!("must be in 1..{} (the dictionary size)", self.latents),
            );
        }
        if !(self.k_max.is_finite() && self.k_max >= 1.0) {
            return bad("k_max", self.k_max.to_string(), "must be finite and ≥ 1");
        }
        if self.batch == 0 || self.steps == 0 {
            return bad(
                "batch/steps",
                format!("{}/{}", self.batch, self.steps),
                "must be ≥ 1",
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "must be finite and > 0");
        }
        let ok = |a: f32| a.is_finite() && a > 0.0;
        if !(ok(self.alpha_start) && ok(self.alpha_end)) {
            return bad(
                "alpha",
                format!("{} → {}", self.alpha_start, self.alpha_end),
                "temperatures must be finite and > 0",
            );
        }
        if self.warmup == 0 {
            return bad("warmup", "0".into(), "must be ≥ 1");
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad("clip", self.clip.to_string(), "must be finite and > 0");
        }
        Ok(())
    }
}

/// Handles of the k-estimator's parameters.
#[derive(Clone, Copy, Debug)]
struct KEst {
    w_k: Param,
    b_k: Param,
    w2: Param,
    c: Param,
}

/// A trained (or initialised) sparse autoencoder: SoftSAE or TopK SAE.
///
/// Parameters: `w_enc [d, F]`, `b_enc [F]`, `w_dec [F, d]` (rows = dictionary atoms, unit
/// norm), `b_dec [d]`; SoftSAE adds the k-estimator `w_k [d, F]`, `b_k [F]`, `w2 [F, 1]`,
/// `c [1]`.
pub struct Sae {
    /// Which model.
    pub kind: SaeKind,
    /// Input width `d`.
    pub dim: usize,
    /// Dictionary size `F`.
    pub latents: usize,
    /// Target k (TopK: the k of every row).
    pub k: usize,
    /// `k_max` of the k-estimator (SoftSAE).
    pub k_max: f32,
    params: Params,
    w_enc: Param,
    b_enc: Param,
    w_dec: Param,
    b_dec: Param,
    kest: Option<KEst>,
    /// `[1, F]`: `F, F−1, …, 1` (descending rank of each slot of an ascending row sort).
    ranks: Tensor,
}

/// What training returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrainLog {
    /// `(step, loss, mse, mean k̂ of the batch, dead latents)` at every logged step.
    pub log: Vec<(usize, f64, f64, f64, f64)>,
    /// Wall time of the loop, seconds.
    pub wall_s: f64,
}

/// Held-out evaluation of an SAE (inference path: hard top-k).
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalStats {
    /// `Σ‖x − x̂‖² / Σ‖x − x̄‖²` (x̄: the mean of the evaluated rows).
    pub fvu: f64,
    /// Mean L0 = mean `⌊k̂⌋` (TopK: k).
    pub mean_l0: f64,
    /// Mean count of nonzero codes per row (≤ L0: ReLU zeros inside the top-k).
    pub mean_nnz: f64,
    /// `k̂(x)` per row (TopK: k).
    pub k_hat: Vec<f32>,
}

fn unit_rows(dev: &Device, t: &Tensor) -> Result<Tensor> {
    let n = ops::sqrt(&ops::sum(&ops::mul(t, t)?, 1)?)?;
    let n = ops::maximum(&n, &ops::fill(dev, &[1, 1], 1e-12, DType::F32)?)?;
    ops::div(t, &n)
}

/// The geometric median of the rows of `x` (`n × d`) by Weiszfeld's iteration in f64: start
/// at the mean, at most `iters` steps, stop when the update moves < `tol` (as the official
/// code: weights `1/‖x_i − m‖`, normalised).
pub fn geometric_median(x: &[f32], d: usize, iters: usize, tol: f64) -> Vec<f32> {
    let n = x.len().checked_div(d).unwrap_or(0);
    if n == 0 {
        return vec![0.0; d];
    }
    let mut m = vec![0f64; d];
    for r in x.chunks_exact(d) {
        for (mj, &v) in m.iter_mut().zip(r) {
            *mj += v as f64 / n as f64;
        }
    }
    for _ in 0..iters {
        let mut num = vec![0f64; d];
        let mut den = 0f64;
        for r in x.chunks_exact(d) {
            let dist = r
                .iter()
                .zip(&m)
                .map(|(&v, &mj)| (v as f64 - mj).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            let w = 1.0 / dist;
            den += w;
            for (nj, &v) in num.iter_mut().zip(r) {
                *nj += w * v as f64;
            }
        }
        let new: Vec<f64> = num.iter().map(|v| v / den).collect();
        let moved = new
            .iter()
            .zip(&m)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        m = new;
        if moved < tol {
            break;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// The hard top-k mask of each row of `a [B, F]` with a per-row `k [B]` (f32, ≥ 0; the
/// mask keeps the `⌊k_b⌋` largest entries of row b): sort each row ascending, slot `j`
/// has descending rank `r_j = F − j`; the row's threshold `t_b` is the smallest sorted
/// value with `r_j ≤ k_b` (exact for integer ranks, so `⌊k⌋` needs no floor op), and the
/// mask is `[a ≥ t_b]`. Entries tied with `t_b` are all kept (for ReLU codes the ties are
/// zeros, which add nothing to `a ⊙ mask`). No gradient.
pub fn hard_topk_mask(a: &Tensor, k: &Tensor) -> Result<Tensor> {
    let (b, f) = match a.shape() {
        [b, f] => (*b, *f),
        s => return Err(LapisError::shape("hard_topk_mask", s, "`a` must be [B, F]")),
    };
    if k.shape() != [b] {
        return Err(LapisError::shape(
            "hard_topk_mask",
            k.shape(),
            format!("`k` must be [{b}] (one per row)"),
        ));
    }
    let dev = a.device();
    let ranks = ops::arange(dev, f as f32, -1.0, f, DType::F32)?.reshape(&[1, f])?;
    mask_with_ranks(a, k, &ranks)
}

/// Large enough to exclude a slot from the threshold's min (codes are O(1)–O(100)).
const EXCLUDE: f32 = 1e30;

fn mask_with_ranks(a: &Tensor, k: &Tensor, ranks: &Tensor) -> Result<Tensor> {
    let b = a.shape()[0];
    let (sorted, _) = ops::argsort_rows(a)?;
    // drop_j = 1 where r_j > k_b (not kept), else 0.
    let drop = ops::sign(&ops::relu(&ops::sub(ranks, &k.reshape(&[b, 1])?)?)?)?;
    let t = ops::min(&ops::add(&sorted, &ops::mul_scalar(&drop, EXCLUDE)?)?, 1)?;
    // keep = 1 − sign(relu(t − a)) = [a ≥ t].
    ops::affine(&ops::sign(&ops::relu(&ops::sub(&t, a)?)?)?, -1.0, 1.0)
}

impl Sae {
    /// A fresh model with the official initialisation (spec §2.1): random unit-norm
    /// decoder atoms, `W_enc = W_decᵀ`, `b_enc = 0`, SoftSAE: `W_k = W_enc`, `b_k = 0`,
    /// `(w₂, c)` uniform ±1/√F; `b_dec = 0` until [`Sae::init_b_dec`].
    pub fn new(dev: &Device, kind: SaeKind, dim: usize, cfg: &SaeConfig) -> Result<Sae> {
        cfg.validate(dim)?;
        let f = cfg.latents;
        let mut rng = SplitMix64::stream(cfg.seed, 0x5ae);
        let w_dec = unit_rows(dev, &ops::normal(dev, &[f, dim], 0.0, 1.0, rng.next_u64())?)?;
        let w_enc = ops::copy(&ops::transpose(&w_dec, 0, 1)?)?;
        let mut params = Params::new();
        let w_enc_h = params.add("w_enc", w_enc.clone())?;
        let b_enc = params.add("b_enc", ops::zeros(dev, &[f], DType::F32)?)?;
        let w_dec_h = params.add("w_dec", w_dec)?;
        let b_dec = params.add("b_dec", ops::zeros(dev, &[dim], DType::F32)?)?;
        let kest = match kind {
            SaeKind::TopK => None,
            SaeKind::Soft => {
                let bound = 1.0 / (f as f32).sqrt();
                Some(KEst {
                    w_k: params.add("w_k", ops::copy(&w_enc)?)?,
                    b_k: params.add("b_k", ops::zeros(dev, &[f], DType::F32)?)?,
                    w2: params.add(
                        "w2",
                        ops::uniform(dev, &[f, 1], -bound, bound, rng.next_u64())?,
                    )?,
                    c: params.add("c", ops::uniform(dev, &[1], -bound, bound, rng.next_u64())?)?,
                })
            }
        };
        Ok(Sae {
            kind,
            dim,
            latents: f,
            k: cfg.k,
            k_max: cfg.k_max,
            params,
            w_enc: w_enc_h,
            b_enc,
            w_dec: w_dec_h,
            b_dec,
            kest,
            ranks: ops::arange(dev, f as f32, -1.0, f, DType::F32)?.reshape(&[1, f])?,
        })
    }

    /// The parameters (names `w_enc`, `b_enc`, `w_dec`, `b_dec`, and SoftSAE's `w_k`,
    /// `b_k`, `w2`, `c`).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Sets `b_dec` to the geometric median of `x` (`n × d` rows, host).
    pub fn init_b_dec(&mut self, dev: &Device, x: &[f32]) -> Result<()> {
        let m = geometric_median(x, self.dim, 100, 1e-5);
        self.params
            .set(self.b_dec, Tensor::from_slice(dev, &[self.dim], &m)?)
    }

    /// `a = ReLU((x − b_dec) W_enc + b_enc)`, `[B, F]`.
    pub fn acts(&self, v: &ParamVars, x: &Var) -> Result<Var> {
        x.sub(v.get(self.b_dec)?)?
            .matmul(v.get(self.w_enc)?)?
            .add(v.get(self.b_enc)?)?
            .relu()
    }

    /// `k̂(x) = clamp(k_max σ(w₂ᵀ ReLU((x − b_dec) W_k + b_k) + c), 1, F)`, `[B]`
    /// (TopK: the constant k).
    pub fn k_hat(&self, v: &ParamVars, x: &Var) -> Result<Var> {
        let b = x.shape()[0];
        let Some(ke) = self.kest else {
            return Ok(x.constant(ops::fill(
                x.value().device(),
                &[b],
                self.k as f32,
                DType::F32,
            )?));
        };
        let dev = x.value().device();
        let h = x
            .sub(v.get(self.b_dec)?)?
            .matmul(v.get(ke.w_k)?)?
            .add(v.get(ke.b_k)?)?
            .relu()?;
        let s = h.matmul(v.get(ke.w2)?)?.add(v.get(ke.c)?)?;
        let k = s.sigmoid()?.mul_scalar(self.k_max)?;
        let lo = x.constant(ops::fill(dev, &[1, 1], 1.0, DType::F32)?);
        let hi = x.constant(ops::fill(dev, &[1, 1], self.latents as f32, DType::F32)?);
        k.maximum(&lo)?.minimum(&hi)?.reshape(&[b])
    }

    /// `x̂ = f W_dec + b_dec`.
    pub fn decode(&self, v: &ParamVars, f: &Var) -> Result<Var> {
        f.matmul(v.get(self.w_dec)?)?.add(v.get(self.b_dec)?)
    }

    /// Inference codes of `x [B, d]` (device): `(f [B, F], k̂ [B])`, hard top-⌊k̂⌋ (SoftSAE)
    /// or top-k (TopK) of `a`.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let tape = Tape::new();
        let v = self.params.constants_on(&tape);
        let xv = tape.constant(x.clone());
        let a = self.acts(&v, &xv)?;
        let k = self.k_hat(&v, &xv)?;
        let mask = mask_with_ranks(a.value(), k.value(), &self.ranks)?;
        Ok((ops::mul(a.value(), &mask)?, k.value().clone()))
    }

    /// Evaluates reconstruction on host rows `x` (`n × d`) in chunks of 512 rows.
    pub fn evaluate(&self, dev: &Device, x: &[f32]) -> Result<EvalStats> {
        let d = self.dim;
        if x.is_empty() || x.len() % d != 0 {
            return Err(LapisError::invalid(
                "Sae::evaluate",
                "x",
                format!("{} values", x.len()),
                format!("needs ≥ 1 row of {d} values"),
            ));
        }
        let n = x.len() / d;
        let mut mean = vec![0f64; d];
        for r in x.chunks_exact(d) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64 / n as f64;
            }
        }
        let den: f64 = x
            .chunks_exact(d)
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(&v, m)| (v as f64 - m).powi(2))
                    .sum::<f64>()
            })
            .sum();
        let (mut num, mut nnz) = (0f64, 0f64);
        let mut k_hat = Vec::with_capacity(n);
        for c0 in (0..n).step_by(512) {
            let c1 = (c0 + 512).min(n);
            let xt = Tensor::from_slice(dev, &[c1 - c0, d], &x[c0 * d..c1 * d])?;
            let (f, k) = self.encode(&xt)?;
            let tape = Tape::new();
            let v = self.params.constants_on(&tape);
            let xh = self.decode(&v, &tape.constant(f.clone()))?;
            let e = ops::sub(&xt, xh.value())?;
            num += ops::sum_all(&ops::mul(&e, &e)?)?.to_scalar()? as f64;
            nnz += ops::sum_all(&ops::sign(&f)?)?.to_scalar()? as f64;
            k_hat.extend(k.to_f32_vec()?);
        }
        let mean_l0 = k_hat.iter().map(|&k| k.floor() as f64).sum::<f64>() / n as f64;
        Ok(EvalStats {
            fvu: num / den.max(1e-30),
            mean_l0,
            mean_nnz: nnz / n as f64,
            k_hat,
        })
    }

    /// Trains on host rows `x` (`n × d`, already preprocessed) with `cfg` (spec §2.2; see
    /// the module docs): `b_dec` from the geometric median of the first batch, then
    /// `cfg.steps` Adam steps with the decoder-gradient projection, clipping and column
    /// renormalisation. `label` names the progress display.
    pub fn train(
        &mut self,
        dev: &Device,
        x: &[f32],
        cfg: &SaeConfig,
        quiet: bool,
        label: &str,
    ) -> Result<TrainLog> {
        cfg.validate(self.dim)?;
        let d = self.dim;
        if x.is_empty() || x.len() % d != 0 {
            return Err(LapisError::invalid(
                "Sae::train",
                "x",
                format!("{} values", x.len()),
                format!("needs ≥ 1 row of {d} values"),
            ));
        }
        let n = x.len() / d;
        let batch = cfg.batch.min(n);
        let batches = Batches::new(n, batch, cfg.seed ^ 0xba7c)?.drop_last(true)?;
        let xall = Tensor::from_slice(dev, &[n, d], x)?;
        // b_dec: geometric median of the first batch.
        let (_, first) = batches.at_step(0);
        let fx: Vec<f32> = first
            .iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect();
        self.init_b_dec(dev, &fx)?;
        let names: Vec<String> = self.params.names().iter().map(|s| s.to_string()).collect();
        let mut opts: Vec<Adam> = names.iter().map(|_| Adam::new(cfg.lr)).collect();
        let f = self.latents;
        let mut counts = ops::zeros(dev, &[f], DType::F32)?;
        let k_aux = (d / 2).max(1);
        let k_aux_t = ops::fill(dev, &[batch], k_aux as f32, DType::F32)?;
        let mut log = TrainLog::default();
        let mut bar = Progress::new(label, cfg.steps as u64, quiet);
        let log_every = (cfg.steps / 50).max(1);
        let t0 = Instant::now();
        let enc_idx = [self.w_enc.index(), self.b_enc.index()];
        for step in 0..cfg.steps {
            let (_, rows) = batches.at_step(step as u64);
            let idx: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
            let idx = Tensor::from_slice(dev, &[batch], &idx)?;
            let xb_t = ops::index_select(&xall, 0, &idx)?;
            let hard = self.kind == SaeKind::Soft && cfg.is_hard(step);
            let tape = Tape::new();
            let v = self.params.on_tape(&tape);
            let xb = tape.constant(xb_t);
            let a = self.acts(&v, &xb)?;
            let k_t = cfg.k_target_at(step, d);
            let (fcode, khat, fired) = match self.kind {
                SaeKind::TopK => {
                    let kk = ops::fill(dev, &[batch], k_t as f32, DType::F32)?;
                    let mask = mask_with_ranks(a.value(), &kk, &self.ranks)?;
                    let fc = a.mul(&tape.constant(mask))?;
                    let fired = ops::sign(&ops::sum(fc.value(), 0)?)?;
                    (fc, None, fired)
                }
                SaeKind::Soft if hard => {
                    // The official hard phase: selection and k̂ without gradient.
                    let kv = tape.no_grad(|| self.k_hat(&v, &xb))?;
                    let mask = mask_with_ranks(a.value(), kv.value(), &self.ranks)?;
                    let fc = tape.constant(ops::mul(a.value(), &mask)?);
                    let fired = ops::sign(&ops::sum(fc.value(), 0)?)?;
                    (fc, Some(kv), fired)
                }
                SaeKind::Soft => {
                    let kv = self.k_hat(&v, &xb)?;
                    let w = a.soft_topk(&kv, cfg.alpha_at(step))?;
                    let fc = a.mul(&w)?;
                    let fired = ops::sign(&ops::sum(fc.value(), 0)?)?;
                    (fc, Some(kv), fired)
                }
            };
            let xh = self.decode(&v, &fcode)?;
            let e = xb.sub(&xh)?;
            let mse = e.mul(&e)?.sum_all()?.mul_scalar(1.0 / batch as f32)?;
            // Dead-latent tracking (samples since each latent last fired).
            counts = ops::mul(
                &ops::add_scalar(&counts, batch as f32)?,
                &ops::affine(&fired.reshape(&[f])?, -1.0, 1.0)?,
            )?;
            let dead = ops::affine(
                &ops::sign(&ops::relu(&ops::affine(&counts, -1.0, cfg.t_dead as f32)?)?)?,
                -1.0,
                1.0,
            )?;
            // The official code skips AuxK when no latent is dead (then, in the hard phase,
            // the encoder has no gradient and Adam leaves it alone): read the count (one
            // scalar per step) to do the same, and to skip AuxK's row sort.
            let n_dead = ops::sum_all(&dead)?.to_scalar()?;
            let use_aux = n_dead > 0.0;
            let mut loss = mse.clone();
            if use_aux {
                let aux = self.auxk(&v, &a, e.value(), &dead, &k_aux_t)?;
                loss = loss.add(&aux.mul_scalar(cfg.lambda_aux)?)?;
            }
            if let (Some(kv), false) = (&khat, hard) {
                let kl = kv
                    .mean_all()?
                    .add_scalar(-(k_t as f32))?
                    .mul_scalar(cfg.beta)?
                    .softplus()?
                    .mul_scalar(cfg.lambda_k / cfg.beta)?;
                loss = loss.add(&kl)?;
            }
            let g = backward(&loss)?;
            let mut present: Vec<usize> = Vec::new();
            let mut grads: Vec<Tensor> = Vec::new();
            for (i, var) in v.iter().enumerate() {
                if hard && !use_aux && enc_idx.contains(&i) {
                    continue;
                }
                if let Some(t) = g.get(var) {
                    present.push(i);
                    grads.push(t.clone());
                }
            }
            // Remove the decoder-gradient component parallel to each atom.
            let wd_i = self.w_dec.index();
            if let Some(p) = present.iter().position(|&i| i == wd_i) {
                let w = self.params.get(self.w_dec)?;
                let gd = &grads[p];
                let dot = ops::sum(&ops::mul(gd, w)?, 1)?;
                grads[p] = ops::sub(gd, &ops::mul(&dot, w)?)?;
            }
            let norm = clip_grad_norm(&mut grads, cfg.clip)?;
            let lr = cfg.lr_at(step);
            {
                let mut ts = self.params.tensors_mut();
                for (gi, &i) in present.iter().enumerate() {
                    opts[i].set_lr(lr);
                    opts[i].step(&mut [&mut *ts[i]], std::slice::from_ref(&grads[gi]))?;
                }
            }
            let wn = unit_rows(dev, self.params.get(self.w_dec)?)?;
            self.params.set(self.w_dec, wn)?;
            let done = step + 1;
            if done % log_every == 0 || done == cfg.steps {
                let l = loss.value().to_scalar()? as f64;
                let m = mse.value().to_scalar()? as f64;
                let km = match &khat {
                    Some(kv) => ops::mean_all(kv.value())?.to_scalar()? as f64,
                    None => k_t as f64,
                };
                let nd = n_dead as f64;
                let _ = norm;
                if !l.is_finite() {
                    return Err(LapisError::invalid(
                        "Sae::train",
                        "loss",
                        l,
                        format!("the loss is not finite at step {step} (lr {lr})"),
                    ));
                }
                log.log.push((step, l, m, km, nd));
                bar.set(
                    done as u64,
                    &format!("loss {l:.4} mse {m:.4} k̂ {km:.2} dead {nd:.0}"),
                );
            }
        }
        log.wall_s = t0.elapsed().as_secs_f64();
        bar.finish(&format!("{:.1} s", log.wall_s));
        Ok(log)
    }

    /// AuxK (Gao et al. 2024): the `k_aux` largest activations among dead latents
    /// reconstruct the detached residual `e` through `W_dec` (no bias), normalised by
    /// `Σ_b ‖e_b − ē‖²` (called only when some latent is dead).
    fn auxk(
        &self,
        v: &ParamVars,
        a: &Var,
        e: &Tensor,
        dead: &Tensor,
        k_aux: &Tensor,
    ) -> Result<Var> {
        let a_dead = ops::mul(a.value(), dead)?;
        let sel = ops::mul(&mask_with_ranks(&a_dead, k_aux, &self.ranks)?, dead)?;
        let acts = a.mul(&a.constant(sel))?;
        let rec = acts.matmul(v.get(self.w_dec)?)?;
        let ev = a.constant(e.clone());
        let r = ev.sub(&rec)?;
        let num = r.mul(&r)?.sum_all()?;
        let ec = ops::sub(e, &ops::mean(e, 0)?)?;
        let den = ops::maximum(
            &ops::sum_all(&ops::mul(&ec, &ec)?)?.reshape(&[1])?,
            &ops::fill(e.device(), &[1], 1e-30, DType::F32)?,
        )?;
        num.div(&a.constant(den))
    }

    /// Saves the parameters and the model's settings (safetensors metadata), with the
    /// input preprocessing `pre` when given (tensor `pre.mean`, metadata `pre.scale`).
    pub fn save(&self, path: &Path, pre: Option<&Preprocess>) -> Result<()> {
        let mut named: Vec<(&str, &Tensor)> = self.params.iter().collect();
        let mut meta = std::collections::BTreeMap::new();
        let mean_t;
        if let Some(p) = pre {
            mean_t = Tensor::from_slice(self.ranks.device(), &[p.mean.len()], &p.mean)?;
            named.push(("pre.mean", &mean_t));
            meta.insert("lapis.softsae.pre_scale".to_string(), p.scale.to_string());
        }
        meta.insert(
            "lapis.softsae.kind".to_string(),
            self.kind.name().to_string(),
        );
        meta.insert("lapis.softsae.k".to_string(), self.k.to_string());
        meta.insert("lapis.softsae.k_max".to_string(), self.k_max.to_string());
        checkpoint::save_with_metadata(path, &named, &meta)
    }

    /// Loads a model written by [`Sae::save`], with its preprocessing if it has one.
    pub fn load(dev: &Device, path: &Path) -> Result<(Sae, Option<Preprocess>)> {
        let (tensors, meta) = checkpoint::load_with_metadata(path, dev)?;
        let fmt = |msg: String| LapisError::Format {
            what: format!("{}", path.display()),
            msg,
        };
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| fmt(format!("no tensor `{name}`: not a lapis SAE model")))
        };
        let kind = match meta.get("lapis.softsae.kind").map(String::as_str) {
            Some("softsae") => SaeKind::Soft,
            Some("topk") => SaeKind::TopK,
            other => {
                return Err(fmt(format!(
                    "bad or missing `lapis.softsae.kind`: {other:?}"
                )))
            }
        };
        let parse = |key: &str| -> Result<f64> {
            meta.get(key)
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| fmt(format!("bad or missing `{key}`")))
        };
        let w_dec = get("w_dec")?;
        let (f, d) = match w_dec.shape() {
            [f, d] => (*f, *d),
            s => return Err(fmt(format!("`w_dec` has shape {s:?}, want [F, d]"))),
        };
        let mut cfg = SaeConfig::config_a(0);
        cfg.latents = f;
        cfg.k = (parse("lapis.softsae.k")? as usize).clamp(1, f - 1);
        cfg.k_max = parse("lapis.softsae.k_max")? as f32;
        let mut sae = Sae::new(dev, kind, d, &cfg)?;
        for h in sae.params.handles() {
            let name = sae.params.name(h)?.to_string();
            let t = get(&name)?;
            sae.params.set(h, t).map_err(|e| fmt(e.to_string()))?;
        }
        let pre = match (get("pre.mean"), meta.get("lapis.softsae.pre_scale")) {
            (Ok(m), Some(s)) => Some(Preprocess {
                mean: m.to_f32_vec()?,
                scale: s
                    .parse()
                    .map_err(|_| fmt(format!("bad `lapis.softsae.pre_scale` {s:?}")))?,
            }),
            _ => None,
        };
        Ok((sae, pre))
    }
}

/// The TopK-SAE baseline as a library call (used by CEDAR's C3 baseline).
pub struct TopKSae {
    /// The trained model.
    pub sae: Sae,
    /// Its training log.
    pub log: TrainLog,
}

/// Trains a TopK SAE on host rows `x_train` (`n × dim`, preprocessed by the caller) with
/// `latents` atoms and `k` per row for `steps` steps: config A's schedule (spec §2.3)
/// scaled to `steps` (k annealed from `dim` down to `k` over the first 1%, warmup, decay
/// from 80%), lr `2e-4/√(F/2^14)`, batch 256, AuxK with T_dead = 50k samples.
#[allow(clippy::too_many_arguments)]
pub fn train_topk_sae(
    dev: &Device,
    x_train: &[f32],
    dim: usize,
    latents: usize,
    k: usize,
    steps: usize,
    seed: u64,
    quiet: bool,
) -> Result<TopKSae> {
    let mut cfg = SaeConfig::config_a(seed).with_steps(steps);
    cfg.latents = latents;
    cfg.k = k;
    cfg.hard_steps = 0;
    cfg.lr = 2e-4 / (latents as f32 / 16384.0).sqrt();
    let mut sae = Sae::new(dev, SaeKind::TopK, dim, &cfg)?;
    let log = sae.train(dev, x_train, &cfg, quiet, &format!("topk-sae k={k}"))?;
    Ok(TopKSae { sae, log })
}

impl TopKSae {
    /// FVU `Σ‖x − x̂‖² / Σ‖x − x̄‖²` on host rows `x` (`n × dim`).
    pub fn fvu(&self, dev: &Device, x: &[f32]) -> Result<f64> {
        Ok(self.sae.evaluate(dev, x)?.fvu)
    }
}
