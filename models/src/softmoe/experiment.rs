//! The char-LM experiment of §1.4: data, one training run, evaluation.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use lapis_graph::nn::{ParamVars, Params};
use lapis_graph::optim::Adam;
use lapis_graph::{Tape, Var};
use lapis_ops::{Device, LapisError, Result, Tensor};
use serde::Serialize;

use super::model::{CharLm, LmConfig, LmOutput};
use crate::data::SplitMix64;
use crate::train::{eval_vars, Schedule, TrainConfig, Trainer};

/// Training hyper-parameters (§1.4 defaults from [`TrainSpec::spec`]).
#[derive(Clone, Debug, Serialize)]
pub struct TrainSpec {
    /// Steps.
    pub steps: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Peak learning rate (Adam β = (0.9, 0.95)).
    pub lr: f32,
    /// Warmup steps (then cosine to `floor·lr`).
    pub warmup: usize,
    /// Final learning rate as a fraction of the peak.
    pub floor: f32,
    /// Gradient clipping (global norm).
    pub clip: f32,
    /// Weight of `Σ_ℓ L_aux,ℓ`.
    pub lambda_aux: f32,
    /// Validation batches of the final evaluation (fixed, seeded).
    pub eval_batches: usize,
    /// Validation batches of each point of the CE curve.
    pub curve_batches: usize,
    /// Points on the CE curve (evaluations during training).
    pub curve_points: usize,
    /// Log (and record `k_ℓ` and the train AE) every this many steps.
    pub log_every: usize,
    /// Seed of the batch draws (the same for every run of a comparison).
    pub data_seed: u64,
}

impl TrainSpec {
    /// §1.4: batch 32 × 64, 1500 steps, lr 3e-3, warmup 100, cosine to 10 %, clip 1.0,
    /// λ_aux = 0.01, 200 validation batches.
    pub fn spec() -> TrainSpec {
        TrainSpec {
            steps: 1500,
            batch: 32,
            lr: 3e-3,
            warmup: 100,
            floor: 0.1,
            clip: 1.0,
            lambda_aux: 0.01,
            eval_batches: 200,
            curve_batches: 20,
            curve_points: 10,
            log_every: 10,
            data_seed: 1,
        }
    }
}

/// Byte corpus split in training and validation text.
pub struct Corpus {
    /// Training bytes.
    pub train: Vec<u8>,
    /// Validation bytes.
    pub val: Vec<u8>,
}

impl Corpus {
    /// The fortunes split of [`crate::data::fortunes_split`].
    pub fn fortunes() -> Result<Corpus> {
        let (train, val) = crate::data::fortunes_split()?;
        Ok(Corpus { train, val })
    }

    /// A user's text file: the first 90 % of its lines train, the rest validate.
    pub fn from_file(path: &Path, context: usize) -> Result<Corpus> {
        let text = std::fs::read(path).map_err(|e| crate::data::io_error(path, e))?;
        let lines: Vec<&[u8]> = text.split(|&c| c == b'\n').collect();
        let cut = lines.len() * 9 / 10;
        let join = |ls: &[&[u8]]| {
            let mut v = Vec::new();
            for l in ls {
                v.extend_from_slice(l);
                v.push(b'\n');
            }
            v
        };
        let c = Corpus {
            train: join(&lines[..cut]),
            val: join(&lines[cut..]),
        };
        for (name, part) in [("training", &c.train), ("validation", &c.val)] {
            if part.len() < context + 2 {
                return Err(LapisError::invalid(
                    "softmoe",
                    "text",
                    path.display(),
                    format!(
                        "its {name} part ({} bytes) is shorter than the context + 2 ({})",
                        part.len(),
                        context + 2
                    ),
                ));
            }
        }
        Ok(c)
    }
}

