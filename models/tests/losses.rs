//! The shared losses (`lapis_models::losses`) against independent f64 implementations
//! written here, their gradients against central finite differences of those
//! implementations (`lapis_graph::gradcheck::check`, as `graph/tests/gradcheck.rs`), and
//! their argument errors.
//!
//! Tolerances (`max_err ≤ atol + rtol · scale`, scale = the largest reference value or
//! gradient entry; the f64 finite difference is accurate to ~1e-10, so what is measured is
//! the device's f32 error, unit roundoff `u ≈ 6e-8`):
//!
//! * [`TRANSC`] = 1e-5 for losses built on `exp`/`log` (softmax family, softplus,
//!   `e^{−s}`): GPU transcendental functions are allowed a few ulps (Vulkan `exp`:
//!   `3 + 2|x|` ulp) and the losses chain a handful of them and sum ≤ 64 terms in f32 —
//!   the same class as the graph crate's transcendental ops. Measured on lavapipe: ≤ 1.5e-7
//!   relative (gaussian_nll_diag ∂μ; cross-entropy forward ≤ 1.5e-7), a margin of ≥ 60×.
//! * [`ARITH`] = 2e-6 for the squared errors and `nll` (subtraction, product, gather,
//!   ≤ 64-term f32 sum: a few roundings per term). Measured ≤ 1.3e-7 relative (mse ∂pred),
//!   a margin of ≥ 15×.
//!
//! Value tests away from the gradient checks (large batches, extreme logits) state their
//! own tolerances next to the assertion.

use std::rc::Rc;

use lapis_graph::gradcheck::{check, uniform_f32, GradCheck};
use lapis_graph::{backward, Tape, Var};
use lapis_models::losses::{
    accuracy, bce_with_logits, cross_entropy, cross_entropy_smoothed, gaussian_nll_diag, mse,
    mse_sum_rows, nll, soft_cross_entropy,
};
use lapis_ops::reference::RefTensor;
use lapis_ops::{Device, LapisError, Result, Tensor};
use proptest::prelude::*;

/// Transcendental losses: rtol 1e-5 (see the module docs).
const TRANSC: f64 = 1e-5;
/// Squared errors: rtol 2e-6 (see the module docs).
const ARITH: f64 = 2e-6;

/// The test device (`Device::auto()`, honours `LAPIS_DEVICE`); its adapter is printed once.
fn device() -> Device {
    static PRINT: std::sync::Once = std::sync::Once::new();
    let dev = Device::auto().unwrap_or_else(|e| {
        panic!("these tests need a compute device (install mesa-vulkan-drivers): {e}")
    });
    PRINT.call_once(|| eprintln!("losses tests: running kernels on {}", dev.info()));
    dev
}

// ---------------------------------------------------------------------------- helpers

/// Uniform values in `[lo, hi]` (rounded to f32) of the given shape.
fn t(shape: &[usize], seed: u64, lo: f64, hi: f64) -> RefTensor {
    RefTensor::new(shape, uniform_f32(shape.iter().product(), seed, lo, hi))
}

/// Deterministic labels in `0..c`.
fn labels(b: usize, c: usize, seed: u64) -> Vec<u32> {
    uniform_f32(b, seed, 0.0, c as f64 - 1e-3)
        .iter()
        .map(|&u| (u.floor() as u32).min(c as u32 - 1))
        .collect()
}

/// Random probability rows `[B, C]` (positive weights normalised per row).
fn probs(b: usize, c: usize, seed: u64) -> RefTensor {
    let w = uniform_f32(b * c, seed, 0.05, 1.0);
    let mut out = Vec::with_capacity(b * c);
    for row in w.chunks(c) {
        let s: f64 = row.iter().sum();
        out.extend(row.iter().map(|v| (v / s) as f32 as f64));
    }
    RefTensor::new(&[b, c], out)
}

fn upload(dev: &Device, r: &RefTensor) -> Tensor {
    let data: Vec<f32> = r.data.iter().map(|&v| v as f32).collect();
    Tensor::from_slice(dev, &r.shape, &data).unwrap()
}

