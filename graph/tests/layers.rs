//! The layers of `nn` (`layers.rs`, `attention.rs`) against f64 references written here
//! with plain loops: forward values, parameter names, shapes, typed constructor errors,
//! and every gradient through [`lapis_graph::gradcheck::check`] (device f32 backward vs
//! central finite differences of the f64 reference, `h = 1e-5·max(1, |x|)`).
//!
//! A layer is checked by building it in a fresh [`Params`] and passing the parameter
//! values (in registration order) followed by the input as the checker's inputs; the
//! device closure calls `layer.forward(&v[..p], &v[p])`. Parameters that start at
//! constants (biases 0, LayerNorm's γ = 1 and β = 0) are replaced by random values, so
//! the check does not run at a special point.
//!
//! Tolerances are `max_j |device_j − fd_j| ≤ rtol · max_j |fd_j|` per input (and the same
//! for the forward values), `atol = 0`: the finite differences are f64 and accurate to
//! ~1e-10, so what is measured is the f32 rounding of the device's forward and backward.
//! Each report is printed with `eprintln!` (`--show-output` shows the measured errors).

use lapis_graph::gradcheck::{check, uniform_f32, GradCheck, Report};
use lapis_graph::nn::{
    Activation, Dropout, Embedding, LayerNorm, Mlp, MultiHeadAttention, Params, PatchEmbed,
    SoftTopK,
};
use lapis_graph::{backward, Tape, Var};
use lapis_ops::reference::RefTensor;
use lapis_ops::{DType, Device, LapisError, Result, Tensor};
use lapis_tests::{deferred_err, device};

// ---- helpers ----------------------------------------------------------------------------

/// Deterministic uniform values in `[lo, hi]` (f32-representable) of the given shape.
fn rand(shape: &[usize], seed: u64, lo: f64, hi: f64) -> RefTensor {
    let n = shape.iter().product();
    RefTensor::new(shape, uniform_f32(n, seed, lo, hi))
}

/// A device tensor as f64.
fn download(t: &Tensor) -> RefTensor {
    let v = t.to_f32_vec().expect("download");
    RefTensor::new(t.shape(), v.into_iter().map(f64::from).collect())
}

/// A reference tensor uploaded as f32.
fn upload(dev: &Device, r: &RefTensor) -> Tensor {
    let v: Vec<f32> = r.data.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(dev, &r.shape, &v).expect("upload")
}

/// The largest gradient entry over all inputs.
fn max_scale(r: &Report) -> f64 {
    r.inputs.iter().map(|i| i.scale).fold(0.0, f64::max)
}

/// The scale an input's gradient error is judged against: its own largest entry, or, for
/// a gradient that vanishes identically (`scale ≤ 1e-6` of the largest gradient entry of
/// all inputs, e.g. attention's `∂b_k`), the largest gradient entry of all inputs: its
/// finite difference is 0 up to rounding and the device's is a sum of f32 roundings of
/// O(largest entry) terms that cancel.
fn judged_scale(r: &Report, scale: f64) -> f64 {
    let s = max_scale(r);
    if scale <= 1e-6 * s {
        s
    } else {
        scale
    }
}

/// The largest `max_err / scale` over the forward and every input (for the log).
fn worst_rel(r: &Report) -> f64 {
    let rel = |e: f64, s: f64| if s > 0.0 { e / s } else { e };
    r.inputs
        .iter()
        .map(|i| rel(i.max_err, judged_scale(r, i.scale)))
        .fold(rel(r.forward_err, r.forward_scale), f64::max)
}

/// Runs the checker, prints its report and asserts `err ≤ rtol · scale` for the forward
/// and every input ([`judged_scale`]).
fn run_check<F, R>(
    label: &str,
    dev: &Device,
    inputs: &[(&str, RefTensor)],
    f: F,
    reference: R,
    rtol: f64,
) -> Report
where
    F: Fn(&[Var]) -> Result<Var>,
    R: Fn(&[RefTensor]) -> RefTensor,
{
    let rep = check(dev, inputs, f, reference, &GradCheck::default()).expect(label);
    eprintln!(
        "{label}: {rep}; worst err/scale {:.2e} (rtol {rtol:.0e})",
        worst_rel(&rep)
    );
    let mut judged = rep.clone();
    for i in &mut judged.inputs {
        i.scale = judged_scale(&rep, i.scale);
    }
    if let Err(e) = judged.verify(rtol, 0.0) {
        panic!("{label}: {e}");
    }
    rep
}

