//! `lapis bench laplace`: one JSON line per size for the Laplace operator, with the
//! cubek FFT of the same length and a dense matvec (cubek matmul, while `K` fits in one
//! buffer) timed in the same run, as ratios.
//!
//! Fields: `op`, `n` (sources = targets = n), `c`, `device`, `ms_with_sort` (the whole
//! `laplace_apply`), `ms_sorted` (the same minus an argsort of the 2n merged anchors timed
//! in the same run: the cost once anchors are sorted), `gbps` (bytes that must move:
//! 2n coordinates + n·c values in, n·c out, over `ms_with_sort`), `vs_fft`
//! (`ms_with_sort / ms_rfft(n)`, n padded to a power of two) and `vs_dense`
//! (`ms_with_sort / ms_dense`, `null` when the n×n kernel does not fit one buffer).

use lapis_ops::timing::time_op;
use lapis_ops::{DType, Device, Result, Tensor};

/// Runs the bench for each size and prints JSON lines.
pub fn laplace(dev: &Device, sizes: &[usize], c: usize, reps: usize) -> Result<()> {
    for &n in sizes {
        let s = lapis_ops::uniform(dev, &[n], -100.0, 100.0, 1)?;
        let t = lapis_ops::uniform(dev, &[n], -100.0, 100.0, 2)?;
        let v = lapis_ops::normal(dev, &[n, c], 0.0, 1.0, 3)?;
        let lam = 0.5;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let with_sort = ms(time_op(dev, reps, || {
            lapis_ops::laplace_apply(&s, &t, &v, lam)
        })?);
        let merged = lapis_ops::concat(&[&s, &t], 0)?;
        let sort = ms(time_op(dev, reps, || lapis_ops::argsort(&merged))?);
        let nf = n.next_power_of_two().max(2);
        let sig = lapis_ops::uniform(dev, &[nf], -1.0, 1.0, 4)?;
        let fft = ms(time_op(dev, reps, || lapis_ops::rfft(&sig))?);
        let dense_bytes = (n * n * DType::F32.size()) as u64;
        let dense = if dense_bytes <= dev.info().max_buffer_bytes && n <= 16_384 {
            let k = lapis_ops::uniform(dev, &[n, n], 0.0, 1.0, 5)?;
            Some(ms(time_op(dev, reps, || lapis_ops::matmul(&k, &v))?))
        } else {
            None
        };
        let bytes = ((2 * n + 2 * n * c) * DType::F32.size()) as f64;
        println!(
            "{}",
            serde_json::json!({
                "op": "laplace_apply", "n": n, "c": c, "device": dev.info().name,
                "ms_sorted": (with_sort - sort).max(0.0), "ms_with_sort": with_sort,
                "gbps": bytes / (with_sort * 1e-3) / 1e9,
                "vs_fft": with_sort / fft,
                "vs_dense": dense.map(|d| with_sort / d),
            })
        );
        drop::<Tensor>(merged);
    }
    Ok(())
}

