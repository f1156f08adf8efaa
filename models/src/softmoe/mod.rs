//! # SoftMoE: mixture of experts routed by a truncated soft top-k
//!
//! Zasada et al., "SoftMoE" (ICML 2026, arXiv 2606.17952), as `specs/sparse-methods.md` §1
//! describes it (from digests and a port of the official code; tags there).
//!
//! **Layer (§1.1).** Token `x ∈ R^d`, experts `E_e(x) = W2_e GELU(W1_e x + b1_e) + b2_e`,
//! router logits `r = x W_g` (no bias, no softmax). `p = STK(r; k_ℓ, α)` is the LapSum soft
//! top-k (`Σ_e p_e = k_ℓ`); truncation keeps at most `m = min(⌈c_cap·k_ℓ⌉, E)` entries,
//! those `≥ τ = clamp(c_τ·k_ℓ/E, p_(m), p_(1))`, without renormalising (`Σ p̃ ≤ k_ℓ`), and
//! `y = Σ_{p̃_e > 0} p̃_e E_e(x)`. The mask has no gradient; kept entries pass their
//! gradient into the soft top-k's VJP (to `r` and `k_ℓ`). Only the routed (token, expert)
//! pairs are evaluated ([`lapis_ops::grouped_linear`]: the tokens are gathered per slot,
//! each goes through its expert's weights, the slot outputs are weighted and summed back),
//! with no host read; [`model::MoeLayer::forward_dense`] evaluates every expert on every
//! token for tests.
//!
//! **Learned allocation (§1.2).** `η ∈ R^L` (0 at init), `k_ℓ = 1 + (K − L)·softmax(η)_ℓ`:
//! `k_ℓ ≥ 1` and `Σ_ℓ k_ℓ = K` hold by construction. SoftMoE* fixes `k_ℓ = k`.
//!
//! **Balance loss (Switch).** `L_aux,ℓ = (E/AE_ℓ) Σ_e P̄_e f_e`, `P̄ = mean_t softmax(r_t)`,
//! `f_e` the fraction of tokens routed to `e`, `AE_ℓ` the realised mean number of active
//! experts (no gradient; `k` for the top-k baseline); `ℒ = CE + λ_aux Σ_ℓ L_aux,ℓ`,
//! λ_aux = 0.01 (our choice: the coefficient was not recovered).
//!
//! **Top-k baseline (Switch/GShard).** The `k` largest entries of `softmax(r)`, not
//! renormalised.
//!
//! **Experiment (§1.4, our design).** A byte-level pre-LN transformer on the fortunes
//! corpus (d = 96, 4 blocks, 4 heads, context 64, tied embedding, learned positions,
//! every FFN an 8-expert MoE), runs (a) top-1, (b) top-2, (c) SoftMoE* k = 1.5, (d) SoftMoE
//! with K = 8; claims M1–M7 ([`reproduce`]). Token and position embeddings start at
//! N(0, 0.02²) (our choice, as GPT-2).

pub mod experiment;
pub mod model;

use std::path::PathBuf;

use lapis_graph::nn::Params;
use lapis_graph::Tape;
use lapis_ops::{Device, LapisError, Result, Tensor};

pub use experiment::{Corpus, Eval, RunResult, TrainSpec};
pub use model::{CharLm, LmConfig, MoeLayer, Routing};

use crate::plot::{LinePlot, Series, SeriesStyle};
use crate::reproduce::{Claim, Context, Report, ReportBuilder, Size};

/// The soft routing of runs (c) and (d): α = 1, c_cap = 2, c_τ = 1.8; `k = None` learns the
/// allocation under the budget `K = 8`.
pub fn soft(k: Option<f32>) -> Routing {
    Routing::Soft {
        k,
        budget: 8.0,
        alpha: 1.0,
        c_cap: 2.0,
        c_tau: 1.8,
    }
}

/// The four runs of §1.4: `(id, label, routing)`.
pub fn runs() -> Vec<(&'static str, &'static str, Routing)> {
    vec![
        ("a", "top-1", Routing::TopK { k: 1 }),
        ("b", "top-2", Routing::TopK { k: 2 }),
        ("c", "SoftMoE* k=1.5", soft(Some(1.5))),
        ("d", "SoftMoE K=8", soft(None)),
    ]
}

