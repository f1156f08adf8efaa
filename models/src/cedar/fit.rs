//! Fitting CEDAR's orthogonal basis (spec §3.2, our design \[O\]): the soft phase with the
//! LapSum soft top-k bottleneck on `|z|`, then the hard phase with the per-row top-k mask,
//! both minimizing the x-space FVU `Σ‖z − h‖²/Σ‖z‖²` (optionally its mean over several k);
//! `Q` kept orthogonal by a Newton–Schulz retraction after each Adam step, or
//! parameterized in the tape as `Q = exp(P − Pᵀ) Q₀`.

use std::time::Instant;

use lapis_graph::optim::Adam;
use lapis_graph::{backward, Tape, Var};
use lapis_ops::{self as ops, DType, Device, LapisError, Result, Tensor};
use serde::Serialize;

use super::linalg;
use super::model::{check_rows, expm_squarings, expm_taylor, newton_schulz, topk_mask, Cedar};
use crate::data::Batches;
use crate::progress::Progress;

/// The starting basis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The PCA basis of the training rows (host f64 Jacobi), the default.
    Pca,
    /// The identity (ablation).
    Identity,
    /// A seeded random orthogonal basis.
    Random,
}

impl Init {
    /// Parses `pca`, `identity` or `random`.
    pub fn parse(s: &str) -> Result<Init> {
        match s {
            "pca" => Ok(Init::Pca),
            "identity" => Ok(Init::Identity),
            "random" => Ok(Init::Random),
            _ => Err(LapisError::invalid(
                "cedar fit",
                "init",
                s,
                "must be pca, identity or random",
            )),
        }
    }
}

/// How orthogonality is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Param {
    /// A free `W`, Adam, then `ns_steps` Newton–Schulz retractions after every step (the
    /// default).
    NewtonSchulz,
    /// `Q = exp(P − Pᵀ) Q₀` in the tape (scaling and squaring, Taylor degree 10), `P` init 0.
    Expm,
}

/// The fitting configuration (defaults: spec §3.2).
#[derive(Clone, Debug, Serialize)]
pub struct FitConfig {
    /// The sparsities of the loss: one (`[16]`, the default) or several (the loss is the
    /// mean over them: one `Q` for the whole trade-off curve). The model's `k` is the first.
    pub ks: Vec<usize>,
    /// Optimizer steps.
    pub steps: usize,
    /// Rows per step.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Starting basis.
    pub init: Init,
    /// Orthogonality mechanism.
    pub param: Param,
    /// Newton–Schulz retractions after each step.
    pub ns_steps: usize,
    /// Fraction of the steps in the soft phase (the rest is hard top-k).
    pub soft_frac: f64,
    /// α at the first step, in units of `rms(z)`.
    pub alpha_start: f64,
    /// α at the end of the soft phase, in units of `rms(z)`.
    pub alpha_end: f64,
    /// Seed of the batch order (and of a random init).
    pub seed: u64,
    /// Training loss read back every this many steps.
    pub log_every: usize,
    /// Final f64 Newton–Schulz polish on the host (2 steps) so `Q` is orthogonal to f32
    /// rounding.
    pub polish: bool,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            ks: vec![16],
            steps: 2000,
            batch: 512,
            lr: 1e-3,
            init: Init::Pca,
            param: Param::NewtonSchulz,
            ns_steps: 3,
            soft_frac: 0.6,
            alpha_start: 0.5,
            alpha_end: 0.01,
            seed: 0,
            log_every: 20,
            polish: true,
            quiet: true,
        }
    }
}

/// What a fit measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FitLog {
    /// `(step, training loss)` every `log_every` steps (soft loss in the soft phase, hard
    /// after).
    pub loss: Vec<(usize, f64)>,
    /// `(step, held-out hard FVU at the first k)` when an evaluation set was given.
    pub eval: Vec<(usize, f64)>,
    /// The first hard step.
    pub hard_from: usize,
    /// `rms(z)` of the training rows (α's unit).
    pub rms_z: f64,
    /// `max|QᵀQ − I|` of the trained f32 basis before the host polish.
    pub orth_err_device: f64,
    /// Wall time of the steps, seconds.
    pub wall_s: f64,
}

