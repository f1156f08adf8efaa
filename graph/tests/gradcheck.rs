//! Gradient checks for every op of the graph crate: the device VJP (f32, one backward pass
//! of `Σ w ⊙ f(x)` for a fixed random cotangent `w`) against central finite differences of
//! the f64 reference (`lapis_ops::reference`), via [`lapis_graph::gradcheck::check`].
//!
//! Tolerances are `max_err ≤ atol + rtol · scale` with `scale` the largest reference
//! gradient entry of each input (and the largest output for the forward comparison). The
//! finite difference itself is accurate to ~1e-10 (f64, `h = 1e-5`), so what is measured is
//! the device's f32 error (f32 unit roundoff `u ≈ 6e-8`). Three classes, each test stating
//! its own; the errors quoted were measured on lavapipe (IEEE-accurate f32 `exp`/`log`/…),
//! and each tolerance keeps a margin of ≥ 9× over them:
//!
//! * [`EXACT`] = 1e-6 — data movement and routing (layout, indexing, `neg`, `add`/`sub`,
//!   maximum/minimum, relu/abs, reductions): the gradient is the cotangent moved, or summed
//!   over ≤ 8 terms, and the forward is exact or a ≤ 24-term f32 sum. Measured ≤ 1.1e-7.
//! * [`ARITH`] = 2e-6 — rational arithmetic (`mul`, `div`, `sqrt`, matmul, linear scans):
//!   a few roundings per term and short (≤ 8-term) f32 sums or recurrences. Measured
//!   ≤ 1.3e-7.
//! * [`TRANSC`] = 1e-5 — transcendental ops and the composite operators built on them
//!   (exp, log, pow, tanh, sigmoid, gelu, softplus, softmax, rfft, Laplace, covariance,
//!   soft top-k): GPU `exp`/`log`/`sin`/`cos` are allowed several ulps (Vulkan: `exp` is
//!   within `3 + 2|x|` ulp), the VJPs re-use the f32 forward, and the operators chain
//!   dozens of such steps. Measured ≤ 4.5e-7.
//!
//! Scalar parameters whose gradient is a sum of O(1) terms cancelling to a small result
//! (the Laplace rate λ and real part `a`, LCM λ, the LCM log det itself) also get
//! `atol = 1e-6`: their f32 error is set by the size of the terms (measured ≤ 2.2e-7
//! absolute), not by the result.
//!
//! Inputs avoid kinks by more than the finite-difference step (relu/abs away from 0,
//! maximum/minimum operands ≥ 0.05 apart, distinct reduction values, anchors ≥ 0.05 apart).

use lapis_graph::gradcheck::{check, uniform_f32, GradCheck, Report};
use lapis_graph::{Lcm, Var};
use lapis_ops::reference::{self as r, RefTensor};
use lapis_ops::{BinaryOp, Device, ReduceOp, Result, Tensor, UnaryOp};
use lapis_tests::device;

// ------------------------------------------------------------------------------ helpers

/// Uniform values in `[lo, hi]` (rounded to f32) of the given shape.
fn t(shape: &[usize], seed: u64, lo: f64, hi: f64) -> RefTensor {
    RefTensor::new(shape, uniform_f32(shape.iter().product(), seed, lo, hi))
}

/// Values of magnitude in `[lo, hi]` with random signs: kept `lo` away from 0 (relu, abs).
fn away_from_zero(shape: &[usize], seed: u64, lo: f64, hi: f64) -> RefTensor {
    let n = shape.iter().product();
    let mag = uniform_f32(n, seed, lo, hi);
    let sgn = uniform_f32(n, seed ^ 0x5A5A, -1.0, 1.0);
    RefTensor::new(
        shape,
        mag.iter()
            .zip(&sgn)
            .map(|(m, s)| if *s < 0.0 { -m } else { *m })
            .collect(),
    )
}

/// `n` distinct values: a shuffled grid `lo + step·π(i)` plus a jitter in `[0, step/4]`,
/// so any two are at least `3·step/4` apart.
fn spaced(n: usize, seed: u64, lo: f64, step: f64) -> Vec<f64> {
    let u = uniform_f32(2 * n, seed, 0.0, 1.0);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((u[n + i] * (i + 1) as f64) as usize).min(i);
        perm.swap(i, j);
    }
    (0..n)
        .map(|i| (lo + step * perm[i] as f64 + 0.25 * step * u[i]) as f32 as f64)
        .collect()
}

/// [`spaced`] as a tensor.
fn spaced_t(shape: &[usize], seed: u64, lo: f64, step: f64) -> RefTensor {
    RefTensor::new(shape, spaced(shape.iter().product(), seed, lo, step))
}

/// Values on two interleaved lattices: `0.2k + 0.05v` (`offset = 0`) or
/// `0.2k + 0.1 + 0.05v` (`offset = 1`), `k ∈ −5..5`, `v ∈ [0, 1]`. Any value of one lattice
/// is at least 0.05 from any value of the other (for maximum/minimum).
fn lattice(shape: &[usize], seed: u64, offset: usize) -> RefTensor {
    let n = shape.iter().product();
    let k = uniform_f32(n, seed, -5.0, 4.999);
    let v = uniform_f32(n, seed ^ 0xA5A5, 0.0, 1.0);
    RefTensor::new(
        shape,
        k.iter()
            .zip(&v)
            .map(|(k, v)| (0.2 * k.floor() + 0.1 * offset as f64 + 0.05 * v) as f32 as f64)
            .collect(),
    )
}

/// A one-element `[1]` tensor.
fn scalar(v: f64) -> RefTensor {
    RefTensor::new(&[1], vec![v as f32 as f64])
}

/// A u32 index tensor on the device.
fn idx(dev: &Device, shape: &[usize], v: &[u32]) -> Tensor {
    Tensor::from_slice(dev, shape, v).unwrap()
}

/// Runs the check with the default options, prints the report, and asserts it within
/// `atol + rtol · scale`.
/// Data movement and routing (see the module docs): rtol 1e-6.
const EXACT: f64 = 1e-6;
/// Rational arithmetic, short sums and recurrences: rtol 2e-6.
const ARITH: f64 = 2e-6;
/// Transcendental ops and composite operators: rtol 1e-5.
const TRANSC: f64 = 1e-5;
/// Absolute floor for scalar parameters with cancelling gradients (see the module docs).
const CANCEL_ATOL: f64 = 1e-6;

fn gc<F, R>(name: &str, inputs: &[(&str, RefTensor)], f: F, reference: R, rtol: f64, atol: f64)
where
    F: Fn(&[Var]) -> Result<Var>,
    R: Fn(&[RefTensor]) -> RefTensor,
{
    let rep = check(&device(), inputs, f, reference, &GradCheck::default()).unwrap();
    eprintln!("{name}: {rep}");
    if let Err(e) = rep.verify(rtol, atol) {
        panic!("{name}: {e}");
    }
}

/// Broadcasting shape pairs every binary op is checked on: rhs broadcast along rows,
/// both sides broadcast (`[3, 1]` with `[4]`), and a rank-extended lhs broadcast.
const BIN_SHAPES: [(&[usize], &[usize]); 3] =
    [(&[3, 4], &[4]), (&[3, 1], &[4]), (&[3, 1], &[2, 1, 4])];

/// A binary op on every pair of [`BIN_SHAPES`]: `a` from `ta(shape, seed)`, `b` likewise.
fn binary_case(
    name: &str,
    dev_op: fn(&Var, &Var) -> Result<Var>,
    op: BinaryOp,
    ta: impl Fn(&[usize], u64) -> RefTensor,
    tb: impl Fn(&[usize], u64) -> RefTensor,
    rtol: f64,
) {
    for (i, (sa, sb)) in BIN_SHAPES.iter().enumerate() {
        let seed = 10 * i as u64;
        gc(
            &format!("{name} {sa:?}·{sb:?}"),
            &[("a", ta(sa, seed + 1)), ("b", tb(sb, seed + 2))],
            |v| dev_op(&v[0], &v[1]),
            |x| r::binary(op, &x[0], &x[1]),
            rtol,
            0.0,
        );
    }
}