/// M6: the largest change of eval-mode logits at positions `≤ t` when the bytes after `t`
/// change (for several `t`).
pub fn causality_gap(dev: &Device, model: &CharLm, params: &Params, seed: u64) -> Result<f64> {
    let t = model.cfg.context;
    let b = 4;
    let mut rng = crate::data::SplitMix64::new(seed);
    let ids: Vec<u32> = (0..b * t).map(|_| rng.below(256) as u32).collect();
    let vars = crate::train::eval_vars(params);
    let tape = vars.vars()[0].tape().clone();
    let run = |ids: &[u32]| -> Result<Vec<f32>> {
        let it = Tensor::from_slice(dev, &[b, t], ids)?;
        model
            .forward(&vars, &tape, &it)?
            .logits
            .value()
            .to_f32_vec()
    };
    let base = run(&ids)?;
    let v = model.cfg.vocab;
    let mut gap = 0f64;
    for cut in [0, t / 4, t / 2, t - 2] {
        let mut alt = ids.clone();
        for row in 0..b {
            for p in cut + 1..t {
                alt[row * t + p] = rng.below(256) as u32;
            }
        }
        let other = run(&alt)?;
        for row in 0..b {
            for p in 0..=cut {
                let o = (row * t + p) * v;
                for j in 0..v {
                    gap = gap.max((base[o + j] - other[o + j]).abs() as f64);
                }
            }
        }
    }
    Ok(gap)
}

