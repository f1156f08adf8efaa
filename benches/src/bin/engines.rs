//! `engines`: the engines at scale (up to 10⁹ points on a large GPU), one JSON line per op
//! and size, each with a cheap on-device check of the result, the peak of live tensor bytes
//! per point (device counters) and CubeCL's pool figure. Written for the prepared GPU run
//! (`benches/gpu/run.sh`), usable on any device.
//!
//! ```text
//! cargo run --release -p lapis-benches --bin engines -- --ops copy,argsort,laplace --sizes 2^16,2^20
//! cargo run --release -p lapis-benches --bin engines -- --ops softtopk --rows 256 --n 4096
//! ```
//!
//! Ops (`--ops`, comma-separated; `n` from `--sizes`):
//! - `copy`: `lapis_ops::copy` of `n` f32 (`gbps`: 8n bytes over the time; the bandwidth
//!   ceiling the others are read against).
//! - `argsort`: stable radix argsort of `n` f32 keys (`mkeys_per_s`; check: sorted output
//!   non-decreasing).
//! - `laplace`: `laplace_apply` with `n` sources, `n` targets, `c` channels, λ = 0.5,
//!   anchors uniform in [−100, 100): `ms_with_sort` (the whole op), `ms_argsort_2n` (an
//!   argsort of the 2n merged anchors, timed in the same run) and `ms_sorted` (their
//!   difference: the cost once anchors are sorted); check: three outputs against an O(n)
//!   direct sum on the device, relative to `Σ_i K_ji |v_i|`.
//! - `lcm`: REMIX's covariance `LaplaceCovariance` of dimension `n` (λ = n/200, anchors in
//!   [−1, 1), u, w in [0.1, 1)): `ms_factor` (sort + Kalman recursion), `ms_logdet`,
//!   `ms_solve` (one column); check: `‖Σx − r‖ / ‖r‖` with `Σx` through `laplace_apply`.
//! - `rfft`: cubek-fft real FFT of length `n` (a power of two); check: the DC bin against
//!   `sum_all`.
//! - `softtopk`: `soft_topk` of `rows × n` (`--rows`, `--n`; `k = n/8`, α = 0.5; `--sizes`
//!   is not used): forward, backward and a hard top-k by row sort; check: `max |Σp − k| / k`.
//!
//! `--mem-bytes` (e.g. the GPU's free memory) skips a size whose estimated peak (bytes per
//! point below, plus what CubeCL's pool still holds) exceeds it, with a `skipped` line; a
//! buffer over the device's per-buffer limit or an allocation failure also gives a
//! `skipped` line and ends that op's larger sizes. Exit status 1 if any op failed otherwise.

use std::time::Duration;

use clap::Parser;
use lapis_benches::{parse_sizes, time_op};
use lapis_ops::{Device, LapisError, Result, Tensor};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Ops, comma-separated: copy, argsort, laplace, lcm, rfft, softtopk.
    #[arg(long, default_value = "copy,argsort,laplace,lcm,rfft,softtopk")]
    ops: String,
    /// Sizes (points) for every op but softtopk, e.g. `2^20,2^24,2^28,2^30`.
    #[arg(long, default_value = "2^16,2^20")]
    sizes: String,
    /// Timed repetitions per op and size after one warm-up (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Channels of the Laplace operator's values.
    #[arg(long, default_value_t = 1)]
    c: usize,
    /// Rows of the soft top-k.
    #[arg(long, default_value_t = 65_536)]
    rows: usize,
    /// Row length of the soft top-k.
    #[arg(long, default_value_t = 4_096)]
    n: usize,
    /// Memory the run may use, bytes (`0`: only the per-buffer limit is checked). Accepts
    /// `1.2e11`.
    #[arg(long, default_value = "0")]
    mem_bytes: f64,
}