fn upload_labels(dev: &Device, y: &[u32]) -> Tensor {
    Tensor::from_slice(dev, &[y.len()], y).unwrap()
}

fn scalar(v: f64) -> RefTensor {
    RefTensor::new(&[1], vec![v])
}

/// Runs the gradient check with the default options, prints the report, asserts it.
fn gc<F, R>(name: &str, inputs: &[(&str, RefTensor)], f: F, reference: R, rtol: f64)
where
    F: Fn(&[Var]) -> Result<Var>,
    R: Fn(&[RefTensor]) -> RefTensor,
{
    let rep = check(&device(), inputs, f, reference, &GradCheck::default()).unwrap();
    eprintln!("{name}: {rep}");
    if let Err(e) = rep.verify(rtol, 0.0) {
        panic!("{name}: {e}");
    }
}

/// The loss of `f` on a fresh tape with `x` as a tracked leaf, as f64.
fn value(x: &RefTensor, f: impl Fn(&Var) -> Result<Var>) -> f64 {
    let tape = Tape::new();
    let v = tape.leaf(upload(&device(), x));
    let loss = f(&v).unwrap();
    assert_eq!(loss.shape(), &[1], "every loss is a [1] scalar");
    loss.value().to_scalar().unwrap() as f64
}

fn close(got: f64, want: f64, rtol: f64, what: &str) {
    let err = (got - want).abs();
    assert!(
        err <= rtol * want.abs().max(1.0),
        "{what}: got {got}, want {want} (err {err:e}, rtol {rtol:e})"
    );
}

// ------------------------------------------------------------------ f64 references

/// Row-wise `log softmax` in f64 (max-shifted).
fn log_softmax_ref(z: &RefTensor) -> Vec<Vec<f64>> {
    let c = z.shape[1];
    z.data
        .chunks(c)
        .map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            row.iter().map(|v| v - lse).collect()
        })
        .collect()
}

fn ce_ref(z: &RefTensor, y: &[u32]) -> f64 {
    let lp = log_softmax_ref(z);
    -lp.iter().zip(y).map(|(r, &y)| r[y as usize]).sum::<f64>() / y.len() as f64
}

fn ce_smoothed_ref(z: &RefTensor, y: &[u32], eps: f64) -> f64 {
    let c = z.shape[1];
    let lp = log_softmax_ref(z);
    let mut s = 0.0;
    for (row, &y) in lp.iter().zip(y) {
        for (k, l) in row.iter().enumerate() {
            let q = eps / c as f64 + if k == y as usize { 1.0 - eps } else { 0.0 };
            s -= q * l;
        }
    }
    s / y.len() as f64
}

fn soft_ce_ref(z: &RefTensor, p: &RefTensor) -> f64 {
    let c = z.shape[1];
    let lp = log_softmax_ref(z);
    -lp.iter()
        .zip(p.data.chunks(c))
        .map(|(l, p)| l.iter().zip(p).map(|(l, p)| l * p).sum::<f64>())
        .sum::<f64>()
        / z.shape[0] as f64
}

fn nll_ref(lp: &RefTensor, y: &[u32]) -> f64 {
    let c = lp.shape[1];
    -y.iter()
        .enumerate()
        .map(|(b, &y)| lp.data[b * c + y as usize])
        .sum::<f64>()
        / y.len() as f64
}

fn sq_sum(p: &RefTensor, t: &RefTensor) -> f64 {
    p.data
        .iter()
        .zip(&t.data)
        .map(|(a, b)| (a - b) * (a - b))
        .sum()
}

/// Binary cross-entropy as `−y ln σ(z) − (1−y) ln(1 − σ(z))` (an independent form; only
/// accurate for moderate `|z|`, used by the gradient check).
fn bce_prob_ref(z: &RefTensor, y: &RefTensor) -> f64 {
    let n = z.data.len() as f64;
    z.data
        .iter()
        .zip(&y.data)
        .map(|(&z, &y)| {
            let s = 1.0 / (1.0 + (-z).exp());
            -y * s.ln() - (1.0 - y) * (1.0 - s).ln()
        })
        .sum::<f64>()
        / n
}

