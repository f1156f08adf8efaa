//! `lapis reproduce cedar`: the small experiment of spec §3.3 and the claims C1–C5 of §3.4.
//!
//! Data A of §2.3: the shipped MiniLM embeddings of corpus sentences (384-d), split 90/10
//! (seeded), preprocessed as SoftSAE's CLIP code does (subtract the train mean, divide by
//! `√(mean‖x‖²)` taken before centring); the vocabulary (~500 corpus words) goes through
//! the same preprocessing. Models, all with per-row hard top-k by magnitude at evaluation:
//! - identity, PCA and a seeded random orthogonal basis (baselines);
//! - **CEDAR** (the main model): Newton–Schulz, PCA init, the mean loss over k ∈ {16, 4, 8,
//!   32} (one Q for the whole trade-off curve);
//! - CEDAR trained at k = 16 only (not in `--quick`) and its in-tape `exp(P − Pᵀ)Q₀`
//!   variant (`--full` only);
//! - TopK SAE with F = 4d at k = 16 and 32 (`softsae::train_topk_sae`, not in `--quick`).
//!
//! Claims (§3.4): C1 invertibility (k = d) and orthogonality; C2 FVU ordering CEDAR < PCA <
//! identity at k ∈ {8, 16, 32} and CEDAR ≤ 0.95·PCA at 16; C3 CEDAR ≤ 1.5·SAE at 16 and
//! 32; C4 axis alignment of the vocabulary (mean `κ_w = max_j c_wj²/‖c_w‖²`) ≥ 1.5×
//! identity's and > PCA's; C5 concept consistency (mean cosine between each axis's label
//! word and its top-10 held-out sentences, sign-matched) ≥ PCA's + 0.02.
//!
//! Sizes: spec §3.2 trains 2000 steps (SAE 3000); the default cuts every trained run by
//! the same factor 8 (§5: ~1 s per CEDAR step on lavapipe), `--quick` by 50 and gates C1
//! and the baselines' half of C2 (C2b; the trained claims are reported), `--full` runs uncut.

use std::fmt::Write as _;
use std::time::Instant;

use lapis_ops::Result;

use super::fit::{fit, FitConfig, FitLog, Param};
use super::linalg::column_mean;
use super::model::Cedar;
use crate::data::{sentence_embeddings, split_90_10, word_embeddings, Preprocess, TextEmbeddings};
use crate::plot::{LegendPosition, LinePlot, Series, SeriesStyle};
use crate::reproduce::{fmt_value, Claim, Context, Report, ReportBuilder, Size};

/// The k's of the trade-off curve.
const CURVE_KS: [usize; 6] = [2, 4, 8, 16, 32, 64];

/// Mean over the vocabulary of `κ_w = max_j c_wj²/‖c_w‖²`.
fn alignment(scores: &[f32], d: usize) -> f64 {
    let rows = scores.chunks(d);
    let n = rows.len().max(1);
    rows.map(|r| r.iter().map(|v| f64::from(*v).powi(2)).fold(0.0, f64::max))
        .sum::<f64>()
        / n as f64
}

/// Each axis's label `(word, sign)` from the normalized vocabulary codes.
fn labels(scores: &[f32], d: usize) -> Vec<(usize, f32)> {
    (0..d)
        .map(|j| {
            scores
                .chunks(d)
                .enumerate()
                .map(|(w, r)| (w, r[j]))
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(w, s)| (w, s.signum()))
                .unwrap_or((0, 1.0))
        })
        .collect()
}