/// M7: directional finite-difference checks of `∂ℒ/∂η` and `∂ℒ/∂W_g` on a 2-layer toy
/// (16 tokens, d = 8, E = 4, K = 4, learned allocation; ℒ = Σ w⊙y + λ Σ L_aux), with the
/// routing mask frozen: a direction whose ± steps change the mask is redrawn. Returns the
/// largest relative error `|g·v − FD| / max(|FD|, 1e-3)` over the directions checked and
/// their number.
pub fn toy_gradcheck(dev: &Device, seed: u64) -> Result<(f64, usize)> {
    use lapis_graph::backward;
    let (n, d, e, l) = (16usize, 8usize, 4usize, 2usize);
    let mut params = Params::new();
    let mut layers = Vec::new();
    for i in 0..l {
        layers.push(MoeLayer::new(
            &mut params,
            &format!("l{i}"),
            dev,
            d,
            12,
            e,
            0.5,
            seed + 10 * i as u64,
        )?);
    }
    let eta = params.add("eta", lapis_ops::normal(dev, &[l], 0.0, 0.5, seed + 99)?)?;
    let x = lapis_ops::normal(dev, &[n, d], 0.0, 1.0, seed + 98)?;
    let w = lapis_ops::normal(dev, &[n, d], 0.0, 1.0, seed + 97)?;
    let routing = Routing::Soft {
        k: None,
        budget: 4.0,
        alpha: 0.5,
        c_cap: 2.0,
        c_tau: 1.8,
    };
    let k_max = 3.0;
    // Loss and the routing masks at the current parameters.
    let eval = |params: &Params, grads: bool| -> Result<(f64, Vec<Vec<f32>>, Vec<Tensor>)> {
        let tape = Tape::new();
        let vars = if grads {
            params.on_tape(&tape)
        } else {
            params.constants_on(&tape)
        };
        let k_all = vars.get(eta)?.softmax(0)?.affine(4.0 - l as f32, 1.0)?;
        let mut h = tape.constant(x.clone());
        let mut aux: Option<lapis_graph::Var> = None;
        let mut masks = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let ki = k_all.slice(0, i, i + 1)?;
            let out = layer.forward(&vars, &h, routing, Some(&ki), k_max)?;
            masks.push(out.active.to_f32_vec()?);
            h = h.add(&out.y)?;
            aux = Some(match aux {
                None => out.aux,
                Some(a) => a.add(&out.aux)?,
            });
        }
        let loss = h
            .mul(&tape.constant(w.clone()))?
            .sum_all()?
            .add(&aux.expect("two layers").mul_scalar(0.01)?)?;
        let value = loss.value().to_scalar()? as f64;
        let mut gs = Vec::new();
        if grads {
            let g = backward(&loss)?;
            for (i, v) in vars.iter().enumerate() {
                let name = params.names()[i];
                if name == "eta" || name.ends_with(".router") {
                    gs.push(g.get(v).cloned().ok_or_else(|| {
                        LapisError::invalid("toy_gradcheck", "param", name, "got no gradient")
                    })?);
                }
            }
        }
        Ok((value, masks, gs))
    };
    let checked: Vec<usize> = params
        .names()
        .iter()
        .enumerate()
        .filter(|(_, nm)| **nm == "eta" || nm.ends_with(".router"))
        .map(|(i, _)| i)
        .collect();
    let (_, masks0, grads) = eval(&params, true)?;
    let g_host: Vec<Vec<f32>> = grads
        .iter()
        .map(|g| g.to_f32_vec())
        .collect::<Result<_>>()?;
    let mut rng = crate::data::SplitMix64::new(seed + 5);
    let mut worst = 0f64;
    let mut done = 0usize;
    let h = 1e-2f64;
    for _attempt in 0..40 {
        if done == 6 {
            break;
        }
        // A random unit direction over η and both routers.
        let dirs: Vec<Vec<f64>> = checked
            .iter()
            .map(|&i| {
                (0..params.at(i).map(|t| t.numel()).unwrap_or(0))
                    .map(|_| rng.next_f64() * 2.0 - 1.0)
                    .collect()
            })
            .collect();
        let norm = dirs.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let mut losses = Vec::new();
        let mut same = true;
        for sgn in [1.0, -1.0] {
            // Perturb the checked parameters in place, evaluate, restore.
            let saved: Vec<Tensor> = checked
                .iter()
                .map(|&i| params.at(i).cloned())
                .collect::<Result<_>>()?;
            for (c, &i) in checked.iter().enumerate() {
                let t = &saved[c];
                let mut v = t.to_f32_vec()?;
                for (a, dv) in v.iter_mut().zip(&dirs[c]) {
                    *a += (sgn * h * dv / norm) as f32;
                }
                let handle = params.handles()[i];
                params.set(handle, Tensor::from_slice(dev, t.shape(), &v)?)?;
            }
            let (val, masks, _) = eval(&params, false)?;
            for (c, &i) in checked.iter().enumerate() {
                let handle = params.handles()[i];
                params.set(handle, saved[c].clone())?;
            }
            same &= masks == masks0;
            losses.push(val);
        }
        if !same {
            continue;
        }
        let fd = (losses[0] - losses[1]) / (2.0 * h);
        let an: f64 = g_host
            .iter()
            .zip(&dirs)
            .map(|(g, dv)| {
                g.iter()
                    .zip(dv)
                    .map(|(a, b)| *a as f64 * b / norm)
                    .sum::<f64>()
            })
            .sum();
        worst = worst.max((an - fd).abs() / fd.abs().max(1e-3));
        done += 1;
    }
    Ok((worst, done))
}