/// Batch `(ids, targets)` of `b` windows of `t + 1` bytes at seeded offsets.
pub fn batch(bytes: &[u8], b: usize, t: usize, seed: u64, index: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = SplitMix64::stream(seed, index);
    let span = (bytes.len() - t - 1) as u64;
    let mut ids = Vec::with_capacity(b * t);
    let mut tgt = Vec::with_capacity(b * t);
    for _ in 0..b {
        let o = rng.below(span + 1) as usize;
        ids.extend(bytes[o..o + t].iter().map(|&c| c as u32));
        tgt.extend(bytes[o + 1..o + t + 1].iter().map(|&c| c as u32));
    }
    (ids, tgt)
}

/// Mean next-byte cross-entropy (nats) of the logits `[B·T, V]` against `targets [B·T]`
/// (u32, each < V by construction: no range check, no host read).
pub fn lm_loss(logits: &Var, targets: &Tensor) -> Result<Var> {
    let n = targets.numel();
    logits
        .log_softmax(1)?
        .gather(1, &targets.reshape(&[n, 1])?)?
        .sum_all()?
        .mul_scalar(-1.0 / n as f32)
}

/// The loss of one batch: `CE + λ_aux Σ_ℓ L_aux,ℓ`, with the model's outputs.
pub fn step_loss(
    model: &CharLm,
    vars: &ParamVars,
    tape: &Rc<Tape>,
    ids: &Tensor,
    targets: &Tensor,
    lambda_aux: f32,
) -> Result<(Var, LmOutput)> {
    let out = model.forward(vars, tape, ids)?;
    let ce = lm_loss(&out.logits, targets)?;
    let loss = ce.add(&out.aux.mul_scalar(lambda_aux)?)?;
    Ok((loss, out))
}

/// Evaluation of a model on fixed validation batches.
#[derive(Clone, Debug, Serialize)]
pub struct Eval {
    /// Mean cross-entropy, nats per byte.
    pub ce: f64,
    /// Mean active experts per token, per layer.
    pub ae: Vec<f64>,
    /// Tokens with `j` active experts, `j = 0..=E`, pooled over layers.
    pub hist: Vec<u64>,
    /// `k_ℓ` (learned allocation) or the fixed k.
    pub k: Vec<f64>,
}

/// Evaluates on `batches` validation batches (seeded by `seed`).
pub fn evaluate(
    dev: &Device,
    model: &CharLm,
    params: &Params,
    val: &[u8],
    batch_size: usize,
    batches: usize,
    seed: u64,
) -> Result<Eval> {
    let cfg = &model.cfg;
    let t = cfg.context;
    let vars = eval_vars(params);
    let tape = vars
        .vars()
        .first()
        .map(|v| v.tape().clone())
        .ok_or_else(|| LapisError::invalid("evaluate", "params", 0, "model has no parameters"))?;
    let mut ce = 0.0;
    let mut ae = vec![0.0; cfg.layers];
    let mut hist = vec![0u64; cfg.experts + 1];
    let mut k = Vec::new();
    for i in 0..batches {
        let (ids, tgt) = batch(val, batch_size, t, seed, i as u64);
        let ids = Tensor::from_slice(dev, &[batch_size, t], &ids)?;
        let tgt = Tensor::from_slice(dev, &[batch_size * t], &tgt)?;
        let out = model.forward(&vars, &tape, &ids)?;
        ce += lm_loss(&out.logits, &tgt)?.value().to_scalar()? as f64;
        for (l, a) in out.active.iter().enumerate() {
            let v = a.to_f32_vec()?;
            ae[l] += v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            for x in v {
                hist[(x.round() as usize).min(cfg.experts)] += 1;
            }
        }
        if i == 0 {
            k = match &out.k {
                Some(kv) => kv.value().to_f32_vec()?.iter().map(|&x| x as f64).collect(),
                None => vec![cfg.k_max() as f64; cfg.layers],
            };
        }
    }
    let nb = batches.max(1) as f64;
    Ok(Eval {
        ce: ce / nb,
        ae: ae.iter().map(|a| a / nb).collect(),
        hist,
        k,
    })
}

