//! Autodiff core: gradients of a small network vs central finite differences of the same
//! function in f64 (written out with plain loops), and the tape's bookkeeping.

use lapis_graph::{backward, Tape};
use lapis_ops::Tensor;
use lapis_tests::device;

fn lcg(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let u = (((i as u64 + 1)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed.wrapping_mul(1442695040888963407)))
                >> 11) as f64
                / (1u64 << 53) as f64;
            (lo + (hi - lo) * u) as f32 as f64
        })
        .collect()
}

/// `loss = Σ Y ⊙ log_softmax(relu(x W + b))·(−1/B)` in f64, `x [B, d]`, `W [d, c]`, `b [c]`.
fn loss64(x: &[f64], w: &[f64], b: &[f64], y: &[f64], (bs, d, c): (usize, usize, usize)) -> f64 {
    let mut total = 0.0;
    for r in 0..bs {
        let h: Vec<f64> = (0..c)
            .map(|j| {
                let z = b[j] + (0..d).map(|k| x[r * d + k] * w[k * c + j]).sum::<f64>();
                z.max(0.0)
            })
            .collect();
        let m = h.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + h.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += (0..c).map(|j| y[r * c + j] * (h[j] - lse)).sum::<f64>();
    }
    -total / bs as f64
}

fn fd(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|k| {
            xp[k] = x[k] + h;
            let a = f(&xp);
            xp[k] = x[k] - h;
            let b = f(&xp);
            xp[k] = x[k];
            (a - b) / (2.0 * h)
        })
        .collect()
}

fn up(dev: &lapis_ops::Device, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_slice(dev, shape, &v.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap()
}

/// matmul, broadcasting add, relu, log_softmax, mul, sum_all, affine: device gradients for
/// W, b and the input x vs finite differences (h = 1e-4; f32 forward/backward vs f64:
/// 2e-3 of the largest entry).
#[test]
fn small_network_gradients_match_finite_differences() {
    let dev = device();
    let (bs, d, c) = (5, 7, 4);
    let x = lcg(bs * d, 1, -1.0, 1.0);
    let w = lcg(d * c, 2, -0.8, 0.8);
    let b = lcg(c, 3, -0.2, 0.4);
    let y: Vec<f64> = (0..bs * c)
        .map(|i| if i % c == (i / c) % c { 1.0 } else { 0.0 })
        .collect();
    let tape = Tape::new();
    let xv = tape.leaf(up(&dev, &[bs, d], &x));
    let wv = tape.leaf(up(&dev, &[d, c], &w));
    let bv = tape.leaf(up(&dev, &[c], &b));
    let yv = tape.constant(up(&dev, &[bs, c], &y));
    let z = xv.matmul(&wv).unwrap().add(&bv).unwrap();
    let lp = z.relu().unwrap().log_softmax(1).unwrap();
    let loss = lp
        .mul(&yv)
        .unwrap()
        .sum_all()
        .unwrap()
        .affine(-1.0 / bs as f32, 0.0)
        .unwrap();
    let got_loss = loss.value().to_scalar().unwrap() as f64;
    let want_loss = loss64(&x, &w, &b, &y, (bs, d, c));
    assert!(
        (got_loss - want_loss).abs() < 1e-5,
        "loss {got_loss} vs {want_loss}"
    );
    let g = backward(&loss).unwrap();
    let h = 1e-4;
    let checks = [
        (
            "W",
            g.get(&wv),
            fd(|v| loss64(&x, v, &b, &y, (bs, d, c)), &w, h),
        ),
        (
            "b",
            g.get(&bv),
            fd(|v| loss64(&x, &w, v, &y, (bs, d, c)), &b, h),
        ),
        (
            "x",
            g.get(&xv),
            fd(|v| loss64(v, &w, &b, &y, (bs, d, c)), &x, h),
        ),
    ];
    for (name, got, want) in checks {
        let got: Vec<f64> = got
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let scale = want.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
        for (k, (a, e)) in got.iter().zip(&want).enumerate() {
            assert!((a - e).abs() <= 2e-3 * scale, "{name}[{k}]: {a} vs {e}");
        }
    }
    assert!(g.get(&yv).is_none(), "constants get no gradient");
}

/// A Var used twice accumulates both paths: d(x·x + x)/dx = 2x + 1.
#[test]
fn reuse_accumulates_and_detach_stops() {
    let dev = device();
    let tape = Tape::new();
    let x = tape.leaf(up(&dev, &[3], &[1.0, -2.0, 0.5]));
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    let g = backward(&y).unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![3.0, -3.0, 2.0]
    );
    let tape = Tape::new();
    let x = tape.leaf(up(&dev, &[3], &[1.0, -2.0, 0.5]));
    let y = x.mul(&x.detach()).unwrap().sum_all().unwrap();
    let g = backward(&y).unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, -2.0, 0.5]
    );
    let big = tape.leaf(up(&dev, &[2], &[1.0, 2.0]));
    assert!(backward(&big).is_err(), "a non-scalar loss is refused");
}