/// `y = x W (+ b)` over the last axis of `x`; `W [in, out]`.
fn linear_f64(x: &RefTensor, w: &RefTensor, b: Option<&RefTensor>) -> RefTensor {
    let (din, dout) = (w.shape[0], w.shape[1]);
    assert_eq!(*x.shape.last().unwrap(), din);
    let rows = x.numel() / din;
    let mut out = vec![0.0; rows * dout];
    for r in 0..rows {
        for o in 0..dout {
            let mut acc = b.map_or(0.0, |b| b.data[o]);
            for i in 0..din {
                acc += x.data[r * din + i] * w.data[i * dout + o];
            }
            out[r * dout + o] = acc;
        }
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().unwrap() = dout;
    RefTensor::new(&shape, out)
}

/// LayerNorm over the last axis: `γ ⊙ (x − μ)/√(σ² + ε) + β`, biased variance.
fn layer_norm_f64(x: &RefTensor, g: &RefTensor, b: &RefTensor, eps: f64) -> RefTensor {
    let d = *x.shape.last().unwrap();
    let mut out = Vec::with_capacity(x.numel());
    for row in x.data.chunks(d) {
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
        let s = (var + eps).sqrt();
        out.extend(
            row.iter()
                .enumerate()
                .map(|(i, v)| g.data[i] * (v - mu) / s + b.data[i]),
        );
    }
    RefTensor::new(&x.shape, out)
}

/// GELU, tanh form.
fn gelu_f64(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

fn is_invalid(r: Result<impl Sized>, op: &str) -> bool {
    matches!(r, Err(LapisError::InvalidArgument { op: o, .. }) if o == op)
}

// ---- LayerNorm --------------------------------------------------------------------------

/// LayerNorm on `[3, 5]` and `[2, 3, 4]` with random γ, β.
///
/// Tolerance rtol 1e-5 of the largest reference entry (forward and each gradient): the
/// f32 device computes means, variance and `1/√(σ² + ε)` with a few roundings of
/// `ε₃₂ ≈ 6e-8` each over rows of ≤ 5 entries (the x-gradient, whose rows sum to zero,
/// loses the most to cancellation); measured worst 1.4e-7, so 1e-5 leaves a ~70× margin
/// for other devices' rounding (FMA, other reduction orders).
#[test]
fn layer_norm_matches_f64_and_gradients() {
    let dev = device();
    for (case, shape) in [[3usize, 5].as_slice(), &[2, 3, 4]].into_iter().enumerate() {
        let d = *shape.last().unwrap();
        let eps = 1e-5f32;
        let mut params = Params::new();
        let ln = LayerNorm::new(&mut params, "ln", &dev, d, eps).unwrap();
        assert_eq!(params.names(), vec!["ln.weight", "ln.bias"]);
        // Init: γ = 1, β = 0.
        assert!(params
            .at(0)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 1.0));
        assert!(params
            .at(1)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
        let s = 10 * case as u64;
        let inputs = [
            ("gamma", rand(&[d], s + 1, 0.5, 1.5)),
            ("beta", rand(&[d], s + 2, -0.5, 0.5)),
            ("x", rand(shape, s + 3, -2.0, 2.0)),
        ];
        run_check(
            &format!("layer_norm {shape:?}"),
            &dev,
            &inputs,
            |v| ln.forward(&params.bind(&v[..2])?, &v[2]),
            |r| layer_norm_f64(&r[2], &r[0], &r[1], f64::from(eps)),
            1e-5,
        );
    }
    // The last axis must be `dim`: a length-1 axis used to broadcast against γ, β and
    // return `[3, 5]` silently; rank 0 has no axis to normalise.
    let mut params = Params::new();
    let ln = LayerNorm::new(&mut params, "ln", &dev, 5, 1e-5).unwrap();
    let tape = Tape::new();
    let vars = params.on_tape(&tape);
    for shape in [[3usize, 1].as_slice(), &[3, 4], &[5, 3], &[]] {
        let x = tape.constant(lapis_ops::zeros(&dev, shape, DType::F32).unwrap());
        assert!(
            matches!(
                ln.forward(&vars, &x),
                Err(LapisError::Shape {
                    op: "LayerNorm::forward",
                    ..
                })
            ),
            "x {shape:?}"
        );
    }
}

// ---- Embedding --------------------------------------------------------------------------

/// Gathers rows (ids with repeats, ids of shape `[2, 3]` → `[2, 3, 4]`).
///
/// Tolerance rtol 1e-6: the forward is a copy (exact) and the weight gradient is an
/// index-add of the f32 cotangent (at most two terms per entry here): the only error is
/// one f32 rounding of a sum (≤ ε₃₂/2 ≈ 6e-8 relative); measured 3.8e-8. The forward
/// must be exact.
#[test]
fn embedding_gathers_rows_and_gradients() {
    let dev = device();
    let (vocab, dim) = (6, 4);
    let mut params = Params::new();
    let emb = Embedding::new(&mut params, "emb", &dev, vocab, dim, 3).unwrap();
    assert_eq!(params.names(), vec!["emb.weight"]);
    assert_eq!(params.at(0).unwrap().shape(), &[vocab, dim]);
    let ids_host: Vec<u32> = vec![1, 3, 1, 5, 0, 3]; // 1 and 3 repeat; 2 and 4 unused
    let ids = Tensor::from_slice(&dev, &[2, 3], &ids_host).unwrap();
    let w = download(params.at(0).unwrap());

    let tape = Tape::new();
    let vars = params.on_tape(&tape);
    let y = emb.forward(&vars, &ids).unwrap();
    assert_eq!(y.shape(), &[2, 3, dim]);
    let got = y.value().to_vec::<f32>().unwrap();
    for (j, &id) in ids_host.iter().enumerate() {
        for c in 0..dim {
            assert_eq!(
                f64::from(got[j * dim + c]),
                w.data[id as usize * dim + c],
                "row {j} (id {id}), column {c}"
            );
        }
    }
    // A rank-1 id tensor gives [n, dim]; an id ≥ vocab is an error, not a stray read.
    let ids1 = Tensor::from_slice(&dev, &[4], &[0u32, 0, 2, 5]).unwrap();
    assert_eq!(emb.forward(&vars, &ids1).unwrap().shape(), &[4, dim]);
    let bad = Tensor::from_slice(&dev, &[2], &[1u32, vocab as u32]).unwrap();
    // Checked on the device (no read of the ids): the next read returns the typed error.
    let e = deferred_err(&dev, emb.forward(&vars, &bad).map(|v| v.shape().to_vec()));
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "index", .. }),
        "id {vocab} ≥ vocab {vocab}: {e}"
    );

    let gather = |w: &RefTensor| {
        let mut out = Vec::new();
        for &id in &ids_host {
            out.extend_from_slice(&w.data[id as usize * dim..(id as usize + 1) * dim]);
        }
        RefTensor::new(&[2, 3, dim], out)
    };
    let rep = run_check(
        "embedding",
        &dev,
        &[("weight", w.clone())],
        |v| emb.forward(&params.bind(&v[..1])?, &ids),
        |r| gather(&r[0]),
        1e-6,
    );
    assert_eq!(rep.forward_err, 0.0, "a gather is exact");
}

