//! Optimizers against their update rules written out in f64, the schedule's shape, and
//! clipping.

use lapis_graph::nn::Params;
use lapis_graph::optim::{clip_grad_norm, warmup_cosine, Adam, Optimizer, Sgd};
use lapis_ops::{DType, Tensor};
use lapis_tests::device;

fn v64(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect()
}

/// Three AdamW steps with changing gradients vs the textbook rule in f64 (2e-6 relative:
/// the update `lr·m̂/√v̂` is computed in f32, a few roundings per step).
#[test]
fn adamw_matches_the_update_rule() {
    let dev = device();
    let p0 = [0.5f64, -1.0, 2.0];
    let mut p = Tensor::from_slice(&dev, &[3], &p0.map(|v| v as f32)).unwrap();
    let (lr, wd, b1, b2, eps) = (0.1f64, 0.01f64, 0.9f64, 0.999f64, 1e-8f64);
    let mut opt = Adam::adamw(lr as f32, wd as f32);
    let (mut q, mut m, mut v) = (p0.to_vec(), vec![0.0; 3], vec![0.0; 3]);
    for t in 1..=3 {
        let g: Vec<f64> = q.iter().map(|x| 2.0 * x + t as f64 * 0.1).collect();
        let gt = Tensor::from_slice(&dev, &[3], &g.iter().map(|&x| x as f32).collect::<Vec<_>>())
            .unwrap();
        opt.step(&mut [&mut p], &[gt]).unwrap();
        for i in 0..3 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(t));
            let vh = v[i] / (1.0 - b2.powi(t));
            q[i] = q[i] * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + eps);
        }
        let got = v64(&p);
        for i in 0..3 {
            assert!(
                (got[i] - q[i]).abs() <= 1e-6 * q[i].abs().max(1.0),
                "step {t}, [{i}]: {} vs {}",
                got[i],
                q[i]
            );
        }
    }
}

