//! `lapis reproduce softtopk-engine`: the claims of `specs/softtopk-engine.md` (§7 "Tests
//! that must hold") and of the soft top-k issue, measured on the device.
//!
//! LapSum soft top-k: for a row `x` and temperature `α`, `p_i = F((x_i − b)/α)` with `F` the
//! Laplace CDF and the threshold `b` solving `Σ_i p_i = k` in closed form after a sort
//! (O(n log n)); `k` and `α` are learnable.
//!
//! Claims:
//! - **T1** `Σp = k` on one row of `n = 2^20` (full: 2^24), `k = n/8`, `α = 0.5`:
//!   `|Σp − k| / k ≤ 1e-4` (f32 rounding of an `n`-term sum).
//! - **T2** `p` against the f64 reference on random rows (B = 32, n = 1000, ties
//!   included): `max |Δp| ≤ 2e-4` (the property tests' bar at `max|x|/α ≤ 10`).
//! - **T3** gradients for `x`, `k`, `α` against the f64 reference's backward: error ≤ 2e-3 of
//!   the largest entry of each.
//! - **T4** `α → 0` (1e-6) gives the hard top-k mask for distinct values and integer k:
//!   `max |p − mask| ≤ 1e-3`.
//! - **T5** `p ∈ [0, 1]` and monotone in `x` (violations counted, must be 0).
//! - **T6** soft ÷ hard top-k time ≤ 3 (256 rows × 2^12; quick 256 × 2^10), hard = row
//!   argsort + the top-k columns, timed in the same run.
//! - **T7** soft rank tends to the hard rank as `α → 0`: `max |rank − hard rank| ≤ 1e-3`.
//! - reported: the backward's time relative to the forward.
//!
//! Plots: `weights_vs_x.png` (`p` against `x` on one row for several α) and
//! `time_vs_n.png` (soft and hard top-k against `n`).

use lapis_ops::reference::{self, RefTensor};
use lapis_ops::timing::time_op;
use lapis_ops::{Device, Result, Tensor};