// ---- Dropout ----------------------------------------------------------------------------

/// Eval is the identity; training keeps a `1 − p` fraction (within 5σ of the binomial),
/// scales kept entries by `1/(1 − p)` and back-propagates `mask/(1 − p)`.
#[test]
fn dropout_train_and_eval() {
    let dev = device();
    let n = 100_000usize;
    let x_host = uniform_f32(n, 11, 0.5, 1.5);
    let x_t = upload(&dev, &RefTensor::new(&[n], x_host.clone()));
    for p in [0.3f32, 0.75] {
        let drop = Dropout::new(p).unwrap();
        let tape = Tape::new();
        let x = tape.leaf(x_t.clone());
        // Evaluation: identity, bit for bit.
        let y_eval = drop.forward(&x, false, 5).unwrap();
        assert_eq!(
            y_eval.value().to_vec::<f32>().unwrap(),
            x_t.to_vec::<f32>().unwrap()
        );
        // Training.
        let y = drop.forward(&x, true, 5).unwrap();
        let yv = y.value().to_vec::<f32>().unwrap();
        let scale = 1.0 / (1.0 - f64::from(p));
        let mut kept = 0usize;
        for (i, (&yi, &xi)) in yv.iter().zip(&x_host).enumerate() {
            if yi != 0.0 {
                kept += 1;
                let want = xi * scale;
                assert!(
                    (f64::from(yi) - want).abs() <= 1e-6 * want,
                    "p {p}: kept entry {i}: {yi} vs x/(1 − p) = {want}"
                );
            }
        }
        let q = 1.0 - f64::from(p);
        let frac = kept as f64 / n as f64;
        let sigma = (q * (1.0 - q) / n as f64).sqrt();
        eprintln!(
            "dropout p {p}: kept {frac:.5} vs 1 − p = {q} ({:.2}σ)",
            (frac - q) / sigma
        );
        assert!(
            (frac - q).abs() <= 5.0 * sigma,
            "p {p}: kept fraction {frac} vs {q} ± 5·{sigma:.2e}"
        );
        // Gradient of Σ y: mask/(1 − p), the same mask as the forward.
        let g = backward(&y.sum_all().unwrap()).unwrap();
        let gx = g.get(&x).expect("x gradient").to_vec::<f32>().unwrap();
        for (i, (&gi, &yi)) in gx.iter().zip(&yv).enumerate() {
            let want = if yi != 0.0 { scale } else { 0.0 };
            assert!(
                (f64::from(gi) - want).abs() <= 1e-6 * scale,
                "p {p}: gradient {i}: {gi} vs mask/(1 − p) = {want}"
            );
        }
        // Same seed, same mask; another seed, another mask.
        let again = drop
            .forward(&x, true, 5)
            .unwrap()
            .value()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(again, yv, "p {p}: the mask is a function of the seed");
        let other = drop
            .forward(&x, true, 6)
            .unwrap()
            .value()
            .to_vec::<f32>()
            .unwrap();
        assert_ne!(other, yv, "p {p}: another seed draws another mask");
    }
    // p = 0 is the identity even in training.
    let tape = Tape::new();
    let x = tape.leaf(x_t.clone());
    let y = Dropout::new(0.0).unwrap().forward(&x, true, 1).unwrap();
    assert_eq!(
        y.value().to_vec::<f32>().unwrap(),
        x_t.to_vec::<f32>().unwrap()
    );
    // p ∉ [0, 1): typed errors.
    for p in [1.0f32, 1.5, -0.1, f32::NAN, f32::INFINITY] {
        assert!(is_invalid(Dropout::new(p), "Dropout::new"), "p = {p}");
    }
}