/// A unary op on `x`.
fn unary_case(
    name: &str,
    x: RefTensor,
    dev_op: fn(&Var) -> Result<Var>,
    reference: impl Fn(f64) -> f64,
    rtol: f64,
) {
    gc(
        name,
        &[("x", x)],
        |v| dev_op(&v[0]),
        |x| {
            RefTensor::new(
                &x[0].shape,
                x[0].data.iter().map(|&v| reference(v)).collect(),
            )
        },
        rtol,
        0.0,
    );
}

fn un(op: UnaryOp) -> impl Fn(f64) -> f64 {
    move |x| r::unary_scalar(op, x)
}

/// Stacks equal-shape tensors on a new leading axis (the layout of the device's
/// two-output ops: complex scan, rfft).
fn stack(parts: &[&RefTensor]) -> RefTensor {
    let mut shape = vec![parts.len()];
    shape.extend_from_slice(&parts[0].shape);
    RefTensor::new(
        &shape,
        parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
    )
}

// -------------------------------------------------------------------------- elementwise

/// add: the gradient is the cotangent summed over broadcast axes (≤ 8 terms): EXACT
/// (rtol 1e-6; measured 6e-8).
#[test]
fn grad_add() {
    let u = |s: &[usize], seed| t(s, seed, -2.0, 2.0);
    binary_case("add", Var::add, BinaryOp::Add, u, u, EXACT);
}

/// sub: as add, with a negation: EXACT (rtol 1e-6; measured 6e-8).
#[test]
fn grad_sub() {
    let u = |s: &[usize], seed| t(s, seed, -2.0, 2.0);
    binary_case("sub", Var::sub, BinaryOp::Sub, u, u, EXACT);
}

/// mul: one f32 product per term, summed over ≤ 8 broadcast terms: ARITH (rtol 2e-6;
/// measured 1e-7).
#[test]
fn grad_mul() {
    let u = |s: &[usize], seed| t(s, seed, -2.0, 2.0);
    binary_case("mul", Var::mul, BinaryOp::Mul, u, u, ARITH);
}

/// div (b ∈ [0.5, 2], condition ≤ 4): a few f32 roundings per entry; `b̄ = −(ȳ/b)·y`
/// reuses the rounded forward: ARITH (rtol 2e-6; measured 1.3e-7).
#[test]
fn grad_div() {
    binary_case(
        "div",
        Var::div,
        BinaryOp::Div,
        |s, seed| t(s, seed, -2.0, 2.0),
        |s, seed| t(s, seed, 0.5, 2.0),
        ARITH,
    );
}

/// maximum: operands on interleaved lattices ≥ 0.05 apart (no ties, FD never crosses the
/// kink); the gradient is the cotangent routed to the winner and summed over broadcast
/// axes: EXACT (rtol 1e-6; measured 5e-8).
#[test]
fn grad_maximum() {
    binary_case(
        "maximum",
        Var::maximum,
        BinaryOp::Max,
        |s, seed| lattice(s, seed, 0),
        |s, seed| lattice(s, seed, 1),
        EXACT,
    );
}

/// minimum: as maximum: EXACT (rtol 1e-6; measured 5e-8).
#[test]
fn grad_minimum() {
    binary_case(
        "minimum",
        Var::minimum,
        BinaryOp::Min,
        |s, seed| lattice(s, seed, 0),
        |s, seed| lattice(s, seed, 1),
        EXACT,
    );
}

/// pow, base in [0.5, 2], exponent in [−1.5, 1.5]: the device's f32 `pow` (exp/log inside)
/// and `ln a` in the exponent's gradient: TRANSC (rtol 1e-5; measured 4.4e-7).
#[test]
fn grad_pow() {
    binary_case(
        "pow",
        Var::pow,
        BinaryOp::Pow,
        |s, seed| t(s, seed, 0.5, 2.0),
        |s, seed| t(s, seed, -1.5, 1.5),
        TRANSC,
    );
}

/// neg: exact: EXACT (rtol 1e-6; measured 3e-11, the FD's own error).
#[test]
fn grad_neg() {
    unary_case(
        "neg",
        t(&[3, 5], 1, -2.0, 2.0),
        Var::neg,
        un(UnaryOp::Neg),
        EXACT,
    );
}

/// exp on [−2, 2]: the VJP is `ȳ·y` with the device's f32 exp: TRANSC (rtol 1e-5;
/// measured 8e-8).
#[test]
fn grad_exp() {
    unary_case(
        "exp",
        t(&[3, 5], 2, -2.0, 2.0),
        Var::exp,
        un(UnaryOp::Exp),
        TRANSC,
    );
}

/// log on [0.2, 3] (1/x varies 15× across the range): `ȳ/x`, the forward through the f32
/// log: TRANSC (rtol 1e-5; measured 6e-8).
#[test]
fn grad_log() {
    unary_case(
        "log",
        t(&[3, 5], 3, 0.2, 3.0),
        Var::log,
        un(UnaryOp::Log),
        TRANSC,
    );
}

/// sqrt on [0.2, 3]: `ȳ/(2y)`, sqrt correctly rounded or within a few ulps: ARITH
/// (rtol 2e-6; measured 4e-8).
#[test]
fn grad_sqrt() {
    unary_case(
        "sqrt",
        t(&[3, 5], 4, 0.2, 3.0),
        Var::sqrt,
        un(UnaryOp::Sqrt),
        ARITH,
    );
}

/// abs with |x| ≥ 0.05: gradient `±ȳ`: EXACT (rtol 1e-6; measured 6e-11).
#[test]
fn grad_abs() {
    let x = away_from_zero(&[3, 5], 5, 0.05, 2.0);
    unary_case("abs", x, Var::abs, un(UnaryOp::Abs), EXACT);
}

/// relu with |x| ≥ 0.05: gradient `ȳ` or 0: EXACT (rtol 1e-6; measured 2e-11).
#[test]
fn grad_relu() {
    let x = away_from_zero(&[3, 5], 6, 0.05, 2.0);
    unary_case("relu", x, Var::relu, un(UnaryOp::Relu), EXACT);
}

/// tanh on [−2, 2]: `ȳ(1 − y²)` from the f32 forward: TRANSC (rtol 1e-5; measured 3.5e-7).
#[test]
fn grad_tanh() {
    unary_case(
        "tanh",
        t(&[3, 5], 7, -2.0, 2.0),
        Var::tanh,
        un(UnaryOp::Tanh),
        TRANSC,
    );
}

/// sigmoid on [−4, 4]: `ȳ y(1 − y)` from the f32 forward: TRANSC (rtol 1e-5; measured
/// 1.4e-7).
#[test]
fn grad_sigmoid() {
    let x = t(&[3, 5], 8, -4.0, 4.0);
    unary_case("sigmoid", x, Var::sigmoid, un(UnaryOp::Sigmoid), TRANSC);
}

/// gelu (tanh form) on [−3, 3]: the VJP formula in f32 (tanh, polynomial): TRANSC
/// (rtol 1e-5; measured 1.2e-7).
#[test]
fn grad_gelu() {
    unary_case(
        "gelu",
        t(&[3, 5], 9, -3.0, 3.0),
        Var::gelu,
        un(UnaryOp::Gelu),
        TRANSC,
    );
}

/// softplus on [−4, 4] against the f64 `max(x, 0) + ln(1 + e^{−|x|})` (there is no
/// softplus in the reference module); gradient `σ(x)` in f32: TRANSC (rtol 1e-5; measured
/// 5e-8).
#[test]
fn grad_softplus() {
    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    unary_case(
        "softplus",
        t(&[3, 5], 10, -4.0, 4.0),
        Var::softplus,
        softplus,
        TRANSC,
    );
}

/// affine `−1.7x + 0.3`: the gradient is `−1.7ȳ`, one rounding: EXACT (rtol 1e-6; measured
/// 5e-8).
#[test]
fn grad_affine() {
    let (a, b) = (-1.7f32, 0.3f32);
    unary_case(
        "affine",
        t(&[3, 5], 11, -2.0, 2.0),
        |v| v.affine(-1.7, 0.3),
        move |x| f64::from(a) * x + f64::from(b),
        EXACT,
    );
}

