//! E2 scale bench (`specs/laplace-methods.md` §3 E2, claim 3 of §4): one LAPLEX layer
//! `n → n` (Struski et al., "LAPLEX": O(n log n), matvecs up to 10⁹), forward and
//! backward, time per step against `n`.
//!
//! The layer is [`LaplexLinear`] with one phased head (`H = 1`: anchors `s, t`, gains
//! `α, γ`, rate `λ = softplus(ρ) + iω`, phase `φ`, bias) on a batch of one column
//! (`x [1, n]`). One step builds `ℓ = Σ_j y_j r_j` with `y = layer(x)` and a fixed random
//! `r`, and runs the tape's backward to `x` and every parameter (`s, t, α, γ, ρ, ω, φ, b`):
//! one sort of the `2n` merged anchors, the forward sweeps, the phase, and the backward's
//! sweeps on the forward's sort. A step's time ends when the device has finished (a sync,
//! then the loss is read back). After warm-up, the sizes are timed in interleaved rounds
//! (each size once or a few times per round) and a size's time is the median of its
//! steps ([`measure`]).
//!
//! Sizes `n = 10⁴ · 2^k` double up to what the device holds: the largest single buffer
//! of a step is the merged anchors (`2n` f32, `8n` bytes; lavapipe allows 128 MiB per
//! buffer, so `n ≤ 1.024·10⁷` there). Claim 3: `time(2n)/time(n) ≤ 2.3` for every pair
//! with `n ≥ 10⁵` (an `n log n` cost gives `2(1 + 1/log₂ n) ≈ 2.1` there).

use std::time::Instant;

use lapis_graph::nn::{LaplexConfig, LaplexLinear, Params};
use lapis_graph::{backward, Tape};
use lapis_ops::{Device, LapisError, Result};

use crate::plot::{LegendPosition, LinePlot, Series, SeriesStyle};
use crate::reproduce::{fmt_value, Claim, Context, ReportBuilder, Size};

/// The smallest `n` of the bench.
pub const N0: usize = 10_000;
/// The claim's bar on `time(2n)/time(n)`.
pub const RATIO_BAR: f64 = 2.3;
/// Pairs `(n, 2n)` with `n` at least this count toward claim 3.
pub const CLAIM_FROM: usize = 100_000;
/// The `--full` bench's target size (10⁹: the doubling goes to the first `n ≥` it).
pub const FULL_TARGET: usize = 1_000_000_000;

/// Timed steps of a size per round, at most (see [`measure`]).
pub const MAX_PER_ROUND: usize = 3;
/// Steps of a size per round are raised (up to [`MAX_PER_ROUND`]) until they take about
/// this long, ms.
pub const ROUND_BUDGET_MS: f64 = 700.0;

/// One measured size.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePoint {
    /// Inputs = outputs.
    pub n: usize,
    /// Median time of one forward + backward step, ms.
    pub ms: f64,
    /// Fastest timed step, ms (context: noise on a shared machine only adds time).
    pub min_ms: f64,
    /// Timed steps.
    pub reps: usize,
    /// Peak bytes of this size's step: its layer's parameters, input and loss weights,
    /// plus the most the step's intermediates reached above what was live before it.
    pub peak_bytes: u64,
}

/// The largest single buffer of a step at `n` (the `2n` merged anchors, f32), bytes.
pub fn largest_buffer_bytes(n: usize) -> u64 {
    8 * n as u64
}

/// One size's layer, input and loss weights.
struct Bench {
    n: usize,
    params: Params,
    layer: LaplexLinear,
    x: lapis_ops::Tensor,
    r: lapis_ops::Tensor,
}

impl Bench {
    fn new(dev: &Device, n: usize, seed: u64) -> Result<Self> {
        if n == 0 {
            return Err(LapisError::invalid("laplex scale", "n", n, "must be ≥ 1"));
        }
        let mut params = Params::new();
        let layer = LaplexLinear::new(
            &mut params,
            "layer",
            dev,
            &LaplexConfig::new(n, n).phased().seed(seed),
        )?;
        let x = lapis_ops::normal(dev, &[1, n], 0.0, 1.0, seed ^ 0x11)?;
        let r = lapis_ops::normal(dev, &[1, n], 0.0, 1.0, seed ^ 0x22)?;
        Ok(Bench {
            n,
            params,
            layer,
            x,
            r,
        })
    }

    /// Bytes held between steps: parameters, input, loss weights.
    fn resident_bytes(&self) -> u64 {
        4 * (self.params.numel() + 2 * self.n) as u64
    }

