//! `op_counts`: kernel launches and host reads of one call of each engine op (after a
//! warm-up call), from the device counters. Written against the public API that is common
//! to releases before and after the throughput work (issue 12), so the same file measures
//! both; one JSON line per op, then a Markdown table.
//!
//! `cargo run --release -p lapis-benches --bin op_counts -- --n 4096`

use clap::Parser;
use lapis_ops::{Device, Result, Tensor};

#[derive(Parser)]
struct Args {
    /// Anchors per side (sources = targets = n) and row length for soft top-k.
    #[arg(long, default_value_t = 4096)]
    n: usize,
    /// Value channels of the Laplace operator (the LAPLEX batch).
    #[arg(long, default_value_t = 8)]
    c: usize,
    /// Rows for the soft top-k family.
    #[arg(long, default_value_t = 8)]
    rows: usize,
    /// Instead: time a one-row sort by the radix path and by the in-workgroup bitonic
    /// path at these sizes (e.g. `256,512,4096`), median of 20.
    #[arg(long)]
    sort_sizes: Option<String>,
    /// Instead: time each kernel of one `laplace_apply_backward` at n = m = this size
    /// (e.g. `2^20`), after a warm-up call.
    #[arg(long)]
    profile_backward: Option<String>,
    /// Run the anchored scans level by level even for short segments (the launches before
    /// the one-cube scan kernel).
    #[arg(long)]
    levels: bool,
}