/// sign (|x| ≥ 0.05): piecewise constant, so the result is untracked and the checker sees
/// no gradient (0); the finite difference must be exactly 0 as well: tolerance 0.
#[test]
fn grad_sign() {
    let rep = check(
        &device(),
        &[("x", away_from_zero(&[3, 5], 12, 0.05, 2.0))],
        |v| v[0].sign(),
        |x| r::unary(UnaryOp::Sign, &x[0]),
        &GradCheck::default(),
    )
    .unwrap();
    eprintln!("sign: {rep}");
    assert_eq!(rep.inputs[0].scale, 0.0, "the FD of sign must vanish");
    rep.verify(0.0, 0.0).unwrap();
}

// --------------------------------------------------------------------------- reductions

/// A reduction along every axis of a `[2, 3, 4]` tensor of distinct values (≥ 0.075 apart,
/// so max/min have no ties within FD reach).
fn reduce_case(name: &str, dev_op: fn(&Var, usize) -> Result<Var>, op: ReduceOp, rtol: f64) {
    for axis in 0..3 {
        gc(
            &format!("{name}(axis {axis})"),
            &[("x", spaced_t(&[2, 3, 4], 20 + axis as u64, -1.2, 0.1))],
            |v| dev_op(&v[0], axis),
            |x| r::reduce(op, &x[0], axis),
            rtol,
            0.0,
        );
    }
}

/// sum along an axis: the gradient is the cotangent broadcast back, the forward a ≤ 4-term
/// f32 sum: EXACT (rtol 1e-6; measured 7e-8, the forward).
#[test]
fn grad_sum() {
    reduce_case("sum", Var::sum, ReduceOp::Sum, EXACT);
}

/// mean along an axis: `ȳ/n`, one rounding (1/3 is inexact): EXACT (rtol 1e-6; measured
/// 7e-8).
#[test]
fn grad_mean() {
    reduce_case("mean", Var::mean, ReduceOp::Mean, EXACT);
}

/// max along an axis (distinct values): `ȳ` to the argmax (mask · ȳ / count): EXACT
/// (rtol 1e-6; measured 2e-11).
#[test]
fn grad_max() {
    reduce_case("max", Var::max, ReduceOp::Max, EXACT);
}

/// min along an axis (distinct values): EXACT (rtol 1e-6; measured 2e-11).
#[test]
fn grad_min() {
    reduce_case("min", Var::min, ReduceOp::Min, EXACT);
}

/// A full reduction of a `[3, 5]` tensor of distinct values.
fn reduce_all_case(name: &str, dev_op: fn(&Var) -> Result<Var>, op: ReduceOp, rtol: f64) {
    gc(
        name,
        &[("x", spaced_t(&[3, 5], 30, -0.8, 0.1))],
        |v| dev_op(&v[0]),
        |x| r::reduce_all(op, &x[0]),
        rtol,
        0.0,
    );
}

/// sum_all: gradient `ȳ` everywhere; the forward is a 15-term f32 sum: EXACT (rtol 1e-6;
/// measured 1.1e-7, the forward).
#[test]
fn grad_sum_all() {
    reduce_all_case("sum_all", Var::sum_all, ReduceOp::Sum, EXACT);
}

/// mean_all: `ȳ/15` (sum_all then mul_scalar): EXACT (rtol 1e-6; measured 5e-8).
#[test]
fn grad_mean_all() {
    reduce_all_case("mean_all", Var::mean_all, ReduceOp::Mean, EXACT);
}

/// max_all (distinct values): `ȳ` at the argmax only: EXACT (rtol 1e-6; measured 5e-12).
#[test]
fn grad_max_all() {
    reduce_all_case("max_all", Var::max_all, ReduceOp::Max, EXACT);
}

/// min_all (distinct values): EXACT (rtol 1e-6; measured 5e-12).
#[test]
fn grad_min_all() {
    reduce_all_case("min_all", Var::min_all, ReduceOp::Min, EXACT);
}

// ------------------------------------------------------------------------------- layout

/// reshape `[2, 3, 4] → [4, 6]`: EXACT (rtol 1e-6; data movement,
/// measured ≤ 3e-11, the FD's own error).
#[test]
fn grad_reshape() {
    gc(
        "reshape",
        &[("x", t(&[2, 3, 4], 40, -2.0, 2.0))],
        |v| v[0].reshape(&[4, 6]),
        |x| r::reshape(&x[0], &[4, 6]),
        EXACT,
        0.0,
    );
}

/// permute `[2, 3, 4]` by `[2, 0, 1]` (a 3-cycle, whose inverse differs from itself):
/// EXACT (rtol 1e-6; data movement, measured ≤ 3e-11, the FD's own error).
#[test]
fn grad_permute() {
    gc(
        "permute",
        &[("x", t(&[2, 3, 4], 41, -2.0, 2.0))],
        |v| v[0].permute(&[2, 0, 1]),
        |x| r::permute(&x[0], &[2, 0, 1]),
        EXACT,
        0.0,
    );
}

/// transpose of axes 0 and 2 of `[2, 3, 4]`: EXACT (rtol 1e-6; data movement,
/// measured ≤ 3e-11, the FD's own error).
#[test]
fn grad_transpose() {
    gc(
        "transpose",
        &[("x", t(&[2, 3, 4], 42, -2.0, 2.0))],
        |v| v[0].transpose(0, 2),
        |x| r::transpose(&x[0], 0, 2),
        EXACT,
        0.0,
    );
}

/// slice `1..4` of axis 1 of `[2, 5, 3]` (zeros padded on both sides in the VJP), and of
/// the prefix `0..2` (no left pad): EXACT (rtol 1e-6; data movement,
/// measured ≤ 3e-11, the FD's own error).
#[test]
fn grad_slice() {
    for (start, end) in [(1, 4), (0, 2)] {
        gc(
            &format!("slice {start}..{end}"),
            &[("x", t(&[2, 5, 3], 43, -2.0, 2.0))],
            |v| v[0].slice(1, start, end),
            |x| r::slice(&x[0], 1, start, end),
            EXACT,
            0.0,
        );
    }
}

/// concat of `[2, 1, 3]`, `[2, 2, 3]`, `[2, 3, 3]` along axis 1: EXACT (rtol 1e-6; data movement,
/// measured ≤ 3e-11, the FD's own error).
#[test]
fn grad_concat() {
    gc(
        "concat",
        &[
            ("a", t(&[2, 1, 3], 44, -2.0, 2.0)),
            ("b", t(&[2, 2, 3], 45, -2.0, 2.0)),
            ("c", t(&[2, 3, 3], 46, -2.0, 2.0)),
        ],
        |v| Var::concat(&[&v[0], &v[1], &v[2]], 1),
        |x| r::concat(&[&x[0], &x[1], &x[2]], 1),
        EXACT,
        0.0,
    );
}

/// broadcast_to `[3, 1] → [2, 3, 4]` (a new leading axis and a stretched one): the VJP sums
/// 8 cotangent entries per input entry in f32: EXACT (rtol 1e-6; measured 6e-8).
#[test]
fn grad_broadcast_to() {
    gc(
        "broadcast_to",
        &[("x", t(&[3, 1], 47, -2.0, 2.0))],
        |v| v[0].broadcast_to(&[2, 3, 4]),
        |x| r::broadcast_to(&x[0], &[2, 3, 4]),
        EXACT,
        0.0,
    );
}

/// copy, of a plain tensor and of a transposed one: EXACT (rtol 1e-6; data movement,
/// measured ≤ 3e-11, the FD's own error).
#[test]
fn grad_copy() {
    gc(
        "copy",
        &[("x", t(&[3, 4], 48, -2.0, 2.0))],
        |v| v[0].copy(),
        |x| x[0].clone(),
        EXACT,
        0.0,
    );
    gc(
        "copy of transpose",
        &[("x", t(&[3, 4], 49, -2.0, 2.0))],
        |v| v[0].transpose(0, 1)?.copy(),
        |x| r::transpose(&x[0], 0, 1),
        EXACT,
        0.0,
    );
}