// ---- Mlp --------------------------------------------------------------------------------

/// A 3 → 4 → 2 GELU MLP against an f64 MLP (GELU tanh form).
///
/// Tolerance rtol 1e-5: two small matmuls and one GELU in f32 (the device GELU's tanh
/// and its hand-written derivative cost a few ε₃₂); measured worst 1.9e-7 (∂x).
#[test]
fn mlp_shapes_names_and_gradients() {
    let dev = device();
    let mut params = Params::new();
    let mlp = Mlp::new(&mut params, "mlp", &dev, &[3, 4, 2], Activation::Gelu, 9).unwrap();
    assert_eq!(
        params.names(),
        vec!["mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias"]
    );
    let shapes: Vec<Vec<usize>> = (0..4)
        .map(|i| params.at(i).unwrap().shape().to_vec())
        .collect();
    assert_eq!(shapes, vec![vec![3, 4], vec![4], vec![4, 2], vec![2]]);
    // Linear init: W ~ U(±1/√in).
    for (i, d_in) in [(0, 3.0f32), (2, 4.0)] {
        let b = 1.0 / d_in.sqrt();
        let w = params.at(i).unwrap().to_vec::<f32>().unwrap();
        assert!(w.iter().all(|v| v.abs() <= b), "{}", params.names()[i]);
    }
    let tape = Tape::new();
    let vars = params.on_tape(&tape);
    for (shape, want) in [
        ([5usize, 3].as_slice(), [5usize, 2].as_slice()),
        (&[2, 5, 3], &[2, 5, 2]),
    ] {
        let x = tape.constant(upload(&dev, &rand(shape, 4, -1.0, 1.0)));
        assert_eq!(mlp.forward(&vars, &x).unwrap().shape(), want);
    }

    let mlp_f64 = |r: &[RefTensor]| {
        let h = linear_f64(&r[4], &r[0], Some(&r[1]));
        let h = RefTensor::new(&h.shape, h.data.iter().map(|&v| gelu_f64(v)).collect());
        linear_f64(&h, &r[2], Some(&r[3]))
    };
    let inputs = [
        ("w0", download(params.at(0).unwrap())),
        ("b0", rand(&[4], 21, -0.5, 0.5)),
        ("w1", download(params.at(2).unwrap())),
        ("b1", rand(&[2], 22, -0.5, 0.5)),
        ("x", rand(&[5, 3], 23, -2.0, 2.0)),
    ];
    run_check(
        "mlp 3→4→2 gelu",
        &dev,
        &inputs,
        |v| mlp.forward(&params.bind(&v[..4])?, &v[4]),
        mlp_f64,
        1e-5,
    );
}