/// Launches and host reads of `f`'s second call (the first compiles and warms the pool).
fn count(dev: &Device, mut f: impl FnMut() -> Result<()>) -> Result<(u64, u64)> {
    f()?;
    dev.sync()?;
    let before = dev.counters();
    f()?;
    let after = dev.counters();
    let d = after.since(&before);
    Ok((d.launches, d.host_reads))
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.levels {
        lapis_ops::decay_scan::set_scan_path(lapis_ops::decay_scan::ScanPath::Levels);
    }
    let dev = Device::auto()?;
    if let Some(sizes) = &args.sort_sizes {
        for n in lapis_ops::timing::parse_sizes(sizes)? {
            let x = lapis_ops::uniform(&dev, &[n], -1.0, 1.0, 9)?;
            let x2 = x.reshape(&[1, n])?;
            let radix = lapis_ops::timing::time_op(&dev, 20, || lapis_ops::argsort(&x))?;
            let bitonic = lapis_ops::timing::time_op(&dev, 20, || {
                lapis_ops::sort::argsort_rows_bitonic(&x2, 64)
            })?;
            println!(
                "{}",
                serde_json::json!({
                    "bench": "sort_one_row", "n": n, "radix_ms": radix.as_secs_f64() * 1e3,
                    "bitonic_ms": bitonic.as_secs_f64() * 1e3,
                    "radix_over_bitonic": radix.as_secs_f64() / bitonic.as_secs_f64(),
                    "device": dev.info().name,
                })
            );
        }
        return Ok(());
    }
    if let Some(size) = &args.profile_backward {
        let n = lapis_ops::timing::parse_sizes(size)?[0];
        let s = lapis_ops::uniform(&dev, &[n], 0.0, n as f32 / 64.0, 1)?;
        let t = lapis_ops::uniform(&dev, &[n], 0.0, n as f32 / 64.0, 2)?;
        let v = lapis_ops::normal(&dev, &[n], 0.0, 1.0, 3)?;
        let gy = lapis_ops::normal(&dev, &[n], 0.0, 1.0, 4)?;
        for (what, backward) in [("forward", false), ("backward", true)] {
            let run = || -> Result<()> {
                if backward {
                    lapis_ops::laplace_apply_backward(&s, &t, &v, 1.0, &gy).map(|_| ())
                } else {
                    lapis_ops::laplace_apply(&s, &t, &v, 1.0).map(|_| ())
                }
            };
            run()?;
            dev.sync()?;
            lapis_ops::set_profiling(true);
            run()?;
            dev.sync()?;
            lapis_ops::set_profiling(false);
            for r in lapis_ops::profile() {
                println!(
                    "{}",
                    serde_json::json!({"bench": "profile", "op": what, "kernel": r.name,
                        "launches": r.count, "ms": r.time.as_secs_f64() * 1e3})
                );
            }
        }
        return Ok(());
    }
    let (n, c, b) = (args.n, args.c, args.rows);
    let s = lapis_ops::uniform(&dev, &[n], 0.0, 1.0, 1)?;
    let t = lapis_ops::uniform(&dev, &[n], 0.0, 1.0, 2)?;
    let v = lapis_ops::normal(&dev, &[n, c], 0.0, 1.0, 3)?;
    let gy = lapis_ops::normal(&dev, &[n, c], 0.0, 1.0, 4)?;
    let one = |x: f32| Tensor::from_slice(&dev, &[1], &[x]);
    let (lam, a, bb) = (one(3.0)?, one(3.0)?, one(2.0)?);
    let x = lapis_ops::normal(&dev, &[b, n], 0.0, 1.0, 5)?;
    let gx = lapis_ops::normal(&dev, &[b, n], 0.0, 1.0, 6)?;
    let (k, alpha) = (one(n as f32 / 8.0)?, one(0.1)?);
    let idx = Tensor::from_slice(
        &dev,
        &[64],
        &(0..64u32).map(|i| i * 7 % n as u32).collect::<Vec<_>>(),
    )?;
    let table = lapis_ops::normal(&dev, &[n, 16], 0.0, 1.0, 7)?;
    let mut rows: Vec<(&str, (u64, u64))> = Vec::new();
    rows.push((
        "laplace_apply_sorted (tensor λ)",
        count(&dev, || {
            lapis_ops::laplace_apply_sorted(&s, &t, &v, &lam).map(|_| ())
        })?,
    ));
    let (_, sort) = lapis_ops::laplace_apply_sorted(&s, &t, &v, &lam)?;
    rows.push((
        "laplace_apply_backward_sorted",
        count(&dev, || {
            lapis_ops::laplace_apply_backward_sorted(&sort, &v, &gy).map(|_| ())
        })?,
    ));
    rows.push((
        "laplace_apply_phased_sorted (tensor a, b)",
        count(&dev, || {
            lapis_ops::laplace_apply_phased_sorted(&s, &t, &v, &a, &bb).map(|_| ())
        })?,
    ));
    let (_, psort) = lapis_ops::laplace_apply_phased_sorted(&s, &t, &v, &a, &bb)?;
    rows.push((
        "laplace_apply_phased_backward_sorted",
        count(&dev, || {
            lapis_ops::laplace_apply_phased_backward_sorted(&psort, &v, &gy, &gy).map(|_| ())
        })?,
    ));
    rows.push((
        "soft_topk (tensor k, α)",
        count(&dev, || lapis_ops::soft_topk(&x, &k, &alpha).map(|_| ()))?,
    ));
    let st = lapis_ops::soft_topk(&x, &k, &alpha)?;
    rows.push((
        "SoftTopK::backward",
        count(&dev, || st.backward(&gx).map(|_| ()))?,
    ));
    rows.push((
        "soft_sort_backward (tensor α)",
        count(&dev, || {
            lapis_ops::soft_sort_backward(&x, &alpha, &gx).map(|_| ())
        })?,
    ));
    rows.push((
        "index_select",
        count(&dev, || {
            lapis_ops::index_select(&table, 0, &idx).map(|_| ())
        })?,
    ));
    let device = dev.info().name.clone();
    for (op, (launches, reads)) in &rows {
        println!(
            "{}",
            serde_json::json!({
                "bench": "op_counts", "op": op, "n": n, "c": c, "rows": b,
                "launches": launches, "host_reads": reads, "device": device,
            })
        );
    }
    println!("\n| op | launches | host reads |\n| --- | ---: | ---: |");
    for (op, (launches, reads)) in &rows {
        println!("| `{op}` | {launches} | {reads} |");
    }
    Ok(())
}