/// The sparse expert evaluation against the dense path on random tokens (64 × 16, E = 8,
/// hidden 24) for top-1, top-2, SoftMoE* k = 1.5 and a tracked `k = 2.3`: the largest
/// difference of the outputs and of the gradients of `Σ w⊙y` w.r.t. the tokens, the
/// router and (tracked k) `k`, relative to each one's largest magnitude.
pub fn sparse_dense_gap(dev: &Device, seed: u64) -> Result<f64> {
    use lapis_graph::backward;
    let (n, d, e) = (64usize, 16usize, 8usize);
    let mut params = Params::new();
    let layer = MoeLayer::new(&mut params, "moe", dev, d, 24, e, 0.5, seed)?;
    let x = lapis_ops::normal(dev, &[n, d], 0.0, 1.0, seed + 1)?;
    let w = lapis_ops::normal(dev, &[n, d], 0.0, 1.0, seed + 2)?;
    let mut worst = 0f64;
    let cases = [
        (Routing::TopK { k: 1 }, None),
        (Routing::TopK { k: 2 }, None),
        (soft(Some(1.5)), None),
        (soft(None), Some(2.3f32)),
    ];
    for (routing, kval) in cases {
        let mut outs = Vec::new();
        for dense in [false, true] {
            let tape = Tape::new();
            let vars = params.on_tape(&tape);
            let xv = tape.leaf(x.clone());
            let kv = match kval {
                Some(k) => Some(tape.leaf(Tensor::from_slice(dev, &[1], &[k])?)),
                None => None,
            };
            let y = if dense {
                layer.forward_dense(&vars, &xv, routing, kv.as_ref(), 5.0)?
            } else {
                layer.forward(&vars, &xv, routing, kv.as_ref(), 5.0)?.y
            };
            let g = backward(&y.mul(&tape.constant(w.clone()))?.sum_all()?)?;
            let mut v = vec![y.value().to_f32_vec()?];
            let router = vars.vars()[0].clone();
            for t in [Some(&xv), Some(&router), kv.as_ref()]
                .into_iter()
                .flatten()
            {
                let gt = g.get(t).ok_or_else(|| {
                    LapisError::invalid("sparse_dense_gap", "grad", "none", "missing gradient")
                })?;
                v.push(gt.to_f32_vec()?);
            }
            outs.push(v);
        }
        for (a, b) in outs[0].iter().zip(&outs[1]) {
            let scale = b.iter().map(|v| v.abs() as f64).fold(1e-6, f64::max);
            let diff = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs() as f64)
                .fold(0.0, f64::max);
            worst = worst.max(diff / scale);
        }
    }
    Ok(worst)
}

