//! `lapis reproduce laplace-engine`: the claims of `specs/laplace-engine.md` (§5 "Tests
//! that must hold") and of the accuracy and speed issues, measured on the device.
//!
//! The operator is `Y = K V`, `K_ji = exp(−λ|t_j − s_i|)` (real λ, or complex
//! `λ = a + ib` for the phased form), computed by the Laplace-kernel recursion: sort the
//! `n + m` anchors, two exponential-decay scans, a gather — O(N log N), no `n × m` matrix.
//!
//! Claims:
//! - **L1–L3** exactness against the dense f64 sums at `n = m = 4096` (quick: 1024),
//!   `c = 2`, anchors uniform in `[0, 10)`, `λ = 1.3` (phased: `1.3 + 0.7i`): forward,
//!   phased forward and every gradient (`V̄, s̄, t̄, λ̄`), each componentwise against the sum
//!   of the absolute values of its terms (`|ΔY_j| / Σ_i |K_ji V_i|`, and the same for each
//!   gradient's terms); bar 1e-5 (f32 sweeps, chunks of 32 per level).
//! - **L4** Gram mode equals rectangular mode with `t = s` (bitwise: same kernel path).
//! - **L5** accuracy does not depend on size: the componentwise error at the largest `n`
//!   against the O(N) f64 sweep reference stays ≤ 1e-5 and within 4× of the error at
//!   2^12.
//! - **L6** near-linear time: `time(16n) / time(n) ≤ 20` (sizes 2^18 → 2^22; quick
//!   2^14 → 2^18; an `n log n` law gives 16·22/18 ≈ 19.6 at most).
//! - **L7** forward + backward (every gradient) costs ≤ 3× the forward (n = m = 2^20; quick:
//!   2^18, reported but not gated: it sits at the bar on lavapipe). The backward is the
//!   spec's (§3: O(N·c) after the sort, reusing the forward's permutation), as the tape
//!   runs it: `laplace_apply_sorted` + `laplace_apply_backward_sorted`. The stand-alone
//!   `laplace_apply_backward`, which sorts again, is reported beside it.
//! - reported: the operator against cubek's FFT of the same length and a dense matvec.
//!
//! Plots: `time_vs_n.png` (operator, argsort and FFT against `n`, log–log, with an
//! `n log n` guide) and `error_vs_n.png`.

use lapis_ops::reference::{self, RefTensor};
use lapis_ops::timing::time_op;
use lapis_ops::{DType, Device, Result, Tensor};

use crate::plot::{LegendPosition, LinePlot, Series, SeriesStyle};
use crate::reproduce::{fmt_value, Claim, Context, Report, ReportBuilder, Size};