impl FitConfig {
    fn validate(&self, d: usize, n: usize) -> Result<()> {
        const OP: &str = "cedar::fit";
        if self.ks.is_empty() || self.ks.iter().any(|&k| k == 0 || k >= d) {
            return Err(LapisError::invalid(
                OP,
                "k",
                &self.ks,
                format!("every k must be in 1..{d} (k = d keeps everything: nothing to fit)"),
            ));
        }
        if self.batch == 0 || self.batch > n {
            return Err(LapisError::invalid(
                OP,
                "batch",
                self.batch,
                format!("must be in 1..={n} (the number of training rows)"),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(LapisError::invalid(OP, "lr", self.lr, "must be > 0"));
        }
        if !(0.0..=1.0).contains(&self.soft_frac) {
            return Err(LapisError::invalid(
                OP,
                "soft_frac",
                self.soft_frac,
                "must be in [0, 1]",
            ));
        }
        if !(self.alpha_start > 0.0 && self.alpha_end > 0.0) {
            return Err(LapisError::invalid(
                OP,
                "alpha",
                (self.alpha_start, self.alpha_end),
                "must be > 0",
            ));
        }
        Ok(())
    }

    /// α (absolute) at `step` of the soft phase: geometric from `alpha_start·rms` to
    /// `alpha_end·rms` over the soft steps (\[O\]: the spec gives the end points only).
    pub fn alpha_at(&self, step: usize, soft_steps: usize, rms: f64) -> f64 {
        let t = if soft_steps <= 1 {
            1.0
        } else {
            step as f64 / (soft_steps - 1) as f64
        };
        rms * self.alpha_start * (self.alpha_end / self.alpha_start).powf(t.min(1.0))
    }
}

/// The FVU loss of a batch of codes `z` (`[B, d]` Var) with bottleneck weights `m`
/// (`[B, d]`, soft or a constant hard mask): `Σ((1 − m) ⊙ z)² / Σz²`.
pub fn fvu_loss(z: &Var, m: &Var) -> Result<Var> {
    let r = z.mul(&m.affine(-1.0, 1.0)?)?;
    r.mul(&r)?.sum_all()?.div(&z.mul(z)?.sum_all()?)
}

/// The training loss at one step: the mean over `ks` of [`fvu_loss`] with the soft top-k
/// of `|z|` at temperature `alpha` (`Some`) or the hard top-k mask (`None`).
pub fn cedar_loss(z: &Var, ks: &[usize], alpha: Option<f32>) -> Result<Var> {
    let mut total: Option<Var> = None;
    let a = if alpha.is_some() {
        Some(z.abs()?)
    } else {
        None
    };
    for &k in ks {
        let m = match (alpha, &a) {
            (Some(al), Some(a)) => a.soft_topk(k as f32, al)?,
            _ => z.constant(topk_mask(z.value(), k)?),
        };
        let l = fvu_loss(z, &m)?;
        total = Some(match total {
            Some(t) => t.add(&l)?,
            None => l,
        });
    }
    total
        .ok_or_else(|| LapisError::invalid("cedar_loss", "ks", ks, "must not be empty"))?
        .mul_scalar(1.0 / ks.len() as f32)
}

/// Fits CEDAR on `x` (`n × d` host rows, f32): returns the model (`k = ks[0]`) and the log.
/// `eval` (host rows of the same `d`) is scored (hard FVU at `ks[0]`) at every log step.
pub fn fit(
    dev: &Device,
    x: &[f32],
    d: usize,
    cfg: &FitConfig,
    eval: Option<&[f32]>,
) -> Result<(Cedar, FitLog)> {
    check_rows("cedar::fit", x, d)?;
    if let Some(e) = eval {
        check_rows("cedar::fit (eval)", e, d)?;
    }
    let n = x.len() / d;
    cfg.validate(d, n)?;
    let mean = linalg::column_mean(x, d);
    let q0: Vec<f64> = match cfg.init {
        Init::Pca => linalg::symmetric_eigen(&linalg::covariance(x, d, &mean), d)?.1,
        Init::Identity => {
            let mut q = vec![0.0; d * d];
            (0..d).for_each(|i| q[i * d + i] = 1.0);
            q
        }
        Init::Random => linalg::random_orthogonal(d, cfg.seed ^ 0xCEDA),
    };
    // Centred training rows on the device, once.
    let mut u = x.to_vec();
    for row in u.chunks_mut(d) {
        for (v, m) in row.iter_mut().zip(&mean) {
            *v = (f64::from(*v) - m) as f32;
        }
    }
    let rms = (u.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / u.len() as f64).sqrt();
    let u_dev = Tensor::from_slice(dev, &[n, d], &u)?;
    drop(u);
    let f32v = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let q0_dev = Tensor::from_slice(dev, &[d, d], &f32v(&q0))?;
    // The parameter: W (Newton–Schulz) or P (expm).
    let mut w = match cfg.param {
        Param::NewtonSchulz => q0_dev.clone(),
        Param::Expm => ops::zeros(dev, &[d, d], DType::F32)?,
    };
    let mut opt = Adam::new(cfg.lr);
    let batches = Batches::new(n, cfg.batch, cfg.seed)?.drop_last(true)?;
    let soft_steps = ((cfg.steps as f64) * cfg.soft_frac).round() as usize;
    let mut log = FitLog {
        hard_from: soft_steps,
        rms_z: rms,
        ..FitLog::default()
    };
    let mut bar = Progress::new("cedar fit", cfg.steps as u64, cfg.quiet);
    let mut squarings = 0u32;
    let start = Instant::now();
    let basis = |w: &Tensor, s: u32| -> Result<Tensor> {
        match cfg.param {
            Param::NewtonSchulz => Ok(w.clone()),
            Param::Expm => {
                let t = Tape::new();
                let p = t.constant(w.clone());
                let a = p.sub(&p.transpose(0, 1)?)?;
                Ok(ops::matmul(expm_taylor(&a, s, 10)?.value(), &q0_dev)?)
            }
        }
    };
    for (step, st) in batches.from_step(0).take(cfg.steps).enumerate() {
        let idx: Vec<u32> = st.rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_slice(dev, &[idx.len()], &idx)?;
        let ub = ops::index_select(&u_dev, 0, &idx)?;
        let alpha = (step < soft_steps).then(|| cfg.alpha_at(step, soft_steps, rms) as f32);
        if cfg.param == Param::Expm && step % 50 == 0 {
            // ‖P − Pᵀ‖_F read back every 50 steps; one extra squaring of margin.
            let a = ops::sub(&w, &ops::transpose(&w, 0, 1)?)?;
            let f = f64::from(ops::sum_all(&ops::mul(&a, &a)?)?.to_scalar()?).sqrt();
            squarings = expm_squarings(f) + 1;
        }
        let tape = Tape::new();
        let wv = tape.leaf(w.clone());
        let q = match cfg.param {
            Param::NewtonSchulz => wv.clone(),
            Param::Expm => {
                let a = wv.sub(&wv.transpose(0, 1)?)?;
                expm_taylor(&a, squarings, 10)?.matmul(&tape.constant(q0_dev.clone()))?
            }
        };
        let z = tape.constant(ub).matmul_t(&q, false, true)?;
        let loss = cedar_loss(&z, &cfg.ks, alpha)?;
        let grads = backward(&loss)?;
        let g = grads
            .get(&wv)
            .cloned()
            .ok_or_else(|| LapisError::invalid("cedar::fit", "W", "", "received no gradient"))?;
        let loss_t = loss.value().clone();
        drop((grads, loss, z, q, wv, tape));
        opt.step(&mut [&mut w], &[g])?;
        if cfg.param == Param::NewtonSchulz {
            w = newton_schulz(&w, cfg.ns_steps)?;
        }
        let last = step + 1 == cfg.steps;
        if step % cfg.log_every.max(1) == 0 || last {
            let l = f64::from(loss_t.to_scalar()?);
            if !l.is_finite() {
                return Err(LapisError::invalid(
                    "cedar::fit",
                    "lr",
                    cfg.lr,
                    format!(
                        "the loss diverged (non-finite) at step {step}; lower the learning rate"
                    ),
                ));
            }
            log.loss.push((step, l));
            if let Some(e) = eval {
                let qf = basis(&w, squarings)?.to_f32_vec()?;
                let m = Cedar::new(dev, qf, f32v(&mean), cfg.ks[0])?;
                log.eval.push((step, m.fvu(dev, e, cfg.ks[0])?));
            }
            bar.set(step as u64 + 1, &format!("loss {l:.4}"));
        }
    }
    log.wall_s = start.elapsed().as_secs_f64();
    bar.finish(&format!("{} steps in {:.1} s", cfg.steps, log.wall_s));
    let qf: Vec<f64> = basis(&w, squarings)?
        .to_f32_vec()?
        .into_iter()
        .map(f64::from)
        .collect();
    log.orth_err_device = linalg::orthogonality_error(&qf, d);
    let qf = if cfg.polish {
        linalg::newton_schulz_f64(&qf, d, 2)
    } else {
        qf
    };
    let mut model = Cedar::from_f64(dev, &qf, &mean, cfg.ks[0])?;
    model.info = serde_json::to_string(cfg).unwrap_or_default();
    Ok((model, log))
}