    /// One step, finished on the device; returns `(ms, loss)`.
    fn step(&self, dev: &Device) -> Result<(f64, f64)> {
        let t0 = Instant::now();
        let tape = Tape::new();
        let vars = self.params.on_tape(&tape);
        let xv = tape.leaf(self.x.clone());
        let y = self.layer.forward(&vars, &xv)?;
        let loss = y.mul(&tape.constant(self.r.clone()))?.sum_all()?;
        let g = backward(&loss)?;
        // Every gradient must exist (x and each parameter), or the bench would time less
        // than the layer's backward.
        let missing = std::iter::once(&xv)
            .chain(vars.iter())
            .filter(|v| g.get(v).is_none())
            .count();
        if missing > 0 {
            return Err(LapisError::invalid(
                "laplex scale",
                "gradients",
                missing,
                "every input of the layer must get a gradient",
            ));
        }
        dev.sync()?;
        let l = f64::from(loss.value().to_f32_vec()?[0]);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if !l.is_finite() {
            return Err(LapisError::invalid(
                "laplex scale",
                "loss",
                l,
                format!("not finite at n = {}", self.n),
            ));
        }
        Ok((ms, l))
    }
}

/// Times one forward + backward step of a one-head phased LAPLEX layer `n → n` on a batch
/// of one at each of `ns`, in `rounds` interleaved rounds (every size once per round, in
/// order, so a slow spell of a shared machine hits neighbouring sizes alike): after a
/// warm-up step per size (kernel compilation, pool growth; a second one, which sizes the
/// round, when the first took less than [`ROUND_BUDGET_MS`]),
/// each round times `k_n = clamp(ROUND_BUDGET_MS / t_n, 1, MAX_PER_ROUND)` steps of size
/// `n`; a size's time is the median of its `rounds · k_n` steps. `progress(i)` is called
/// after each size of each round.
pub fn measure(
    dev: &Device,
    ns: &[usize],
    rounds: usize,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Result<Vec<ScalePoint>> {
    let benches = ns
        .iter()
        .map(|&n| Bench::new(dev, n, seed))
        .collect::<Result<Vec<_>>>()?;
    let mut per_round = Vec::with_capacity(ns.len());
    for b in &benches {
        let (mut t, _) = b.step(dev)?;
        if t < ROUND_BUDGET_MS {
            t = b.step(dev)?.0;
        }
        per_round.push(((ROUND_BUDGET_MS / t.max(1e-3)) as usize).clamp(1, MAX_PER_ROUND));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); ns.len()];
    let mut peaks = vec![0u64; ns.len()];
    let mut done = 0;
    for _ in 0..rounds.max(1) {
        for (i, b) in benches.iter().enumerate() {
            for _ in 0..per_round[i] {
                dev.reset_counters();
                let before = dev.counters().live_bytes;
                let (ms, _) = b.step(dev)?;
                let above = dev.counters().peak_live_bytes.saturating_sub(before);
                peaks[i] = peaks[i].max(above + b.resident_bytes());
                times[i].push(ms);
            }
            done += 1;
            progress(done);
        }
    }
    Ok(benches
        .iter()
        .zip(times)
        .zip(peaks)
        .map(|((b, mut t), peak)| {
            t.sort_by(f64::total_cmp);
            ScalePoint {
                n: b.n,
                ms: t[t.len() / 2],
                min_ms: t[0],
                reps: t.len(),
                peak_bytes: peak,
            }
        })
        .collect())
}

/// The `--full` bench's largest `n` (the first `10⁴ · 2^k ≥ 10⁹`, 1 310 720 000), after
/// [`Context::require_bytes`] for its largest buffer: the typed refusal on a device that
/// cannot hold it (lavapipe). `lapis reproduce laplex --full` can call it before its
/// long parts to refuse early.
pub fn require_full(ctx: &Context) -> Result<usize> {
    let mut n = N0;
    while n < FULL_TARGET {
        n *= 2;
    }
    ctx.require_bytes(
        &format!("the LAPLEX scale bench at n = {n} (E2 scale --full: 2n merged anchors)"),
        largest_buffer_bytes(n),
    )?;
    Ok(n)
}

/// `time(2n)/time(n)` for consecutive points (each pair's smaller `n` and the ratio).
pub fn ratios(points: &[ScalePoint]) -> Vec<(usize, f64)> {
    points
        .windows(2)
        .filter(|w| w[1].n == 2 * w[0].n)
        .map(|w| (w[0].n, w[1].ms / w[0].ms))
        .collect()
}

/// The sizes of the bench: `10⁴ · 2^k` while the largest buffer fits `max_buffer` and
/// `n ≤ limit`.
pub fn sizes(max_buffer: u64, limit: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut n = N0;
    while n <= limit && largest_buffer_bytes(n) <= max_buffer {
        out.push(n);
        n *= 2;
    }
    out
}