/// Soft top-k and the Laplace operator on the tape: `loss = Σ p + Σ W ⊙ K(t, s; λ) V` with
/// `p = soft_topk(x; k, α)`. Σp = k per row, so `∂loss/∂k = 1` per row; `∂/∂λ` and `∂/∂s₀`
/// are checked against central differences of the device loss (f32, h = 1e-2: 2e-2
/// relative, the f32 differencing noise at this step).
#[test]
fn softtopk_and_laplace_on_the_tape() {
    let dev = device();
    let xs = lcg(12, 4, -1.0, 1.0);
    let s0 = lcg(6, 5, 0.0, 3.0);
    let run = |lam: f32, s_shift: f64| -> (f32, f32, f32, f32) {
        let tape = Tape::new();
        let x = tape.leaf(up(&dev, &[2, 6], &xs));
        let kv = tape.leaf(Tensor::from_slice(&dev, &[2], &[2.0f32, 3.5]).unwrap());
        let av = tape.leaf(Tensor::from_slice(&dev, &[2], &[0.5f32, 0.7]).unwrap());
        let p = x.soft_topk(&kv, &av).unwrap();
        let mut sv = s0.clone();
        sv[0] += s_shift;
        let s = tape.leaf(up(&dev, &[6], &sv));
        let t = tape.leaf(up(&dev, &[4], &lcg(4, 6, 0.0, 3.0)));
        let lv = tape.leaf(Tensor::from_slice(&dev, &[1], &[lam]).unwrap());
        let v = tape.leaf(up(&dev, &[6, 2], &lcg(12, 8, -1.0, 1.0)));
        let w = tape.constant(up(&dev, &[4, 2], &lcg(8, 7, -1.0, 1.0)));
        let lap = v
            .laplace_apply(&s, &t, &lv)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap();
        let loss = p.sum_all().unwrap().add(&lap).unwrap();
        let g = backward(&loss).unwrap();
        let gk = g.get(&kv).unwrap().to_vec::<f32>().unwrap();
        (
            loss.value().to_scalar().unwrap(),
            gk[0],
            g.get(&lv).unwrap().to_scalar().unwrap(),
            g.get(&s).unwrap().to_vec::<f32>().unwrap()[0],
        )
    };
    let (_, gk, gl, gs) = run(0.8, 0.0);
    assert!((gk - 1.0).abs() < 1e-4, "k̄ = {gk}, want 1");
    let h = 1e-2f32;
    let fd_l = (run(0.8 + h, 0.0).0 - run(0.8 - h, 0.0).0) / (2.0 * h);
    let fd_s = (run(0.8, h as f64).0 - run(0.8, -(h as f64)).0) / (2.0 * h);
    assert!(
        (gl - fd_l).abs() <= 2e-2 * fd_l.abs().max(1.0),
        "λ̄ {gl} vs {fd_l}"
    );
    assert!(
        (gs - fd_s).abs() <= 2e-2 * fd_s.abs().max(1.0),
        "s̄₀ {gs} vs {fd_s}"
    );
}