/// Binary cross-entropy in the stable form with `ln_1p` (for extreme logits).
fn bce_stable_ref(z: &RefTensor, y: &RefTensor) -> f64 {
    let n = z.data.len() as f64;
    z.data
        .iter()
        .zip(&y.data)
        .map(|(&z, &y)| z.max(0.0) - z * y + (-z.abs()).exp().ln_1p())
        .sum::<f64>()
        / n
}

/// Diagonal Gaussian NLL; `s` broadcasts over leading axes when shorter than `mu`.
fn gauss_ref(mu: &RefTensor, s: &RefTensor, x: &RefTensor) -> f64 {
    let b = mu.shape[0] as f64;
    let ns = s.data.len();
    let mut tot = 0.0;
    for (i, (&m, &x)) in mu.data.iter().zip(&x.data).enumerate() {
        let s = s.data[i % ns];
        tot += 0.5 * ((2.0 * std::f64::consts::PI).ln() + s + (x - m) * (x - m) * (-s).exp());
    }
    tot / b
}

// --------------------------------------------------------------- gradient checks

#[test]
fn grad_cross_entropy() {
    let dev = device();
    let (b, c) = (5, 7);
    let y = labels(b, c, 3);
    let yt = upload_labels(&dev, &y);
    gc(
        "cross_entropy",
        &[("logits", t(&[b, c], 1, -3.0, 3.0))],
        |v| cross_entropy(&v[0], &yt),
        |x| scalar(ce_ref(&x[0], &y)),
        TRANSC,
    );
}

#[test]
fn grad_cross_entropy_smoothed() {
    let dev = device();
    let (b, c) = (4, 6);
    let y = labels(b, c, 5);
    let yt = upload_labels(&dev, &y);
    for eps in [0.0f32, 0.1, 1.0] {
        gc(
            &format!("cross_entropy_smoothed ε={eps}"),
            &[("logits", t(&[b, c], 2, -3.0, 3.0))],
            |v| cross_entropy_smoothed(&v[0], &yt, eps),
            |x| scalar(ce_smoothed_ref(&x[0], &y, eps as f64)),
            TRANSC,
        );
    }
}

#[test]
fn grad_soft_cross_entropy() {
    let dev = device();
    let (b, c) = (4, 5);
    let p = probs(b, c, 9);
    let pt = upload(&dev, &p);
    gc(
        "soft_cross_entropy",
        &[("logits", t(&[b, c], 4, -3.0, 3.0))],
        |v| soft_cross_entropy(&v[0], &pt),
        |x| scalar(soft_ce_ref(&x[0], &p)),
        TRANSC,
    );
}

/// `nll` is a gather and a sum: checked on arbitrary inputs (it does not require
/// normalised log-probabilities), gradient `−1/B` at the labels.
#[test]
fn grad_nll() {
    let dev = device();
    let (b, c) = (6, 4);
    let y = labels(b, c, 11);
    let yt = upload_labels(&dev, &y);
    gc(
        "nll",
        &[("log_probs", t(&[b, c], 6, -4.0, 0.0))],
        |v| nll(&v[0], &yt),
        |x| scalar(nll_ref(&x[0], &y)),
        ARITH,
    );
}

#[test]
fn grad_mse() {
    let dev = device();
    for shape in [&[7][..], &[3, 4], &[2, 3, 2]] {
        let tg = t(shape, 21, -2.0, 2.0);
        let tt = upload(&dev, &tg);
        let n = tg.data.len() as f64;
        gc(
            &format!("mse {shape:?}"),
            &[("pred", t(shape, 22, -2.0, 2.0))],
            |v| mse(&v[0], &tt),
            |x| scalar(sq_sum(&x[0], &tg) / n),
            ARITH,
        );
        let b = shape[0] as f64;
        gc(
            &format!("mse_sum_rows {shape:?}"),
            &[("pred", t(shape, 23, -2.0, 2.0))],
            |v| mse_sum_rows(&v[0], &tt),
            |x| scalar(sq_sum(&x[0], &tg) / b),
            ARITH,
        );
    }
}