use crate::plot::{LegendPosition, LinePlot, Series, SeriesStyle};
use crate::reproduce::{fmt_value, Claim, Context, Report, ReportBuilder};

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_f32_vec()?.into_iter().map(f64::from).collect())
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Runs the reproduction (see the module docs).
pub fn reproduce(ctx: &Context) -> Result<Report> {
    let size = ctx.size;
    let n_sum = size.pick(1 << 20, 1 << 20, 1 << 24);
    let (rows_t, n_t) = size.pick((256usize, 1usize << 10), (256, 1 << 12), (256, 1 << 14));
    let time_ns: Vec<usize> = size.pick(
        vec![1 << 6, 1 << 8, 1 << 10],
        vec![1 << 6, 1 << 8, 1 << 10, 1 << 12],
        vec![1 << 6, 1 << 8, 1 << 10, 1 << 12, 1 << 14],
    );
    let reps = size.pick(2, 3, 5);
    let dev = &ctx.dev;
    ctx.require_bytes("the Σp = k row", (n_sum * 4) as u64)?;
    let mut rb = ReportBuilder::new(
        ctx,
        "softtopk-engine",
        "docs/specs/softtopk-engine.md",
        serde_json::json!({
            "sum_row": {"n": n_sum, "k": n_sum / 8, "alpha": 0.5},
            "reference_rows": {"B": 32, "n": 1000, "k": "uniform (1, n − 1) per row", "alpha": "log-uniform [0.05, 2] per row"},
            "timing": {"rows": rows_t, "n": n_t, "sizes": time_ns, "reps": reps, "k": "n/8", "alpha": 0.5},
        }),
    );
    let mut bar = ctx.progress("softtopk", 4);

    // ---- T1: Σp = k on one long row -----------------------------------------------
    bar.set(0, "sum = k");
    let x = lapis_ops::normal(dev, &[n_sum], 0.0, 1.0, ctx.seed + 1)?;
    let k = (n_sum / 8) as f64;
    let p = host(&lapis_ops::soft_topk(&x, k as f32, 0.5)?.p)?;
    drop(x);
    let sum: f64 = p.iter().sum();
    rb.claim(Claim::le(
        "T1",
        &format!(
            "|Σp − k| / k on one row of n = 2^{}, k = n/8, α = 0.5",
            n_sum.trailing_zeros()
        ),
        (sum - k).abs() / k,
        1e-4,
        "",
    ));
    drop(p);

    // ---- T2, T3, T5: against the f64 reference ---------------------------------------
    bar.set(1, "vs f64 reference");
    let (b, n) = (32usize, 1000usize);
    let mut xs = host(&lapis_ops::normal(dev, &[b, n], 0.0, 1.0, ctx.seed + 2)?)?;
    // Every fourth row tie-heavy: 8 levels.
    for r in (0..b).step_by(4) {
        for v in &mut xs[r * n..(r + 1) * n] {
            *v = (*v * 2.0).round() / 2.0;
        }
    }
    let u = host(&lapis_ops::uniform(dev, &[2 * b], 0.0, 1.0, ctx.seed + 3)?)?;
    let ks: Vec<f64> = (0..b).map(|r| 1.0 + u[r] * (n as f64 - 2.0)).collect();
    let als: Vec<f64> = (0..b).map(|r| 0.05 * 40f64.powf(u[b + r])).collect();
    let f32v = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let xt = Tensor::from_slice(dev, &[b, n], &f32v(&xs))?;
    let kt = Tensor::from_slice(dev, &[b], &f32v(&ks))?;
    let at = Tensor::from_slice(dev, &[b], &f32v(&als))?;
    let as64 = |v: &[f64]| v.iter().map(|&x| x as f32 as f64).collect::<Vec<f64>>();
    let (xr, kr, ar) = (as64(&xs), as64(&ks), as64(&als));
    let out = lapis_ops::soft_topk(&xt, &kt, &at)?;
    let pd = host(&out.p)?;
    let want = reference::soft_topk(&RefTensor::new(&[b, n], xr.clone()), &kr, &ar);
    rb.claim(Claim::le(
        "T2",
        "max |Δp| vs the f64 reference, B = 32 rows × n = 1000 (a quarter tie-heavy), k and α per row",
        max_diff(&pd, &want.data),
        2e-4,
        "",
    ));
    let g = host(&lapis_ops::normal(dev, &[b, n], 0.0, 1.0, ctx.seed + 4)?)?;
    let gt = Tensor::from_slice(dev, &[b, n], &f32v(&g))?;
    let gd = out.backward(&gt)?;
    let gw = reference::soft_topk_backward(
        &RefTensor::new(&[b, n], xr.clone()),
        &kr,
        &ar,
        &RefTensor::new(&[b, n], as64(&g)),
    );
    let rel = |got: &[f64], want: &[f64]| max_diff(got, want) / max_abs(want).max(1e-12);
    let (ex, ek, ea) = (
        rel(&host(&gd.x)?, &gw.0.data),
        rel(&host(&gd.k)?, &gw.1),
        rel(&host(&gd.alpha)?, &gw.2),
    );
    rb.claim(Claim::le(
        "T3",
        "worst gradient (x̄, k̄, ᾱ) vs the f64 reference backward, relative to its largest entry",
        ex.max(ek).max(ea),
        2e-3,
        "",
    ));
    rb.table(
        "Gradients vs the f64 reference (max |Δ| / max |reference|)",
        &["x̄", "k̄", "ᾱ"],
        vec![vec![fmt_value(ex), fmt_value(ek), fmt_value(ea)]],
    );
    let mut viol = 0usize;
    for r in 0..b {
        let row = &pd[r * n..(r + 1) * n];
        let xrow = &xr[r * n..(r + 1) * n];
        viol += row.iter().filter(|&&v| !(0.0..=1.0).contains(&v)).count();
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&i, &j| xrow[i].total_cmp(&xrow[j]));
        viol += idx
            .windows(2)
            .filter(|w| row[w[0]] > row[w[1]] + 1e-6)
            .count();
    }
    rb.claim(Claim::le(
        "T5",
        "entries outside [0, 1] or out of order in x (32 × 1000)",
        viol as f64,
        0.0,
        "",
    ));

    // ---- T4, T7: α → 0 --------------------------------------------------------------
    bar.set(2, "alpha -> 0");
    let n0 = 500usize;
    let perm = host(&lapis_ops::uniform(dev, &[n0], 0.0, 1.0, ctx.seed + 5)?)?;
    // Distinct values: a shuffled 0..n0 grid.
    let mut order: Vec<usize> = (0..n0).collect();
    order.sort_by(|&i, &j| perm[i].total_cmp(&perm[j]));
    let x0: Vec<f64> = order.iter().map(|&i| i as f64).collect();
    let x0t = Tensor::from_slice(dev, &[n0], &f32v(&x0))?;
    let mut worst_mask = 0.0f64;
    for k in [1usize, 17, 250, 499] {
        let p = host(&lapis_ops::soft_topk(&x0t, k as f32, 1e-6)?.p)?;
        worst_mask = worst_mask.max(max_diff(&p, &reference::hard_topk_mask(&x0, k)));
    }
    rb.claim(Claim::le(
        "T4",
        "α = 1e-6: max |p − hard top-k mask| (n = 500 distinct values, k ∈ {1, 17, 250, 499})",
        worst_mask,
        1e-3,
        "",
    ));
    let rank = host(&lapis_ops::soft_rank(&x0t, 1e-6)?)?;
    let hard: Vec<f64> = x0.iter().map(|&v| v + 1.0).collect();
    rb.claim(Claim::le(
        "T7",
        "α = 1e-6: max |soft rank − hard rank| (n = 500 distinct values)",
        max_diff(&rank, &hard),
        1e-3,
        "",
    ));

    // Plot: p against x on one row for several α.
    let nplot = 200usize;
    let xp: Vec<f64> = (0..nplot)
        .map(|i| -3.0 + 6.0 * i as f64 / (nplot - 1) as f64)
        .collect();
    let xpt = Tensor::from_slice(dev, &[nplot], &f32v(&xp))?;
    let mut series = Vec::new();
    for alpha in [0.01f32, 0.1, 0.3, 1.0] {
        let p = host(&lapis_ops::soft_topk(&xpt, 20.0, alpha)?.p)?;
        series.push(
            Series::line(format!("α = {alpha}"), xp.iter().copied().zip(p).collect())
                .with_style(SeriesStyle::Line),
        );
    }
    LinePlot {
        series,
        ..LinePlot::new(
            "LapSum soft top-k weights on one row (n = 200, k = 20)",
            "x (score)",
            "p (weight, Σp = k)",
        )
    }
    .save(ctx.path("weights_vs_x.png"))?;
    rb.plot("weights_vs_x.png");

    // ---- T6: soft vs hard time -------------------------------------------------------
    bar.set(3, "timing");
    let mut rows = Vec::new();
    let (mut soft_pts, mut hard_pts, mut back_pts) = (Vec::new(), Vec::new(), Vec::new());
    let mut at_claim = None;
    let mut sizes = time_ns.clone();
    if !sizes.contains(&n_t) {
        sizes.push(n_t);
    }
    for &nn in &sizes {
        let t = timing(dev, rows_t, nn, reps, ctx.seed)?;
        soft_pts.push((nn as f64, t.0));
        hard_pts.push((nn as f64, t.1));
        back_pts.push((nn as f64, t.2));
        rows.push(vec![
            format!("{rows_t} × 2^{}", nn.trailing_zeros()),
            fmt_value(t.1),
            fmt_value(t.0),
            fmt_value(t.2),
            fmt_value(t.0 / t.1),
        ]);
        if nn == n_t {
            at_claim = Some(t);
        }
    }
    let (soft, hard, back) = at_claim.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    rb.claim(Claim::le(
        "T6",
        &format!(
            "soft top-k time / hard top-k (row argsort) time, {rows_t} rows × 2^{}",
            n_t.trailing_zeros()
        ),
        soft / hard,
        3.0,
        "×",
    ));
    rb.claim(Claim::reported(
        "T8",
        &format!(
            "backward time / forward time, {rows_t} rows × 2^{}",
            n_t.trailing_zeros()
        ),
        back / soft,
        "×",
    ));
    rb.table(
        "Time (median ms)",
        &[
            "rows × n",
            "hard top-k",
            "soft top-k",
            "backward",
            "soft / hard",
        ],
        rows,
    );
    LinePlot {
        log_x: true,
        log_y: true,
        legend: LegendPosition::UpperLeft,
        series: vec![
            Series::line("soft top-k", soft_pts).with_style(SeriesStyle::LinePoints),
            Series::line("hard top-k (row argsort)", hard_pts).with_style(SeriesStyle::LinePoints),
            Series::line("soft top-k backward", back_pts).with_style(SeriesStyle::LinePoints),
        ],
        ..LinePlot::new(
            format!("Soft vs hard top-k, {rows_t} rows ({})", dev.info().name),
            "n (row length)",
            "time (ms)",
        )
    }
    .save(ctx.path("time_vs_n.png"))?;
    rb.plot("time_vs_n.png");
    bar.finish("done");
    Ok(rb.finish())
}

/// `(soft ms, hard ms, backward ms)` for `rows × n`, `k = n/8`, `α = 0.5`.
fn timing(dev: &Device, rows: usize, n: usize, reps: usize, seed: u64) -> Result<(f64, f64, f64)> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let x = lapis_ops::normal(dev, &[rows, n], 0.0, 1.0, seed + 41)?;
    let g = lapis_ops::normal(dev, &[rows, n], 0.0, 1.0, seed + 42)?;
    let kk = (n / 8).max(1);
    let hard = ms(time_op(dev, reps, || {
        let (_, perm) = lapis_ops::argsort_rows(&x)?;
        lapis_ops::slice(&perm, 1, n - kk, n)
    })?);
    let soft = ms(time_op(dev, reps, || {
        lapis_ops::soft_topk(&x, kk as f32, 0.5)
    })?);
    let out = lapis_ops::soft_topk(&x, kk as f32, 0.5)?;
    let back = ms(time_op(dev, reps, || out.backward(&g))?);
    Ok((soft, hard, back))
}