/// The record of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Run id (`a`…`d`).
    pub id: String,
    /// What it is.
    pub label: String,
    /// The final evaluation.
    pub eval: Eval,
    /// Mean training AE per layer over the logged steps of the last 20 % of training.
    pub ae_train: Vec<f64>,
    /// `(step, k_ℓ)` at every logged step.
    pub k_traj: Vec<(usize, Vec<f64>)>,
    /// `(step, validation CE)` during training.
    pub ce_curve: Vec<(usize, f64)>,
    /// `(step, training loss)` at the logged steps.
    pub loss_curve: Vec<(usize, f64)>,
    /// Wall time, seconds.
    pub wall_s: f64,
}

/// Trains one run and evaluates it; returns the model, its parameters and the record.
/// `out_dir` receives `metrics.jsonl` and `model.safetensors` (with the configuration in
/// its metadata, for `lapis softmoe sample`).
#[allow(clippy::too_many_arguments)]
pub fn train_run(
    dev: &Device,
    corpus: &Corpus,
    cfg: LmConfig,
    ts: &TrainSpec,
    id: &str,
    label: &str,
    out_dir: Option<PathBuf>,
    quiet: bool,
) -> Result<(CharLm, Params, RunResult)> {
    let t0 = Instant::now();
    let mut params = Params::new();
    let model = CharLm::new(&mut params, dev, cfg)?;
    let mut opt = Adam::new(ts.lr);
    opt.beta1 = 0.9;
    opt.beta2 = 0.95;
    let mut tc = TrainConfig::new(ts.steps, ts.lr);
    tc.schedule = Schedule::WarmupCosine {
        warmup: ts.warmup,
        floor: ts.floor,
    };
    tc.clip = Some(ts.clip);
    tc.log_every = ts.log_every;
    tc.eval_every = Some((ts.steps / ts.curve_points.max(1)).max(1));
    tc.out_dir = out_dir.clone();
    tc.quiet = quiet;
    tc.label = format!("softmoe ({id})");
    let (b, t) = (ts.batch, model.cfg.context);
    let mut k_traj = Vec::new();
    let mut ae_log: Vec<(usize, Vec<f64>)> = Vec::new();
    let log = {
        let model = &model;
        let k_traj = &mut k_traj;
        let ae_log = &mut ae_log;
        Trainer::new(tc).run(
            &mut params,
            &mut opt,
            None,
            |vars, s| {
                let (ids, tgt) = batch(&corpus.train, b, t, ts.data_seed, s as u64);
                let ids = Tensor::from_slice(dev, &[b, t], &ids)?;
                let tgt = Tensor::from_slice(dev, &[b * t], &tgt)?;
                let tape = vars.vars()[0].tape().clone();
                let (loss, out) = step_loss(model, vars, &tape, &ids, &tgt, ts.lambda_aux)?;
                if s % ts.log_every == 0 || s + 1 == ts.steps {
                    if let Some(k) = &out.k {
                        let kv = k.value().to_f32_vec()?;
                        k_traj.push((s, kv.iter().map(|&x| x as f64).collect()));
                    }
                    let mut ae = Vec::new();
                    for a in &out.active {
                        ae.push(lapis_ops::mean_all(a)?.to_scalar()? as f64);
                    }
                    ae_log.push((s, ae));
                }
                Ok(loss)
            },
            |p| {
                let e = evaluate(
                    dev,
                    model,
                    p,
                    &corpus.val,
                    b,
                    ts.curve_batches,
                    ts.data_seed + 7,
                )?;
                Ok(vec![("val_ce".into(), e.ce)])
            },
        )?
    };
    let ce_curve: Vec<(usize, f64)> = log
        .evals
        .iter()
        .filter_map(|(s, m)| m.get("val_ce").map(|v| (*s, *v)))
        .collect();
    let eval = evaluate(
        dev,
        &model,
        &params,
        &corpus.val,
        b,
        ts.eval_batches,
        ts.data_seed + 1000,
    )?;
    let tail_from = ts.steps * 4 / 5;
    let tail: Vec<&Vec<f64>> = ae_log
        .iter()
        .filter(|(s, _)| *s >= tail_from)
        .map(|(_, a)| a)
        .collect();
    let ae_train = (0..model.cfg.layers)
        .map(|l| tail.iter().map(|a| a[l]).sum::<f64>() / tail.len().max(1) as f64)
        .collect();
    if let Some(dir) = &out_dir {
        save_model(&dir.join("model.safetensors"), &model, &params)?;
    }
    let loss_curve = log.losses.clone();
    let res = RunResult {
        id: id.into(),
        label: label.into(),
        eval,
        ae_train,
        k_traj,
        ce_curve,
        loss_curve,
        wall_s: t0.elapsed().as_secs_f64(),
    };
    Ok((model, params, res))
}