// ------------------------------------------------------------------------------ indexing

/// gather along axis 1 of `[3, 4]` with a `[3, 5]` index holding repeats (the VJP
/// scatter-adds repeated picks): EXACT (rtol 1e-6; ≤ 3-term sums, measured 1e-8).
#[test]
fn grad_gather() {
    let ix: Vec<u32> = vec![0, 3, 3, 1, 0, 2, 2, 2, 1, 3, 1, 0, 3, 0, 1];
    let it = idx(&device(), &[3, 5], &ix);
    gc(
        "gather",
        &[("x", t(&[3, 4], 50, -2.0, 2.0))],
        |v| v[0].gather(1, &it),
        |x| r::gather(&x[0], 1, &[3, 5], &ix),
        EXACT,
        0.0,
    );
}

/// index_select of rows `[0, 2, 2, 3, 0, 2]` of `[4, 3]` (repeats; row 1 unused, so its
/// gradient is 0): EXACT (rtol 1e-6; ≤ 3-term sums, measured 5e-8).
#[test]
fn grad_index_select() {
    let ix: Vec<u32> = vec![0, 2, 2, 3, 0, 2];
    let it = idx(&device(), &[6], &ix);
    gc(
        "index_select",
        &[("x", t(&[4, 3], 51, -2.0, 2.0))],
        |v| v[0].index_select(0, &it),
        |x| r::index_select(&x[0], 0, &ix),
        EXACT,
        0.0,
    );
}

/// scatter_add of `src [3, 5]` into `base [3, 4]` along axis 1 with repeated targets; both
/// tracked: EXACT (rtol 1e-6; measured 4e-8, the forward).
#[test]
fn grad_scatter_add() {
    let ix: Vec<u32> = vec![1, 1, 0, 3, 1, 2, 0, 0, 3, 2, 3, 3, 3, 0, 1];
    let it = idx(&device(), &[3, 5], &ix);
    gc(
        "scatter_add",
        &[
            ("base", t(&[3, 4], 52, -2.0, 2.0)),
            ("src", t(&[3, 5], 53, -2.0, 2.0)),
        ],
        |v| v[0].scatter_add(1, &it, &v[1]),
        |x| r::scatter_add(&x[0], 1, &[3, 5], &ix, &x[1]),
        EXACT,
        0.0,
    );
}

/// index_add of `src [6, 3]` into 4 rows along axis 0 (repeats, row 1 empty): EXACT
/// (rtol 1e-6; measured 3e-8, the forward).
#[test]
fn grad_index_add() {
    let ix: Vec<u32> = vec![3, 0, 3, 2, 0, 3];
    let it = idx(&device(), &[6], &ix);
    gc(
        "index_add",
        &[("src", t(&[6, 3], 54, -2.0, 2.0))],
        |v| v[0].index_add(0, &it, 4),
        |x| r::index_add(&x[0], 0, &ix, 4),
        EXACT,
        0.0,
    );
}

// ------------------------------------------------------------------------------- matmul

/// `a @ b` with entries in [−1, 1]: inner sums of 3–5 f32 products (forward and both
/// VJPs), plus the batch sum of a shared operand: ARITH (rtol 2e-6; measured ≤ 9e-8).
fn matmul_case(name: &str, sa: &[usize], sb: &[usize]) {
    gc(
        name,
        &[("a", t(sa, 60, -1.0, 1.0)), ("b", t(sb, 61, -1.0, 1.0))],
        |v| v[0].matmul(&v[1]),
        |x| r::matmul(&x[0], &x[1]),
        ARITH,
        0.0,
    );
}

/// 2-D `[3, 4] @ [4, 5]`: ARITH (rtol 2e-6; measured 6e-8).
#[test]
fn grad_matmul() {
    matmul_case("matmul 2d", &[3, 4], &[4, 5]);
}

/// batched `[2, 3, 4] @ [4, 5]` (shared rhs: its gradient sums the batch): ARITH (rtol 2e-6;
/// measured 9e-8).
#[test]
fn grad_matmul_batched_shared_rhs() {
    matmul_case("matmul batched·shared", &[2, 3, 4], &[4, 5]);
}

/// batched × batched `[2, 3, 4] @ [2, 4, 5]`, and a broadcast batch
/// `[2, 1, 3, 4] @ [3, 4, 2]`: ARITH (rtol 2e-6; measured 8e-8).
#[test]
fn grad_matmul_batched() {
    matmul_case("matmul batched·batched", &[2, 3, 4], &[2, 4, 5]);
    matmul_case("matmul broadcast batch", &[2, 1, 3, 4], &[3, 4, 2]);
}

/// `op(a) @ op(b)` with transposed operands read through strides (`Var::matmul_t`), every
/// combination, batched, shared rank-2 and broadcast: ARITH, as [`matmul_case`] (the same
/// sums; only the memory order of the operands differs).
#[test]
fn grad_matmul_t() {
    let tr = |x: &RefTensor, t: bool| {
        if t {
            r::transpose(x, x.shape.len() - 2, x.shape.len() - 1)
        } else {
            x.clone()
        }
    };
    for (sa, sb, ta, tb) in [
        (vec![4, 3], vec![4, 5], true, false),
        (vec![3, 4], vec![5, 4], false, true),
        (vec![4, 3], vec![5, 4], true, true),
        (vec![2, 3, 4], vec![5, 4], false, true),
        (vec![2, 4, 3], vec![2, 4, 5], true, false),
        (vec![2, 1, 4, 3], vec![3, 2, 4], true, true),
    ] {
        gc(
            &format!(
                "matmul_t {sa:?}{} @ {sb:?}{}",
                if ta { "ᵀ" } else { "" },
                if tb { "ᵀ" } else { "" }
            ),
            &[("a", t(&sa, 62, -1.0, 1.0)), ("b", t(&sb, 63, -1.0, 1.0))],
            move |v| v[0].matmul_t(&v[1], ta, tb),
            move |x| r::matmul(&tr(&x[0], ta), &tr(&x[1], tb)),
            ARITH,
            0.0,
        );
    }
}

// ------------------------------------------------------------------------------ sort

/// Sorted values `x[π]` in f64: rows of a rank-2 tensor, or the whole of a rank-1 one.
fn sorted_ref(x: &RefTensor) -> RefTensor {
    let n = *x.shape.last().unwrap();
    let mut out = Vec::with_capacity(x.numel());
    for row in x.data.chunks(n) {
        let perm = r::argsort(row);
        out.extend(perm.iter().map(|&i| row[i as usize]));
    }
    RefTensor::new(&x.shape, out)
}

/// Sort of 1-D `x [9]` and of each row of `[3, 6]`, values ≥ 0.075 apart (the finite
/// difference never reorders them): the VJP routes each gradient entry back, EXACT
/// (rtol 1e-6).
#[test]
fn grad_sort() {
    gc(
        "sort",
        &[("x", spaced_t(&[9], 401, -1.0, 0.1))],
        |v| Ok(v[0].sort()?.0),
        |x| sorted_ref(&x[0]),
        EXACT,
        0.0,
    );
    gc(
        "sort_rows",
        &[("x", spaced_t(&[3, 6], 402, -1.0, 0.1))],
        |v| Ok(v[0].sort_rows()?.0),
        |x| sorted_ref(&x[0]),
        EXACT,
        0.0,
    );
}

/// `Var::unary` and `Var::binary` dispatch every `UnaryOp` / `BinaryOp` to the op of that
/// name: each checked against the reference of the same `op` (inputs positive and away
/// from kinks; operands of max/min on interleaved lattices shifted positive). TRANSC.
#[test]
fn grad_unary_binary_dispatch() {
    for op in UnaryOp::ALL {
        gc(
            &format!("unary({})", op.name()),
            &[("x", t(&[2, 3], 410, 0.3, 2.0))],
            |v| v[0].unary(op),
            |x| r::unary(op, &x[0]),
            TRANSC,
            0.0,
        );
    }
    let shift = |r: RefTensor| RefTensor::new(&r.shape, r.data.iter().map(|v| v + 1.5).collect());
    for op in BinaryOp::ALL {
        gc(
            &format!("binary({})", op.name()),
            &[
                ("a", shift(lattice(&[2, 3], 411, 0))),
                ("b", shift(lattice(&[3], 412, 1))),
            ],
            |v| v[0].binary(op, &v[1]),
            |x| r::binary(op, &x[0], &x[1]),
            TRANSC,
            0.0,
        );
    }
}

