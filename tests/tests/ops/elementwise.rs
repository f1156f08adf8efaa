//! Unary and binary elementwise ops vs `reference::{unary, binary}`.

use lapis_ops::reference::{self as r, RefTensor};
use lapis_ops::{BinaryOp, UnaryOp};
use lapis_tests::*;
use proptest::prelude::*;

/// Input range per op: inside the domain, and wide enough to hit the saturating tails.
fn domain(op: UnaryOp) -> (f64, f64) {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt => (1e-3, 100.0),
        UnaryOp::Exp => (-30.0, 30.0),
        _ => (-20.0, 20.0),
    }
}

/// Tolerance: f32 rounding of the input/output is ~6e-8 relative; Vulkan's `exp`/`log`
/// are allowed 3 + 2|x| ulp, so exp(30) may be off by ~60 ulp ≈ 4e-6. 2e-5 relative
/// covers that with margin; the absolute floor handles outputs near 0 (tanh, gelu, sigmoid
/// tails), where the error is an absolute one of the input's magnitude times ε.
const RTOL: f64 = 2e-5;
const ATOL: f64 = 1e-6;

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn unary_matches_reference(shape in shape(4, 20_000), seed in 0u64..1000) {
        let dev = device();
        for op in UnaryOp::ALL {
            let (lo, hi) = domain(op);
            let n: usize = shape.iter().product();
            // Deterministic spread over [lo, hi) from the seed.
            let data: Vec<f64> = (0..n).map(|i| lo + (hi - lo) * (((i as u64 * 2654435761 + seed * 97) % 10007) as f64 / 10007.0)).collect();
            let x = as_f32(&RefTensor::new(&shape, data));
            let got = lapis_ops::unary(op, &upload(&dev, &x)).unwrap();
            check(op.name(), &got, &r::unary(op, &x), RTOL, ATOL)?;
        }
    }

    #[test]
    fn binary_matches_reference_with_broadcasting(
        (a_shape, b_shape) in shape(4, 4_000).prop_flat_map(|s| {
            // b: a suffix of s with some axes set to 1 (numpy broadcasting), or a's shape
            // with some axes set to 1 and a prefix dropped.
            let rank = s.len();
            (Just(s), prop::collection::vec(any::<bool>(), rank), 0..=rank)
        }).prop_map(|(s, ones, drop)| {
            let b: Vec<usize> = s.iter().zip(&ones).map(|(&d, &o)| if o { 1 } else { d }).skip(drop.min(s.len() - 1)).collect();
            (s, b)
        }),
        swap in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let dev = device();
        let (a_shape, b_shape) = if swap { (b_shape, a_shape) } else { (a_shape, b_shape) };
        let fill = |shape: &[usize], lo: f64, hi: f64, salt: u64| {
            let n: usize = shape.iter().product();
            let d = (0..n).map(|i| lo + (hi - lo) * (((i as u64 * 40503 + seed * 131 + salt) % 9973) as f64 / 9973.0)).collect();
            as_f32(&RefTensor::new(shape, d))
        };
        for op in BinaryOp::ALL {
            // pow: positive base, moderate exponent; div: denominators away from 0.
            let (a, b) = match op {
                BinaryOp::Pow => (fill(&a_shape, 0.1, 4.0, 1), fill(&b_shape, -3.0, 3.0, 2)),
                BinaryOp::Div => (fill(&a_shape, -10.0, 10.0, 1), fill(&b_shape, 0.5, 10.0, 2)),
                _ => (fill(&a_shape, -10.0, 10.0, 1), fill(&b_shape, -10.0, 10.0, 2)),
            };
            let got = lapis_ops::binary(op, &upload(&dev, &a), &upload(&dev, &b)).unwrap();
            // pow is exp2(b·log2 a) on most backends: ~|b·log a|·ε extra, within 2e-5.
            check(op.name(), &got, &r::binary(op, &a, &b), RTOL, ATOL)?;
        }
    }

    #[test]
    fn affine_matches_reference(x in any_tensor(3, 10_000, -100.0, 100.0), a in -5.0f32..5.0, b in -5.0f32..5.0) {
        let dev = device();
        let got = lapis_ops::affine(&upload(&dev, &x), a, b).unwrap();
        let want = RefTensor::new(&x.shape, x.data.iter().map(|v| a as f64 * v + b as f64).collect());
        // One f32 multiply-add: ≤ 1 ulp of the largest term (|a·x| ≤ 500).
        check("affine", &got, &want, 1e-6, 500.0 * 1.2e-7)?;
    }
}

/// The edges: zeros, signs, infinities and NaN go through IEEE as documented.
#[test]
fn unary_edges() {
    let dev = device();
    let x = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        88.0,
        -88.0,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let t = lapis_ops::Tensor::from_slice(&dev, &[x.len()], &x).unwrap();
    let get = |op| lapis_ops::unary(op, &t).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(
        get(UnaryOp::Sign),
        vec![0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
    );
    assert_eq!(
        get(UnaryOp::Relu)[..8],
        [0.0, 0.0, 1.0, 0.0, 88.0, 0.0, 1e30, 0.0]
    );
    let s = get(UnaryOp::Sigmoid);
    assert!(
        s.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
        "sigmoid stays in [0,1]: {s:?}"
    );
    let th = get(UnaryOp::Tanh);
    assert_eq!(
        &th[6..],
        &[1.0, -1.0, 1.0, -1.0],
        "tanh saturates without NaN"
    );
    let g = get(UnaryOp::Gelu);
    assert_eq!(g[6], 1e30, "gelu(x) = x for large x");
    assert_eq!(g[7], 0.0, "gelu(x) = 0 for very negative x (no NaN)");
}

/// NaN policy: sign keeps NaN; maximum/minimum return NaN when either side is NaN.
#[test]
fn nan_policy() {
    let dev = device();
    let a = lapis_ops::Tensor::from_slice(&dev, &[4], &[f32::NAN, 1.0, f32::NAN, f32::INFINITY])
        .unwrap();
    let b = lapis_ops::Tensor::from_slice(&dev, &[4], &[1.0f32, f32::NAN, f32::NAN, 2.0]).unwrap();
    let s = lapis_ops::sign(&a).unwrap().to_vec::<f32>().unwrap();
    assert!(s[0].is_nan() && s[1] == 1.0 && s[3] == 1.0, "{s:?}");
    for op in [BinaryOp::Max, BinaryOp::Min] {
        let z = lapis_ops::binary(op, &a, &b)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(
            z[0].is_nan() && z[1].is_nan() && z[2].is_nan(),
            "{}: {z:?}",
            op.name()
        );
        assert_eq!(
            z[3],
            if op == BinaryOp::Max {
                f32::INFINITY
            } else {
                2.0
            }
        );
    }
}
