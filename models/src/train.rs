//! The one training loop every method uses.
//!
//! Each step `s` (counting from 0):
//! 1. the learning rate is set from the [`Schedule`] (`lr_s`);
//! 2. the parameters go on a fresh [`Tape`] ([`Params::on_tape`]) and the caller's step
//!    function builds the scalar loss `ℓ_s` from them (it picks its batch from `s`, so a
//!    resumed run sees the same batches, e.g. with [`crate::data::Batches::at_step`]);
//! 3. [`backward`] gives `∂ℓ_s/∂θ` for every parameter; a parameter the loss does not reach
//!    is a typed error naming it (a model with a dead parameter is a bug, not a zero);
//! 4. optional clipping by global norm, `g ← g · min(1, c/‖g‖₂)` ([`clip_grad_norm`]);
//! 5. the optimizer steps ([`Optimizer`]).
//!
//! Every `log_every` steps the loss is read back (the only host read of a step; other steps
//! keep the device queue full) and a JSON line `{"step", "loss", "lr", "grad_norm",
//! "elapsed_s"}` goes to `metrics.jsonl` in the output directory. Every `eval_every` steps
//! and at the end, the caller's evaluation runs on the parameters as untracked constants
//! ([`Params::constants_on`]: nothing is recorded for a backward) and its metrics are
//! written as `{"step", "eval": {...}}`.
//!
//! **Checkpoints and exact resume.** Every `checkpoint_every` steps (and at the end) one
//! safetensors file holds the parameters (`param.<name>`), the optimizer's state
//! (`optim.<name>`: Adam's moments and step count) and, in its metadata, the next step and
//! the run's configuration. [`Trainer::run`] given a checkpoint continues from it: the
//! parameters after `N` steps are bit for bit those of an uninterrupted run, provided the
//! step function is a function of `s` (batches and dropout seeds derived from it).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lapis_graph::checkpoint;
use lapis_graph::nn::{ParamVars, Params};
use lapis_graph::optim::{clip_grad_norm, warmup_cosine, Optimizer};
use lapis_graph::{backward, Tape, Var};
use lapis_ops::{LapisError, Result, Tensor};
use serde::Serialize;

use crate::progress::Progress;

/// The learning rate as a function of the step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Schedule {
    /// `lr` at every step.
    Constant,
    /// Linear warmup over `warmup` steps to `lr`, then cosine decay to `floor · lr` at the
    /// last step ([`warmup_cosine`]).
    WarmupCosine {
        /// Warmup steps.
        warmup: usize,
        /// Final rate as a fraction of the peak.
        floor: f32,
    },
}

/// The loop's configuration (everything that determines a run besides the model, the
/// optimizer's hyper-parameters and the step function).
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    /// Steps in all.
    pub steps: usize,
    /// Base (peak) learning rate.
    pub lr: f32,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Clip gradients to this global norm (`None`: no clipping).
    pub clip: Option<f32>,
    /// Read back and log the loss every this many steps (≥ 1).
    pub log_every: usize,
    /// Evaluate every this many steps (and at the end); `None`: at the end only.
    pub eval_every: Option<usize>,
    /// Write a checkpoint every this many steps (and at the end), when `out_dir` is set.
    pub checkpoint_every: Option<usize>,
    /// Where `metrics.jsonl` and `checkpoint.safetensors` go (`None`: nothing written).
    pub out_dir: Option<PathBuf>,
    /// Plain log lines instead of a progress bar.
    pub quiet: bool,
    /// Label of the progress display.
    pub label: String,
}

impl TrainConfig {
    /// `steps` steps at a constant `lr`, loss logged every 10 steps, nothing written.
    pub fn new(steps: usize, lr: f32) -> Self {
        TrainConfig {
            steps,
            lr,
            schedule: Schedule::Constant,
            clip: None,
            log_every: 10,
            eval_every: None,
            checkpoint_every: None,
            out_dir: None,
            quiet: false,
            label: "train".into(),
        }
    }

    fn lr_at(&self, step: usize) -> f32 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::WarmupCosine { warmup, floor } => {
                warmup_cosine(step, warmup, self.steps, self.lr, floor)
            }
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |arg: &'static str, v: String, msg: &str| {
            Err(LapisError::invalid("TrainConfig", arg, v, msg.to_string()))
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr", self.lr.to_string(), "must be finite and ≥ 0");
        }
        if self.log_every == 0 {
            return bad("log_every", "0".into(), "must be ≥ 1");
        }
        if self.eval_every == Some(0) || self.checkpoint_every == Some(0) {
            return bad(
                "eval_every/checkpoint_every",
                "0".into(),
                "must be ≥ 1 when set",
            );
        }
        if let Some(c) = self.clip {
            if !(c.is_finite() && c > 0.0) {
                return bad("clip", c.to_string(), "must be finite and > 0");
            }
        }
        Ok(())
    }
}