#[test]
fn grad_bce_with_logits() {
    let dev = device();
    let shape = [4, 5];
    // Soft targets in [0, 1]; logits kept away from the kink of max(z, 0)/|z| at 0 by
    // more than the finite-difference step (the loss is smooth there, but its pieces
    // are not, and the device evaluates the pieces).
    let y = t(&shape, 31, 0.0, 1.0);
    let yt = upload(&dev, &y);
    let z = t(&shape, 32, -4.0, 4.0);
    let z = RefTensor::new(
        &shape,
        z.data
            .iter()
            .map(|&v| if v.abs() < 0.05 { v + 0.1 } else { v })
            .collect(),
    );
    gc(
        "bce_with_logits",
        &[("logits", z)],
        |v| bce_with_logits(&v[0], &yt),
        |x| scalar(bce_prob_ref(&x[0], &y)),
        TRANSC,
    );
}

#[test]
fn grad_gaussian_nll_diag() {
    let dev = device();
    let (b, d) = (3, 4);
    let x = t(&[b, d], 41, -2.0, 2.0);
    let xt = upload(&dev, &x);
    gc(
        "gaussian_nll_diag",
        &[
            ("mu", t(&[b, d], 42, -2.0, 2.0)),
            ("log_var", t(&[b, d], 43, -1.5, 1.5)),
        ],
        |v| gaussian_nll_diag(&v[0], &v[1], &xt),
        |v| scalar(gauss_ref(&v[0], &v[1], &x)),
        TRANSC,
    );
    // A log variance shared across the batch ([D], broadcast): its gradient sums over B.
    gc(
        "gaussian_nll_diag shared log_var",
        &[
            ("mu", t(&[b, d], 44, -2.0, 2.0)),
            ("log_var", t(&[d], 45, -1.5, 1.5)),
        ],
        |v| gaussian_nll_diag(&v[0], &v[1], &xt),
        |v| scalar(gauss_ref(&v[0], &v[1], &x)),
        TRANSC,
    );
}

// ------------------------------------------------------------------- value tests

/// Large batch, many classes and logits offset by ±1000: log_softmax is max-shifted, so
/// the loss stays finite and exact to f32 (rtol 1e-5: a 64×100 f32 log-sum-exp per row and
/// a 64-term sum).
#[test]
fn cross_entropy_large_and_shifted() {
    let dev = device();
    let (b, c) = (64, 100);
    let mut z = t(&[b, c], 51, -5.0, 5.0);
    for (i, v) in z.data.iter_mut().enumerate() {
        *v += if (i / c) % 2 == 0 { 1000.0 } else { -1000.0 };
        *v = *v as f32 as f64;
    }
    let y = labels(b, c, 52);
    let yt = upload_labels(&dev, &y);
    let got = value(&z, |v| cross_entropy(v, &yt));
    close(got, ce_ref(&z, &y), 1e-5, "cross_entropy ±1000");
}

/// Extreme logits (|z| up to 80): the stable form has no overflow and matches the f64
/// stable reference (rtol 1e-5: one f32 exp/log per element, mean of 40 terms of size up
/// to 80, so the absolute error is ~80·u per term).
#[test]
fn bce_extreme_logits() {
    let dev = device();
    let shape = [8, 5];
    let z = t(&shape, 61, -80.0, 80.0);
    let y = t(&shape, 62, 0.0, 1.0);
    let yt = upload(&dev, &y);
    let got = value(&z, |v| bce_with_logits(v, &yt));
    assert!(got.is_finite());
    close(got, bce_stable_ref(&z, &y), 1e-5, "bce ±80");
}