/// `lapis reproduce softmoe`: claims M1–M7 of §1.5.
pub fn reproduce(ctx: &Context) -> Result<Report> {
    let dev = &ctx.dev;
    let spec = TrainSpec::spec();
    // §5: about 10 minutes on lavapipe for the four runs, the same cut for every run. A
    // step of the §1.4 model (batch 32 × 64) takes ~7 s on a 2-core lavapipe, so the
    // default keeps the batch and cuts the steps 50× (1500 → 30); `--full` is the spec.
    let mut ts = spec.clone();
    let (steps, batch, eval_batches) = ctx.size.pick((20, 8, 4), (30, 32, 10), (1500, 32, 200));
    ts.steps = steps;
    ts.batch = batch;
    ts.eval_batches = eval_batches;
    ts.warmup = (spec.warmup * steps / spec.steps).max(1);
    ts.curve_batches = ctx.size.pick(2, 2, 20);
    ts.curve_points = ctx.size.pick(3, 3, 10);
    ts.log_every = ctx.size.pick(5, 5, 10);
    let corpus = Corpus::fortunes()?;
    let mut rb = ReportBuilder::new(
        ctx,
        "softmoe",
        "docs/specs/sparse-methods.md §1",
        serde_json::json!({
            "model": LmConfig::spec(Routing::TopK { k: 1 }, ctx.seed),
            "train": ts,
            "runs": runs().iter().map(|(id, label, r)| serde_json::json!({"id": id, "label": label, "routing": r})).collect::<Vec<_>>(),
            "corpus": {"train_bytes": corpus.train.len(), "val_bytes": corpus.val.len()},
        }),
    );
    if ctx.size != Size::Full {
        rb.note(format!(
            "cut by §5: every run trains {} steps of batch {} × 64 (spec: 1500 × 32) and is evaluated on {} validation batches (spec: 200); `--full` runs the spec's configuration",
            ts.steps, ts.batch, ts.eval_batches
        ));
    }
    let ids: Vec<&str> = match ctx.size {
        Size::Quick => vec!["d"],
        _ => vec!["a", "b", "c", "d"],
    };
    let mut results: Vec<RunResult> = Vec::new();
    let mut model_d = None;
    for (id, label, routing) in runs() {
        if !ids.contains(&id) {
            continue;
        }
        let cfg = LmConfig::spec(routing, ctx.seed);
        let (model, params, res) = experiment::train_run(
            dev,
            &corpus,
            cfg,
            &ts,
            id,
            label,
            Some(ctx.path(&format!("run_{id}"))),
            ctx.quiet,
        )?;
        if id == "d" {
            model_d = Some((model, params));
        }
        results.push(res);
    }
    let get = |id: &str| results.iter().find(|r| r.id == id);
    // M1: the budget at every logged step of (d).
    if let Some(d) = get("d") {
        let dev_k = d
            .k_traj
            .iter()
            .map(|(_, k)| (k.iter().sum::<f64>() - 8.0).abs())
            .fold(0.0, f64::max);
        let min_k = d
            .k_traj
            .iter()
            .flat_map(|(_, k)| k.iter().copied())
            .fold(f64::INFINITY, f64::min);
        rb.claim(Claim::le(
            "M1",
            &format!(
                "budget: max |Σ k_ℓ − K| over the {} logged steps of (d), K = 8",
                d.k_traj.len()
            ),
            dev_k,
            1e-4,
            "",
        ));
        rb.claim(Claim::ge(
            "M1b",
            "budget: min k_ℓ over the logged steps of (d)",
            min_k,
            1.0,
            "",
        ));
    }
    let ce = |id: &str| get(id).map(|r| r.eval.ce).unwrap_or(f64::NAN);
    let ae_eval = |id: &str| {
        get(id)
            .map(|r| r.eval.ae.iter().sum::<f64>() / r.eval.ae.len().max(1) as f64)
            .unwrap_or(f64::NAN)
    };
    if ctx.size != Size::Quick {
        rb.claim(Claim::le(
            "M2",
            "efficiency: CE(c) / CE(b) (SoftMoE* k=1.5 vs top-2)",
            ce("c") / ce("b"),
            1.02,
            "",
        ));
        rb.claim(Claim::le(
            "M2b",
            "efficiency: eval AE(c), mean over layers",
            ae_eval("c"),
            1.85,
            "experts",
        ));
        rb.claim(Claim::le(
            "M3",
            "CE(c) − CE(a) (must be < 0: SoftMoE* beats top-1)",
            ce("c") - ce("a"),
            -1e-12,
            "nats/byte",
        ));
        rb.claim(Claim::le(
            "M3b",
            "CE(d) / CE(b) (learned allocation vs top-2)",
            ce("d") / ce("b"),
            1.02,
            "",
        ));
        if let Some(c) = get("c") {
            let (std, frac) = hist_stats(&c.eval.hist);
            rb.claim(Claim::ge(
                "M4",
                "adaptivity: std of the per-token active count in (c)",
                std,
                0.3,
                "experts",
            ));
            rb.claim(Claim::ge(
                "M4b",
                "adaptivity: fraction of tokens off the modal count in (c)",
                frac,
                0.1,
                "",
            ));
        }
    }
    if let Some(d) = get("d") {
        let k = &d.eval.k;
        let spread =
            k.iter().cloned().fold(f64::MIN, f64::max) - k.iter().cloned().fold(f64::MAX, f64::min);
        let c = Claim::ge(
            "M5",
            "allocation: max k_ℓ − min k_ℓ at the end of (d)",
            spread,
            0.4,
            "",
        );
        rb.claim(if ctx.size == Size::Quick {
            c.not_gating()
        } else {
            c
        });
        rb.claim(Claim::reported(
            "M5b",
            "last layer's k_L − K/L at the end of (d) (paper: > 0; informative only at 4 layers)",
            k.last().copied().unwrap_or(f64::NAN) - 2.0,
            "",
        ));
    }
    if let Some((model, params)) = &model_d {
        let gap = causality_gap(dev, model, params, ctx.seed + 3)?;
        rb.claim(Claim::le(
            "M6",
            "causality: max change of eval logits at ≤ t when bytes > t change, model (d)",
            gap,
            1e-5,
            "",
        ));
    }
    rb.claim(Claim::le(
        "E1",
        "sparse expert evaluation (grouped, routed pairs only) vs the dense path: outputs and gradients (x, W_g, k), top-1/top-2/soft/learned-k, max rel. diff",
        sparse_dense_gap(dev, ctx.seed + 13)?,
        1e-5,
        "",
    ));
    let (m7, n7) = toy_gradcheck(dev, ctx.seed + 11)?;
    rb.claim(Claim::le(
        "M7",
        &format!("∂ℒ/∂η, ∂ℒ/∂W_g vs central differences on a 2-layer toy (mask frozen), worst rel. err over {n7} directions"),
        if n7 == 0 { f64::NAN } else { m7 },
        1e-2,
        "",
    ));
    // Tables.
    let rows = results
        .iter()
        .map(|r| {
            let (std, frac) = hist_stats(&r.eval.hist);
            vec![
                format!("({}) {}", r.id, r.label),
                format!("{:.4}", r.eval.ce),
                fmt_list(&r.eval.ae),
                fmt_list(&r.ae_train),
                fmt_list(&r.eval.k),
                format!("{std:.3}"),
                format!("{frac:.3}"),
                format!("{:.0}", r.wall_s),
            ]
        })
        .collect();
    rb.table(
        "runs (validation CE in nats/byte; AE = active experts per token, per layer)",
        &[
            "run",
            "val CE",
            "AE eval",
            "AE train (last 20 %)",
            "k_ℓ",
            "active std",
            "off-mode",
            "wall s",
        ],
        rows,
    );
    plots(ctx, &mut rb, &results)?;
    Ok(rb.finish())
}