/// What a run returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrainLog {
    /// `(step, loss)` at every logged step.
    pub losses: Vec<(usize, f64)>,
    /// `(step, metrics)` at every evaluation.
    pub evals: Vec<(usize, BTreeMap<String, f64>)>,
    /// The step the run started at (0, or the checkpoint's).
    pub start_step: usize,
    /// Wall time of the loop, seconds.
    pub wall_s: f64,
}

impl TrainLog {
    /// The last logged loss.
    pub fn last_loss(&self) -> Option<f64> {
        self.losses.last().map(|l| l.1)
    }

    /// The last evaluation's value of `metric`.
    pub fn last_eval(&self, metric: &str) -> Option<f64> {
        self.evals.last().and_then(|e| e.1.get(metric).copied())
    }
}

/// The training loop (see the module docs).
pub struct Trainer {
    cfg: TrainConfig,
}

/// Evaluation view of a model: its parameters as untracked constants on a fresh tape.
pub fn eval_vars(params: &Params) -> ParamVars {
    let tape = Tape::new();
    params.constants_on(&tape)
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> LapisError {
    LapisError::Format {
        what: format!("{}", path.display()),
        msg: format!("could not {what}: {e}"),
    }
}

impl Trainer {
    /// A loop with this configuration.
    pub fn new(cfg: TrainConfig) -> Self {
        Trainer { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The checkpoint path in the output directory (`None` without one).
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        self.cfg
            .out_dir
            .as_ref()
            .map(|d| d.join("checkpoint.safetensors"))
    }

    /// Runs steps `start..cfg.steps`, where `start` is 0 or, with `resume`, the step the
    /// checkpoint stopped at (its parameters and optimizer state are loaded first).
    ///
    /// `step_fn(vars, s)` builds the scalar loss of step `s`; `eval_fn(params)` returns named
    /// metrics (use [`eval_vars`]).
    pub fn run(
        &self,
        params: &mut Params,
        opt: &mut dyn Optimizer,
        resume: Option<&Path>,
        mut step_fn: impl FnMut(&ParamVars, usize) -> Result<Var>,
        mut eval_fn: impl FnMut(&Params) -> Result<Vec<(String, f64)>>,
    ) -> Result<TrainLog> {
        let cfg = &self.cfg;
        cfg.validate()?;
        let start = match resume {
            Some(p) => load_checkpoint(p, params, opt)?,
            None => 0,
        };
        let mut metrics = match &cfg.out_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| io_err(d, "create", e))?;
                let p = d.join("metrics.jsonl");
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(resume.is_some())
                    .write(true)
                    .truncate(resume.is_none())
                    .open(&p)
                    .map_err(|e| io_err(&p, "open", e))?;
                Some((p, f))
            }
            None => None,
        };
        let mut log = TrainLog {
            start_step: start,
            ..TrainLog::default()
        };
        let names: Vec<String> = params.names().iter().map(|s| s.to_string()).collect();
        let mut bar = Progress::new(&cfg.label, cfg.steps as u64, cfg.quiet);
        bar.set(start as u64, "");
        let t0 = Instant::now();
        let mut evaluate = |params: &Params,
                            step: usize,
                            log: &mut TrainLog,
                            metrics: &mut Option<(PathBuf, File)>|
         -> Result<()> {
            let m: BTreeMap<String, f64> = eval_fn(params)?.into_iter().collect();
            write_line(metrics, serde_json::json!({"step": step, "eval": m}))?;
            log.evals.push((step, m));
            Ok(())
        };
        for step in start..cfg.steps {
            let lr = cfg.lr_at(step);
            opt.set_lr(lr);
            let tape = Tape::new();
            let vars = params.on_tape(&tape);
            let loss = step_fn(&vars, step)?;
            if loss.value().numel() != 1 {
                return Err(LapisError::shape(
                    "Trainer::run",
                    loss.shape(),
                    "the step function must return a scalar loss",
                ));
            }
            let g = backward(&loss)?;
            let mut grads = Vec::with_capacity(vars.len());
            for (v, name) in vars.iter().zip(&names) {
                match g.get(v) {
                    Some(t) => grads.push(t.clone()),
                    None => {
                        return Err(LapisError::invalid(
                            "Trainer::run",
                            "parameter",
                            name.clone(),
                            format!(
                                "no gradient reaches it at step {step}: the loss does not use \
                                 it (remove it from the model, or fix the forward)"
                            ),
                        ))
                    }
                }
            }
            let norm = match cfg.clip {
                Some(c) => Some(clip_grad_norm(&mut grads, c)?),
                None => None,
            };
            let mut refs: Vec<&mut Tensor> = params.tensors_mut();
            opt.step(&mut refs, &grads)?;
            let done = step + 1;
            if done % cfg.log_every == 0 || done == cfg.steps {
                let l = f64::from(loss.value().to_f32_vec()?[0]);
                let norm = match &norm {
                    Some(t) => Some(t.to_scalar()?),
                    None => None,
                };
                if !l.is_finite() {
                    return Err(LapisError::invalid(
                        "Trainer::run",
                        "loss",
                        l,
                        format!("the loss is not finite at step {step} (lr {lr})"),
                    ));
                }
                log.losses.push((step, l));
                write_line(
                    &mut metrics,
                    serde_json::json!({
                        "step": step, "loss": l, "lr": lr, "grad_norm": norm,
                        "elapsed_s": t0.elapsed().as_secs_f64(),
                    }),
                )?;
                bar.set(done as u64, &format!("loss {l:.4}"));
            }
            if cfg.eval_every.is_some_and(|e| done % e == 0) && done < cfg.steps {
                evaluate(params, done, &mut log, &mut metrics)?;
            }
            if let (Some(every), Some(path)) = (cfg.checkpoint_every, self.checkpoint_path()) {
                if done % every == 0 && done < cfg.steps {
                    save_checkpoint(&path, params, opt, done, cfg)?;
                }
            }
        }
        evaluate(params, cfg.steps, &mut log, &mut metrics)?;
        if let Some(path) = self.checkpoint_path() {
            save_checkpoint(&path, params, opt, cfg.steps.max(start), cfg)?;
        }
        log.wall_s = t0.elapsed().as_secs_f64();
        let msg = match (log.last_loss(), log.evals.last()) {
            (Some(l), Some((_, m))) if !m.is_empty() => format!("loss {l:.4}, eval {m:?}"),
            (Some(l), _) => format!("loss {l:.4}"),
            _ => String::new(),
        };
        bar.finish(&msg);
        Ok(log)
    }
}