/// Identities between the losses (rtol 1e-6: the same f32 computations up to the order
/// of a few roundings).
#[test]
fn loss_identities() {
    let dev = device();
    let (b, c) = (6, 5);
    let z = t(&[b, c], 71, -3.0, 3.0);
    let y = labels(b, c, 72);
    let yt = upload_labels(&dev, &y);
    let ce = value(&z, |v| cross_entropy(v, &yt));
    // CE = NLL(log_softmax).
    let via_nll = value(&z, |v| nll(&v.log_softmax(1)?, &yt));
    close(via_nll, ce, 1e-6, "cross_entropy vs nll∘log_softmax");
    // ε = 0 smoothing is plain CE.
    let s0 = value(&z, |v| cross_entropy_smoothed(v, &yt, 0.0));
    close(s0, ce, 1e-6, "smoothed ε=0");
    // Soft CE with one-hot targets is CE.
    let mut onehot = vec![0.0f32; b * c];
    for (i, &l) in y.iter().enumerate() {
        onehot[i * c + l as usize] = 1.0;
    }
    let oh = Tensor::from_slice(&dev, &[b, c], &onehot).unwrap();
    let soft = value(&z, |v| soft_cross_entropy(v, &oh));
    close(soft, ce, 1e-6, "soft_cross_entropy(one-hot)");
    // mse_sum_rows = (numel / B) · mse.
    let tg = upload(&dev, &t(&[b, c], 73, -1.0, 1.0));
    let m = value(&z, |v| mse(v, &tg));
    let ms = value(&z, |v| mse_sum_rows(v, &tg));
    close(ms, m * c as f64, 1e-6, "mse_sum_rows vs mse");
}

/// The gradient of CE w.r.t. the logits is `(softmax − onehot)/B` (rtol 1e-5 as
/// TRANSC): a direct check of the closed form, on top of the finite differences.
#[test]
fn cross_entropy_gradient_closed_form() {
    let dev = device();
    let (b, c) = (3, 4);
    let z = t(&[b, c], 81, -2.0, 2.0);
    let y = labels(b, c, 82);
    let tape = Tape::new();
    let v = tape.leaf(upload(&dev, &z));
    let loss = cross_entropy(&v, &upload_labels(&dev, &y)).unwrap();
    let g = backward(&loss)
        .unwrap()
        .get(&v)
        .unwrap()
        .to_f32_vec()
        .unwrap();
    let lp = log_softmax_ref(&z);
    for bi in 0..b {
        for k in 0..c {
            let want = (lp[bi][k].exp() - if k == y[bi] as usize { 1.0 } else { 0.0 }) / b as f64;
            let got = g[bi * c + k] as f64;
            assert!(
                (got - want).abs() <= 1e-5 / b as f64,
                "[{bi},{k}] {got} vs {want}"
            );
        }
    }
}

#[test]
fn accuracy_counts_argmax_with_ties_and_nan() {
    let dev = device();
    #[rustfmt::skip]
    let z = [
        0.1f32, 2.0, -1.0,   // argmax 1
        5.0, 5.0, 1.0,       // tie: lowest index 0
        -3.0, -2.0, -1.0,    // argmax 2
        f32::NAN, 9.0, 0.0,  // NaN row: wrong
    ];
    let zt = Tensor::from_slice(&dev, &[4, 3], &z).unwrap();
    assert_eq!(accuracy(&zt, &[1, 0, 2, 1]).unwrap(), 0.75);
    assert_eq!(accuracy(&zt, &[0, 1, 0, 0]).unwrap(), 0.0);
    assert_eq!(accuracy(&zt, &[1, 0, 0, 1]).unwrap(), 0.5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random shapes and seeds: CE and BCE values against the f64 references
    /// (rtol 1e-5, TRANSC).
    #[test]
    fn prop_values(b in 1usize..=33, c in 1usize..=17, seed in 0u64..1000) {
        let dev = device();
        let z = t(&[b, c], seed, -6.0, 6.0);
        let y = labels(b, c, seed + 1);
        let yt = upload_labels(&dev, &y);
        let got = value(&z, |v| cross_entropy(v, &yt));
        let want = ce_ref(&z, &y);
        prop_assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "ce {} vs {}", got, want);
        let p = t(&[b, c], seed + 2, 0.0, 1.0);
        let pt = upload(&dev, &p);
        let got = value(&z, |v| bce_with_logits(v, &pt));
        let want = bce_stable_ref(&z, &p);
        prop_assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "bce {} vs {}", got, want);
    }
}

