//! The LAPLEX layer (`specs/laplace-methods.md` §1.2, E1/E2): the layer against its dense
//! weight in f64, its gradients for every parameter and the input against finite
//! differences of that dense f64 layer. (The LAPLEX-headed digits model trains in
//! `models/tests/train.rs`, on the shared training loop.)

use lapis_graph::gradcheck::{check, uniform_f32, GradCheck};
use lapis_graph::nn::{LaplexConfig, LaplexLinear, Params};
use lapis_graph::{Tape, Var};
use lapis_ops::reference::RefTensor;
use lapis_ops::{Device, Tensor};
use lapis_tests::{device, download};

/// `y = W x + b` in f64 from the layer's parameters in registration order (per head
/// `s, t, α, γ, ρ[, ω, φ]`, then `b`) and `x [B, n]` last.
fn dense_forward(inp: &[RefTensor], heads: usize, phased: bool) -> RefTensor {
    let per = if phased { 7 } else { 5 };
    let x = &inp[heads * per + 1];
    let b = &inp[heads * per];
    let (bs, n) = (x.shape[0], x.shape[1]);
    let m = b.shape[0];
    let mut y = vec![0.0; bs * m];
    for h in 0..heads {
        let p = &inp[h * per..(h + 1) * per];
        let (s, t, al, ga) = (&p[0].data, &p[1].data, &p[2].data, &p[3].data);
        let rho = p[4].data[0];
        let a = rho.max(0.0) + (-rho.abs()).exp().ln_1p(); // softplus
        let (om, ph) = if phased {
            (p[5].data[0], p[6].data[0])
        } else {
            (0.0, 0.0)
        };
        for j in 0..m {
            for i in 0..n {
                let d = (t[j] - s[i]).abs();
                let w = ga[j] * al[i] * (-a * d).exp() * (om * d - ph).cos();
                for r in 0..bs {
                    y[r * m + j] += w * x.data[r * n + i];
                }
            }
        }
    }
    for r in 0..bs {
        for j in 0..m {
            y[r * m + j] += b.data[j];
        }
    }
    RefTensor::new(&[bs, m], y)
}

fn cfg(n: usize, m: usize, heads: usize, phased: bool, seed: u64) -> LaplexConfig {
    let c = LaplexConfig::new(n, m).heads(heads).seed(seed);
    if phased {
        c.phased()
    } else {
        c
    }
}

fn layer(
    dev: &Device,
    n: usize,
    m: usize,
    heads: usize,
    phased: bool,
    seed: u64,
) -> (Params, LaplexLinear) {
    let mut params = Params::new();
    let l = LaplexLinear::new(&mut params, "lap", dev, &cfg(n, m, heads, phased, seed)).unwrap();
    // A nonzero bias and phase, so both are exercised.
    let last = params.len() - 1;
    *params.tensors_mut()[last] = Tensor::from_slice(dev, &[m], &vec![0.25f32; m]).unwrap();
    if phased {
        for h in 0..heads {
            *params.tensors_mut()[h * 7 + 6] = Tensor::from_slice(dev, &[1], &[0.3f32]).unwrap();
        }
    }
    (params, l)
}

/// E1: the layer's output vs `W x + b` with `W` built entry by entry in f64 from the same
/// f32 parameters (`LaplexLinear::dense_weight` is checked against the test's own dense
/// layer too). Sizes from 1 to 4096, H ∈ {1, 4}, real and phased. Error measured relative
/// to `max_j Σ_i |W_ji x_i| + |b_j|` (the scale of the terms the f32 sweeps add; the
/// outputs themselves can cancel to near 0): bound 1e-5, the spec's f32 bar.
#[test]
fn laplex_forward_matches_dense_weight() {
    let dev = device();
    let shapes = [
        (1, 7),
        (7, 1),
        (64, 10),
        (10, 64),
        (1000, 64),
        (64, 1000),
        (4096, 7),
    ];
    for &(n, m) in &shapes {
        for heads in [1, 4] {
            for phased in [false, true] {
                let (params, l) = layer(&dev, n, m, heads, phased, 3 + n as u64);
                let bs = 3;
                let x = RefTensor::new(&[bs, n], uniform_f32(bs * n, 5, -1.0, 1.0));
                let xt = Tensor::from_slice(
                    &dev,
                    &[bs, n],
                    &x.data.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                )
                .unwrap();
                let tape = Tape::new();
                let vars = params.on_tape(&tape);
                let y = download(l.forward(&vars, &tape.constant(xt)).unwrap().value());
                let mut inp: Vec<RefTensor> = (0..params.len())
                    .map(|i| download(params.at(i).unwrap()))
                    .collect();
                inp.push(x.clone());
                let want = dense_forward(&inp, heads, phased);
                // |W||x| + |b| scale, from the layer's own dense weight.
                let w = l.dense_weight(&params).unwrap();
                let mut scale = 0.0f64;
                for r in 0..bs {
                    for j in 0..m {
                        let s: f64 = (0..n)
                            .map(|i| (w[j * n + i] * x.data[r * n + i]).abs())
                            .sum();
                        let yj: f64 = (0..n)
                            .map(|i| w[j * n + i] * x.data[r * n + i])
                            .sum::<f64>()
                            + 0.25;
                        assert!(
                            (yj - want.data[r * m + j]).abs() <= 1e-10 * (s + 1.0),
                            "dense_weight disagrees with the test's dense layer"
                        );
                        scale = scale.max(s + 0.25);
                    }
                }
                let err = y
                    .data
                    .iter()
                    .zip(&want.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                eprintln!(
                    "laplex n={n} m={m} H={heads} phased={phased}: max err {err:.2e}, rel {:.2e}",
                    err / scale
                );
                assert!(err <= 1e-5 * scale, "rel err {} > 1e-5", err / scale);
            }
        }
    }
}

/// Gradients for every parameter (anchors, gains, ρ, ω, φ, bias) and the input vs central
/// finite differences of the dense f64 layer, n = 6 → m = 5, H = 2, B = 3. Tolerance: 5e-6
/// of the largest gradient entry (f32 sweeps and reductions over ≤ 6·5·3 terms; measured
/// at most 4.4e-7 relative on lavapipe, so a 0.1 % error in any VJP term would fail).
#[test]
fn laplex_gradients_match_finite_differences() {
    let dev = device();
    for phased in [false, true] {
        let heads = 2;
        let (params, l) = layer(&dev, 6, 5, heads, phased, 11);
        let mut inputs: Vec<(String, RefTensor)> = params
            .names()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), download(params.at(i).unwrap())))
            .collect();
        inputs.push((
            "x".into(),
            RefTensor::new(&[3, 6], uniform_f32(18, 9, -1.0, 1.0)),
        ));
        let named: Vec<(&str, RefTensor)> = inputs
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let np = params.len();
        let rep = check(
            &dev,
            &named,
            |v: &[Var]| l.forward(&params.bind(&v[..np])?, &v[np]),
            |x| dense_forward(x, heads, phased),
            &GradCheck::default(),
        )
        .unwrap();
        eprintln!("laplex gradients (phased={phased}): {rep}");
        rep.verify(5e-6, 1e-7).unwrap();
    }
}