fn fmt_list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Standard deviation of the active count and the fraction of tokens off its mode.
pub fn hist_stats(hist: &[u64]) -> (f64, f64) {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = hist
        .iter()
        .enumerate()
        .map(|(j, &c)| j as f64 * c as f64)
        .sum::<f64>()
        / n as f64;
    let var = hist
        .iter()
        .enumerate()
        .map(|(j, &c)| (j as f64 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / n as f64;
    let mode = hist.iter().copied().max().unwrap_or(0);
    (var.sqrt(), 1.0 - mode as f64 / n as f64)
}

fn plots(ctx: &Context, rb: &mut ReportBuilder, results: &[RunResult]) -> Result<()> {
    let mut p = LinePlot::new("validation cross-entropy", "step", "CE (nats/byte)");
    for r in results {
        p.series.push(
            Series::line(
                format!("({}) {}", r.id, r.label),
                r.ce_curve.iter().map(|&(s, c)| (s as f64, c)).collect(),
            )
            .with_style(SeriesStyle::LinePoints),
        );
    }
    p.save(ctx.path("val_ce.png"))?;
    rb.plot("val_ce.png");
    if let Some(d) = results.iter().find(|r| r.id == "d") {
        let mut p = LinePlot::new("learned allocation k_ℓ, run (d), K = 8", "step", "k_ℓ");
        let layers = d.k_traj.first().map(|k| k.1.len()).unwrap_or(0);
        for l in 0..layers {
            p.series.push(Series::line(
                format!("layer {}", l + 1),
                d.k_traj.iter().map(|(s, k)| (*s as f64, k[l])).collect(),
            ));
        }
        p.save(ctx.path("k_per_layer.png"))?;
        rb.plot("k_per_layer.png");
    }
    let mut p = LinePlot::new(
        "active experts per token (validation, all layers)",
        "active experts",
        "fraction of tokens",
    );
    for r in results {
        let n: u64 = r.eval.hist.iter().sum::<u64>().max(1);
        p.series.push(
            Series::line(
                format!("({}) {}", r.id, r.label),
                r.eval
                    .hist
                    .iter()
                    .enumerate()
                    .map(|(j, &c)| (j as f64, c as f64 / n as f64))
                    .collect(),
            )
            .with_style(SeriesStyle::LinePoints),
        );
    }
    p.save(ctx.path("active_hist.png"))?;
    rb.plot("active_hist.png");
    Ok(())
}

/// The `lapis softmoe …` subcommand: `train` on the fortunes or a user's text, `sample`
/// from a trained model.
pub fn command() -> clap::Command {
    use clap::{value_parser, Arg, ArgAction, Command};
    Command::new("softmoe")
        .about("SoftMoE char-level language model: train on text, sample from it")
        .subcommand_required(true)
        .subcommand(
            Command::new("train")
                .about("Train the §1.4 char LM (default: SoftMoE with learned allocation, K = 8) and save model.safetensors")
                .arg(Arg::new("text").long("text").value_name("FILE").value_parser(value_parser!(PathBuf)).help("UTF-8/bytes text file (default: the shipped fortunes corpus); first 90 % of lines train"))
                .arg(Arg::new("out").long("out").value_name("DIR").required(true).value_parser(value_parser!(PathBuf)))
                .arg(Arg::new("routing").long("routing").default_value("d").help("a = top-1, b = top-2, c = SoftMoE* k=1.5, d = SoftMoE K=8"))
                .arg(Arg::new("steps").long("steps").default_value("1500").value_parser(value_parser!(usize)))
                .arg(Arg::new("batch").long("batch").default_value("32").value_parser(value_parser!(usize)))
                .arg(Arg::new("seed").long("seed").default_value("0").value_parser(value_parser!(u64)))
                .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue)),
        )
        .subcommand(
            Command::new("sample")
                .about("Print text generated by a trained model")
                .arg(Arg::new("checkpoint").long("checkpoint").value_name("FILE").required(true).value_parser(value_parser!(PathBuf)))
                .arg(Arg::new("prompt").long("prompt").default_value(""))
                .arg(Arg::new("bytes").long("bytes").default_value("300").value_parser(value_parser!(usize)))
                .arg(Arg::new("temperature").long("temperature").default_value("0.8").value_parser(value_parser!(f32)))
                .arg(Arg::new("seed").long("seed").default_value("0").value_parser(value_parser!(u64))),
        )
}