// ------------------------------------------------------------------------------ softmax

/// softmax along axis 1 and axis 0 of `[3, 5]`, x ∈ [−3, 3]: f32 exp and normalisation,
/// the VJP from the f32 output: TRANSC (rtol 1e-5; measured 1.1e-7).
#[test]
fn grad_softmax() {
    for axis in [1, 0] {
        gc(
            &format!("softmax(axis {axis})"),
            &[("x", t(&[3, 5], 70 + axis as u64, -3.0, 3.0))],
            |v| v[0].softmax(axis),
            |x| r::softmax(&x[0], axis),
            TRANSC,
            0.0,
        );
    }
}

/// log_softmax along axis 1 and axis 0 of `[3, 5]`, x ∈ [−3, 3]: f32 exp/log, the VJP
/// from `exp(y)`: TRANSC (rtol 1e-5; measured 2e-7).
#[test]
fn grad_log_softmax() {
    for axis in [1, 0] {
        gc(
            &format!("log_softmax(axis {axis})"),
            &[("x", t(&[3, 5], 72 + axis as u64, -3.0, 3.0))],
            |v| v[0].log_softmax(axis),
            |x| r::log_softmax(&x[0], axis),
            TRANSC,
            0.0,
        );
    }
}

// --------------------------------------------------------------------------------- scan

/// linear_scan `h_k = d_k h_{k∓1} + u_k`, N = 8, decays in (0.3, 0.95), `u [8, 3]` forward
/// and reverse, and `u [8]`: products of up to 8 decays and an 8-term adjoint scan in f32:
/// ARITH (rtol 2e-6; measured 7e-8).
#[test]
fn grad_linear_scan() {
    for (shape, reverse) in [
        (&[8usize, 3][..], false),
        (&[8, 3][..], true),
        (&[8][..], false),
    ] {
        gc(
            &format!("linear_scan u{shape:?} reverse={reverse}"),
            &[
                ("d", t(&[8], 80, 0.3, 0.95)),
                ("u", t(shape, 81, -1.0, 1.0)),
            ],
            |v| Var::linear_scan(&v[0], &v[1], reverse),
            |x| r::linear_scan(&x[0].data, &x[1], reverse),
            ARITH,
            0.0,
        );
    }
}

/// f64 complex scan (the reference module has only the real one): `h_k = d_k h_{k∓1} + u_k`
/// with `d = dr + i di` `[N]`, `u = ur + i ui` `[N, c]`; returns `[2, N, c]` (Re, Im).
fn complex_scan_ref(
    dr: &[f64],
    di: &[f64],
    ur: &RefTensor,
    ui: &RefTensor,
    rev: bool,
) -> RefTensor {
    let n = dr.len();
    let c = ur.numel() / n;
    let (mut hr, mut hi) = (vec![0.0; n * c], vec![0.0; n * c]);
    for ch in 0..c {
        let (mut pr, mut pi) = (0.0, 0.0);
        for step in 0..n {
            let k = if rev { n - 1 - step } else { step };
            let (a, b) = (dr[k] * pr - di[k] * pi, dr[k] * pi + di[k] * pr);
            pr = a + ur.data[k * c + ch];
            pi = b + ui.data[k * c + ch];
            hr[k * c + ch] = pr;
            hi[k * c + ch] = pi;
        }
    }
    stack(&[
        &RefTensor::new(&ur.shape, hr),
        &RefTensor::new(&ur.shape, hi),
    ])
}

/// linear_scan_complex, N = 8, `|d| ∈ (0.3, 0.95)` at random phases, `u [8, 2]`, forward
/// and reverse: complex products in f32: ARITH (rtol 2e-6; measured 1.1e-7).
#[test]
fn grad_linear_scan_complex() {
    let m = uniform_f32(8, 90, 0.3, 0.95);
    let th = uniform_f32(8, 91, -3.0, 3.0);
    let dr = RefTensor::new(&[8], m.iter().zip(&th).map(|(m, t)| m * t.cos()).collect());
    let di = RefTensor::new(&[8], m.iter().zip(&th).map(|(m, t)| m * t.sin()).collect());
    for reverse in [false, true] {
        gc(
            &format!("linear_scan_complex reverse={reverse}"),
            &[
                ("dr", dr.clone()),
                ("di", di.clone()),
                ("ur", t(&[8, 2], 92, -1.0, 1.0)),
                ("ui", t(&[8, 2], 93, -1.0, 1.0)),
            ],
            |v| Var::linear_scan_complex(&v[0], &v[1], &v[2], &v[3], reverse),
            |x| complex_scan_ref(&x[0].data, &x[1].data, &x[2], &x[3], reverse),
            ARITH,
            0.0,
        );
    }
}

// ---------------------------------------------------------------------------------- fft

/// rfft along the last axis, `[3, 8]` and `[2, 2, 16]`: the device FFT (f32 twiddles,
/// which a GPU may take from its approximate sin/cos, and log₂N butterfly stages), and one
/// more FFT in the VJP: TRANSC (rtol 1e-5; measured 1.6e-7).
#[test]
fn grad_rfft() {
    for (i, shape) in [&[3usize, 8][..], &[2, 2, 16][..]].into_iter().enumerate() {
        gc(
            &format!("rfft {shape:?}"),
            &[("x", t(shape, 100 + i as u64, -1.0, 1.0))],
            |v| v[0].rfft(),
            |x| {
                let (re, im) = r::rfft(&x[0]);
                stack(&[&re, &im])
            },
            TRANSC,
            0.0,
        );
    }
}

// ------------------------------------------------------------------------------ laplace

/// `(s, t)`: `ns + nt` distinct anchors (≥ 0.1 apart across both sets, so no FD step
/// crosses a tie `t_j = s_i` or reorders the sort).
fn anchors(ns: usize, nt: usize, seed: u64) -> (RefTensor, RefTensor) {
    let all = spaced(ns + nt, seed, -1.0, 0.15);
    (
        RefTensor::new(&[ns], all[..ns].to_vec()),
        RefTensor::new(&[nt], all[ns..].to_vec()),
    )
}

/// laplace_apply `Y = K(t, s; λ) V`, n = 6 sources, m = 5 targets, V `[6, 2]` and `[6]`,
/// λ = 1.3; all of V, s, t, λ checked. The O(n) sweeps accumulate f32 `exp`-decayed sums:
/// TRANSC (rtol 1e-5; measured ≤ 2e-7), atol 1e-6 for ∂λ, a sum of O(1) terms that
/// cancel to 0.007–0.03 (measured 8e-8 absolute).
#[test]
fn grad_laplace_apply() {
    let (s, tt) = anchors(6, 5, 110);
    for vshape in [&[6usize, 2][..], &[6][..]] {
        gc(
            &format!("laplace_apply V{vshape:?}"),
            &[
                ("V", t(vshape, 111, -1.0, 1.0)),
                ("s", s.clone()),
                ("t", tt.clone()),
                ("lambda", scalar(1.3)),
            ],
            |v| v[0].laplace_apply(&v[1], &v[2], &v[3]),
            |x| {
                let c = if x[0].shape.len() == 2 {
                    x[0].shape[1]
                } else {
                    1
                };
                let vv = r::reshape(&x[0], &[x[0].shape[0], c]);
                let (re, _) = r::laplace_apply(&x[1].data, &x[2].data, &vv, (x[3].data[0], 0.0));
                let mut out_shape = vec![x[2].numel()];
                out_shape.extend_from_slice(&x[0].shape[1..]);
                r::reshape(&re, &out_shape)
            },
            TRANSC,
            CANCEL_ATOL,
        );
    }
}