/// SGD with momentum: v ← μv + g, θ ← θ − lr·v.
#[test]
fn sgd_momentum_matches_the_update_rule() {
    let dev = device();
    let mut p = Tensor::from_slice(&dev, &[2], &[1.0f32, -1.0]).unwrap();
    let mut opt = Sgd::new(0.5, 0.9);
    let g = Tensor::from_slice(&dev, &[2], &[1.0f32, 2.0]).unwrap();
    opt.step(&mut [&mut p], std::slice::from_ref(&g)).unwrap();
    opt.step(&mut [&mut p], std::slice::from_ref(&g)).unwrap();
    // v1 = g, v2 = 1.9 g: θ = θ0 − 0.5·2.9·g (f32 rounding: 1e-6).
    for (got, want) in v64(&p).iter().zip([1.0 - 1.45, -1.0 - 2.9]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert!(
        opt.step(&mut [&mut p], &[]).is_err(),
        "one gradient per parameter"
    );
}

/// Clipping scales to the global norm; the schedule warms up linearly and ends at the floor.
#[test]
fn clipping_and_schedule() {
    let dev = device();
    let mut gs = vec![
        Tensor::from_slice(&dev, &[2], &[3.0f32, 0.0]).unwrap(),
        Tensor::from_slice(&dev, &[1], &[4.0f32]).unwrap(),
    ];
    let norm = clip_grad_norm(&mut gs, 1.0).unwrap().to_scalar().unwrap();
    assert!((norm - 5.0).abs() < 1e-6);
    // Under the bound nothing changes.
    let mut small = vec![Tensor::from_slice(&dev, &[2], &[0.3f32, 0.4]).unwrap()];
    let n2 = clip_grad_norm(&mut small, 1.0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((n2 - 0.5).abs() < 1e-6);
    assert!((v64(&small[0])[0] - 0.3).abs() < 1e-6 && (v64(&small[0])[1] - 0.4).abs() < 1e-6);
    assert!((v64(&gs[0])[0] - 0.6).abs() < 1e-6 && (v64(&gs[1])[0] - 0.8).abs() < 1e-6);
    assert!(clip_grad_norm(&mut gs, 0.0).is_err());
    assert!((warmup_cosine(0, 10, 110, 1.0, 0.1) - 0.1).abs() < 1e-6);
    assert!((warmup_cosine(9, 10, 110, 1.0, 0.1) - 1.0).abs() < 1e-6);
    assert!((warmup_cosine(60, 10, 110, 1.0, 0.1) - 0.55).abs() < 1e-6);
    assert!((warmup_cosine(500, 10, 110, 1.0, 0.1) - 0.1).abs() < 1e-6);
}

/// Parameter groups: parameter 1 steps at 10× the rate without weight decay, parameter 0
/// with the base rate and decay; two steps vs the rule in f64 (1e-6 relative); a negative
/// factor is refused.
#[test]
fn adamw_parameter_groups() {
    let dev = device();
    let (lr, wd, b1, b2, eps) = (0.01f64, 0.1f64, 0.9f64, 0.999f64, 1e-8f64);
    let mut opt = Adam::adamw(lr as f32, wd as f32);
    // Handles of a two-parameter registry: positions 0 and 1 of the step's parameters.
    let mut reg = Params::new();
    let h: Vec<_> = (0..2)
        .map(|i| {
            reg.add(
                format!("p{i}"),
                lapis_ops::zeros(&dev, &[2], DType::F32).unwrap(),
            )
            .unwrap()
        })
        .collect();
    opt.set_lr_scale(&h[1..], 10.0).unwrap();
    opt.no_decay(&h[1..]);
    assert!(opt.set_lr_scale(&h[..1], -1.0).is_err());
    let init = [[0.5f64, -1.0], [2.0, 0.25]];
    let mut ps: Vec<Tensor> = init
        .iter()
        .map(|p| Tensor::from_slice(&dev, &[2], &p.map(|v| v as f32)).unwrap())
        .collect();
    let mut q = init;
    let (mut m, mut v) = ([[0.0f64; 2]; 2], [[0.0f64; 2]; 2]);
    for t in 1..=2 {
        let gs: Vec<[f64; 2]> = q.iter().map(|p| p.map(|x| 1.5 * x - 0.2)).collect();
        let gt: Vec<Tensor> = gs
            .iter()
            .map(|g| Tensor::from_slice(&dev, &[2], &g.map(|x| x as f32)).unwrap())
            .collect();
        let mut refs: Vec<&mut Tensor> = ps.iter_mut().collect();
        opt.step(&mut refs, &gt).unwrap();
        for k in 0..2 {
            let (plr, pwd) = if k == 1 { (10.0 * lr, 0.0) } else { (lr, wd) };
            for i in 0..2 {
                let g = gs[k][i];
                m[k][i] = b1 * m[k][i] + (1.0 - b1) * g;
                v[k][i] = b2 * v[k][i] + (1.0 - b2) * g * g;
                let mh = m[k][i] / (1.0 - b1.powi(t));
                let vh = v[k][i] / (1.0 - b2.powi(t));
                q[k][i] = q[k][i] * (1.0 - plr * pwd) - plr * mh / (vh.sqrt() + eps);
            }
            let got = v64(&ps[k]);
            for i in 0..2 {
                assert!(
                    (got[i] - q[k][i]).abs() <= 1e-6 * q[k][i].abs().max(1.0),
                    "step {t}, param {k}[{i}]: {} vs {}",
                    got[i],
                    q[k][i]
                );
            }
        }
    }
}

/// The fused step refuses bad input with typed errors, and an f16 parameter (elementwise
/// path) follows the fused f32 step to f16 precision (2e-3 relative, a few f16 roundings).
#[test]
fn adam_update_errors_and_f16_path() {
    use lapis_ops::{adam_update, AdamStep, DType};
    let dev = device();
    let p = Tensor::from_slice(&dev, &[3], &[0.5f32, -1.0, 2.0]).unwrap();
    let g = Tensor::from_slice(&dev, &[3], &[0.1f32, -0.3, 0.7]).unwrap();
    let z = lapis_ops::zeros(&dev, &[3], DType::F32).unwrap();
    let ok = AdamStep {
        beta1: 0.9,
        beta2: 0.999,
        lr: 0.1,
        eps: 1e-8,
        weight_decay: 0.0,
        t: 1,
    };
    assert!(adam_update(&p, &g, &z, &z, &ok).is_ok());
    let short = lapis_ops::zeros(&dev, &[2], DType::F32).unwrap();
    assert!(adam_update(&p, &g, &short, &z, &ok).is_err(), "shape");
    assert!(
        adam_update(&p, &g, &z, &z, &AdamStep { t: 0, ..ok }).is_err(),
        "t = 0"
    );
    assert!(
        adam_update(&p, &g, &z, &z, &AdamStep { beta2: 1.0, ..ok }).is_err(),
        "β₂ = 1"
    );
    assert!(
        adam_update(&p, &g, &z, &z, &AdamStep { lr: f64::NAN, ..ok }).is_err(),
        "NaN lr"
    );
    let ph = lapis_ops::to_dtype(&p, DType::F16).unwrap();
    let gh = lapis_ops::to_dtype(&g, DType::F16).unwrap();
    assert!(adam_update(&ph, &gh, &z, &z, &ok).is_err(), "f16 refused");
    let (mut a, mut b) = (Adam::new(0.1), Adam::new(0.1));
    let (mut p32, mut p16) = (p.clone(), ph);
    for _ in 0..3 {
        a.step(&mut [&mut p32], std::slice::from_ref(&g)).unwrap();
        b.step(&mut [&mut p16], std::slice::from_ref(&gh)).unwrap();
    }
    let (x, y) = (
        v64(&p32),
        v64(&lapis_ops::to_dtype(&p16, DType::F32).unwrap()),
    );
    for i in 0..3 {
        assert!(
            (x[i] - y[i]).abs() <= 2e-3 * x[i].abs().max(1.0),
            "[{i}]: f32 {} vs f16 {}",
            x[i],
            y[i]
        );
    }
}

/// Exact resume: an optimizer rebuilt from [`Optimizer::state`] after 3 steps takes the
/// same next 3 steps, bit for bit, as the one that never stopped (Adam and SGD with
/// momentum); a state with a missing moment is a typed error.
#[test]
fn optimizer_state_resumes_exactly() {
    let dev = device();
    let grads = |k: u64| -> Vec<Tensor> {
        vec![
            lapis_ops::normal(&dev, &[3, 2], 0.0, 1.0, 100 + k).unwrap(),
            lapis_ops::normal(&dev, &[4], 0.0, 1.0, 200 + k).unwrap(),
        ]
    };
    let init = || -> Vec<Tensor> {
        vec![
            lapis_ops::normal(&dev, &[3, 2], 0.0, 1.0, 1).unwrap(),
            lapis_ops::normal(&dev, &[4], 0.0, 1.0, 2).unwrap(),
        ]
    };
    let run = |opt: &mut dyn Optimizer, ps: &mut Vec<Tensor>, steps: std::ops::Range<u64>| {
        for k in steps {
            let mut refs: Vec<&mut Tensor> = ps.iter_mut().collect();
            opt.step(&mut refs, &grads(k)).unwrap();
        }
    };
    let makers: [fn() -> Box<dyn Optimizer>; 2] = [
        || Box::new(Adam::adamw(0.01, 0.1)),
        || Box::new(Sgd::new(0.05, 0.9)),
    ];
    for make in makers {
        let (mut straight, mut ps) = (make(), init());
        run(straight.as_mut(), &mut ps, 0..6);
        let (mut first, mut qs) = (make(), init());
        run(first.as_mut(), &mut qs, 0..3);
        let state = first.state().unwrap();
        assert!(!state.is_empty());
        let mut resumed = make();
        resumed.load_state(&state, &dev).unwrap();
        run(resumed.as_mut(), &mut qs, 3..6);
        for (a, b) in ps.iter().zip(&qs) {
            assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        }
    }
    let mut adam = Adam::new(0.01);
    let mut ps = init();
    let mut refs: Vec<&mut Tensor> = ps.iter_mut().collect();
    adam.step(&mut refs, &grads(0)).unwrap();
    assert_eq!(adam.steps_taken(), 1);
    let broken: Vec<_> = Optimizer::state(&adam)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "adam.v.1")
        .collect();
    assert!(Adam::new(0.01).load_state(&broken, &dev).is_err());
}
