//! The four runs of E4 on one seed: REMIX (and its α_frob = 0 baseline), joint training and
//! fine-tuning without replay, all continuing from one shared task-1 model.

use lapis_ops::{Device, Result, Tensor};
use serde::Serialize;

use super::invert::{invert, teacher_targets, InvConfig, Inverted};
use super::lcm_fit::{correlation, frobenius_distance, gaussian_ll_per_dim, FitLog, LcmCorr};
use super::net::{
    epoch_batches, one_hot, step, train_ce, Net, Opt, Split, TaskData, D_IN, HIDDEN, PER_TASK,
};
use crate::data::SplitMix64;
use lapis_graph::nn::BnMode;

/// Settings of a run (spec §3 E4, scaled by the reproduction's size).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RunConfig {
    /// Tasks (2 classes each; spec: 5).
    pub tasks: usize,
    /// Epochs per task (spec: 60).
    pub epochs: usize,
    /// Head fine-tuning epochs after each continual step.
    pub ft_epochs: usize,
    /// Real batch (the synthetic batch has the same size).
    pub batch: usize,
    /// Adam learning rate (spec: 1e-3).
    pub lr: f32,
    /// The inversion.
    pub inv: InvConfig,
    /// LCM fit: Adam steps (spec: 200).
    pub lcm_steps: usize,
    /// LCM fit: learning rate (spec: 0.01).
    pub lcm_lr: f64,
}

/// Which run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Kind {
    /// REMIX with `α_frob` (0: the baseline).
    Remix(f32),
    /// Joint training on all data seen so far (upper bound).
    Joint,
    /// Fine-tuning on each task's data only (lower bound).
    Finetune,
}

/// The shared start: the model after task 1 and the LCMs fitted on task 1.
#[derive(Clone)]
pub struct Start {
    /// The model after task 1.
    pub net: Net,
    /// Per-layer LCM correlation fits after task 1.
    pub lcm: [LcmCorr; 2],
    /// Those fits' logs.
    pub fit: [FitLog; 2],
    /// Accuracy on task 1's held-out rows.
    pub acc: f64,
}

/// Claim-5 measurements at one inversion (teacher = the model after task `task − 1`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct InvStats {
    /// The task the buffer is generated for (2-based).
    pub task: usize,
    /// Held-out real BN inputs of the old classes: mean log-likelihood (nats/dim) under
    /// `diag(σ)R_LCM diag(σ) + 1e-5·I`, per layer.
    pub ll_lcm: [f64; 2],
    /// The same under `diag(σ²)`.
    pub ll_diag: [f64; 2],
    /// `‖R_syn − R_real‖_F` per layer (teacher BN inputs of the buffer vs of the real
    /// training rows of the old classes).
    pub frob: [f64; 2],
    /// Inversion loss at the first and last step.
    pub loss: (f64, f64),
    /// The teacher's accuracy on its own synthetic buffer.
    pub teacher_acc: f64,
}

/// What a run returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    /// `acc[t][j]`: accuracy on task j's held-out rows after task t (over all seen classes).
    pub acc: Vec<Vec<f64>>,
    /// Accuracy on all held-out rows of the seen classes after each task.
    pub avg: Vec<f64>,
    /// Inversion measurements (REMIX runs).
    pub inv: Vec<InvStats>,
    /// LCM fits after each task, task 1's included (REMIX runs).
    pub fits: Vec<[FitLog; 2]>,
    /// The last synthetic buffer (REMIX runs).
    #[serde(skip)]
    pub last_buffer: Option<Inverted>,
}

/// BN inputs of `net` (eval mode) on `x`, per layer.
fn bn_inputs(dev: &Device, net: &Net, x: &[f32]) -> Result<[Vec<f32>; 2]> {
    let out = net.eval_host(dev, x, 1)?;
    Ok(out.h)
}