/// laplace_gram `Y = K(x, x; λ) V`, d = 7, V `[7, 3]`, λ = 0.9 (the anchors' gradient is the
/// sum of both roles'): TRANSC (rtol 1e-5; measured 2.3e-7), atol 1e-6 as laplace_apply.
#[test]
fn grad_laplace_gram() {
    gc(
        "laplace_gram",
        &[
            ("V", t(&[7, 3], 120, -1.0, 1.0)),
            ("x", spaced_t(&[7], 121, -0.5, 0.15)),
            ("lambda", scalar(0.9)),
        ],
        |v| v[0].laplace_gram(&v[1], &v[2]),
        |x| r::laplace_gram(&x[1].data, &x[0], (x[2].data[0], 0.0)).0,
        TRANSC,
        CANCEL_ATOL,
    );
}

/// laplace_apply_phased `Re(e^{iφ} K(t, s; a + ib) V)`, n = 6, m = 5, V `[6, 2]`, a = 0.8,
/// b = 2.1, φ = 0.7; all six inputs checked (V, s, t, a, b, φ). The f32 phase rotations
/// (cos/sin of `b·Δ`) add to the real operator's error: TRANSC (rtol 1e-5; measured
/// ≤ 2.2e-7 for the arrays), atol 1e-6 for the scalars a, b, φ (measured ≤ 1.2e-7
/// absolute).
#[test]
fn grad_laplace_apply_phased() {
    let (s, tt) = anchors(6, 5, 130);
    gc(
        "laplace_apply_phased",
        &[
            ("V", t(&[6, 2], 131, -1.0, 1.0)),
            ("s", s),
            ("t", tt),
            ("a", scalar(0.8)),
            ("b", scalar(2.1)),
            ("phi", scalar(0.7)),
        ],
        |v| v[0].laplace_apply_phased(&v[1], &v[2], &v[3], &v[4], &v[5]),
        |x| {
            let (re, im) =
                r::laplace_apply(&x[1].data, &x[2].data, &x[0], (x[3].data[0], x[4].data[0]));
            let phi = x[5].data[0];
            let data = re
                .data
                .iter()
                .zip(&im.data)
                .map(|(a, b)| phi.cos() * a - phi.sin() * b)
                .collect();
            RefTensor::new(&re.shape, data)
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

// --------------------------------------------------------------------------- covariance

/// LCM parameters `[a, λ, u, w]` for d = 6: anchors ≥ 0.15 apart, λ = 0.8, nugget
/// u ∈ [0.3, 1], gains w ∈ [0.5, 1.5] (condition number of Σ below ~50).
fn lcm_inputs(seed: u64) -> Vec<(&'static str, RefTensor)> {
    vec![
        ("a", spaced_t(&[6], seed, -1.0, 0.2)),
        ("lambda", scalar(0.8)),
        ("u", t(&[6], seed + 1, 0.3, 1.0)),
        ("w", t(&[6], seed + 2, 0.5, 1.5)),
    ]
}

fn lcm(v: &[Var]) -> Result<Lcm> {
    Lcm::new(&v[0], &v[1], &v[2], &v[3])
}

/// `(u, w, a, λ)` slices from the reference inputs `[a, λ, u, w, …]`.
fn lcm_ref(x: &[RefTensor]) -> (&[f64], &[f64], &[f64], f64) {
    (&x[2].data, &x[3].data, &x[0].data, x[1].data[0])
}

/// Column `ch` of a `[d, c]` tensor (or the whole of a `[d]` one).
fn column(r: &RefTensor, ch: usize) -> Vec<f64> {
    let d = r.shape[0];
    let c = r.numel() / d;
    (0..d).map(|i| r.data[i * c + ch]).collect()
}

/// A per-column scalar objective of `r [d]` (→ `[1]`) or `r [d, c]` (→ `[1, c]`).
fn per_column(r: &RefTensor, f: impl Fn(&[f64]) -> f64) -> RefTensor {
    if r.shape.len() == 1 {
        RefTensor::new(&[1], vec![f(&r.data)])
    } else {
        let c = r.shape[1];
        RefTensor::new(&[1, c], (0..c).map(|ch| f(&column(r, ch))).collect())
    }
}

/// A per-column vector function of `r [d]` or `r [d, c]` (shape of `r`).
fn per_column_vec(r: &RefTensor, f: impl Fn(&[f64]) -> Vec<f64>) -> RefTensor {
    let d = r.shape[0];
    let c = r.numel() / d;
    let mut out = vec![0.0; r.numel()];
    for ch in 0..c {
        for (i, v) in f(&column(r, ch)).into_iter().enumerate() {
            out[i * c + ch] = v;
        }
    }
    RefTensor::new(&r.shape, out)
}

/// LCM log det against the dense Cholesky reference; ∂a, ∂λ, ∂u, ∂w. The Kalman filter
/// runs in f32 over d = 6 steps, its reverse sweep likewise: TRANSC (rtol 1e-5; measured
/// ≤ 3e-7 for the gradients), atol 1e-6 for the forward: log det = Σ ln S_k cancels to
/// 0.12 from O(1) terms (measured 2.2e-7 absolute).
#[test]
fn grad_lcm_logdet() {
    gc(
        "lcm logdet",
        &lcm_inputs(140),
        |v| lcm(v)?.logdet(),
        |x| {
            let (u, w, a, l) = lcm_ref(x);
            RefTensor::new(&[1], vec![r::remix_logdet(u, w, a, l)])
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

/// LCM Mahalanobis `rᵀΣ⁻¹r` for `r [6]` and `r [6, 2]`; all parameters and r: TRANSC
/// (rtol 1e-5; f32 filter as logdet, measured 1.9e-7), atol 1e-6 for ∂λ.
#[test]
fn grad_lcm_mahalanobis() {
    for (i, rs) in [&[6usize][..], &[6, 2][..]].into_iter().enumerate() {
        let mut inputs = lcm_inputs(150);
        inputs.push(("r", t(rs, 151 + i as u64, -1.0, 1.0)));
        gc(
            &format!("lcm mahalanobis r{rs:?}"),
            &inputs,
            |v| lcm(v)?.mahalanobis(&v[4]),
            |x| {
                let (u, w, a, l) = lcm_ref(x);
                per_column(&x[4], |rc| r::remix_mahalanobis(u, w, a, l, rc))
            },
            TRANSC,
            CANCEL_ATOL,
        );
    }
}

/// LCM Gaussian NLL for `r [6, 2]`: TRANSC (rtol 1e-5; f32 filter, measured 3.7e-7),
/// atol 1e-6 for ∂λ.
#[test]
fn grad_lcm_nll() {
    let mut inputs = lcm_inputs(160);
    inputs.push(("r", t(&[6, 2], 161, -1.0, 1.0)));
    gc(
        "lcm nll",
        &inputs,
        |v| lcm(v)?.nll(&v[4]),
        |x| {
            let (u, w, a, l) = lcm_ref(x);
            per_column(&x[4], |rc| r::remix_nll(u, w, a, l, rc))
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

/// LCM solve `Σ⁻¹ r` for `r [6, 2]`: TRANSC (rtol 1e-5; f32 filter, measured ≤ 4.7e-7 for
/// a, u, w, r), atol 1e-6 for ∂λ (0.063 from cancelling terms; measured 1.8e-7 absolute).
#[test]
fn grad_lcm_solve() {
    let mut inputs = lcm_inputs(170);
    inputs.push(("r", t(&[6, 2], 171, -1.0, 1.0)));
    gc(
        "lcm solve",
        &inputs,
        |v| lcm(v)?.solve(&v[4]),
        |x| {
            let (u, w, a, l) = lcm_ref(x);
            per_column_vec(&x[4], |rc| r::remix_solve(u, w, a, l, rc))
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

/// LCM reparameterised sample with fixed `ε_u, ε_w [6, 2]`: `√u ⊙ ε_u + w ⊙ ζ(ε_w)`, the
/// AR(1) chain in f32: TRANSC (rtol 1e-5; measured ≤ 2.7e-7 for a, u, w), atol 1e-6 for
/// ∂λ (measured 1.5e-7 absolute).
#[test]
fn grad_lcm_sample() {
    let eu = t(&[6, 2], 180, -2.0, 2.0);
    let ew = t(&[6, 2], 181, -2.0, 2.0);
    let dev = device();
    let (eud, ewd) = (
        lapis_tests::upload(&dev, &eu),
        lapis_tests::upload(&dev, &ew),
    );
    gc(
        "lcm sample",
        &lcm_inputs(182),
        |v| lcm(v)?.sample(&eud, &ewd),
        |x| {
            let (u, w, a, l) = lcm_ref(x);
            let c = 2;
            let mut out = vec![0.0; 12];
            for ch in 0..c {
                let s = r::remix_sample(u, w, a, l, &column(&eu, ch), &column(&ew, ch));
                for (i, v) in s.into_iter().enumerate() {
                    out[i * c + ch] = v;
                }
            }
            RefTensor::new(&[6, 2], out)
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

/// LCM Frobenius objective `‖Σ − VᵀV/B‖² − ‖VᵀV/B‖²` for a centred batch `V [5, 6]`
/// (constant): two Gram-mode matvecs in f32: TRANSC (rtol 1e-5; measured 3.5e-7).
#[test]
fn grad_lcm_frobenius() {
    let mut vb = t(&[5, 6], 190, -1.5, 1.5);
    for j in 0..6 {
        let mean = (0..5).map(|b| vb.data[b * 6 + j]).sum::<f64>() / 5.0;
        for b in 0..5 {
            vb.data[b * 6 + j] = (vb.data[b * 6 + j] - mean) as f32 as f64;
        }
    }
    let vd = lapis_tests::upload(&device(), &vb);
    gc(
        "lcm frobenius",
        &lcm_inputs(191),
        |v| lcm(v)?.frobenius(&vd),
        |x| {
            let (u, w, a, l) = lcm_ref(x);
            RefTensor::new(&[1], vec![r::remix_frobenius_batch(u, w, a, l, &vb)])
        },
        TRANSC,
        0.0,
    );
}

/// The OU covariance `diag(σ) K(x; λ) diag(σ)` via [`Lcm::ou`] (u = 0 untracked): the NLL
/// of `r [6, 2]` and a sample, with ∂x, ∂λ, ∂σ (and ∂r). Anchors ≥ 0.225 apart with
/// λ = 0.8, so `1 − ρ² ≥ 0.3`: the chain is well conditioned. TRANSC (rtol 1e-5; f32
/// filter, measured ≤ 6.6e-7), atol 1e-6 for ∂λ of the sample (0.006 from cancelling
/// terms; measured 1.4e-8 absolute).
#[test]
fn grad_lcm_ou() {
    let base = || {
        vec![
            ("x", spaced_t(&[6], 200, -1.0, 0.3)),
            ("lambda", scalar(0.8)),
            ("sigma", t(&[6], 201, 0.5, 1.5)),
        ]
    };
    let zero = [0.0; 6];
    let mut inputs = base();
    inputs.push(("r", t(&[6, 2], 202, -1.0, 1.0)));
    gc(
        "lcm ou nll",
        &inputs,
        |v| Lcm::ou(&v[0], &v[1], &v[2])?.nll(&v[3]),
        |x| {
            per_column(&x[3], |rc| {
                r::remix_nll(&zero, &x[2].data, &x[0].data, x[1].data[0], rc)
            })
        },
        TRANSC,
        CANCEL_ATOL,
    );
    let ew = t(&[6], 203, -2.0, 2.0);
    let dev = device();
    let (eud, ewd) = (
        lapis_tests::upload(&dev, &RefTensor::new(&[6], zero.to_vec())),
        lapis_tests::upload(&dev, &ew),
    );
    gc(
        "lcm ou sample",
        &base(),
        |v| Lcm::ou(&v[0], &v[1], &v[2])?.sample(&eud, &ewd),
        |x| {
            let s = r::remix_sample(&zero, &x[2].data, &x[0].data, x[1].data[0], &zero, &ew.data);
            RefTensor::new(&[6], s)
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

// ----------------------------------------------------------------------------- softtopk

/// Soft top-k of `x [2, 7]` (distinct values) with per-row `k = [2.3, 4.6]`,
/// `α = [0.5, 0.8]`, and with a shared `k = [3.1]`, `α = [0.6]` `[1]` (broadcast on the
/// tape, so their gradients sum the rows'). x, k, α all checked. The threshold is solved
/// in f32 after a sort; its implicit gradient divides by `Σ f_i`: TRANSC (rtol 1e-5;
/// measured 3.3e-7).
#[test]
fn grad_soft_topk() {
    let x = spaced_t(&[2, 7], 210, -1.5, 0.3);
    for (k, alpha) in [(vec![2.3, 4.6], vec![0.5, 0.8]), (vec![3.1], vec![0.6])] {
        let n = k.len();
        gc(
            &format!("soft_topk k{k:?} α{alpha:?}"),
            &[
                ("x", x.clone()),
                ("k", RefTensor::new(&[n], k.clone())),
                ("alpha", RefTensor::new(&[n], alpha.clone())),
            ],
            |v| v[0].soft_topk(&v[1], &v[2]),
            |x| {
                let rows = x[0].shape[0];
                let per = |p: &RefTensor| -> Vec<f64> {
                    (0..rows).map(|b| p.data[b % p.numel()]).collect()
                };
                r::soft_topk(&x[0], &per(&x[1]), &per(&x[2]))
            },
            TRANSC,
            0.0,
        );
    }
}

/// Truncated soft top-k values (`c_cap = 2`, `c_τ = 1.8`) of `x [2, 8]`, `k = [1.7, 2.4]`,
/// `α = [0.4, 0.5]`; x, k, α checked. Capacity `⌈2·2.4⌉ = 5`; row 0 has `m = ⌈3.4⌉ = 4`
/// slots, padded with 0 like the device. The inputs keep every `p` ≥ 0.02 from the
/// threshold τ and `c_cap·k` far from an integer, so the kept set is constant under the FD
/// step (the test asserts both). TRANSC (rtol 1e-5; measured 4.5e-7).
#[test]
fn grad_soft_topk_truncated() {
    let x = spaced_t(&[2, 8], 220, -1.5, 0.3);
    let (k, alpha) = (vec![1.7, 2.4], vec![0.4, 0.5]);
    let (c_cap, c_tau) = (2.0, 1.8);
    // The kept set must not change within the FD step: p away from τ, c_cap·k off-integer.
    let p = r::soft_topk(&x, &k, &alpha);
    for (b, &kb) in k.iter().enumerate() {
        let row = &p.data[b * 8..(b + 1) * 8];
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let m = (c_cap * kb).ceil() as usize;
        let tau = (c_tau * kb / 8.0).clamp(sorted[m - 1], sorted[0]);
        let margin = row
            .iter()
            .map(|p| (p - tau).abs())
            .fold(f64::INFINITY, f64::min);
        eprintln!("truncated row {b}: m {m}, τ {tau:.4}, min |p − τ| {margin:.4}, p {sorted:.3?}");
        assert!(margin > 0.02, "row {b}: some p is within 0.02 of τ");
        assert!((c_cap * kb - (c_cap * kb).round()).abs() > 0.1);
    }
    let cap = (c_cap * 2.4f64).ceil() as usize;
    gc(
        "soft_topk_truncated",
        &[
            ("x", x.clone()),
            ("k", RefTensor::new(&[2], k.clone())),
            ("alpha", RefTensor::new(&[2], alpha.clone())),
        ],
        |v| {
            Ok(v[0]
                .soft_topk_truncated(&v[1], &v[2], c_cap as f32, c_tau as f32)?
                .values)
        },
        |x| {
            let (_, vals) = r::soft_topk_truncated(&x[0], &x[1].data, &x[2].data, c_cap, c_tau);
            let mut out = Vec::new();
            for mut row in vals {
                row.resize(cap, 0.0);
                out.extend(row);
            }
            RefTensor::new(&[2, cap], out)
        },
        TRANSC,
        0.0,
    );
}

/// Soft rank of `x [2, 6]` with per-row `α = [0.4, 0.9]` and a shared `α = [0.6]`; x and α
/// checked. O(n) sweeps over the sorted row in f32 `exp`: TRANSC (rtol 1e-5; measured
/// 2.7e-7).
#[test]
fn grad_soft_rank() {
    let x = t(&[2, 6], 230, -1.5, 1.5);
    for alpha in [vec![0.4, 0.9], vec![0.6]] {
        gc(
            &format!("soft_rank α{alpha:?}"),
            &[
                ("x", x.clone()),
                ("alpha", RefTensor::new(&[alpha.len()], alpha.clone())),
            ],
            |v| v[0].soft_rank(&v[1]),
            |x| rows_ref(&x[0], &x[1], r::soft_rank),
            TRANSC,
            0.0,
        );
    }
}

/// Soft sort of `x [2, 6]` with per-row `α = [0.4, 0.9]` and a shared `α = [0.6]`; x and α
/// checked. n thresholds solved in f32, implicit gradients: TRANSC (rtol 1e-5; measured
/// 3.3e-7).
#[test]
fn grad_soft_sort() {
    let x = t(&[2, 6], 240, -1.5, 1.5);
    for alpha in [vec![0.4, 0.9], vec![0.6]] {
        gc(
            &format!("soft_sort α{alpha:?}"),
            &[
                ("x", x.clone()),
                ("alpha", RefTensor::new(&[alpha.len()], alpha.clone())),
            ],
            |v| v[0].soft_sort(&v[1]),
            |x| rows_ref(&x[0], &x[1], r::soft_sort),
            TRANSC,
            0.0,
        );
    }
}

/// The soft top-k family with constant scalars given as plain numbers or device tensors
/// (`x.soft_topk(2.0, 0.3)`, `x.soft_rank(&alpha_tensor)`): only x is an input, and its
/// gradient matches the reference with `k`, `α` fixed. Tolerances as for the Var forms
/// (TRANSC).
#[test]
fn grad_softtopk_constant_scalars() {
    let x = spaced_t(&[2, 7], 260, -1.5, 0.3);
    let alpha_t = lapis_tests::upload(&device(), &RefTensor::new(&[1], vec![0.5]));
    gc(
        "soft_topk(2.0, 0.3)",
        &[("x", x.clone())],
        |v| v[0].soft_topk(2.0, 0.3),
        |x| r::soft_topk(&x[0], &[2.0; 2], &[0.3f32 as f64; 2]),
        TRANSC,
        0.0,
    );
    gc(
        "soft_rank(&Tensor [0.5])",
        &[("x", x.clone())],
        |v| v[0].soft_rank(&alpha_t),
        |x| rows_ref(&x[0], &RefTensor::new(&[1], vec![0.5]), r::soft_rank),
        TRANSC,
        0.0,
    );
    gc(
        "soft_sort(0.5)",
        &[("x", x)],
        |v| v[0].soft_sort(0.5),
        |x| rows_ref(&x[0], &RefTensor::new(&[1], vec![0.5]), r::soft_sort),
        TRANSC,
        0.0,
    );
}

/// The Laplace operator with constant rates given as numbers or tensors: V, s, t checked
/// with `λ = 1.3` (f32) and the phased form with `a = 0.8` (tensor), `b = 2.1`, `φ = 0.7`
/// (f32). TRANSC, as the Var forms.
#[test]
fn grad_laplace_constant_scalars() {
    let (s, tt) = anchors(6, 5, 270);
    let v = t(&[6, 2], 271, -1.0, 1.0);
    let lam = 1.3f32 as f64;
    gc(
        "laplace_apply(.., 1.3)",
        &[("V", v.clone()), ("s", s.clone()), ("t", tt.clone())],
        |v| v[0].laplace_apply(&v[1], &v[2], 1.3),
        |x| r::laplace_apply(&x[1].data, &x[2].data, &x[0], (lam, 0.0)).0,
        TRANSC,
        CANCEL_ATOL,
    );
    let a_t = lapis_tests::upload(&device(), &RefTensor::new(&[1], vec![0.8]));
    let (a, b, phi) = (0.8f32 as f64, 2.1f32 as f64, 0.7f32 as f64);
    gc(
        "laplace_apply_phased(.., &Tensor, 2.1, 0.7)",
        &[("V", v), ("s", s), ("t", tt)],
        |v| v[0].laplace_apply_phased(&v[1], &v[2], &a_t, 2.1, 0.7),
        |x| {
            let (re, im) = r::laplace_apply(&x[1].data, &x[2].data, &x[0], (a, b));
            let data = re
                .data
                .iter()
                .zip(&im.data)
                .map(|(p, q)| phi.cos() * p - phi.sin() * q)
                .collect();
            RefTensor::new(&re.shape, data)
        },
        TRANSC,
        CANCEL_ATOL,
    );
}

/// A per-row reference `f(row, α_row)` over `x [B, n]`, `α` `[B]` or `[1]`.
fn rows_ref(x: &RefTensor, alpha: &RefTensor, f: fn(&[f64], f64) -> Vec<f64>) -> RefTensor {
    let (rows, n) = (x.shape[0], x.shape[1]);
    let out = (0..rows)
        .flat_map(|b| f(&x.data[b * n..(b + 1) * n], alpha.data[b % alpha.numel()]))
        .collect();
    RefTensor::new(&x.shape, out)
}

// ----------------------------------------------------------------- the checker can fail

/// The checker must reject a wrong gradient. Two mismatches:
/// * device `exp` against reference `2·exp` (forward and gradient both off by 2×);
/// * device `x ⊙ detach(x)` against reference `x²`: the forward agrees exactly, but the VJP
///   is `x` instead of `2x` — only the gradient comparison can catch it.
#[test]
fn gradcheck_detects_a_wrong_vjp() {
    let x = t(&[3, 4], 250, -1.0, 1.0);
    let rep: Report = check(
        &device(),
        &[("x", x.clone())],
        |v| v[0].exp(),
        |x| {
            RefTensor::new(
                &x[0].shape,
                x[0].data.iter().map(|v| 2.0 * v.exp()).collect(),
            )
        },
        &GradCheck::default(),
    )
    .unwrap();
    eprintln!("exp vs 2·exp: {rep}");
    let err = rep.verify(1e-2, 0.0).unwrap_err();
    assert!(err.contains("forward") && err.contains("∂/∂x"), "{err}");

    let rep = check(
        &device(),
        &[("x", x)],
        |v| v[0].mul(&v[0].detach()),
        |x| r::binary(BinaryOp::Mul, &x[0], &x[0]),
        &GradCheck::default(),
    )
    .unwrap();
    eprintln!("x·detach(x) vs x²: {rep}");
    assert!(rep.forward_err <= 1e-6 * rep.forward_scale, "{rep}");
    let err = rep.verify(1e-2, 0.0).unwrap_err();
    assert!(!err.contains("forward") && err.contains("∂/∂x"), "{err}");
}

/// grouped_linear (SoftMoE's expert layer): 7 rows over 3 groups, two rows of no group
/// (mask 0: zero output and zero gradient); x, W and b tracked. ARITH (rtol 2e-6): f32
/// dot products of ≤ 4 terms, central differences of a function linear in each input.
#[test]
fn grad_grouped_linear() {
    let dev = device();
    let gi: Vec<u32> = vec![2, 0, 1, 2, 0, 2, 1];
    let mk: Vec<f32> = vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
    let (g, m) = (
        idx(&dev, &[7], &gi),
        Tensor::from_slice(&dev, &[7], &mk).unwrap(),
    );
    let order = std::rc::Rc::new(lapis_ops::group_order(&g, &m, 3).unwrap());
    let mk64: Vec<f64> = mk.iter().map(|&v| v as f64).collect();
    gc(
        "grouped_linear",
        &[
            ("x", t(&[7, 4], 61, -2.0, 2.0)),
            ("w", t(&[3, 4, 5], 62, -1.0, 1.0)),
            ("b", t(&[3, 5], 63, -1.0, 1.0)),
        ],
        |v| v[0].grouped_linear(&v[1], &v[2], &g, &m, &order),
        |x| {
            RefTensor::new(
                &[7, 5],
                r::grouped_linear(&x[0].data, &x[1].data, &x[2].data, &gi, &mk64, 4, 5),
            )
        },
        ARITH,
        0.0,
    );
}