// -------------------------------------------------------------------------- errors

/// Runs `f` on a fresh tape holding a `[b, c]` leaf and checks that it fails *before
/// recording anything* (the tape keeps only the leaf, so nothing was launched), returning
/// the error.
fn fails(shape: &[usize], f: impl Fn(&Var) -> Result<Var>) -> LapisError {
    let dev = device();
    let tape = Tape::new();
    let n = shape.iter().product();
    let v = tape.leaf(Tensor::from_slice(&dev, shape, &vec![0.5f32; n]).unwrap());
    let err = f(&v).expect_err("expected an error");
    assert_eq!(
        tape.len(),
        1,
        "nothing may be recorded before validation fails"
    );
    eprintln!("{err}");
    err
}

fn names_arg(err: &LapisError, arg: &str) {
    let msg = err.to_string();
    assert!(msg.contains(arg), "error {msg:?} should name `{arg}`");
}

#[test]
fn label_errors() {
    let dev = device();
    // Out of range (label == C): a deferred device check (no read of the labels), so the
    // loss is computed and its read returns the typed error instead of a value.
    let yt = upload_labels(&dev, &[0, 3, 1]);
    let deferred = |f: &dyn Fn(&Var) -> Result<Var>| -> LapisError {
        let tape = Tape::new();
        let v = tape.leaf(Tensor::from_slice(&dev, &[3, 3], &[0.5f32; 9]).unwrap());
        match f(&v) {
            Ok(loss) => loss
                .value()
                .to_scalar()
                .expect_err("a label ≥ C must not read back"),
            Err(e) => e, // strict mode
        }
    };
    for e in [
        deferred(&|v| cross_entropy(v, &yt)),
        deferred(&|v| cross_entropy_smoothed(v, &yt, 0.1)),
        deferred(&|v| nll(v, &yt)),
    ] {
        assert!(
            matches!(e, LapisError::InvalidArgument { name: "labels", .. }),
            "{e:?}"
        );
        names_arg(&e, "labels");
    }
    // Wrong length.
    let e = fails(&[4, 3], |v| cross_entropy(v, &yt));
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
    names_arg(&e, "labels");
    // Wrong dtype (f32 labels).
    let yf = Tensor::from_slice(&dev, &[3], &[0.0f32, 1.0, 2.0]).unwrap();
    let e = fails(&[3, 3], |v| cross_entropy(v, &yf));
    assert!(matches!(e, LapisError::DType { .. }), "{e:?}");
    names_arg(&e, "labels");
    // Labels of shape [B, 1] instead of [B].
    let y2 = Tensor::from_slice(&dev, &[3, 1], &[0u32, 1, 2]).unwrap();
    let e = fails(&[3, 3], |v| nll(v, &y2));
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
}

#[test]
fn logits_shape_errors() {
    let dev = device();
    let yt = upload_labels(&dev, &[0, 1, 2]);
    let e = fails(&[3], |v| cross_entropy(v, &yt));
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
    names_arg(&e, "logits");
    let e = fails(&[3, 2, 2], |v| nll(v, &yt));
    names_arg(&e, "log_probs");
    let p = Tensor::from_slice(&dev, &[3, 2], &[0.5f32; 6]).unwrap();
    let e = fails(&[3, 3], |v| soft_cross_entropy(v, &p));
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
    names_arg(&e, "target_probs");
    let pu = Tensor::from_slice(&dev, &[3, 3], &[0u32; 9]).unwrap();
    let e = fails(&[3, 3], |v| soft_cross_entropy(v, &pu));
    assert!(matches!(e, LapisError::DType { .. }), "{e:?}");
    names_arg(&e, "target_probs");
}