// ---- MultiHeadAttention -----------------------------------------------------------------

/// The module-doc formula in f64: `Q, K, V = X W + b`, per head
/// `softmax(Q_h K_hᵀ/√d_h + M) V_h` with `M_ij = −∞` for `j > i` when causal, heads
/// concatenated and mapped by `W_o, b_o`. `r = [Wq, bq, Wk, bk, Wv, bv, Wo, bo, x]`.
fn attention_f64(r: &[RefTensor], heads: usize, causal: bool) -> RefTensor {
    let x = &r[8];
    let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
    let dh = d / heads;
    let q = linear_f64(x, &r[0], Some(&r[1]));
    let k = linear_f64(x, &r[2], Some(&r[3]));
    let v = linear_f64(x, &r[4], Some(&r[5]));
    let at = |m: &RefTensor, bi: usize, ti: usize, c: usize| m.data[(bi * t + ti) * d + c];
    let mut merged = vec![0.0; b * t * d];
    for bi in 0..b {
        for h in 0..heads {
            for i in 0..t {
                let s: Vec<f64> = (0..t)
                    .map(|j| {
                        if causal && j > i {
                            return f64::NEG_INFINITY;
                        }
                        (0..dh)
                            .map(|c| at(&q, bi, i, h * dh + c) * at(&k, bi, j, h * dh + c))
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|&sj| (sj - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..dh {
                    merged[(bi * t + i) * d + h * dh + c] = (0..t)
                        .map(|j| e[j] / z * at(&v, bi, j, h * dh + c))
                        .sum::<f64>();
                }
            }
        }
    }
    linear_f64(&RefTensor::new(&[b, t, d], merged), &r[6], Some(&r[7]))
}

/// MultiHeadAttention, D = 4, H = 2, T = 3, B = 2, plain and causal: every parameter and
/// x against [`attention_f64`]; then causality of the device forward directly.
///
/// Tolerance rtol 1e-5 per input: three projections, the scaled scores, a max-shifted
/// softmax and two more matmuls in f32, backward through the same chain; each value is
/// a short sum (≤ 4 terms) of O(1) numbers, so the accumulated rounding is a few ε₃₂;
/// measured worst 2.9e-7 (∂Wq). `∂b_k` vanishes identically (softmax is shift-invariant
/// and `q_i·b_k` shifts a whole score row), so its device value, ≈ 4e-8 of f32
/// cancellation, is judged against the largest gradient entry of all inputs (see
/// [`judged_scale`]).
#[test]
fn attention_matches_f64_reference() {
    let dev = device();
    let (d, heads, t, b) = (4usize, 2usize, 3usize, 2usize);
    for causal in [false, true] {
        let mut params = Params::new();
        let att = MultiHeadAttention::new(&mut params, "att", &dev, d, heads, causal, 31).unwrap();
        let mut want = Vec::new();
        for m in ["q", "k", "v", "o"] {
            want.push(format!("att.{m}.weight"));
            want.push(format!("att.{m}.bias"));
        }
        assert_eq!(params.names(), want);
        let names = ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "x"];
        let mut inputs: Vec<(&str, RefTensor)> = Vec::new();
        for (i, &name) in names[..8].iter().enumerate() {
            let val = if i % 2 == 0 {
                download(params.at(i).unwrap())
            } else {
                rand(&[d], 40 + i as u64, -0.5, 0.5) // biases start at 0: randomise
            };
            inputs.push((name, val));
        }
        // Inputs scaled so that the scores spread the softmax weights well away from
        // uniform (a check at uniform weights would miss errors in the softmax VJP).
        inputs.push((names[8], rand(&[b, t, d], 49, -2.0, 2.0)));
        run_check(
            &format!("attention causal={causal}"),
            &dev,
            &inputs,
            |v| att.forward(&params.bind(&v[..8])?, &v[8]),
            |r| attention_f64(r, heads, causal),
            1e-5,
        );
    }

    // Causality on the device, T = 5: changing x at step s leaves steps < s bit-identical;
    // without the mask the change reaches step 0.
    let t = 5;
    for causal in [true, false] {
        let mut params = Params::new();
        let att = MultiHeadAttention::new(&mut params, "att", &dev, d, heads, causal, 32).unwrap();
        let tape = Tape::new();
        let vars = params.on_tape(&tape);
        let x0 = rand(&[b, t, d], 50, -1.0, 1.0);
        let run = |x: &RefTensor| -> Vec<f32> {
            let y = att.forward(&vars, &tape.constant(upload(&dev, x))).unwrap();
            assert_eq!(y.shape(), &[b, t, d]);
            y.value().to_vec::<f32>().unwrap()
        };
        let y0 = run(&x0);
        for s in 1..t {
            let mut x1 = x0.clone();
            for bi in 0..b {
                for c in 0..d {
                    x1.data[(bi * t + s) * d + c] += 0.5;
                }
            }
            let y1 = run(&x1);
            for bi in 0..b {
                let row =
                    |y: &[f32], ti: usize| y[(bi * t + ti) * d..(bi * t + ti + 1) * d].to_vec();
                if causal {
                    for ti in 0..s {
                        assert_eq!(
                            row(&y1, ti),
                            row(&y0, ti),
                            "causal: changing step {s} moved step {ti} (batch {bi})"
                        );
                    }
                } else {
                    assert_ne!(
                        row(&y1, 0),
                        row(&y0, 0),
                        "non-causal: changing step {s} must reach step 0 (batch {bi})"
                    );
                }
                assert_ne!(row(&y1, s), row(&y0, s), "step {s} must see its own change");
            }
        }
    }
}

// ---- PatchEmbed -------------------------------------------------------------------------

/// Patches of `x [B, C, H, W]`, each flattened in `(c, y, x)` order, patches in raster
/// order: `[B, (H/p)(W/p), C·p·p]`.
fn patches_f64(x: &RefTensor, p: usize) -> RefTensor {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (gh, gw) = (h / p, w / p);
    let mut out = Vec::with_capacity(x.numel());
    for bi in 0..b {
        for py in 0..gh {
            for px in 0..gw {
                for ci in 0..c {
                    for yy in 0..p {
                        for xx in 0..p {
                            out.push(x.get(&[bi, ci, py * p + yy, px * p + xx]));
                        }
                    }
                }
            }
        }
    }
    RefTensor::new(&[b, gh * gw, c * p * p], out)
}

/// PatchEmbed on `[2, 3, 4, 4]` (patch 2 → `[2, 4, 5]`) and on a non-square
/// `[1, 3, 4, 6]` (→ `[1, 6, 5]`, which tells raster order from its transpose).
///
/// Tolerance rtol 1e-5: a permutation (exact) then one Linear with 12-term f32 dot
/// products; measured worst 9e-8.
#[test]
fn patch_embed_matches_f64() {
    let dev = device();
    let (c, p, dim) = (3usize, 2usize, 5usize);
    for (case, shape) in [[2usize, 3, 4, 4], [1, 3, 4, 6]].into_iter().enumerate() {
        let mut params = Params::new();
        let pe = PatchEmbed::new(&mut params, "pe", &dev, c, p, dim, 61).unwrap();
        assert_eq!(params.names(), vec!["pe.proj.weight", "pe.proj.bias"]);
        assert_eq!(params.at(0).unwrap().shape(), &[c * p * p, dim]);
        let inputs = [
            ("W", download(params.at(0).unwrap())),
            ("b", rand(&[dim], 62 + case as u64, -0.5, 0.5)),
            ("x", rand(&shape, 64 + case as u64, -1.0, 1.0)),
        ];
        let tokens = (shape[2] / p) * (shape[3] / p);
        let rep = run_check(
            &format!("patch_embed {shape:?}"),
            &dev,
            &inputs,
            |v| {
                let y = pe.forward(&params.bind(&v[..2])?, &v[2])?;
                assert_eq!(y.shape(), &[shape[0], tokens, dim]);
                Ok(y)
            },
            |r| linear_f64(&patches_f64(&r[2], p), &r[0], Some(&r[1])),
            1e-5,
        );
        assert!(rep.forward_scale > 0.0);
    }
}

// ---- SoftTopK ---------------------------------------------------------------------------

/// The soft top-k layer: `k = n·σ(κ)`, rows sum to k, gradients for κ, ℓ and x against
/// `reference::softtopk::soft_topk` with `k = n·sigmoid(κ)`, `α = exp(ℓ)`; invalid
/// `k0`/`alpha0` are typed errors.
///
/// Tolerance rtol 1e-5: the device threshold comes from an f32 sort, prefix sums and a
/// Newton refinement, and the κ, ℓ gradients are sums over all B·n entries of implicit-
/// function terms (`f_i/F_Σ`), each carrying a few ε₃₂ relative to O(1) intermediates;
/// measured worst 3.7e-7 (∂k_logit), a ~27× margin.
#[test]
fn soft_topk_layer() {
    let dev = device();
    let (rows, n) = (3usize, 6usize);
    let (k0, alpha0) = (2.5f32, 0.7f32);
    let mut params = Params::new();
    let stk = SoftTopK::new(&mut params, "stk", &dev, n, k0, alpha0).unwrap();
    assert_eq!(params.names(), vec!["stk.k_logit", "stk.log_alpha"]);
    let tape = Tape::new();
    let vars = params.on_tape(&tape);
    let k = stk.k(&vars).unwrap();
    assert_eq!(k.shape(), &[1]);
    let kv = f64::from(k.value().to_vec::<f32>().unwrap()[0]);
    assert!(
        (kv - f64::from(k0)).abs() <= 1e-5 * f64::from(k0),
        "k = {kv}, want {k0}"
    );
    let la = f64::from(params.at(1).unwrap().to_vec::<f32>().unwrap()[0]);
    assert!(
        (la.exp() - f64::from(alpha0)).abs() <= 1e-6,
        "α = {}",
        la.exp()
    );

    let x_ref = rand(&[rows, n], 71, -2.0, 2.0);
    let x = tape.constant(upload(&dev, &x_ref));
    let y = stk.forward(&vars, &x).unwrap();
    assert_eq!(y.shape(), &[rows, n]);
    let yv = y.value().to_vec::<f32>().unwrap();
    for (r, row) in yv.chunks(n).enumerate() {
        let s: f64 = row.iter().map(|&v| f64::from(v)).sum();
        assert!(
            row.iter().all(|&v| (0.0..=1.0).contains(&v)),
            "row {r}: {row:?}"
        );
        assert!(
            (s - kv).abs() <= 1e-4 * n as f64,
            "row {r} sums to {s}, want k = {kv}"
        );
    }
    // Both parameters get a gradient (random cotangent: Σ y alone is n-independent in α).
    let w = tape.constant(upload(&dev, &rand(&[rows, n], 72, -1.0, 1.0)));
    let g = backward(&y.mul(&w).unwrap().sum_all().unwrap()).unwrap();
    for (v, name) in vars.iter().zip(params.names()) {
        let gv = g.get(v).unwrap_or_else(|| panic!("no gradient for {name}"));
        let gv = gv.to_vec::<f32>().unwrap()[0];
        assert!(gv.is_finite() && gv != 0.0, "{name}: gradient {gv}");
    }

    let reference = |r: &[RefTensor]| {
        let kk = n as f64 / (1.0 + (-r[0].data[0]).exp());
        let alpha = r[1].data[0].exp();
        lapis_ops::reference::soft_topk(&r[2], &vec![kk; rows], &vec![alpha; rows])
    };
    let inputs = [
        ("k_logit", download(params.at(0).unwrap())),
        ("log_alpha", download(params.at(1).unwrap())),
        ("x", x_ref),
    ];
    run_check(
        "soft_topk layer",
        &dev,
        &inputs,
        |v| stk.forward(&params.bind(&v[..2])?, &v[2]),
        reference,
        1e-5,
    );

    // Rows must have the layer's length n (k = n·σ(κ) is parametrised by it): rows of 10
    // or 3 used to run silently with k confined to (0, 6) or allowed past 3.
    assert_eq!(
        stk.forward(
            &vars,
            &tape.constant(upload(&dev, &rand(&[n], 73, -1.0, 1.0)))
        )
        .unwrap()
        .shape(),
        &[n]
    );
    for shape in [[rows, 10].as_slice(), &[rows, 3], &[10], &[2, rows, n]] {
        let x = tape.constant(upload(&dev, &rand(shape, 74, -1.0, 1.0)));
        assert!(
            matches!(
                stk.forward(&vars, &x),
                Err(LapisError::Shape {
                    op: "SoftTopK::forward",
                    ..
                })
            ),
            "x {shape:?}"
        );
    }

    // Invalid k0 / alpha0: typed errors, nothing registered.
    let mut p2 = Params::new();
    for k0 in [0.0f32, -1.0, n as f32, 7.0, f32::NAN] {
        assert!(
            is_invalid(
                SoftTopK::new(&mut p2, "s", &dev, n, k0, 1.0),
                "SoftTopK::new"
            ),
            "k0 = {k0}"
        );
    }
    for a0 in [0.0f32, -0.5, f32::INFINITY, f32::NAN] {
        assert!(
            is_invalid(
                SoftTopK::new(&mut p2, "s", &dev, n, 2.0, a0),
                "SoftTopK::new"
            ),
            "alpha0 = {a0}"
        );
    }
    assert!(p2.is_empty());
}

// ---- constructor and shape errors -------------------------------------------------------

/// Bad configurations return typed errors (never panic) and register nothing.
#[test]
fn constructor_errors_are_typed() {
    let dev = device();
    let mut params = Params::new();
    for (dim, heads) in [(6usize, 4usize), (4, 0), (0, 2), (5, 2)] {
        assert!(
            is_invalid(
                MultiHeadAttention::new(&mut params, "att", &dev, dim, heads, false, 1),
                "MultiHeadAttention::new"
            ),
            "dim {dim}, heads {heads}"
        );
    }
    for eps in [0.0f32, -1e-5, f32::NAN, f32::INFINITY] {
        assert!(
            is_invalid(
                LayerNorm::new(&mut params, "ln", &dev, 4, eps),
                "LayerNorm::new"
            ),
            "eps {eps}"
        );
    }
    for sizes in [&[4usize][..], &[], &[3, 0, 2]] {
        assert!(
            is_invalid(
                Mlp::new(&mut params, "mlp", &dev, sizes, Activation::Relu, 1),
                "Mlp::new"
            ),
            "sizes {sizes:?}"
        );
    }
    for (c, p) in [(3usize, 0usize), (0, 2)] {
        assert!(
            is_invalid(
                PatchEmbed::new(&mut params, "pe", &dev, c, p, 4, 1),
                "PatchEmbed::new"
            ),
            "channels {c}, patch {p}"
        );
    }
    assert!(params.is_empty(), "failed constructors register nothing");

    // PatchEmbed: an image that is not a multiple of the patch (or has the wrong number
    // of channels, or rank) is a typed shape error from forward.
    let pe = PatchEmbed::new(&mut params, "pe", &dev, 3, 2, 4, 1).unwrap();
    let tape = Tape::new();
    let vars = params.on_tape(&tape);
    for shape in [
        [1usize, 3, 5, 4].as_slice(),
        &[1, 3, 4, 3],
        &[1, 2, 4, 4],
        &[3, 4, 4],
    ] {
        let x = tape.constant(lapis_ops::zeros(&dev, shape, DType::F32).unwrap());
        assert!(
            matches!(
                pe.forward(&vars, &x),
                Err(LapisError::Shape {
                    op: "PatchEmbed::forward",
                    ..
                })
            ),
            "image {shape:?}"
        );
    }
    // Attention: x must be [B, T, D].
    let mut p2 = Params::new();
    let att = MultiHeadAttention::new(&mut p2, "att", &dev, 4, 2, true, 1).unwrap();
    let tape = Tape::new();
    let vars = p2.on_tape(&tape);
    for shape in [[2usize, 3, 6].as_slice(), &[3, 4]] {
        let x = tape.constant(lapis_ops::zeros(&dev, shape, DType::F32).unwrap());
        assert!(
            matches!(
                att.forward(&vars, &x),
                Err(LapisError::Shape {
                    op: "MultiHeadAttention::forward",
                    ..
                })
            ),
            "x {shape:?}"
        );
    }
}