/// Runs `lapis softmoe …`.
pub fn run(m: &clap::ArgMatches) -> Result<()> {
    let dev = Device::auto()?;
    match m.subcommand() {
        Some(("train", a)) => {
            let out: &PathBuf = a.get_one("out").expect("required");
            let id: &String = a.get_one("routing").expect("default");
            let routing = runs()
                .into_iter()
                .find(|r| r.0 == id.as_str())
                .map(|r| r.2)
                .ok_or_else(|| {
                    LapisError::invalid("softmoe train", "routing", id, "must be a, b, c or d")
                })?;
            let cfg = LmConfig::spec(routing, *a.get_one::<u64>("seed").expect("default"));
            let corpus = match a.get_one::<PathBuf>("text") {
                Some(p) => Corpus::from_file(p, cfg.context)?,
                None => Corpus::fortunes()?,
            };
            let mut ts = TrainSpec::spec();
            ts.steps = *a.get_one("steps").expect("default");
            ts.batch = *a.get_one("batch").expect("default");
            if ts.steps == 0 || ts.batch == 0 {
                return Err(LapisError::invalid(
                    "softmoe train",
                    "steps/batch",
                    format!("{}/{}", ts.steps, ts.batch),
                    "must be ≥ 1",
                ));
            }
            ts.warmup = ts.warmup.min(ts.steps / 10).max(1);
            let (_, _, res) = experiment::train_run(
                &dev,
                &corpus,
                cfg,
                &ts,
                id,
                "user run",
                Some(out.clone()),
                a.get_flag("quiet"),
            )?;
            println!(
                "validation CE {:.4} nats/byte, AE per layer [{}], k_ℓ [{}]; model in {}",
                res.eval.ce,
                fmt_list(&res.eval.ae),
                fmt_list(&res.eval.k),
                out.join("model.safetensors").display()
            );
            Ok(())
        }
        Some(("sample", a)) => {
            let path: &PathBuf = a.get_one("checkpoint").expect("required");
            let (model, params) = experiment::load_model(&dev, path)?;
            let prompt: &String = a.get_one("prompt").expect("default");
            let text = experiment::sample(
                &dev,
                &model,
                &params,
                prompt.as_bytes(),
                *a.get_one("bytes").expect("default"),
                *a.get_one("temperature").expect("default"),
                *a.get_one("seed").expect("default"),
            )?;
            println!("{}", String::from_utf8_lossy(&text));
            Ok(())
        }
        _ => Err(LapisError::invalid(
            "softmoe",
            "command",
            "",
            "use `train` or `sample`",
        )),
    }
}