/// Fits the LCMs of `net` on `data` (its BN inputs in eval mode), blending with the previous
/// fit: `R = r_old·R_LCM,old + r_new·R_t`, `r_new = n_new/n_seen` (1 on task 1), warm start
/// from `prev`.
pub fn fit_lcms(
    dev: &Device,
    net: &Net,
    data: &Split,
    prev: Option<&[LcmCorr; 2]>,
    r_new: f64,
    cfg: &RunConfig,
) -> Result<([LcmCorr; 2], [FitLog; 2])> {
    let h = bn_inputs(dev, net, &data.x)?;
    let mut out = [LcmCorr::init(HIDDEN), LcmCorr::init(HIDDEN)];
    let mut logs = [FitLog::default(); 2];
    for l in 0..2 {
        let rt = correlation(&h[l], HIDDEN);
        let target: Vec<f64> = match prev {
            Some(p) => {
                let old = p[l].corr();
                old.iter()
                    .zip(&rt)
                    .map(|(o, n)| (1.0 - r_new) * o + r_new * n)
                    .collect()
            }
            None => rt,
        };
        let mut m = prev.map_or_else(|| LcmCorr::init(HIDDEN), |p| p[l].clone());
        logs[l] = m.fit(&target, cfg.lcm_steps, cfg.lcm_lr);
        out[l] = m;
    }
    Ok((out, logs))
}

/// Trains the model on task 1 (CE over its 2 classes) and fits the first LCMs.
pub fn task1(dev: &Device, data: &TaskData, cfg: &RunConfig, seed: u64) -> Result<Start> {
    let mut net = Net::new(dev, seed)?;
    let mut opt = Opt::new(cfg.lr);
    let t1 = data.train.classes(0, PER_TASK as u32);
    train_ce(
        dev,
        &mut net,
        &mut opt,
        &t1,
        PER_TASK,
        cfg.epochs,
        cfg.batch,
        seed ^ 0x7a5c,
    )?;
    let (lcm, fit) = fit_lcms(dev, &net, &t1, None, 1.0, cfg)?;
    let acc = net.accuracy(dev, &data.test.classes(0, PER_TASK as u32), PER_TASK)?;
    Ok(Start { net, lcm, fit, acc })
}

/// Per-task accuracies of `net` after task `t` (0-based) over `2(t+1)` classes.
fn evaluate(dev: &Device, net: &Net, data: &TaskData, t: usize) -> Result<(Vec<f64>, f64)> {
    let n_seen = PER_TASK * (t + 1);
    let mut per = Vec::with_capacity(t + 1);
    for j in 0..=t {
        let s = data
            .test
            .classes((PER_TASK * j) as u32, (PER_TASK * (j + 1)) as u32);
        per.push(net.accuracy(dev, &s, n_seen)?);
    }
    let all = net.accuracy(dev, &data.test.classes(0, n_seen as u32), n_seen)?;
    Ok((per, all))
}

/// Claim-5 statistics of a teacher with its LCM fits and its buffer.
fn inv_stats(
    dev: &Device,
    teacher: &Net,
    lcm: &[LcmCorr; 2],
    targets: &[super::invert::LayerTarget; 2],
    data: &TaskData,
    n_old: usize,
    buf: &Inverted,
) -> Result<InvStats> {
    let held = data.test.classes(0, n_old as u32);
    let real = data.train.classes(0, n_old as u32);
    let hh = bn_inputs(dev, teacher, &held.x)?;
    let hr = bn_inputs(dev, teacher, &real.x)?;
    let hs = bn_inputs(dev, teacher, &buf.x)?;
    let mut st = InvStats {
        loss: (buf.loss_start, buf.loss_end),
        teacher_acc: buf.teacher_acc,
        ..InvStats::default()
    };
    for l in 0..2 {
        let t = &targets[l];
        let cov = lcm[l].covariance(&t.host_var);
        st.ll_lcm[l] = gaussian_ll_per_dim(&hh[l], HIDDEN, &t.host_mean, &cov).unwrap_or(f64::NAN);
        let mut diag = vec![0.0; HIDDEN * HIDDEN];
        for i in 0..HIDDEN {
            diag[i * HIDDEN + i] = t.host_var[i];
        }
        st.ll_diag[l] =
            gaussian_ll_per_dim(&hh[l], HIDDEN, &t.host_mean, &diag).unwrap_or(f64::NAN);
        st.frob[l] = frobenius_distance(&correlation(&hs[l], HIDDEN), &correlation(&hr[l], HIDDEN));
    }
    Ok(st)
}