/// Estimated peak bytes per point of each op, checks included: `peak_bytes_per_point` on
/// lavapipe (copy 16, argsort 22, laplace 56 at c = 1, lcm 116, rfft 10, softtopk 44) plus
/// headroom for cubek's workspaces (not in the counters) and the pool's rounding.
fn est_bytes_per_point(op: &str, c: usize) -> f64 {
    match op {
        "copy" => 18.0,
        "argsort" => 28.0,
        "laplace" => 24.0 + 40.0 * c as f64,
        "lcm" => 130.0,
        "rfft" => 24.0,
        "softtopk" => 52.0,
        _ => 64.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Asks CubeCL to release pool pages nothing uses (between sizes).
fn cleanup(dev: &Device) {
    match dev {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(c) => c.client.memory_cleanup(),
        #[cfg(feature = "cuda")]
        Device::Cuda(c) => c.client.memory_cleanup(),
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.to_scalar()?))
}

/// `Σ_i e^{−λ|t_j − s_i|} v_i` and `Σ_i e^{−λ|t_j − s_i|} |v_i|` for one target `t_j`
/// (`tj` of shape `[1]`), in O(n) elementwise ops on the device.
fn direct_row(s: &Tensor, tj: &Tensor, v: &Tensor, lambda: f32) -> Result<(f64, f64)> {
    let k = lapis_ops::exp(&lapis_ops::affine(
        &lapis_ops::abs(&lapis_ops::sub(s, tj)?)?,
        -lambda,
        0.0,
    )?)?;
    let y = scalar(&lapis_ops::sum_all(&lapis_ops::mul(&k, v)?)?)?;
    let scale = scalar(&lapis_ops::sum_all(&lapis_ops::mul(
        &k,
        &lapis_ops::abs(v)?,
    )?)?)?;
    Ok((y, scale))
}

fn copy(dev: &Device, n: usize, reps: usize) -> Result<Value> {
    let a = lapis_ops::uniform(dev, &[n], -1.0, 1.0, 1)?;
    let t = ms(time_op(dev, reps, || lapis_ops::copy(&a))?);
    let b = lapis_ops::copy(&a)?;
    let diff = scalar(&lapis_ops::max_all(&lapis_ops::abs(&lapis_ops::sub(
        &a, &b,
    )?)?)?)?;
    Ok(json!({
        "ms": t, "gbps": 8.0 * n as f64 / (t * 1e-3) / 1e9,
        "check": "max |copy − x|", "check_value": diff, "ok": diff == 0.0,
    }))
}

fn argsort(dev: &Device, n: usize, reps: usize) -> Result<Value> {
    let keys = lapis_ops::uniform(dev, &[n], -1.0, 1.0, 3)?;
    let t = ms(time_op(dev, reps, || lapis_ops::argsort(&keys))?);
    let (sorted, _) = lapis_ops::argsort(&keys)?;
    let worst = if n > 1 {
        let step = lapis_ops::sub(
            &lapis_ops::slice(&sorted, 0, 1, n)?,
            &lapis_ops::slice(&sorted, 0, 0, n - 1)?,
        )?;
        scalar(&lapis_ops::min_all(&step)?)?
    } else {
        0.0
    };
    Ok(json!({
        "ms": t, "mkeys_per_s": n as f64 / (t * 1e-3) / 1e6,
        "gbps": 12.0 * n as f64 / (t * 1e-3) / 1e9,
        "check": "min(sorted[i+1] − sorted[i]) ≥ 0", "check_value": worst, "ok": worst >= 0.0,
    }))
}

fn laplace(dev: &Device, n: usize, c: usize, reps: usize) -> Result<Value> {
    let lambda = 0.5f32;
    let s = lapis_ops::uniform(dev, &[n], -100.0, 100.0, 1)?;
    let t = lapis_ops::uniform(dev, &[n], -100.0, 100.0, 2)?;
    let v = if c == 1 {
        lapis_ops::normal(dev, &[n], 0.0, 1.0, 3)?
    } else {
        lapis_ops::normal(dev, &[n, c], 0.0, 1.0, 3)?
    };
    let with_sort = ms(time_op(dev, reps, || {
        lapis_ops::laplace_apply(&s, &t, &v, lambda)
    })?);
    let sort = {
        let merged = lapis_ops::concat(&[&s, &t], 0)?;
        ms(time_op(dev, reps, || lapis_ops::argsort(&merged))?)
    };
    // Check three targets (first, middle, last) of channel 0 against a direct sum.
    let y = lapis_ops::laplace_apply(&s, &t, &v, lambda)?;
    let (y0, v0) = if c == 1 {
        (y, v.clone())
    } else {
        (
            lapis_ops::slice(&y, 1, 0, 1)?.reshape(&[n])?,
            lapis_ops::slice(&v, 1, 0, 1)?.reshape(&[n])?,
        )
    };
    let mut worst = 0.0f64;
    for j in [0, n / 2, n - 1] {
        let tj = lapis_ops::slice(&t, 0, j, j + 1)?;
        let (want, scale) = direct_row(&s, &tj, &v0, lambda)?;
        let got = scalar(&lapis_ops::slice(&y0, 0, j, j + 1)?)?;
        worst = worst.max((got - want).abs() / scale.max(f64::MIN_POSITIVE));
    }
    let bytes = ((2 * n + 2 * n * c) * 4) as f64;
    Ok(json!({
        "c": c, "ms_with_sort": with_sort, "ms_argsort_2n": sort,
        "ms_sorted": (with_sort - sort).max(0.0),
        "ns_per_point": with_sort * 1e6 / n as f64,
        "gbps": bytes / (with_sort * 1e-3) / 1e9,
        "check": "max_j |y_j − direct_j| / Σ_i K_ji|v_i|, 3 targets (f32 direct sums)",
        "check_value": worst, "ok": worst < 1e-3,
    }))
}

fn lcm(dev: &Device, d: usize, reps: usize) -> Result<Value> {
    let a = lapis_ops::uniform(dev, &[d], -1.0, 1.0, 1)?;
    let u = lapis_ops::uniform(dev, &[d], 0.1, 1.0, 2)?;
    let w = lapis_ops::uniform(dev, &[d], 0.1, 1.0, 3)?;
    let r = lapis_ops::normal(dev, &[d], 0.0, 1.0, 4)?;
    let lambda = d as f32 / 200.0;
    let factor = ms(time_op(dev, reps, || {
        lapis_ops::LaplaceCovariance::new(&a, lambda, &u, &w)
    })?);
    let (logdet_ms, solve_ms, logdet, x) = {
        let cov = lapis_ops::LaplaceCovariance::new(&a, lambda, &u, &w)?;
        let logdet_ms = ms(time_op(dev, reps, || cov.logdet())?);
        let solve_ms = ms(time_op(dev, reps, || cov.solve(&r))?);
        (logdet_ms, solve_ms, scalar(&cov.logdet()?)?, cov.solve(&r)?)
    };
    // Σx = u ⊙ x + w ⊙ K(w ⊙ x), K through the Laplace operator.
    let wx = lapis_ops::mul(&w, &x)?;
    let kwx = lapis_ops::laplace_apply(&a, &a, &wx, lambda)?;
    drop(wx);
    let sx = lapis_ops::add(&lapis_ops::mul(&u, &x)?, &lapis_ops::mul(&w, &kwx)?)?;
    drop(kwx);
    let res = lapis_ops::sub(&sx, &r)?;
    let num = scalar(&lapis_ops::sum_all(&lapis_ops::mul(&res, &res)?)?)?.sqrt();
    let den = scalar(&lapis_ops::sum_all(&lapis_ops::mul(&r, &r)?)?)?.sqrt();
    let rel = num / den.max(f64::MIN_POSITIVE);
    Ok(json!({
        "ms_factor": factor, "ms_logdet": logdet_ms, "ms_solve": solve_ms,
        "ms": factor + logdet_ms + solve_ms, "logdet_per_dim": logdet / d as f64,
        "ns_per_point": (factor + logdet_ms + solve_ms) * 1e6 / d as f64,
        "check": "‖Σx − r‖ / ‖r‖ for x = solve(r)", "check_value": rel,
        "ok": rel.is_finite() && rel < 1e-3 && logdet.is_finite(),
    }))
}

fn rfft(dev: &Device, n: usize, reps: usize) -> Result<Value> {
    let x = lapis_ops::uniform(dev, &[n], -1.0, 1.0, 4)?;
    let t = ms(time_op(dev, reps, || lapis_ops::rfft(&x))?);
    let (re, _) = lapis_ops::rfft(&x)?;
    let dc = scalar(&lapis_ops::slice(&re, 0, 0, 1)?)?;
    let want = scalar(&lapis_ops::sum_all(&x)?)?;
    let scale = scalar(&lapis_ops::sum_all(&lapis_ops::abs(&x)?)?)?;
    let rel = (dc - want).abs() / scale.max(f64::MIN_POSITIVE);
    Ok(json!({
        "ms": t, "ns_per_point": t * 1e6 / n as f64,
        "check": "|X_0 − Σx| / Σ|x|", "check_value": rel, "ok": rel < 1e-4,
    }))
}

fn softtopk(dev: &Device, rows: usize, n: usize, reps: usize) -> Result<Value> {
    let x = lapis_ops::normal(dev, &[rows, n], 0.0, 1.0, 1)?;
    let g = lapis_ops::normal(dev, &[rows, n], 0.0, 1.0, 2)?;
    let kk = (n / 8).max(1);
    let k = (kk as f32).min(n as f32 - 0.5).max(0.5);
    let hard = ms(time_op(dev, reps, || {
        let (_, perm) = lapis_ops::argsort_rows(&x)?;
        lapis_ops::slice(&perm, 1, n - kk, n)
    })?);
    let soft = ms(time_op(dev, reps, || lapis_ops::soft_topk(&x, k, 0.5))?);
    let out = lapis_ops::soft_topk(&x, k, 0.5)?;
    let back = ms(time_op(dev, reps, || out.backward(&g))?);
    let sums = lapis_ops::sum(&out.p, 1)?;
    let dev_sum = scalar(&lapis_ops::max_all(&lapis_ops::abs(
        &lapis_ops::add_scalar(&sums, -k)?,
    )?)?)?
        / f64::from(k);
    Ok(json!({
        "rows": rows, "k": k, "ms_soft_topk": soft, "ms_backward": back,
        "ms_hard_topk": hard, "vs_hard": soft / hard,
        "ns_per_element": soft * 1e6 / (rows * n) as f64,
        "check": "max_rows |Σp − k| / k", "check_value": dev_sum, "ok": dev_sum < 1e-3,
    }))
}

/// One measurement: the op's JSON fields.
fn run_one(dev: &Device, args: &Args, op: &str, n: usize) -> Result<Value> {
    match op {
        "copy" => copy(dev, n, args.reps),
        "argsort" => argsort(dev, n, args.reps),
        "laplace" => laplace(dev, n, args.c, args.reps),
        "lcm" => lcm(dev, n, args.reps),
        "rfft" => rfft(dev, n, args.reps),
        "softtopk" => softtopk(dev, args.rows, n, args.reps),
        other => Err(LapisError::invalid(
            "engines",
            "op",
            other.to_string(),
            "one of copy, argsort, laplace, lcm, rfft, softtopk",
        )),
    }
}

/// Adds `extra`'s fields to `v` (both JSON objects).
fn merge(v: &mut Value, extra: &Value) {
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (key, val) in extra {
            obj.insert(key.clone(), val.clone());
        }
    }
}