/// `lapis bench covariance`: REMIX's covariance ([`lapis_ops::LaplaceCovariance`]) of
/// dimension `d` with `c` residual columns. Fields: `op`, `d`, `c`, `device`, `ms_factor`
/// (sort + the Kalman variance recursion, chunked above d = 4096), `ms_nll`, `ms_nll_backward` (every
/// gradient), `vs_sort` (`ms_factor / ms_argsort(d)`), `vs_laplace`
/// (`ms_nll_backward / ms_laplace_apply(d, c)`), all timed in the same run.
pub fn covariance(dev: &Device, sizes: &[usize], c: usize, reps: usize) -> Result<()> {
    for &d in sizes {
        let a = lapis_ops::uniform(dev, &[d], -1.0, 1.0, 1)?;
        let u = lapis_ops::uniform(dev, &[d], 0.1, 1.0, 2)?;
        let w = lapis_ops::uniform(dev, &[d], 0.1, 1.0, 3)?;
        let r = lapis_ops::normal(dev, &[d, c], 0.0, 1.0, 4)?;
        let g = lapis_ops::ones(dev, &[1, c], DType::F32)?;
        let lam = d as f32 / 200.0;
        let ms = |t: std::time::Duration| t.as_secs_f64() * 1e3;
        let factor = ms(time_op(dev, reps, || {
            lapis_ops::LaplaceCovariance::new(&a, lam, &u, &w)
        })?);
        let cov = lapis_ops::LaplaceCovariance::new(&a, lam, &u, &w)?;
        let nll = ms(time_op(dev, reps, || cov.nll(&r))?);
        let back = ms(time_op(dev, reps, || cov.nll_backward(&r, &g))?);
        let sort = ms(time_op(dev, reps, || lapis_ops::argsort(&a))?);
        let lap = ms(time_op(dev, reps, || {
            lapis_ops::laplace_apply(&a, &a, &r, lam)
        })?);
        println!(
            "{}",
            serde_json::json!({
                "op": "lcm_nll", "d": d, "c": c, "device": dev.info().name,
                "ms_factor": factor, "ms_nll": nll, "ms_nll_backward": back,
                "vs_sort": factor / sort, "vs_laplace": back / lap,
            })
        );
    }
    Ok(())
}

/// `lapis bench softtopk`: soft top-k of `rows × n` (`k = n/8`, `α = 0.5`, normal rows)
/// against a hard top-k by row sort on the same rows and device, timed in one run.
/// Fields: `op`, `rows`, `n`, `device`, `ms_hard_topk` (argsort_rows + the k largest
/// columns), `ms_soft_topk`, `ms_backward`, `ms_truncated` (SoftMoE rule, `c_cap = 2`),
/// `vs_hard` (`ms_soft_topk / ms_hard_topk`).
pub fn softtopk(dev: &Device, rows: usize, sizes: &[usize], reps: usize) -> Result<()> {
    for &n in sizes {
        let x = lapis_ops::normal(dev, &[rows, n], 0.0, 1.0, 1)?;
        let g = lapis_ops::normal(dev, &[rows, n], 0.0, 1.0, 2)?;
        let k = ((n / 8).max(1) as f32).min(n as f32 - 0.5).max(0.5);
        let ms = |t: std::time::Duration| t.as_secs_f64() * 1e3;
        let hard = ms(time_op(dev, reps, || {
            let (_, perm) = lapis_ops::argsort_rows(&x)?;
            lapis_ops::slice(&perm, 1, n - (n / 8).max(1), n)
        })?);
        let soft = ms(time_op(dev, reps, || lapis_ops::soft_topk(&x, k, 0.5))?);
        let out = lapis_ops::soft_topk(&x, k, 0.5)?;
        let back = ms(time_op(dev, reps, || out.backward(&g))?);
        let trunc = ms(time_op(dev, reps, || {
            lapis_ops::soft_topk_truncated(&x, k, 0.5, 2.0, 1.8)
        })?);
        println!(
            "{}",
            serde_json::json!({
                "op": "soft_topk", "rows": rows, "n": n, "device": dev.info().name,
                "ms_hard_topk": hard, "ms_soft_topk": soft, "ms_backward": back,
                "ms_truncated": trunc, "vs_hard": soft / hard,
            })
        );
    }
    Ok(())
}

/// A training-step workload of `lapis bench step`.
struct StepModel {
    name: &'static str,
    params: lapis_graph::nn::Params,
    /// Builds the loss of one step on the tape.
    #[allow(clippy::type_complexity)]
    loss: Box<dyn Fn(&lapis_graph::nn::ParamVars) -> Result<lapis_graph::Var>>,
    /// What the step does, for the JSON line.
    shape: String,
}