/// The `top` held-out rows with the largest `sign·z_ij` for axis `j`.
fn top_rows(codes: &[f32], d: usize, j: usize, sign: f32, top: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..codes.len() / d).collect();
    idx.sort_by(|&a, &b| (sign * codes[b * d + j]).total_cmp(&(sign * codes[a * d + j])));
    idx.truncate(top);
    idx
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// C5's consistency: mean over axes of the mean cosine between the label word's raw
/// embedding and the raw embeddings of the axis's top-10 (sign-matched) held-out sentences.
fn consistency(
    scores: &[f32],
    codes: &[f32],
    d: usize,
    words: &TextEmbeddings,
    held: &TextEmbeddings,
) -> f64 {
    let lab = labels(scores, d);
    let mut total = 0.0;
    for (j, &(w, s)) in lab.iter().enumerate() {
        let rows = top_rows(codes, d, j, s, 10);
        let e = words.row(w);
        let ne = dot(e, e).sqrt().max(1e-30);
        let c: f64 = rows
            .iter()
            .map(|&r| {
                let x = held.row(r);
                dot(e, x) / (ne * dot(x, x).sqrt().max(1e-30))
            })
            .sum::<f64>()
            / rows.len().max(1) as f64;
        total += c;
    }
    total / d as f64
}

