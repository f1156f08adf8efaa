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