/// Saves the parameters with the configuration (JSON) in the metadata.
pub fn save_model(path: &Path, model: &CharLm, params: &Params) -> Result<()> {
    let mut meta = std::collections::BTreeMap::new();
    meta.insert(
        "softmoe.config".to_string(),
        serde_json::to_string(&model.cfg).map_err(|e| LapisError::Format {
            what: "softmoe config".into(),
            msg: e.to_string(),
        })?,
    );
    let named: Vec<(&str, &Tensor)> = params.iter().collect();
    lapis_graph::checkpoint::save_with_metadata(path, &named, &meta)
}

/// Loads a model saved by [`save_model`].
pub fn load_model(dev: &Device, path: &Path) -> Result<(CharLm, Params)> {
    let (tensors, meta) = lapis_graph::checkpoint::load_with_metadata(path, dev)?;
    let fmt = |msg: String| LapisError::Format {
        what: path.display().to_string(),
        msg,
    };
    let cfg: LmConfig = serde_json::from_str(
        meta.get("softmoe.config")
            .ok_or_else(|| fmt("no `softmoe.config` metadata: not a SoftMoE model".into()))?,
    )
    .map_err(|e| fmt(e.to_string()))?;
    let mut params = Params::new();
    let model = CharLm::new(&mut params, dev, cfg)?;
    for (name, t) in tensors {
        let p = params
            .find(&name)
            .ok_or_else(|| fmt(format!("unexpected tensor `{name}`")))?;
        params.set(p, t)?;
    }
    Ok((model, params))
}

/// Samples `n` bytes after `prompt` (temperature `temp`, seeded), one forward per byte
/// over the last `context` bytes; each step reads the last position's logits back (the
/// value must reach the host to be sampled).
pub fn sample(
    dev: &Device,
    model: &CharLm,
    params: &Params,
    prompt: &[u8],
    n: usize,
    temp: f32,
    seed: u64,
) -> Result<Vec<u8>> {
    if !(temp.is_finite() && temp > 0.0) {
        return Err(LapisError::invalid(
            "sample",
            "temperature",
            temp,
            "must be finite and > 0",
        ));
    }
    let vars = eval_vars(params);
    let tape = vars.vars()[0].tape().clone();
    let mut text: Vec<u8> = if prompt.is_empty() {
        b"\n".to_vec()
    } else {
        prompt.to_vec()
    };
    let mut rng = SplitMix64::new(seed);
    let t = model.cfg.context;
    for _ in 0..n {
        let ctx = &text[text.len().saturating_sub(t)..];
        let ids: Vec<u32> = ctx.iter().map(|&c| c as u32).collect();
        let idt = Tensor::from_slice(dev, &[1, ids.len()], &ids)?;
        let out = model.forward(&vars, &tape, &idt)?;
        let v = model.cfg.vocab;
        let last = out.logits.value().to_f32_vec()?;
        let row = &last[(ids.len() - 1) * v..ids.len() * v];
        let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f64> = row
            .iter()
            .map(|&z| (((z - mx) / temp) as f64).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let mut u = rng.next_f64() * total;
        let mut pick = v - 1;
        for (i, wi) in w.iter().enumerate() {
            if u < *wi {
                pick = i;
                break;
            }
            u -= wi;
        }
        text.push(pick as u8);
    }
    Ok(text)
}