#[test]
fn smoothing_errors() {
    let dev = device();
    let yt = upload_labels(&dev, &[0, 1]);
    for eps in [-0.1f32, 1.5, f32::NAN] {
        let e = fails(&[2, 3], |v| cross_entropy_smoothed(v, &yt, eps));
        assert!(
            matches!(e, LapisError::InvalidArgument { name: "eps", .. }),
            "{e:?}"
        );
    }
}

#[test]
fn regression_errors() {
    let dev = device();
    // No broadcasting of targets: [3, 1] against [3, 4] is an error, not a silent mean.
    let tgt = Tensor::from_slice(&dev, &[3, 1], &[0.0f32; 3]).unwrap();
    for e in [
        fails(&[3, 4], |v| mse(v, &tgt)),
        fails(&[3, 4], |v| mse_sum_rows(v, &tgt)),
    ] {
        assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
        names_arg(&e, "target");
    }
    let e = fails(&[3, 4], |v| bce_with_logits(v, &tgt));
    names_arg(&e, "targets");
    let tu = Tensor::from_slice(&dev, &[3, 4], &[1u32; 12]).unwrap();
    let e = fails(&[3, 4], |v| bce_with_logits(v, &tu));
    assert!(matches!(e, LapisError::DType { .. }), "{e:?}");
}

/// `gaussian_nll_diag(mu, log_var, x)` on a fresh tape must fail before recording.
fn gauss_fails(mu: &[usize], lv: &[usize], x: &[usize]) -> LapisError {
    let dev = device();
    let tape = Tape::new();
    let leaf = |s: &[usize]| {
        let n = s.iter().product();
        tape.leaf(Tensor::from_slice(&dev, s, &vec![0.5f32; n]).unwrap())
    };
    let (mu, lv) = (leaf(mu), leaf(lv));
    let n = x.iter().product();
    let x = Tensor::from_slice(&dev, x, &vec![0.0f32; n]).unwrap();
    let before = tape.len();
    let err = gaussian_nll_diag(&mu, &lv, &x).expect_err("expected an error");
    assert_eq!(
        tape.len(),
        before,
        "nothing may be recorded before validation fails"
    );
    eprintln!("{err}");
    err
}

#[test]
fn gaussian_errors() {
    let dev = device();
    // log_var that does not broadcast to mu.
    let e = gauss_fails(&[2, 3], &[2], &[2, 3]);
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
    names_arg(&e, "log_var");
    // log_var that broadcasts the other way (mu would have to grow).
    let e = gauss_fails(&[1, 3], &[2, 3], &[1, 3]);
    names_arg(&e, "log_var");
    // x of the wrong shape.
    let e = gauss_fails(&[2, 3], &[2, 3], &[3, 2]);
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
    names_arg(&e, "`x`");
    // log_var on another tape.
    let x = Tensor::from_slice(&dev, &[2, 3], &[0.0f32; 6]).unwrap();
    let other = Tape::new();
    let lv = other.leaf(x.clone());
    let tape = Tape::new();
    let mu = tape.leaf(x.clone());
    assert!(!Rc::ptr_eq(mu.tape(), lv.tape()));
    let e = gaussian_nll_diag(&mu, &lv, &x).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                name: "log_var",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn accuracy_errors() {
    let dev = device();
    let z = Tensor::from_slice(&dev, &[2, 3], &[0.0f32; 6]).unwrap();
    let e = accuracy(&z, &[0]).unwrap_err();
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                name: "labels.len()",
                ..
            }
        ),
        "{e:?}"
    );
    let e = accuracy(&z, &[0, 3]).unwrap_err();
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "labels", .. }),
        "{e:?}"
    );
    let z1 = Tensor::from_slice(&dev, &[6], &[0.0f32; 6]).unwrap();
    let e = accuracy(&z1, &[0; 6]).unwrap_err();
    assert!(matches!(e, LapisError::Shape { .. }), "{e:?}");
    names_arg(&e, "logits");
}