/// Runs the reproduction (see the module docs).
pub fn reproduce(ctx: &Context) -> Result<Report> {
    let size = ctx.size;
    let n_exact = 4096;
    let acc_sizes: Vec<usize> = match size {
        Size::Quick => vec![1 << 12, 1 << 16, 1 << 18],
        Size::Default => vec![1 << 12, 1 << 16, 1 << 20, 1 << 22],
        Size::Full => vec![1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24],
    };
    let time_sizes: Vec<usize> = match size {
        Size::Quick => vec![1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18],
        Size::Default => (10..=22).step_by(2).map(|e| 1usize << e).collect(),
        Size::Full => (10..=24).step_by(2).map(|e| 1usize << e).collect(),
    };
    let (g_lo, g_hi) = size.pick((1 << 14, 1 << 18), (1 << 18, 1 << 22), (1 << 20, 1 << 24));
    let n_fb = size.pick(1 << 18, 1 << 20, 1 << 22);
    let reps = size.pick(2, 3, 5);
    let largest = *acc_sizes.last().unwrap_or(&n_exact);
    // n sources + n targets merged into one buffer of 2n f32 (and 2n u32 indices).
    ctx.require_bytes("the largest operator", (2 * largest * 4) as u64)?;
    let mut rb = ReportBuilder::new(
        ctx,
        "laplace-engine",
        "docs/specs/laplace-engine.md",
        serde_json::json!({
            "exact": {"n": n_exact, "m": n_exact, "c": 2, "lambda": 1.3, "phased_lambda": [1.3, 0.7],
                      "anchors": "uniform [0, 10)", "seeds": [ctx.seed + 1, ctx.seed + 2, ctx.seed + 3, ctx.seed + 4]},
            "accuracy_sizes": acc_sizes, "time_sizes": time_sizes,
            "growth": [g_lo, g_hi], "fwd_bwd_n": n_fb, "reps": reps,
        }),
    );
    let dev = &ctx.dev;
    let mut bar = ctx.progress("laplace", 4);

    // ---- L1–L4: exactness at n = m = n_exact -----------------------------------------
    bar.set(0, "exactness vs dense f64");
    let ex = exactness(dev, n_exact, ctx.seed)?;
    let txt = |what: &str| {
        format!("{what} vs dense f64 at n = m = {n_exact}, c = 2 (componentwise, / Σ|terms|)")
    };
    rb.claim(Claim::le("L1", &txt("real forward"), ex.forward, 1e-5, ""));
    rb.claim(Claim::le(
        "L2",
        &txt("phased forward (λ = 1.3 + 0.7i)"),
        ex.phased,
        1e-5,
        "",
    ));
    rb.claim(Claim::le(
        "L3",
        &txt("worst gradient of V̄, s̄, t̄, λ̄ (real and phased)"),
        ex.grads.iter().map(|g| g.1).fold(0.0, f64::max),
        1e-5,
        "",
    ));
    rb.claim(Claim::le(
        "L4",
        "Gram mode K(x, x)V equals rectangular mode with t = s (max |difference|)",
        ex.gram_diff,
        0.0,
        "",
    ));
    rb.table(
        "Exactness: componentwise error against the dense f64 sums",
        &["quantity", "error"],
        std::iter::once(("Y (real)".to_string(), ex.forward))
            .chain(std::iter::once(("Y (phased)".to_string(), ex.phased)))
            .chain(ex.grads.iter().cloned())
            .map(|(k, v)| vec![k, fmt_value(v)])
            .collect(),
    );

    // ---- L5: accuracy vs n ----------------------------------------------------------
    bar.set(1, "accuracy vs n (f64 sweeps)");
    let mut acc = Vec::new();
    for &n in &acc_sizes {
        acc.push((n, accuracy_at(dev, n, ctx.seed)?));
    }
    let e0 = acc[0].1;
    let (nl, el) = *acc.last().unwrap_or(&(0, f64::NAN));
    rb.claim(Claim::le(
        "L5a",
        &format!(
            "forward error at n = m = 2^{} vs the O(N) f64 sweep reference",
            nl.trailing_zeros()
        ),
        el,
        1e-5,
        "",
    ));
    rb.claim(Claim::le(
        "L5b",
        &format!(
            "error does not grow with n: error(2^{}) / error(2^12)",
            nl.trailing_zeros()
        ),
        el / e0,
        4.0,
        "×",
    ));
    rb.table(
        "Accuracy vs n (λ = 1, anchors uniform in [0, n/64), signed values)",
        &["n = m", "componentwise error"],
        acc.iter()
            .map(|(n, e)| vec![format!("2^{}", n.trailing_zeros()), fmt_value(*e)])
            .collect(),
    );
    LinePlot {
        log_x: true,
        log_y: true,
        series: vec![
            Series::line(
                "laplace_apply vs f64",
                acc.iter().map(|&(n, e)| (n as f64, e)).collect(),
            )
            .with_style(SeriesStyle::LinePoints),
            Series::line(
                "bar 1e-5",
                vec![(acc_sizes[0] as f64, 1e-5), (nl as f64, 1e-5)],
            )
            .with_style(SeriesStyle::Dashed),
        ],
        ..LinePlot::new(
            "Laplace operator: error vs size",
            "n = m (points)",
            "max_j |ΔY_j| / Σ_i |K_ji V_i| (relative)",
        )
    }
    .save(ctx.path("error_vs_n.png"))?;
    rb.plot("error_vs_n.png");

    // ---- L6, L7, timings -----------------------------------------------------------
    bar.set(2, "timing vs n");
    let mut rows = Vec::new();
    let mut pts: [Vec<(f64, f64)>; 3] = Default::default();
    for &n in &time_sizes {
        let t = times_at(dev, n, reps, ctx.seed)?;
        pts[0].push((n as f64, t.op));
        pts[1].push((n as f64, t.sort));
        pts[2].push((n as f64, t.fft));
        rows.push(vec![
            format!("2^{}", n.trailing_zeros()),
            fmt_value(t.op),
            fmt_value(t.sort),
            fmt_value(t.fft),
            fmt_value(t.op / t.fft),
            t.dense
                .map(|d| fmt_value(t.op / d))
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    let time_of = |n: usize| -> Result<f64> {
        match pts[0].iter().find(|p| p.0 == n as f64) {
            Some(p) => Ok(p.1),
            None => Ok(times_at(dev, n, reps, ctx.seed)?.op),
        }
    };
    let growth = time_of(g_hi)? / time_of(g_lo)?;
    rb.claim(Claim::le(
        "L6",
        &format!(
            "near-linear time: time(2^{}) / time(2^{}) (16× the points)",
            g_hi.trailing_zeros(),
            g_lo.trailing_zeros()
        ),
        growth,
        20.0,
        "×",
    ));
    let (fwd, fb, resort) = fwd_bwd(dev, n_fb, size.pick(9, 7, 7), ctx.seed)?;
    rb.note(format!(
        "L7 timing at n = m = 2^{}: forward {fwd:.1} ms, forward + backward on the forward's \
         sort {fb:.1} ms (the tape's path, gated); forward + stand-alone backward, which \
         sorts again, {resort:.1} ms = {:.2}× (reported) (medians, interleaved runs)",
        n_fb.trailing_zeros(),
        resort / fwd
    ));
    let l7 = Claim::le(
        "L7",
        &format!(
            "forward + backward (all gradients) / forward at n = m = 2^{}",
            n_fb.trailing_zeros()
        ),
        fb / fwd,
        3.0,
        "×",
    );
    if size == Size::Quick {
        // Measured 2.7–3.3 at 2^18 on lavapipe across runs: at the bar, so a busy CI
        // machine flips it either way. The quick run reports it; the default run gates it.
        rb.note(
            "L7 is reported, not gated, at the quick size: on lavapipe it measures 2.7–3.3 \
             across runs at 2^18, at its bar; the default size gates it",
        );
        rb.claim(l7.not_gating());
    } else {
        rb.claim(l7);
    }
    let lt = time_sizes.last().copied().unwrap_or(0);
    let lt_op = pts[0].last().map(|p| p.1).unwrap_or(f64::NAN);
    let lt_fft = pts[2].last().map(|p| p.1).unwrap_or(f64::NAN);
    rb.claim(Claim::reported(
        "L8",
        &format!(
            "operator time / cubek rfft time at n = 2^{} (context, not a bar)",
            lt.trailing_zeros()
        ),
        lt_op / lt_fft,
        "×",
    ));
    rb.table(
        "Time vs n (median ms; sources = targets = n, c = 1)",
        &[
            "n",
            "laplace_apply",
            "argsort(2n)",
            "rfft(n)",
            "vs fft",
            "vs dense",
        ],
        rows,
    );
    // n log n guide through the operator's largest point.
    let (gx, gy) = pts[0].last().copied().unwrap_or((1.0, 1.0));
    let nlogn = |x: f64| x * x.log2();
    let guide: Vec<(f64, f64)> = pts[0]
        .iter()
        .map(|&(x, _)| (x, gy * nlogn(x) / nlogn(gx)))
        .collect();
    LinePlot {
        log_x: true,
        log_y: true,
        legend: LegendPosition::UpperLeft,
        series: vec![
            Series::line("laplace_apply (n + n anchors)", pts[0].clone())
                .with_style(SeriesStyle::LinePoints),
            Series::line("argsort of the 2n anchors", pts[1].clone())
                .with_style(SeriesStyle::LinePoints),
            Series::line("cubek rfft (n)", pts[2].clone()).with_style(SeriesStyle::LinePoints),
            Series::line("n log n guide", guide).with_style(SeriesStyle::Dashed),
        ],
        ..LinePlot::new(
            format!("Laplace operator time vs n ({})", dev.info().name),
            "n (points)",
            "time (ms)",
        )
    }
    .save(ctx.path("time_vs_n.png"))?;
    rb.plot("time_vs_n.png");
    if size == Size::Quick {
        rb.note(
            "quick size: accuracy to 2^18, growth 2^14 → 2^18 \
             (same 16× ratio and bar as the default 2^18 → 2^22)",
        );
    }
    bar.finish("done");
    Ok(rb.finish())
}

struct Exactness {
    forward: f64,
    phased: f64,
    grads: Vec<(String, f64)>,
    gram_diff: f64,
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_f32_vec()?.into_iter().map(f64::from).collect())
}

/// `max_k |got_k − want_k| / max(scale_k, tiny)`.
fn comp_err(got: &[f64], want: &[f64], scale: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .zip(scale)
        .map(|((g, w), s)| (g - w).abs() / s.max(1e-30))
        .fold(0.0, f64::max)
}

/// Sums of absolute terms of the operator and its gradients, for the componentwise
/// errors: `Σ_i |K_ji||V_i|` (Y), `Σ_j |K_ji||Ḡ_j|` (V̄), `a|V_i| Σ_j |K||Ḡ_j|` (s̄),
/// `a|Ḡ_j| Σ_i |K||V_i|` (t̄, with `|λ|` for complex rates), `Σ |d||K||Ḡ||V|` (λ̄).
struct Scales {
    y: Vec<f64>,
    vbar: Vec<f64>,
    sbar: Vec<f64>,
    tbar: Vec<f64>,
    lam: f64,
}

fn scales(s: &[f64], t: &[f64], v: &[f64], g: &[f64], c: usize, a: f64, lam_abs: f64) -> Scales {
    let (n, m) = (s.len(), t.len());
    let mut sc = Scales {
        y: vec![0.0; m * c],
        vbar: vec![0.0; n * c],
        sbar: vec![0.0; n],
        tbar: vec![0.0; m],
        lam: 0.0,
    };
    for j in 0..m {
        for i in 0..n {
            let d = (t[j] - s[i]).abs();
            let k = (-a * d).exp();
            for ch in 0..c {
                let (vi, gj) = (v[i * c + ch].abs(), g[j * c + ch].abs());
                sc.y[j * c + ch] += k * vi;
                sc.vbar[i * c + ch] += k * gj;
                sc.sbar[i] += lam_abs * k * gj * vi;
                sc.tbar[j] += lam_abs * k * gj * vi;
                sc.lam += d * k * gj * vi;
            }
        }
    }
    sc
}

fn exactness(dev: &Device, n: usize, seed: u64) -> Result<Exactness> {
    let c = 2;
    let s = lapis_ops::uniform(dev, &[n], 0.0, 10.0, seed + 1)?;
    let t = lapis_ops::uniform(dev, &[n], 0.0, 10.0, seed + 2)?;
    let v = lapis_ops::normal(dev, &[n, c], 0.0, 1.0, seed + 3)?;
    let g = lapis_ops::normal(dev, &[n, c], 0.0, 1.0, seed + 4)?;
    let (sh, th, vh, gh) = (host(&s)?, host(&t)?, host(&v)?, host(&g)?);
    let vr = RefTensor::new(&[n, c], vh.clone());
    let gr = RefTensor::new(&[n, c], gh.clone());
    let lam = 1.3f64;
    let mut grads = Vec::new();

    // Real.
    let y = host(&lapis_ops::laplace_apply(&s, &t, &v, lam as f32)?)?;
    let (want, _) = reference::laplace_apply(&sh, &th, &vr, (lam, 0.0));
    let sc = scales(&sh, &th, &vh, &gh, c, lam, lam);
    let forward = comp_err(&y, &want.data, &sc.y);
    let gd = lapis_ops::laplace_apply_backward(&s, &t, &v, lam as f32, &g)?;
    let gw = reference::laplace_apply_grad(&sh, &th, &vr, (lam, 0.0), &gr, None);
    grads.push((
        "V̄ (real)".into(),
        comp_err(&host(&gd.values)?, &gw.v.data, &sc.vbar),
    ));
    grads.push((
        "s̄ (real)".into(),
        comp_err(&host(&gd.sources)?, &gw.s, &sc.sbar),
    ));
    grads.push((
        "t̄ (real)".into(),
        comp_err(&host(&gd.targets)?, &gw.t, &sc.tbar),
    ));
    grads.push((
        "λ̄ (real)".into(),
        comp_err(&host(&gd.lambda)?, &[gw.lambda_re], &[sc.lam]),
    ));

    // Phased: Y = K(a + ib) V; the loss Σ Ḡ·Re Y (gy_im = 0).
    let (a, b) = (1.3f64, 0.7f64);
    let (yr, yi) = lapis_ops::laplace_apply_phased(&s, &t, &v, a as f32, b as f32)?;
    let (wr, wi) = reference::laplace_apply(&sh, &th, &vr, (a, b));
    let scp = scales(&sh, &th, &vh, &gh, c, a, (a * a + b * b).sqrt());
    let phased =
        comp_err(&host(&yr)?, &wr.data, &scp.y).max(comp_err(&host(&yi)?, &wi.data, &scp.y));
    let zero = lapis_ops::zeros(dev, &[n, c], DType::F32)?;
    let (gp, gb) =
        lapis_ops::laplace_apply_phased_backward(&s, &t, &v, a as f32, b as f32, &g, &zero)?;
    let gwp = reference::laplace_apply_grad(&sh, &th, &vr, (a, b), &gr, None);
    grads.push((
        "V̄ (phased)".into(),
        comp_err(&host(&gp.values)?, &gwp.v.data, &scp.vbar),
    ));
    grads.push((
        "s̄ (phased)".into(),
        comp_err(&host(&gp.sources)?, &gwp.s, &scp.sbar),
    ));
    grads.push((
        "t̄ (phased)".into(),
        comp_err(&host(&gp.targets)?, &gwp.t, &scp.tbar),
    ));
    grads.push((
        "ā (phased)".into(),
        comp_err(&host(&gp.lambda)?, &[gwp.lambda_re], &[scp.lam]),
    ));
    grads.push((
        "b̄ (phased)".into(),
        comp_err(&host(&gb)?, &[gwp.lambda_im], &[scp.lam]),
    ));

    // Gram mode vs rectangular with t = s.
    let gram = host(&lapis_ops::laplace_gram(&s, &v, lam as f32)?)?;
    let rect = host(&lapis_ops::laplace_apply(&s, &s, &v, lam as f32)?)?;
    let gram_diff = gram
        .iter()
        .zip(&rect)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    Ok(Exactness {
        forward,
        phased,
        grads,
        gram_diff,
    })
}

/// Componentwise forward error at `n = m` against the O(N) f64 sweeps (`λ = 1`, anchors
/// uniform in `[0, n/64)` so the kernel's reach stays ~64 neighbours at every size).
fn accuracy_at(dev: &Device, n: usize, seed: u64) -> Result<f64> {
    let hi = (n as f32 / 64.0).max(1.0);
    let s = lapis_ops::uniform(dev, &[n], 0.0, hi, seed + 11)?;
    let t = lapis_ops::uniform(dev, &[n], 0.0, hi, seed + 12)?;
    let v = lapis_ops::normal(dev, &[n], 0.0, 1.0, seed + 13)?;
    let y = host(&lapis_ops::laplace_apply(&s, &t, &v, 1.0)?)?;
    let (sh, th, vh) = (host(&s)?, host(&t)?, host(&v)?);
    drop((s, t, v));
    let (want, _) =
        reference::laplace_apply_sweep(&sh, &th, &RefTensor::new(&[n, 1], vh.clone()), (1.0, 0.0));
    let va: Vec<f64> = vh.iter().map(|x| x.abs()).collect();
    let (den, _) =
        reference::laplace_apply_sweep(&sh, &th, &RefTensor::new(&[n, 1], va), (1.0, 0.0));
    Ok(comp_err(&y, &want.data, &den.data))
}

struct Times {
    op: f64,
    sort: f64,
    fft: f64,
    dense: Option<f64>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn times_at(dev: &Device, n: usize, reps: usize, seed: u64) -> Result<Times> {
    let s = lapis_ops::uniform(dev, &[n], -100.0, 100.0, seed + 21)?;
    let t = lapis_ops::uniform(dev, &[n], -100.0, 100.0, seed + 22)?;
    let v = lapis_ops::normal(dev, &[n, 1], 0.0, 1.0, seed + 23)?;
    let op = ms(time_op(dev, reps, || {
        lapis_ops::laplace_apply(&s, &t, &v, 0.5)
    })?);
    let merged = lapis_ops::concat(&[&s, &t], 0)?;
    let sort = ms(time_op(dev, reps, || lapis_ops::argsort(&merged))?);
    let sig = lapis_ops::uniform(dev, &[n.next_power_of_two().max(2)], -1.0, 1.0, seed + 24)?;
    let fft = ms(time_op(dev, reps, || lapis_ops::rfft(&sig))?);
    let dense = if n <= 4096 {
        let k = lapis_ops::uniform(dev, &[n, n], 0.0, 1.0, seed + 25)?;
        Some(ms(time_op(dev, reps, || lapis_ops::matmul(&k, &v))?))
    } else {
        None
    };
    Ok(Times {
        op,
        sort,
        fft,
        dense,
    })
}

/// `(forward ms, forward + backward ms)` at `n = m`, `c = 1`: medians of `reps` runs of each,
/// interleaved (forward, then forward + backward, repeatedly) so that a slow spell of the
/// machine hits both alike; one warm-up run of each first.
fn fwd_bwd(dev: &Device, n: usize, reps: usize, seed: u64) -> Result<(f64, f64, f64)> {
    let s = lapis_ops::uniform(dev, &[n], -100.0, 100.0, seed + 31)?;
    let t = lapis_ops::uniform(dev, &[n], -100.0, 100.0, seed + 32)?;
    let v = lapis_ops::normal(dev, &[n, 1], 0.0, 1.0, seed + 33)?;
    let g = lapis_ops::normal(dev, &[n, 1], 0.0, 1.0, seed + 34)?;
    let fwd = || lapis_ops::laplace_apply(&s, &t, &v, 0.5);
    // The spec's backward (§3: gradients after the sort, reusing the forward's
    // permutation), as the tape runs it.
    let both = || -> Result<lapis_ops::LaplaceGrads> {
        let (_, sort) = lapis_ops::laplace_apply_sorted(&s, &t, &v, 0.5)?;
        lapis_ops::laplace_apply_backward_sorted(&sort, &v, &g)
    };
    // The stand-alone backward, which sorts again.
    let resort = || -> Result<lapis_ops::LaplaceGrads> {
        fwd()?;
        lapis_ops::laplace_apply_backward(&s, &t, &v, 0.5, &g)
    };
    let (mut tf, mut tb, mut tr) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..=reps {
        let f = ms(time_op(dev, 1, fwd)?);
        let b = ms(time_op(dev, 1, both)?);
        let x = ms(time_op(dev, 1, resort)?);
        if r > 0 {
            tf.push(f);
            tb.push(b);
            tr.push(x);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(tf), median(tb), median(tr)))
}