fn short(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

/// Runs the reproduction (see the module docs).
pub fn reproduce(ctx: &Context) -> Result<Report> {
    let dev = &ctx.dev;
    let size = ctx.size;
    let factor = size.pick(50usize, 8, 1);
    let cedar_steps = 2000 / factor;
    let sae_steps = 3000 / factor;
    let extras = size != Size::Quick;
    let log_every = size.pick(5usize, 10, 20);

    let sentences = sentence_embeddings()?;
    let words = word_embeddings()?;
    let d = sentences.dim;
    let (tr_idx, te_idx) = split_90_10(sentences.len(), ctx.seed);
    let (tr, te) = (sentences.subset(&tr_idx), sentences.subset(&te_idx));
    let pre = Preprocess::fit(&tr.x, d)?;
    let (mut xtr, mut xte, mut xw) = (tr.x.clone(), te.x.clone(), words.x.clone());
    pre.apply(&mut xtr);
    pre.apply(&mut xte);
    pre.apply(&mut xw);

    let mut rb = ReportBuilder::new(
        ctx,
        "cedar",
        "docs/specs/sparse-methods.md §3",
        serde_json::json!({
            "data": {"sentences": sentences.len(), "train": tr.len(), "held_out": te.len(), "dim": d,
                     "vocabulary": words.len(), "preprocess": "x ← (x − μ_train)/√(mean‖x_train‖²)"},
            "cedar": {"steps": cedar_steps, "batch": 512, "lr": 1e-3, "alpha": "0.5·rms(z) → 0.01·rms(z) geometric over 60 %, then hard",
                      "newton_schulz": 3, "init": "pca", "main_ks": [16, 4, 8, 32]},
            "sae": {"latents": 4 * d, "ks": [16, 32], "steps": if extras { sae_steps } else { 0 }},
            "cut_factor": factor,
        }),
    );
    rb.note(format!(
        "Every trained run is cut by the same factor {factor}: CEDAR {cedar_steps} of 2000 steps, \
         TopK SAE {sae_steps} of 3000 (spec §5 sizing; --full runs uncut)."
    ));

    // ---- baselines ------------------------------------------------------------------
    let mean = column_mean(&xtr, d);
    let identity = Cedar::identity(dev, &mean, 16)?;
    let (pca, eig) = Cedar::pca(dev, &xtr, d, 16)?;
    let random = Cedar::random(dev, &xtr, d, 16, ctx.seed ^ 0x5EED)?;
    let var_top16: f64 = eig[..16].iter().sum::<f64>() / eig.iter().sum::<f64>();

    // ---- CEDAR runs -----------------------------------------------------------------
    let base = FitConfig {
        steps: cedar_steps,
        seed: ctx.seed,
        quiet: ctx.quiet,
        log_every,
        ..FitConfig::default()
    };
    let mut runs: Vec<(String, Cedar, FitLog)> = Vec::new();
    let t = Instant::now();
    let (main, main_log) = fit(
        dev,
        &xtr,
        d,
        &FitConfig {
            ks: vec![16, 4, 8, 32],
            ..base.clone()
        },
        Some(&xte),
    )?;
    rb.note(format!(
        "CEDAR (mean loss over k ∈ {{4, 8, 16, 32}}): {cedar_steps} steps in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    runs.push(("CEDAR k∈{4,8,16,32}".into(), main.clone(), main_log.clone()));
    if extras {
        let mut variants = vec![("CEDAR k=16", Param::NewtonSchulz)];
        if size == Size::Full {
            variants.push(("CEDAR k=16 expm", Param::Expm));
        }
        for (name, param) in variants {
            let t = Instant::now();
            let (m, log) = fit(
                dev,
                &xtr,
                d,
                &FitConfig {
                    ks: vec![16],
                    param,
                    ..base.clone()
                },
                Some(&xte),
            )?;
            rb.note(format!(
                "{name}: {cedar_steps} steps in {:.0} s",
                t.elapsed().as_secs_f64()
            ));
            runs.push((name.into(), m, log));
        }
    }

    // ---- FVU table and the trade-off ---------------------------------------------------
    let mut models: Vec<(String, &Cedar)> = vec![
        ("identity".into(), &identity),
        ("PCA".into(), &pca),
        ("random orthogonal".into(), &random),
    ];
    models.extend(runs.iter().map(|(n, m, _)| (n.clone(), m)));
    let mut fvu: Vec<Vec<f64>> = Vec::new();
    for (_, m) in &models {
        fvu.push(
            CURVE_KS
                .iter()
                .map(|&k| m.fvu(dev, &xte, k))
                .collect::<Result<Vec<f64>>>()?,
        );
    }
    let at = |row: usize, k: usize| fvu[row][CURVE_KS.iter().position(|&c| c == k).unwrap_or(0)];
    let (i_id, i_pca, i_main) = (0usize, 1usize, 3usize);

    // TopK SAE baselines.
    let mut sae: Vec<(usize, f64)> = Vec::new();
    if extras {
        for k in [16usize, 32] {
            let t = Instant::now();
            let s = crate::softsae::train_topk_sae(
                dev,
                &xtr,
                d,
                4 * d,
                k,
                sae_steps,
                ctx.seed,
                ctx.quiet,
            )?;
            sae.push((k, s.fvu(dev, &xte)?));
            rb.note(format!(
                "TopK SAE F = {}, k = {k}: {sae_steps} steps in {:.0} s",
                4 * d,
                t.elapsed().as_secs_f64()
            ));
        }
    }

    // ---- C1 -----------------------------------------------------------------------------
    let inv = main.max_inverse_error(dev, &xte)?;
    rb.claim(Claim::le(
        "C1a",
        "invertibility: max ‖x − x̂‖/‖x‖ over held-out rows with k = d (CEDAR, f32)",
        inv,
        1e-5,
        "",
    ));
    rb.claim(Claim::le(
        "C1b",
        "orthogonality: max |QᵀQ − I| of the stored f32 basis (CEDAR)",
        main.orthogonality_error(),
        1e-5,
        "",
    ));
    rb.claim(Claim::reported(
        "C1c",
        "max |QᵀQ − I| after the last device Newton–Schulz step, before the host f64 polish",
        main_log.orth_err_device,
        "",
    ));

    // ---- C2 -----------------------------------------------------------------------------
    let gate = |c: Claim| if extras { c } else { c.not_gating() };
    for k in [8usize, 16, 32] {
        rb.claim(gate(Claim::le(
            &format!("C2a-k{k}"),
            &format!("FVU_CEDAR / FVU_PCA at k = {k} (held-out; must be < 1)"),
            at(i_main, k) / at(i_pca, k),
            1.0,
            "",
        )));
        // The baselines are not trained: this half of C2 gates at every size.
        rb.claim(Claim::le(
            &format!("C2b-k{k}"),
            &format!("FVU_PCA / FVU_identity at k = {k} (held-out; must be < 1)"),
            at(i_pca, k) / at(i_id, k),
            1.0,
            "",
        ));
    }
    rb.claim(gate(Claim::le(
        "C2c",
        "FVU_CEDAR / FVU_PCA at k = 16 (held-out)",
        at(i_main, 16) / at(i_pca, 16),
        0.95,
        "",
    )));
    if extras {
        rb.claim(Claim::reported(
            "C2d",
            "FVU_CEDAR(trained at k = 16 only) / FVU_PCA at k = 16",
            at(4, 16) / at(i_pca, 16),
            "",
        ));
        if size == Size::Full {
            rb.claim(Claim::reported(
                "C2e",
                "FVU_CEDAR(expm, k = 16) / FVU_PCA at k = 16",
                at(5, 16) / at(i_pca, 16),
                "",
            ));
        } else {
            rb.note(
                "The in-tape exp(P − Pᵀ)Q₀ variant runs in --full only (≈1.5× the cost of a \
                 Newton–Schulz step); its gradient check is in models/tests/cedar.rs.",
            );
        }
    }

    // ---- C3 -----------------------------------------------------------------------------
    for &(k, f) in &sae {
        rb.claim(
            Claim::le(
                &format!("C3-k{k}"),
                &format!(
                    "FVU_CEDAR / FVU_TopK-SAE(F = {}) at k = {k} (threshold uncalibrated: not gating)",
                    4 * d
                ),
                at(i_main, k) / f,
                1.5,
                "",
            )
            .not_gating(),
        );
    }
    if sae.is_empty() {
        rb.note("C3 (vs TopK SAE) is not measured in --quick (the SAE runs take minutes).");
    }

    // ---- C4, C5 -------------------------------------------------------------------------
    let scores: Vec<Vec<f32>> = models
        .iter()
        .map(|(_, m)| m.vocab_scores(dev, &xw))
        .collect::<Result<_>>()?;
    let kappa: Vec<f64> = scores.iter().map(|s| alignment(s, d)).collect();
    rb.claim(gate(Claim::ge(
        "C4a",
        "axis alignment: mean κ_w (CEDAR) / mean κ_w (identity basis)",
        kappa[i_main] / kappa[i_id],
        1.5,
        "",
    )));
    rb.claim(gate(Claim::ge(
        "C4b",
        "axis alignment: mean κ_w (CEDAR) / mean κ_w (PCA) (must exceed 1)",
        kappa[i_main] / kappa[i_pca],
        1.0,
        "",
    )));
    let codes: Vec<Vec<f32>> = models
        .iter()
        .map(|(_, m)| m.code_rows(dev, &xte))
        .collect::<Result<_>>()?;
    let cons: Vec<f64> = (0..models.len())
        .map(|i| consistency(&scores[i], &codes[i], d, &words, &te))
        .collect();
    rb.claim(gate(Claim::ge(
        "C5",
        &format!(
            "concept consistency: CEDAR − PCA mean label/top-10 cosine (CEDAR {:.4}, PCA {:.4})",
            cons[i_main], cons[i_pca]
        ),
        cons[i_main] - cons[i_pca],
        0.02,
        "",
    )));

    // ---- tables ---------------------------------------------------------------------------
    let mut header: Vec<String> = vec!["model".into()];
    header.extend(CURVE_KS.iter().map(|k| format!("FVU k={k}")));
    header.extend(["mean κ_w".to_string(), "consistency".to_string()]);
    let mut rows: Vec<Vec<String>> = models
        .iter()
        .enumerate()
        .map(|(i, (n, _))| {
            let mut r = vec![n.clone()];
            r.extend(fvu[i].iter().map(|&v| fmt_value(v)));
            r.push(fmt_value(kappa[i]));
            r.push(fmt_value(cons[i]));
            r
        })
        .collect();
    for &(k, f) in &sae {
        let mut r = vec![format!("TopK SAE F={} (trained k={k})", 4 * d)];
        r.extend(
            CURVE_KS
                .iter()
                .map(|&c| if c == k { fmt_value(f) } else { "—".into() }),
        );
        r.extend(["—".to_string(), "—".to_string()]);
        rows.push(r);
    }
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    rb.table(
        "held-out FVU (per-row hard top-k), axis alignment and concept consistency",
        &hdr,
        rows,
    );
    rb.note(format!(
        "PCA: the top 16 eigenvalues hold {:.1} % of the training variance.",
        100.0 * var_top16
    ));

    // Axis names of CEDAR: the 12 axes used most often (held-out, k = 16).
    let h = main.encode_rows(dev, &xte, 16)?;
    let mut usage = vec![0usize; d];
    for row in h.chunks(d) {
        for (j, v) in row.iter().enumerate() {
            usage[j] += usize::from(*v != 0.0);
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| usage[b].cmp(&usage[a]));
    let names = main.name_axes(dev, &xw, 3)?;
    let mut axes_md = String::from("# CEDAR axes (held-out usage at k = 16)\n\n");
    let mut table = Vec::new();
    for (rank, &j) in order.iter().enumerate() {
        let lab: Vec<String> = names[j]
            .top
            .iter()
            .map(|&(w, s)| {
                format!(
                    "{}{} ({s:+.2})",
                    if s < 0.0 { "−" } else { "+" },
                    words.texts[w]
                )
            })
            .collect();
        let sign = names[j].top.first().map(|t| t.1.signum()).unwrap_or(1.0);
        let sents: Vec<String> = top_rows(&codes[i_main], d, j, sign, 5)
            .iter()
            .map(|&r| te.texts[r].clone())
            .collect();
        let _ = writeln!(
            axes_md,
            "## axis {j} (used by {} of {} held-out rows)\n\nlabels: {}\n",
            usage[j],
            te.len(),
            lab.join(", ")
        );
        for s in &sents {
            let _ = writeln!(axes_md, "- {s}");
        }
        axes_md.push('\n');
        if rank < 12 {
            table.push(vec![
                j.to_string(),
                usage[j].to_string(),
                lab.join(", "),
                sents
                    .iter()
                    .map(|s| short(s, 50))
                    .collect::<Vec<_>>()
                    .join(" | "),
            ]);
        }
    }
    std::fs::write(ctx.path("axes.md"), axes_md)
        .map_err(|e| lapis_ops::LapisError::file("write the axis names", ctx.path("axes.md"), e))?;
    rb.table(
        "CEDAR axes used most on held-out rows (k = 16): top-3 labels (sign = end of the axis) and top-5 sentences (all axes: axes.md)",
        &["axis", "rows using it", "labels", "top sentences"],
        table,
    );

    // ---- plots ----------------------------------------------------------------------------
    let mut p = LinePlot::new(
        "CEDAR: held-out FVU vs non-zeros per row",
        "k (non-zeros per row)",
        "FVU (held-out)",
    );
    p.log_x = true;
    p.legend = LegendPosition::LowerLeft;
    for (i, (n, _)) in models.iter().enumerate() {
        let pts = CURVE_KS
            .iter()
            .zip(&fvu[i])
            .map(|(&k, &f)| (k as f64, f))
            .collect();
        p.series
            .push(Series::line(n.clone(), pts).with_style(SeriesStyle::LinePoints));
    }
    if !sae.is_empty() {
        let pts = sae.iter().map(|&(k, f)| (k as f64, f)).collect();
        p.series.push(
            Series::line(format!("TopK SAE F={}", 4 * d), pts).with_style(SeriesStyle::Points),
        );
    }
    p.save(ctx.path("tradeoff.png"))?;
    rb.plot("tradeoff.png");

    let mut p = LinePlot::new(
        "CEDAR training",
        "step",
        "loss (train) / FVU at k = 16 (held-out, dashed)",
    );
    for (n, _, log) in &runs {
        let pts = log.loss.iter().map(|&(s, l)| (s as f64, l)).collect();
        p.series.push(Series::line(format!("{n} train loss"), pts));
        let pts = log.eval.iter().map(|&(s, l)| (s as f64, l)).collect();
        p.series
            .push(Series::line(format!("{n} held-out"), pts).with_style(SeriesStyle::Dashed));
    }
    p.series.push(
        Series::line(
            "PCA held-out",
            vec![(0.0, at(i_pca, 16)), (cedar_steps as f64, at(i_pca, 16))],
        )
        .with_style(SeriesStyle::Dashed),
    );
    p.save(ctx.path("training.png"))?;
    rb.plot("training.png");
    rb.note(format!(
        "Soft phase: steps 0–{}; hard top-k after. rms(z) = {:.4}.",
        main_log.hard_from, main_log.rms_z
    ));
    Ok(rb.finish())
}
