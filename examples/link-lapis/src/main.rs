//! Linking lapis from your own crate: the four things most users do first.
//!
//! 1. The exact Laplace operator `y = K v`, `K_ji = exp(−λ|t_j − s_i|)`, on 10^5 anchors in
//!    O(n log n), checked against the brute-force sum on a sample of targets.
//! 2. A batched LapSum soft top-k (each row's weights sum to k) and its backward.
//! 3. A few training steps of a small model on the tape (a LAPLEX layer after a Linear),
//!    with typed parameter handles and Adam.
//! 4. A checkpoint saved as safetensors and loaded back.
//!
//! Run it with `cargo run --release` (here: `cargo run --release -p link-lapis`).

use lapis_graph::nn::{LaplexConfig, LaplexLinear, Linear, Params};
use lapis_graph::optim::{clip_grad_norm, Adam, Optimizer};
use lapis_graph::{backward, Tape};
use lapis_ops::{Device, LapisError, Result, Tensor};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let dev = Device::auto()?;
    println!("device: {dev}");

    // 1. Laplace operator on 10^5 sources and targets.
    let n = 100_000;
    let s = lapis_ops::uniform(&dev, &[n], 0.0, 100.0, 1)?;
    let t = lapis_ops::uniform(&dev, &[n], 0.0, 100.0, 2)?;
    let v = lapis_ops::normal(&dev, &[n], 0.0, 1.0, 3)?;
    let lambda = 2.0f32;
    let y = lapis_ops::laplace_apply(&s, &t, &v, lambda)?.to_vec::<f32>()?;
    let (sh, th, vh) = (s.to_vec::<f32>()?, t.to_vec::<f32>()?, v.to_vec::<f32>()?);
    let mut worst = 0.0f64;
    for j in (0..n).step_by(997) {
        let (mut sum, mut abs) = (0.0f64, 0.0f64);
        for i in 0..n {
            let k = (-(lambda as f64) * (th[j] as f64 - sh[i] as f64).abs()).exp();
            sum += k * vh[i] as f64;
            abs += k * (vh[i] as f64).abs();
        }
        worst = worst.max((y[j] as f64 - sum).abs() / abs.max(1e-30));
    }
    println!("laplace_apply, n = m = {n}: max error vs brute force {worst:.2e} (of Σ|terms|)");
    if worst > 1e-5 {
        return Err(LapisError::Kernel {
            op: "link-lapis",
            msg: format!("Laplace operator error {worst:e} above 1e-5"),
        });
    }

    // 2. Soft top-k on 8 rows of 1000 with k = 10, α = 0.1, and its backward.
    let x = lapis_ops::normal(&dev, &[8, 1000], 0.0, 1.0, 4)?;
    let out = lapis_ops::soft_topk(&x, 10.0, 0.1)?;
    let sums = lapis_ops::sum(&out.p, 1)?.to_vec::<f32>()?;
    let g = lapis_ops::normal(&dev, &[8, 1000], 0.0, 1.0, 5)?;
    let grads = lapis_ops::soft_topk_backward(&x, 10.0, 0.1, &g)?;
    println!(
        "soft_topk: row sums {:?} (k = 10); ∂/∂x {:?}, ∂/∂k {:?}",
        &sums[..3],
        grads.x.shape(),
        grads.k.shape()
    );
    // The same on the tape, with a learnable k.
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let k = tape.leaf(Tensor::from_slice(&dev, &[1], &[10.0f32])?);
    let p = xv.soft_topk(&k, 0.1)?;
    let gk = backward(&p.mul(&p)?.sum_all()?)?;
    println!(
        "tape soft_topk: ∂Σp²/∂k = {:?}",
        gk.get(&k).map(|t| t.to_vec::<f32>())
    );

    // 3. A small model: Linear 16 → 32, GELU, LAPLEX 32 → 4 (2 heads), trained to fit
    //    random targets for a few steps.
    let mut params = Params::new();
    let body = Linear::new(&mut params, "body", &dev, 16, 32, true, 6)?;
    let head = LaplexLinear::new(
        &mut params,
        "head",
        &dev,
        &LaplexConfig::new(32, 4).heads(2).seed(7),
    )?;
    let mut opt = Adam::adamw(3e-3, 1e-2);
    opt.set_lr_scale(&params.matching(".s"), 10.0)?;
    let xb = lapis_ops::normal(&dev, &[64, 16], 0.0, 1.0, 8)?;
    let yb = lapis_ops::normal(&dev, &[64, 4], 0.0, 1.0, 9)?;
    let mut losses = Vec::new();
    for _ in 0..20 {
        let tape = Tape::new();
        let vars = params.on_tape(&tape);
        let h = body.forward(&vars, &tape.constant(xb.clone()))?.gelu()?;
        let d = head.forward(&vars, &h)?.sub(&tape.constant(yb.clone()))?;
        let loss = d.mul(&d)?.mean_all()?;
        losses.push(loss.value().to_vec::<f32>()?[0]);
        let g = backward(&loss)?;
        let mut grads: Vec<Tensor> = vars
            .iter()
            .map(|v| {
                g.get(v).cloned().ok_or_else(|| {
                    LapisError::invalid("train", "grad", "missing", "every parameter is used")
                })
            })
            .collect::<Result<_>>()?;
        clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&mut params.tensors_mut(), &grads)?;
    }
    println!(
        "training: {} parameters, loss {:.4} → {:.4} in 20 steps",
        params.numel(),
        losses[0],
        losses[losses.len() - 1]
    );
    if losses[losses.len() - 1] >= losses[0] {
        return Err(LapisError::Kernel {
            op: "link-lapis",
            msg: "the loss did not fall".into(),
        });
    }

    // 4. Checkpoint: parameters and the optimizer's state, saved and loaded back.
    let path = std::env::temp_dir().join(format!("link-lapis-{}.safetensors", std::process::id()));
    params.save(&path)?;
    let mut again = Params::new();
    Linear::new(&mut again, "body", &dev, 16, 32, true, 0)?;
    LaplexLinear::new(&mut again, "head", &dev, &LaplexConfig::new(32, 4).heads(2))?;
    again.load(&path)?;
    let same = params
        .iter()
        .zip(again.iter())
        .all(|((_, a), (_, b))| a.to_vec::<f32>().ok() == b.to_vec::<f32>().ok());
    println!(
        "checkpoint: {} tensors saved to {} and loaded back ({}); optimizer state: {} tensors",
        params.len(),
        path.display(),
        if same { "identical" } else { "DIFFERENT" },
        opt.state()?.len()
    );
    let _ = std::fs::remove_file(&path);
    if !same {
        return Err(LapisError::Kernel {
            op: "link-lapis",
            msg: "checkpoint round trip changed the parameters".into(),
        });
    }
    Ok(())
}