/// The digits MLP (64 → 128 → 10, ReLU, batch 100) on random inputs of the digits' shape.
fn digits_mlp(dev: &Device) -> Result<StepModel> {
    use lapis_graph::nn::{Activation, Mlp, Params};
    let mut params = Params::new();
    let mlp = Mlp::new(&mut params, "mlp", dev, &[64, 128, 10], Activation::Relu, 1)?;
    let x = lapis_ops::normal(dev, &[100, 64], 0.0, 1.0, 2)?;
    let y: Vec<u32> = (0..100).map(|i| (i * 7 % 10) as u32).collect();
    let y = Tensor::from_slice(dev, &[100], &y)?;
    Ok(StepModel {
        name: "digits-mlp",
        params,
        loss: Box::new(move |vars| {
            let z = mlp.forward(vars, &vars.vars()[0].constant(x.clone()))?;
            crate_losses::cross_entropy(&z, &y)
        }),
        shape: "64-128-10 ReLU, batch 100".into(),
    })
}

/// Model B of the LAPLEX spec: LAPLEX 64 → 256 → 256 → 10, H = 4, phased, GELU, batch 100.
fn laplex_digits(dev: &Device) -> Result<StepModel> {
    use lapis_graph::nn::{LaplexConfig, LaplexLinear, Params};
    let mut params = Params::new();
    let cfg = |n, m, s| LaplexConfig::new(n, m).heads(4).phased().seed(s);
    let l1 = LaplexLinear::new(&mut params, "l1", dev, &cfg(64, 256, 1))?;
    let l2 = LaplexLinear::new(&mut params, "l2", dev, &cfg(256, 256, 2))?;
    let l3 = LaplexLinear::new(&mut params, "l3", dev, &cfg(256, 10, 3))?;
    let x = lapis_ops::normal(dev, &[100, 64], 0.0, 1.0, 4)?;
    let y: Vec<u32> = (0..100).map(|i| (i * 3 % 10) as u32).collect();
    let y = Tensor::from_slice(dev, &[100], &y)?;
    Ok(StepModel {
        name: "laplex-digits",
        params,
        loss: Box::new(move |vars| {
            let h = l1
                .forward(vars, &vars.vars()[0].constant(x.clone()))?
                .gelu()?;
            let h = l2.forward(vars, &h)?.gelu()?;
            crate_losses::cross_entropy(&l3.forward(vars, &h)?, &y)
        }),
        shape: "LAPLEX 64-256-256-10, H = 4, phased, batch 100".into(),
    })
}

/// A dense pre-LN causal transformer over bytes: d = 96, 4 layers, 4 heads, FFN 4d (GELU),
/// B = 32, T = 64 (the SoftMoE char-LM shape with dense FFNs).
fn transformer(dev: &Device) -> Result<StepModel> {
    use lapis_graph::nn::{
        Activation, Embedding, LayerNorm, Linear, Mlp, MultiHeadAttention, Params,
    };
    let (d, layers, heads, b, t, vocab) = (96usize, 4usize, 4usize, 32usize, 64usize, 256usize);
    let mut params = Params::new();
    let tok = Embedding::new(&mut params, "tok", dev, vocab, d, 1)?;
    let pos = Embedding::new(&mut params, "pos", dev, t, d, 2)?;
    let mut blocks = Vec::new();
    for l in 0..layers {
        let p = format!("block{l}");
        blocks.push((
            LayerNorm::new(&mut params, &format!("{p}.ln1"), dev, d, 1e-5)?,
            MultiHeadAttention::new(
                &mut params,
                &format!("{p}.att"),
                dev,
                d,
                heads,
                true,
                10 + l as u64,
            )?,
            LayerNorm::new(&mut params, &format!("{p}.ln2"), dev, d, 1e-5)?,
            Mlp::new(
                &mut params,
                &format!("{p}.ffn"),
                dev,
                &[d, 4 * d, d],
                Activation::Gelu,
                20 + l as u64,
            )?,
        ));
    }
    let ln_f = LayerNorm::new(&mut params, "ln_f", dev, d, 1e-5)?;
    let head = Linear::new(&mut params, "head", dev, d, vocab, true, 30)?;
    // Random bytes (the step's cost does not depend on the text).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u32> = (0..b * (t + 1))
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % vocab as u64) as u32
        })
        .collect();
    let ids: Vec<u32> = (0..b)
        .flat_map(|r| bytes[r * (t + 1)..r * (t + 1) + t].to_vec())
        .collect();
    let next: Vec<u32> = (0..b)
        .flat_map(|r| bytes[r * (t + 1) + 1..(r + 1) * (t + 1)].to_vec())
        .collect();
    let ids = Tensor::from_slice(dev, &[b, t], &ids)?;
    let next = Tensor::from_slice(dev, &[b * t], &next)?;
    let positions: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
    let positions = Tensor::from_slice(dev, &[b, t], &positions)?;
    Ok(StepModel {
        name: "transformer",
        params,
        loss: Box::new(move |vars| {
            let mut h = tok.forward(vars, &ids)?.add(&pos.forward(vars, &positions)?)?;
            for (ln1, att, ln2, ffn) in &blocks {
                h = h.add(&att.forward(vars, &ln1.forward(vars, &h)?)?)?;
                h = h.add(&ffn.forward(vars, &ln2.forward(vars, &h)?)?)?;
            }
            let logits = head.forward(vars, &ln_f.forward(vars, &h)?)?;
            crate_losses::cross_entropy(&logits.reshape(&[b * t, vocab])?, &next)
        }),
        shape: format!("pre-LN causal transformer d = {d}, {layers} layers, {heads} heads, B = {b}, T = {t}, bytes"),
    })
}

