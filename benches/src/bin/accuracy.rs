//! `accuracy`: the Laplace operator's componentwise error against the O(N log N) f64
//! reference (`lapis_ops::reference::laplace_apply_sweep`), one JSON line per size and
//! rate, for two formulations in the same run:
//!
//! - `anchored`: `lapis_ops::laplace_apply` (the anchored decay scans: every long-range
//!   decay computed from coordinates, chunks of 32 combined level by level);
//! - `chained`: the formulation it replaced (issue 10), composed here from public ops: the
//!   per-gap decays `d_k = e^{−λ(z_k − z_{k−1})}` rounded to f32 and multiplied along the
//!   sweeps by `linear_scan` (`L = scan→(d, u)`, `R_k = d_{k+1} scan←(d⁺, u)_{k+1}`).
//!   (`linear_scan` itself is hierarchical now; the old code also carried across chunks
//!   sequentially, which added to the drift measured in the issue.)
//!
//! Error: `max_j |Δy_j| / Σ_i |K_ji v_i|`, sources and targets uniform in [0, 1), values
//! uniform in [0, 1) (positive: no cancellation).
//!
//! `cargo run --release -p lapis-benches --bin accuracy -- --sizes 2^12,2^16,2^20,2^22`

use clap::Parser;
use lapis_benches::parse_sizes;
use lapis_ops::reference::{self as r, RefTensor};
use lapis_ops::{Device, Tensor};

#[derive(Parser)]
struct Args {
    /// Sizes n (sources = targets = n), e.g. `2^12,2^16,2^20`.
    #[arg(long, default_value = "2^12,2^16,2^20")]
    sizes: String,
    /// Rates λ (anchors span [0, 1), so λ is λ·spread).
    #[arg(long, default_value = "0.01,1,20")]
    rates: String,
}

/// splitmix64 stream in [0, 1), rounded to f32.
fn uniform01(len: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64) as f32 as f64
        })
        .collect()
}

fn up(dev: &Device, shape: &[usize], x: &[f64]) -> lapis_ops::Result<Tensor> {
    Tensor::from_slice(dev, shape, &x.iter().map(|&v| v as f32).collect::<Vec<_>>())
}

/// The product-chain formulation (see the module docs), from public ops.
fn chained(s: &Tensor, t: &Tensor, v: &Tensor, lam: f32) -> lapis_ops::Result<Vec<f32>> {
    let (n, m) = (s.numel(), t.numel());
    let total = n + m;
    let (z, perm) = lapis_ops::argsort(&lapis_ops::concat(&[s, t], 0)?)?;
    // gaps g_k = z_k − z_{k−1} (g_0 = +∞ → d_0 = 0), d = e^{−λ g} rounded to f32
    let zprev = lapis_ops::slice(&z, 0, 0, total - 1)?;
    let gaps = lapis_ops::sub(&lapis_ops::slice(&z, 0, 1, total)?, &zprev)?;
    let d_tail = lapis_ops::exp(&lapis_ops::mul_scalar(&gaps, -lam)?)?;
    let zero = lapis_ops::zeros(z.device(), &[1], lapis_ops::DType::F32)?;
    let d = lapis_ops::concat(&[&zero, &d_tail], 0)?;
    let dnext = lapis_ops::concat(&[&d_tail, &zero], 0)?;
    // u: the source values in merged order, 0 at targets
    let vz = lapis_ops::concat(
        &[
            v,
            &lapis_ops::zeros(v.device(), &[m], lapis_ops::DType::F32)?,
        ],
        0,
    )?;
    let u = lapis_ops::index_select(&vz, 0, &perm)?;
    let l = lapis_ops::linear_scan(&d, &u, false)?;
    let q = lapis_ops::linear_scan(&dnext, &u, true)?;
    let (l, q, dn, p) = (
        l.to_vec::<f32>()?,
        q.to_vec::<f32>()?,
        dnext.to_vec::<f32>()?,
        perm.to_vec::<u32>()?,
    );
    let mut y = vec![0.0f32; m];
    for k in 0..total {
        let src = p[k] as usize;
        if src >= n {
            let r = if k + 1 < total { dn[k] * q[k + 1] } else { 0.0 };
            y[src - n] = l[k] + r;
        }
    }
    Ok(y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sizes = parse_sizes(&args.sizes)?;
    let rates: Vec<f64> = args
        .rates
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()?;
    let dev = Device::auto()?;
    for &n in &sizes {
        let (s, t) = (uniform01(n, 1), uniform01(n, 2));
        let v = RefTensor::new(&[n, 1], uniform01(n, 3));
        let (ds, dt) = (up(&dev, &[n], &s)?, up(&dev, &[n], &t)?);
        let dv = up(&dev, &[n], &v.data)?;
        for &lam in &rates {
            let lam32 = lam as f32;
            let (want, _) = r::laplace_apply_sweep(&s, &t, &v, (lam32 as f64, 0.0));
            let err = |got: &[f32]| {
                got.iter()
                    .zip(&want.data)
                    .map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1e-300))
                    .fold(0.0, f64::max)
            };
            let anchored = err(&lapis_ops::laplace_apply(&ds, &dt, &dv, lam32)?.to_vec::<f32>()?);
            let chain = err(&chained(&ds, &dt, &dv, lam32)?);
            println!(
                "{}",
                serde_json::json!({
                    "op": "laplace_apply accuracy", "n": n, "lambda": lam,
                    "device": dev.info().name,
                    "err_anchored": anchored, "err_chained": chain,
                })
            );
        }
    }
    Ok(())
}