/// Memory and scopes: `backward` consumes every closure it passes (the tensors they hold
/// are freed), keeps only the leaves' gradients unless an interior Var asked with
/// `retain_grad`, and `no_grad` records nothing.
#[test]
fn backward_frees_closures_and_no_grad_records_nothing() {
    let dev = device();
    let tape = Tape::new();
    let x = tape.leaf(up(&dev, &[4], &[1.0, -2.0, 0.5, 3.0]));
    let h = x.mul(&x).unwrap(); // interior, not retained
    let k = h.exp().unwrap(); // interior, retained
    k.retain_grad();
    let loss = k.add(&h).unwrap().sum_all().unwrap();
    assert_eq!(tape.live_closures(), 4, "mul, exp, add, sum_all");
    let g = backward(&loss).unwrap();
    assert_eq!(tape.live_closures(), 0, "every closure consumed");
    assert!(g.get(&h).is_none(), "interior gradients are freed");
    assert_eq!(
        g.get(&k).expect("retained").to_vec::<f32>().unwrap(),
        vec![1.0; 4]
    );
    // d/dx (e^{x²} + x²) = 2x (e^{x²} + 1)
    let got = g.get(&x).unwrap().to_vec::<f32>().unwrap();
    for (gv, xv) in got.iter().zip([1.0f32, -2.0, 0.5, 3.0]) {
        let want = 2.0 * xv * ((xv * xv).exp() + 1.0);
        assert!((gv - want).abs() <= 1e-5 * want.abs(), "{gv} vs {want}");
    }
    let before = tape.live_closures();
    let y = tape.no_grad(|| x.mul(&x).unwrap().sum_all().unwrap());
    assert!(!y.is_tracked(), "no_grad output is untracked");
    assert_eq!(tape.live_closures(), before, "no_grad records no closure");
    let z = x.mul(&x).unwrap();
    assert!(z.is_tracked(), "recording resumes after no_grad");
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Scalar arguments take an `f32`, a `&Tensor` or a `&Var` (`ScalarArg`):
/// `x.soft_topk(2.0, 0.1)` compiles and its gradient reaches x; the three forms (and an
/// untracked Var) give bit-identical outputs and x-gradients for every op that takes
/// them; only a tracked Var receives a gradient.
#[test]
fn scalar_args_accept_f32_tensor_and_var() {
    use lapis_graph::ScalarArg;
    let dev = device();
    let xs = lcg(12, 11, -1.0, 1.0);

    // The motivating call: plain numbers.
    let tape = Tape::new();
    let x = tape.leaf(up(&dev, &[2, 6], &xs));
    let w = tape.constant(up(&dev, &[2, 6], &lcg(12, 12, -1.0, 1.0)));
    let p = x.soft_topk(2.0, 0.1).unwrap();
    let loss = p.mul(&w).unwrap().sum_all().unwrap();
    let g = backward(&loss).unwrap();
    let gx = g
        .get(&x)
        .expect("the gradient reaches x")
        .to_vec::<f32>()
        .unwrap();
    assert!(gx.iter().any(|v| *v != 0.0), "a non-zero gradient: {gx:?}");

    // One op at a time, each scalar in four forms: f32, &Tensor, untracked &Var, tracked &Var.
    type Op = fn(&lapis_graph::Var, ScalarArg, ScalarArg, ScalarArg) -> lapis_graph::Var;
    let ops: [(&str, [f32; 3], Op); 7] = [
        ("soft_topk", [2.5, 0.4, 0.0], |x, a, b, _| {
            x.soft_topk(a, b).unwrap()
        }),
        ("soft_topk_truncated", [2.5, 0.4, 0.0], |x, a, b, _| {
            x.soft_topk_truncated(a, b, 2.0, 1.8).unwrap().values
        }),
        ("soft_rank", [0.4, 0.0, 0.0], |x, a, _, _| {
            x.soft_rank(a).unwrap()
        }),
        ("soft_sort", [0.4, 0.0, 0.0], |x, a, _, _| {
            x.soft_sort(a).unwrap()
        }),
        ("laplace_apply", [0.8, 0.0, 0.0], |x, a, _, _| {
            let s = x.constant(x.value().reshape(&[12]).unwrap());
            let v = x.reshape(&[12, 1]).unwrap();
            v.laplace_apply(&s, &s, a).unwrap()
        }),
        ("laplace_gram", [0.8, 0.0, 0.0], |x, a, _, _| {
            let s = x.constant(x.value().reshape(&[12]).unwrap());
            x.reshape(&[12]).unwrap().laplace_gram(&s, a).unwrap()
        }),
        ("laplace_apply_phased", [0.8, 1.3, 0.4], |x, a, b, c| {
            let s = x.constant(x.value().reshape(&[12]).unwrap());
            let v = x.reshape(&[12, 1]).unwrap();
            v.laplace_apply_phased(&s, &s, a, b, c).unwrap()
        }),
    ];
    for (name, vals, op) in ops {
        let mut results = Vec::new();
        for form in ["f32", "tensor", "constant var", "tracked var"] {
            let tape = Tape::new();
            let x = tape.leaf(up(&dev, &[2, 6], &xs));
            let ts: Vec<Tensor> = vals
                .iter()
                .map(|v| Tensor::from_slice(&dev, &[1], &[*v]).unwrap())
                .collect();
            let vs: Vec<lapis_graph::Var> = ts
                .iter()
                .map(|t| match form {
                    "tracked var" => tape.leaf(t.clone()),
                    _ => tape.constant(t.clone()),
                })
                .collect();
            let arg = |i: usize| -> ScalarArg {
                match form {
                    "f32" => vals[i].into(),
                    "tensor" => (&ts[i]).into(),
                    _ => (&vs[i]).into(),
                }
            };
            let y = op(&x, arg(0), arg(1), arg(2));
            let wy = tape.constant(up(&dev, y.shape(), &lcg(y.value().numel(), 13, -1.0, 1.0)));
            let loss = y.mul(&wy).unwrap().sum_all().unwrap();
            let g = backward(&loss).unwrap();
            let gx = g.get(&x).unwrap_or_else(|| panic!("{name} {form}: no x̄"));
            let scalar_grad = g.get(&vs[0]).is_some();
            assert_eq!(
                scalar_grad,
                form == "tracked var",
                "{name} {form}: only a tracked Var gets a gradient"
            );
            results.push((form, bits(y.value()), bits(gx)));
        }
        for (form, y, gx) in &results[1..] {
            assert_eq!(y, &results[0].1, "{name}: output with {form} vs f32");
            assert_eq!(gx, &results[0].2, "{name}: x̄ with {form} vs f32");
        }
    }
}

/// A tensor or Var scalar of the wrong shape, or a Var of another tape, is a typed error.
#[test]
fn scalar_args_are_checked() {
    use lapis_ops::LapisError;
    let dev = device();
    let tape = Tape::new();
    let x = tape.leaf(up(&dev, &[2, 6], &lcg(12, 21, -1.0, 1.0)));
    let two = up(&dev, &[2], &[0.5, 0.5]);
    let three = up(&dev, &[3], &[0.5, 0.5, 0.5]);
    let s = x.constant(up(&dev, &[6], &lcg(6, 22, 0.0, 3.0)));
    let v = x.constant(up(&dev, &[6], &lcg(6, 23, -1.0, 1.0)));
    let e = v.laplace_apply(&s, &s, &two).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                op: "laplace_apply",
                name: "lambda",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        v.laplace_apply_phased(&s, &s, 1.0, 0.5, &tape.constant(two.clone())),
        Err(LapisError::InvalidArgument { name: "phi", .. })
    ));
    assert!(x.soft_topk(&three, 0.1).is_err(), "k must be [1] or [B]");
    assert!(x.soft_topk(&two, 0.1).is_ok(), "per-row k [B]");
    let other = Tape::new();
    let k = other.leaf(up(&dev, &[1], &[2.0]));
    assert!(matches!(
        x.soft_topk(&k, 0.1),
        Err(LapisError::InvalidArgument { name: "k", .. })
    ));
}