/// Runs tasks 2..T of `kind` from `start`. `progress(label)` is called once per epoch and per
/// inversion step.
pub fn run(
    dev: &Device,
    data: &TaskData,
    start: &Start,
    kind: Kind,
    cfg: &RunConfig,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<RunResult> {
    let mut net = start.net.clone();
    let mut lcm = start.lcm.clone();
    let mut res = RunResult::default();
    let (per, all) = evaluate(dev, &net, data, 0)?;
    res.acc.push(per);
    res.avg.push(all);
    if let Kind::Remix(_) = kind {
        res.fits.push(start.fit);
    }
    for t in 1..cfg.tasks {
        let n_old = PER_TASK * t;
        let n_seen = n_old + PER_TASK;
        let task = data.train.classes(n_old as u32, n_seen as u32);
        let tseed = seed ^ ((t as u64) << 20) ^ 0x5eed;
        let mut opt = Opt::new(cfg.lr);
        match kind {
            Kind::Finetune => {
                for e in 0..cfg.epochs {
                    train_ce(
                        dev,
                        &mut net,
                        &mut opt,
                        &task,
                        n_seen,
                        1,
                        cfg.batch,
                        tseed ^ e as u64,
                    )?;
                    progress("finetune");
                }
            }
            Kind::Joint => {
                let seen = data.train.classes(0, n_seen as u32);
                for e in 0..cfg.epochs {
                    train_ce(
                        dev,
                        &mut net,
                        &mut opt,
                        &seen,
                        n_seen,
                        1,
                        cfg.batch,
                        tseed ^ e as u64,
                    )?;
                    progress("joint");
                }
            }
            Kind::Remix(alpha) => {
                let teacher = net.clone();
                let targets = teacher_targets(dev, &teacher, Some(&lcm))?;
                let inv_cfg = InvConfig { alpha, ..cfg.inv };
                let label = if alpha > 0.0 {
                    "remix invert"
                } else {
                    "baseline invert"
                };
                let buf = invert(dev, &teacher, n_old, &targets, &inv_cfg, tseed, || {
                    progress(label)
                })?;
                res.inv
                    .push(inv_stats(dev, &teacher, &lcm, &targets, data, n_old, &buf)?);
                if let Some(s) = res.inv.last_mut() {
                    s.task = t + 1;
                }
                continual(
                    dev, &mut net, &teacher, &task, &buf, n_old, cfg, tseed, progress,
                )?;
                // LCM fit on this task's real BN inputs, blended with the old fit.
                let (m, logs) = fit_lcms(
                    dev,
                    &net,
                    &task,
                    Some(&lcm),
                    PER_TASK as f64 / n_seen as f64,
                    cfg,
                )?;
                lcm = m;
                res.fits.push(logs);
                res.last_buffer = Some(buf);
            }
        }
        let (per, all) = evaluate(dev, &net, data, t)?;
        res.acc.push(per);
        res.avg.push(all);
    }
    Ok(res)
}

/// The REMIX/PMI continual step on one task, then head fine-tuning (spec §2):
/// `λ_ce·CE_local + λ_ft·CE_ft + λ_hkd·L1 + λ_rkd·MSE` with `κ = log2(n_new/2 + 1)`,
/// `β = √(n_old/n_new)`, `λ_ce = 0.75(1+1/κ)/β`, `λ_ft = 1.5(1+1/κ)/β`, `λ_hkd = 0.15κβ`,
/// `λ_rkd = 0.5κβ`.
#[allow(clippy::too_many_arguments)]
pub fn continual(
    dev: &Device,
    net: &mut Net,
    teacher: &Net,
    task: &Split,
    buf: &Inverted,
    n_old: usize,
    cfg: &RunConfig,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let n_new = PER_TASK;
    let n_seen = n_old + n_new;
    let kappa = (n_new as f64 / 2.0 + 1.0).log2();
    let beta = (n_old as f64 / n_new as f64).sqrt();
    let l_ce = (0.75 * (1.0 + 1.0 / kappa) / beta) as f32;
    let l_ft = (1.5 * (1.0 + 1.0 / kappa) / beta) as f32;
    let l_hkd = (0.15 * kappa * beta) as f32;
    let l_rkd = (0.5 * kappa * beta) as f32;
    let syn = Split {
        x: buf.x.clone(),
        y: buf.y.clone(),
    };
    let mut rng = SplitMix64::stream(seed, 0xb0f);
    let mut draw = |b: usize| -> Split {
        let rows: Vec<usize> = (0..b)
            .map(|_| rng.below(syn.len() as u64) as usize)
            .collect();
        syn.rows(&rows)
    };
    let mut opt = Opt::new(cfg.lr);
    for e in 0..cfg.epochs {
        for rows in epoch_batches(task.len(), cfg.batch, seed, e as u64) {
            let real = task.rows(&rows);
            let br = real.len();
            let s = draw(br);
            let both = real.concat(&s);
            let bt = both.len();
            let x = Tensor::from_slice(dev, &[bt, D_IN], &both.x)?;
            let y_local = one_hot(dev, &real.y, n_old as u32, n_new)?;
            let y_all = one_hot(dev, &both.y, 0, n_seen)?;
            // The teacher's outputs (eval mode, constants).
            let tout = {
                let tape = lapis_graph::Tape::new();
                let bv = teacher.body.constants_on(&tape);
                let hv = teacher.head.constants_on(&tape);
                let f = teacher.body_forward(&bv, &tape.constant(x.clone()), BnMode::Eval)?;
                let z = teacher.head_forward(&hv, &f.feat, n_old)?;
                (f.feat.value().clone(), z.value().clone())
            };
            step(net, &mut opt, false, |net, bv, hv, tape| {
                let xv = tape.constant(x.clone());
                let f = net.body_forward(bv, &xv, BnMode::Train)?;
                let z = net.head_forward(hv, &f.feat, n_seen)?;
                let ce_local = crate::losses::soft_cross_entropy(
                    &z.slice(0, 0, br)?.slice(1, n_old, n_seen)?,
                    &y_local,
                )?;
                let z_ft = net.head_forward(hv, &f.feat.detach(), n_seen)?;
                let ce_ft = crate::losses::soft_cross_entropy(&z_ft, &y_all)?;
                let zt = xv.constant(lapis_ops::slice(&tout.1, 0, br, bt)?);
                let hkd = z
                    .slice(0, br, bt)?
                    .slice(1, 0, n_old)?
                    .sub(&zt)?
                    .abs()?
                    .mean_all()?;
                let ft = lapis_ops::copy(&lapis_ops::slice(&tout.0, 0, 0, br)?)?;
                let rkd = crate::losses::mse(&f.feat.slice(0, 0, br)?, &ft)?;
                ce_local
                    .mul_scalar(l_ce)?
                    .add(&ce_ft.mul_scalar(l_ft)?)?
                    .add(&hkd.mul_scalar(l_hkd)?)?
                    .add(&rkd.mul_scalar(l_rkd)?)
            })?;
        }
        progress("continual");
    }
    // Head fine-tuning on [real; synthetic] with the body frozen (eval mode).
    let mut opt = Opt::new(cfg.lr);
    for e in 0..cfg.ft_epochs {
        for rows in epoch_batches(task.len(), cfg.batch, seed ^ 0xf7, e as u64) {
            let real = task.rows(&rows);
            let both = real.concat(&draw(real.len()));
            let x = Tensor::from_slice(dev, &[both.len(), D_IN], &both.x)?;
            let y = one_hot(dev, &both.y, 0, n_seen)?;
            step(net, &mut opt, true, |net, bv, hv, tape| {
                let f = net.body_forward(bv, &tape.constant(x), BnMode::Eval)?;
                let z = net.head_forward(hv, &f.feat, n_seen)?;
                crate::losses::soft_cross_entropy(&z, &y)
            })?;
        }
        progress("head ft");
    }
    Ok(())
}