/// E2 scale: times the layer at doubling `n` and adds claim 3 (`3`), its table, the plot
/// `e2_scale.png` and the `e2_scale` configuration entry.
///
/// Sizes: `--quick` to `3.2·10⁵`; default to what the device's buffer limit holds;
/// `--full` to the first `n ≥ 10⁹` (refused, through [`Context::require_bytes`], on a
/// device whose buffers cannot hold it); at least 3 repeats per size. Claim 3 gates at
/// the default and full sizes (reported at `--quick`).
pub fn e2_scale(ctx: &Context, rb: &mut ReportBuilder) -> Result<()> {
    let dev = &ctx.dev;
    let max_buf = dev.info().max_buffer_bytes;
    let (limit, reps) = match ctx.size {
        Size::Quick => (400_000, 3),
        Size::Default => (usize::MAX, 3),
        Size::Full => (require_full(ctx)?, 3),
    };
    let ns = sizes(max_buf, limit);
    rb.config(
        "e2_scale",
        serde_json::json!({
            "layer": "LaplexLinear n → n, H = 1, phased, batch 1",
            "step": "forward, loss Σ y ⊙ r, backward to x, s, t, α, γ, ρ, ω, φ, bias",
            "sizes": ns, "rounds": reps, "steps_per_round": format!("clamp({ROUND_BUDGET_MS} ms / step time, 1, {MAX_PER_ROUND})"),
            "warmup": "1 step per size (2 below the round budget)", "statistic": "median over all timed steps of a size (rounds interleave the sizes)",
            "max_buffer_bytes": max_buf,
        }),
    );
    let mut bar = ctx.progress("e2 scale", (ns.len() * reps) as u64);
    let pts = measure(dev, &ns, reps, ctx.seed + 7, |i| {
        bar.set(
            i as u64,
            &format!("round {} of {reps}", (i - 1) / ns.len().max(1) + 1),
        )
    })?;
    bar.finish("done");
    let rs = ratios(&pts);
    let claimed: Vec<(usize, f64)> = rs
        .iter()
        .copied()
        .filter(|&(n, _)| n >= CLAIM_FROM)
        .collect();
    let worst = claimed.iter().map(|r| r.1).fold(
        f64::NAN,
        |a: f64, b| if a.is_nan() || b > a { b } else { a },
    );
    let n_max = pts.last().map_or(0, |p| p.n);
    let claim3 = Claim::le(
        "3",
        &format!(
            "E2 scale: max time(2n)/time(n) of a LAPLEX layer n → n (H = 1, phased, batch 1) \
             forward + backward over the pairs with 10⁵ ≤ n, 2n ≤ {n_max} ({} pairs)",
            claimed.len()
        ),
        worst,
        RATIO_BAR,
        "×",
    );
    if ctx.size == Size::Quick {
        rb.note(
            "E2 scale quick: claim 3 is reported, not gated: the quick sizes stop at \
             3.2·10⁵, where one pair (1.6·10⁵ → 3.2·10⁵) of launch- and cache-dominated \
             steps decides it and a loaded 2-core machine moves it by ±1 (measured 1.1–3.2 \
             per doubling between 10⁴ and 3.2·10⁵ on lavapipe under load); the default run \
             gates it up to the buffer limit",
        );
        rb.claim(claim3.not_gating());
    } else {
        rb.claim(claim3);
    }
    if n_max < 2 * CLAIM_FROM {
        rb.note("E2 scale: no pair with n ≥ 10⁵ fits this device; claim 3 is unmeasured");
    }
    if ctx.size != Size::Full {
        rb.note(format!(
            "E2 scale: n up to {n_max} here (the spec's 10⁹ is --full, on a GPU; {} holds \
             {} MiB per buffer)",
            dev.info().name,
            max_buf >> 20
        ));
    }
    let rows = pts
        .iter()
        .map(|p| {
            let ratio = rs
                .iter()
                .find(|r| 2 * r.0 == p.n)
                .map_or("—".to_string(), |r| format!("{:.3}", r.1));
            vec![
                p.n.to_string(),
                fmt_value(p.ms),
                fmt_value(p.min_ms),
                ratio,
                format!("{:.1}", p.peak_bytes as f64 / (1 << 20) as f64),
                p.reps.to_string(),
            ]
        })
        .collect();
    rb.table(
        &format!(
            "E2 scale: LAPLEX layer n → n forward + backward ({reps} interleaved rounds after warm-up)"
        ),
        &[
            "n",
            "median ms / step",
            "min ms",
            "time(n)/time(n/2) (medians)",
            "peak MiB",
            "timed steps",
        ],
        rows,
    );
    scale_plot(&ctx.path("e2_scale.png"), &pts)?;
    rb.plot("e2_scale.png");
    Ok(())
}

/// Writes the log–log plot of `pts` (median ms against n) with an `n log n` guide through
/// the largest point to `path` (the reproduction's `e2_scale.png`).
pub fn scale_plot(path: &std::path::Path, pts: &[ScalePoint]) -> Result<()> {
    let measured: Vec<(f64, f64)> = pts.iter().map(|p| (p.n as f64, p.ms)).collect();
    let (gx, gy) = measured.last().copied().unwrap_or((1.0, 1.0));
    let nlogn = |x: f64| x * x.log2();
    let guide = measured
        .iter()
        .map(|&(x, _)| (x, gy * nlogn(x) / nlogn(gx)))
        .collect();
    LinePlot {
        log_x: true,
        log_y: true,
        legend: LegendPosition::UpperLeft,
        series: vec![
            Series::line("forward + backward", measured).with_style(SeriesStyle::LinePoints),
            Series::line("n log n guide (through the largest n)", guide)
                .with_style(SeriesStyle::Dashed),
        ],
        ..LinePlot::new(
            "LAPLEX layer n → n: forward + backward (H = 1, phased, batch 1)",
            "n (inputs = outputs)",
            "time per step (ms)",
        )
    }
    .save(path)
}