use lapis_models::losses as crate_losses;

/// The SoftMoE char LM of §1.4 (run (d): learned allocation, K = 8; batch 32 × 64) on
/// random bytes: the loss is `CE + 0.01 Σ L_aux` with no host read.
fn softmoe(dev: &Device) -> Result<StepModel> {
    use lapis_models::softmoe::{experiment, soft, CharLm, LmConfig};
    let mut params = lapis_graph::nn::Params::new();
    let model = CharLm::new(&mut params, dev, LmConfig::spec(soft(None), 0))?;
    let (b, t) = (32usize, model.cfg.context);
    let bytes: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (ids, tgt) = experiment::batch(&bytes, b, t, 1, 0);
    let ids = Tensor::from_slice(dev, &[b, t], &ids)?;
    let tgt = Tensor::from_slice(dev, &[b * t], &tgt)?;
    Ok(StepModel {
        name: "softmoe",
        params,
        loss: Box::new(move |vars| {
            let tape = vars.vars()[0].tape().clone();
            Ok(experiment::step_loss(&model, vars, &tape, &ids, &tgt, 0.01)?.0)
        }),
        shape: format!(
            "SoftMoE char LM (§1.4, run (d)): d = 96, 4 layers, 8 experts, K = 8, B = {b}, T = {t}"
        ),
    })
}