/// Prints `v` with `fields` added, as one JSON line.
fn emit(mut v: Value, fields: Value) {
    merge(&mut v, &fields);
    println!("{v}");
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sizes = parse_sizes(&args.sizes)?;
    let dev = Device::auto()?;
    let device = dev.to_string();
    let mut failed = false;
    for op in args.ops.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let op_sizes = if op == "softtopk" {
            vec![args.n]
        } else {
            sizes.clone()
        };
        for n in op_sizes {
            let points = if op == "softtopk" { args.rows * n } else { n };
            let head =
                json!({"bench": "engines", "op": op, "n": n, "points": points, "device": device});
            dev.sync()?;
            cleanup(&dev);
            let reserved = dev.memory_usage().map(|u| u.bytes_reserved).unwrap_or(0);
            let est = est_bytes_per_point(op, args.c) * points as f64;
            if args.mem_bytes > 0.0 && est + reserved as f64 > args.mem_bytes {
                let why = format!(
                    "estimated peak {:.1} GB (+ {:.1} GB held by the pool) exceeds --mem-bytes {:.1} GB",
                    est / 1e9,
                    reserved as f64 / 1e9,
                    args.mem_bytes / 1e9
                );
                eprintln!("engines: {op} n = {n}: skipped: {why}");
                emit(head, json!({"skipped": why}));
                continue;
            }
            dev.reset_counters();
            let base = dev.counters().live_bytes;
            let t0 = std::time::Instant::now();
            match run_one(&dev, &args, op, n) {
                Ok(fields) => {
                    dev.sync()?;
                    let peak = dev.counters().peak_live_bytes.saturating_sub(base);
                    let pool = dev.memory_usage().map(|u| u.bytes_reserved).unwrap_or(0);
                    if fields.get("ok") == Some(&Value::Bool(false)) {
                        eprintln!("engines: {op} n = {n}: CHECK FAILED: {fields}");
                        failed = true;
                    }
                    let mut line = head;
                    merge(&mut line, &fields);
                    emit(
                        line,
                        json!({
                            "reps": args.reps,
                            "peak_bytes_per_point": peak as f64 / points as f64,
                            "pool_reserved_bytes": pool,
                            "wall_s": t0.elapsed().as_secs_f64(),
                        }),
                    );
                }
                Err(e @ (LapisError::SizeOverLimit { .. } | LapisError::OutOfMemory { .. })) => {
                    eprintln!("engines: {op} n = {n}: skipped: {e}");
                    emit(head, json!({"skipped": e.to_string()}));
                    break;
                }
                Err(e) => {
                    eprintln!("engines: {op} n = {n}: error: {e}");
                    emit(head, json!({"error": e.to_string()}));
                    failed = true;
                    break;
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