/// Appends one JSON line to the metrics file, if there is one.
fn write_line(metrics: &mut Option<(PathBuf, File)>, v: serde_json::Value) -> Result<()> {
    if let Some((p, f)) = metrics.as_mut() {
        writeln!(f, "{v}").map_err(|e| io_err(p, "write", e))?;
    }
    Ok(())
}

/// Writes parameters, optimizer state, the next step and the configuration to `path`.
pub fn save_checkpoint(
    path: &Path,
    params: &Params,
    opt: &dyn Optimizer,
    next_step: usize,
    cfg: &TrainConfig,
) -> Result<()> {
    let state = opt.state()?;
    let mut named: Vec<(String, &Tensor)> = params
        .iter()
        .map(|(n, t)| (format!("param.{n}"), t))
        .collect();
    named.extend(state.iter().map(|(n, t)| (format!("optim.{n}"), t)));
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let mut meta = BTreeMap::new();
    meta.insert("lapis.step".to_string(), next_step.to_string());
    meta.insert(
        "lapis.train_config".to_string(),
        serde_json::to_string(cfg).unwrap_or_default(),
    );
    // Written next to the target and renamed, so a run killed mid-write keeps the last
    // good checkpoint.
    let tmp = path.with_extension("safetensors.tmp");
    checkpoint::save_with_metadata(&tmp, &refs, &meta)?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, "replace", e))
}

/// Loads a checkpoint written by [`save_checkpoint`] into `params` and `opt`; returns the
/// step to continue from.
pub fn load_checkpoint(path: &Path, params: &mut Params, opt: &mut dyn Optimizer) -> Result<usize> {
    let dev = match params.iter().next() {
        Some((_, t)) => t.device().clone(),
        None => {
            return Err(LapisError::invalid(
                "load_checkpoint",
                "params",
                "empty",
                "the model has no parameters",
            ))
        }
    };
    let (tensors, meta) = checkpoint::load_with_metadata(path, &dev)?;
    let fmt = |msg: String| LapisError::Format {
        what: format!("checkpoint {}", path.display()),
        msg,
    };
    let step: usize = meta
        .get("lapis.step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fmt("no `lapis.step` in its metadata: not a training checkpoint".into()))?;
    let mut by_name: BTreeMap<&str, &Tensor> = BTreeMap::new();
    let mut state = Vec::new();
    for (n, t) in &tensors {
        if let Some(p) = n.strip_prefix("param.") {
            by_name.insert(p, t);
        } else if let Some(o) = n.strip_prefix("optim.") {
            state.push((o.to_string(), t.clone()));
        }
    }
    for h in params.handles() {
        let name = params.name(h)?.to_string();
        let t = by_name
            .get(name.as_str())
            .ok_or_else(|| fmt(format!("no parameter `{name}`")))?;
        params
            .set(h, (*t).clone())
            .map_err(|e| fmt(e.to_string()))?;
    }
    opt.load_state(&state, &dev)?;
    Ok(step)
}