/// `lapis bench step`: per training step (tape, loss, backward, AdamW), the median wall
/// time and the launches, host reads, uploads and peak live tensor bytes counted by the
/// device counters ([`lapis_ops::Counters`]), one JSON line per workload. The loss is read
/// once, after the timed steps (not inside them).
pub fn step(dev: &Device, workloads: &[String], steps: usize, profile: bool) -> Result<()> {
    use lapis_graph::optim::Adam;
    for w in workloads {
        let mut m = match w.as_str() {
            "digits-mlp" => digits_mlp(dev)?,
            "laplex-digits" => laplex_digits(dev)?,
            "transformer" => transformer(dev)?,
            "softmoe" => softmoe(dev)?,
            other => {
                return Err(lapis_ops::LapisError::invalid(
                    "bench step",
                    "workload",
                    other.to_string(),
                    "one of digits-mlp, laplex-digits, transformer",
                ))
            }
        };
        let mut opt = Adam::adamw(1e-3, 1e-2);
        let mut one_step = |m: &mut StepModel| -> Result<lapis_graph::Var> {
            let tape = lapis_graph::Tape::new();
            let vars = m.params.on_tape(&tape);
            let loss = (m.loss)(&vars)?;
            let g = lapis_graph::backward(&loss)?;
            let grads = vars
                .iter()
                .map(|v| {
                    g.get(v).cloned().ok_or_else(|| {
                        lapis_ops::LapisError::invalid(
                            "bench step",
                            "grad",
                            "missing",
                            "every parameter is used",
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            opt.step(&mut m.params.tensors_mut(), &grads)?;
            Ok(loss.detach())
        };
        // Warm-up (kernel compilation, pool growth), then timed steps.
        one_step(&mut m)?;
        dev.sync()?;
        dev.reset_counters();
        let mut times = Vec::with_capacity(steps);
        let mut last = None;
        for _ in 0..steps.max(1) {
            let t0 = std::time::Instant::now();
            last = Some(one_step(&mut m)?);
            dev.sync()?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let c = dev.counters();
        times.sort_by(f64::total_cmp);
        let n = steps.max(1) as f64;
        let loss = match last {
            Some(l) => l.value().to_f32_vec()?[0],
            None => f32::NAN,
        };
        let pool = dev.memory_usage()?;
        if profile {
            // One more step with every launch timed on its own (a sync per launch).
            lapis_ops::set_profiling(true);
            let t0 = std::time::Instant::now();
            one_step(&mut m)?;
            dev.sync()?;
            let total = t0.elapsed().as_secs_f64() * 1e3;
            lapis_ops::set_profiling(false);
            let rows = lapis_ops::profile();
            let kernels: f64 = rows.iter().map(|r| r.time.as_secs_f64() * 1e3).sum();
            let top: Vec<serde_json::Value> = rows
                .iter()
                .take(15)
                .map(|r| {
                    serde_json::json!({
                        "kernel": r.name.replace(" ", ""), "launches": r.count,
                        "ms": r.time.as_secs_f64() * 1e3,
                        "share": r.time.as_secs_f64() * 1e3 / kernels.max(1e-9),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "bench": "step-profile", "workload": m.name, "device": dev.to_string(),
                    "ms_profiled_step": total, "ms_in_kernels": kernels,
                    "ms_host_side": (total - kernels).max(0.0),
                    "distinct_kernels": rows.len(), "top": top,
                })
            );
        }
        println!(
            "{}",
            serde_json::json!({
                "bench": "step", "workload": m.name, "shape": m.shape, "device": dev.to_string(),
                "params": m.params.numel(), "steps": steps,
                "ms_per_step": times[times.len() / 2],
                "launches_per_step": c.launches as f64 / n,
                "host_reads_per_step": c.host_reads as f64 / n,
                "uploads_per_step": c.uploads as f64 / n,
                "peak_live_bytes": c.peak_live_bytes,
                "pool_reserved_bytes": pool.bytes_reserved,
                "loss_after": loss,
            })
        );
    }
    Ok(())
}

/// Peak live tensor bytes of `f`, counted from before its inputs were made: `make` builds
/// the inputs, `f` runs the op and returns its outputs (kept alive until measured).
/// `Ok(None)` when a buffer would exceed the device's limit (the size does not fit here).
fn peak_of<I, O>(
    dev: &Device,
    make: impl FnOnce() -> Result<I>,
    f: impl FnOnce(&I) -> Result<O>,
) -> Result<Option<u64>> {
    match peak_inner(dev, make, f) {
        Ok(p) => Ok(Some(p)),
        Err(lapis_ops::LapisError::SizeOverLimit { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn peak_inner<I, O>(
    dev: &Device,
    make: impl FnOnce() -> Result<I>,
    f: impl FnOnce(&I) -> Result<O>,
) -> Result<u64> {
    dev.sync()?;
    dev.reset_counters();
    let base = dev.counters().live_bytes;
    let inputs = make()?;
    let out = f(&inputs)?;
    dev.sync()?;
    let peak = dev.counters().peak_live_bytes.saturating_sub(base);
    drop(out);
    drop(inputs);
    Ok(peak)
}

/// `lapis bench memory`: peak bytes per point of the engines (inputs, outputs and every
/// temporary lapis allocates, from the device counters; cubek's internal workspaces are not
/// in it), one JSON line per op and size; a point is one source and one target for the
/// Laplace operator (n = m), one dimension for the LCM, one row element for soft top-k; with the points that fit in 80 GB and 139 GB at
/// that rate (ignoring the 2^32 − 1 elements per buffer limit of 4-byte indices).
pub fn memory(dev: &Device, sizes: &[usize]) -> Result<()> {
    let gb = |g: f64| g * 1e9;
    for &n in sizes {
        let mut rows: Vec<(&str, String, Option<u64>)> = Vec::new();
        for c in [1usize, 8] {
            let make = || -> Result<(Tensor, Tensor, Tensor)> {
                Ok((
                    lapis_ops::uniform(dev, &[n], -100.0, 100.0, 1)?,
                    lapis_ops::uniform(dev, &[n], -100.0, 100.0, 2)?,
                    lapis_ops::normal(dev, &[n, c], 0.0, 1.0, 3)?,
                ))
            };
            let fwd = peak_of(dev, make, |(s, t, v)| {
                lapis_ops::laplace_apply(s, t, v, 0.5)
            })?;
            rows.push(("laplace_apply", format!("n = m, c = {c}"), fwd));
            let make = || -> Result<(Tensor, Tensor, Tensor, Tensor)> {
                Ok((
                    lapis_ops::uniform(dev, &[n], -100.0, 100.0, 1)?,
                    lapis_ops::uniform(dev, &[n], -100.0, 100.0, 2)?,
                    lapis_ops::normal(dev, &[n, c], 0.0, 1.0, 3)?,
                    lapis_ops::normal(dev, &[n, c], 0.0, 1.0, 4)?,
                ))
            };
            let bwd = peak_of(dev, make, |(s, t, v, g)| {
                lapis_ops::laplace_apply_backward(s, t, v, 0.5, g)
            })?;
            rows.push(("laplace_apply_backward", format!("n = m, c = {c}"), bwd));
        }
        let make_lcm = || -> Result<(Tensor, Tensor, Tensor, Tensor)> {
            Ok((
                lapis_ops::uniform(dev, &[n], -1.0, 1.0, 1)?,
                lapis_ops::uniform(dev, &[n], 0.1, 1.0, 2)?,
                lapis_ops::uniform(dev, &[n], 0.1, 1.0, 3)?,
                lapis_ops::normal(dev, &[n, 1], 0.0, 1.0, 4)?,
            ))
        };
        let lam = n as f32 / 200.0;
        let nll = peak_of(dev, make_lcm, |(a, u, w, r)| {
            lapis_ops::LaplaceCovariance::new(a, lam, u, w)?.nll(r)
        })?;
        rows.push(("lcm_nll", "d, c = 1".into(), nll));
        let nll_b = peak_of(dev, make_lcm, |(a, u, w, r)| {
            let cov = lapis_ops::LaplaceCovariance::new(a, lam, u, w)?;
            let g = lapis_ops::ones(dev, &[1, 1], DType::F32)?;
            cov.nll_backward(r, &g)
        })?;
        rows.push(("lcm_nll_backward", "d, c = 1".into(), nll_b));
        let k = (n / 8).max(1) as f32;
        let stk = peak_of(
            dev,
            || lapis_ops::normal(dev, &[n], 0.0, 1.0, 5),
            |x| lapis_ops::soft_topk(x, k, 0.5),
        )?;
        rows.push(("soft_topk", "one row, k = n/8".into(), stk));
        for (op, what, peak) in rows {
            let Some(peak) = peak else {
                println!(
                    "{}",
                    serde_json::json!({
                        "bench": "memory", "op": op, "config": what, "n": n,
                        "device": dev.to_string(),
                        "skipped": "a buffer exceeds the device's per-buffer limit",
                    })
                );
                continue;
            };
            let per = peak as f64 / n as f64;
            println!(
                "{}",
                serde_json::json!({
                    "bench": "memory", "op": op, "config": what, "n": n,
                    "device": dev.to_string(), "peak_bytes": peak,
                    "bytes_per_point": per,
                    "points_in_80gb": (gb(80.0) / per).floor(),
                    "points_in_139gb": (gb(139.0) / per).floor(),
                })
            );
        }
    }
    Ok(())
}
