//! The Laplace operator and its gradients vs the dense f64 reference
//! (`reference::laplace_apply`, `reference::laplace_apply_grad`).
//!
//! Tolerances are relative to the *absolute* scale of each quantity (the same sums with
//! |V|, |Ȳ| and no cancellation), because the f32 sweeps err by a few ε times that scale
//! (each term carries ≲ (steps + λ|t−s|)·ε relative error and λ|t−s|·e^{−λ|t−s|} ≤ 1/e),
//! not relative to a value that may cancel to ~0.

use lapis_ops::reference::{self as r, RefTensor};
use lapis_ops::{LapisError, Tensor};
use lapis_tests::*;
use proptest::prelude::*;

/// Coordinates: uniform, clustered on a few values (many exact ties), or spread over
/// 1e-6 … 1e6 (log-uniform, both signs).
fn coords(n: usize, kind: u8, seed: u64) -> Vec<f64> {
    let rnd = |i: usize| {
        (((i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(seed.wrapping_mul(1442695040888963407)))
            >> 11) as f64
            / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| match kind % 3 {
            0 => rnd(i) * 20.0 - 10.0,
            1 => (rnd(i) * 6.0).floor() * 0.75,
            _ => {
                let mag = 10f64.powf(rnd(i) * 12.0 - 6.0);
                if rnd(i + 7919) < 0.5 {
                    -mag
                } else {
                    mag
                }
            }
        })
        .map(|v| v as f32 as f64)
        .collect()
}

fn vals(n: usize, c: usize, seed: u64) -> RefTensor {
    as_f32(&RefTensor::new(
        &[n, c],
        (0..n * c)
            .map(|i| ((((i as u64) * 40503 + seed * 97) % 2001) as f64 / 1000.0) - 1.0)
            .collect(),
    ))
}

fn up1(dev: &lapis_ops::Device, x: &[f64]) -> Tensor {
    Tensor::from_slice(
        dev,
        &[x.len()],
        &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn abs(t: &RefTensor) -> RefTensor {
    RefTensor::new(&t.shape, t.data.iter().map(|v| v.abs()).collect())
}

/// max_i |got_i − want_i| / scale_i (scale floored at 1e-30).
fn worst(got: &[f64], want: &[f64], scale: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .zip(scale)
        .map(|((g, w), s)| (g - w).abs() / s.max(1e-30))
        .fold(0.0, f64::max)
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn apply_matches_dense_reference(n in 1usize..600, m in 1usize..600, c in 1usize..=8, kind in 0u8..3, lam in prop::sample::select(vec![1e-3f64, 0.1, 1.0, 30.0]), seed in 0u64..1000) {
        let dev = device();
        let (s, t, v) = (coords(n, kind, seed), coords(m, kind, seed + 1), vals(n, c, seed));
        let y = lapis_ops::laplace_apply(&up1(&dev, &s), &up1(&dev, &t), &upload(&dev, &v), lam as f32).unwrap();
        let lam = lam as f32 as f64;
        let (want, _) = r::laplace_apply(&s, &t, &v, (lam, 0.0));
        let (scale, _) = r::laplace_apply(&s, &t, &abs(&v), (lam, 0.0));
        let err = worst(&download(&y).data, &want.data, &scale.data);
        // ~ (N + λ·spread·small)·ε in the worst case; observed ≪ 1e-5.
        prop_assert!(err < 2e-5, "max error / scale = {}", err);
    }

    #[test]
    fn gradients_match_dense_reference(n in 1usize..200, m in 1usize..200, c in 1usize..=4, kind in 0u8..2, lam in prop::sample::select(vec![0.1f64, 1.0, 7.0]), seed in 0u64..1000) {
        let dev = device();
        let (s, t, v) = (coords(n, kind, seed), coords(m, kind, seed + 1), vals(n, c, seed));
        let gy = vals(m, c, seed + 5);
        let g = lapis_ops::laplace_apply_backward(&up1(&dev, &s), &up1(&dev, &t), &upload(&dev, &v), lam as f32, &upload(&dev, &gy)).unwrap();
        let lam = lam as f32 as f64;
        let want = r::laplace_apply_grad(&s, &t, &v, (lam, 0.0), &gy, None);
        // Scales: the same sums with absolute values.
        let (kv, _) = r::laplace_apply(&s, &t, &abs(&v), (lam, 0.0));
        let (kty, _) = r::laplace_apply(&t, &s, &abs(&gy), (lam, 0.0));
        let t_scale: Vec<f64> = (0..m).map(|j| lam * (0..c).map(|ch| gy.data[j * c + ch].abs() * kv.data[j * c + ch]).sum::<f64>()).collect();
        let s_scale: Vec<f64> = (0..n).map(|i| lam * (0..c).map(|ch| v.data[i * c + ch].abs() * kty.data[i * c + ch]).sum::<f64>()).collect();
        let lam_scale = r::laplace_apply_grad(&s, &t, &abs(&v), (lam, 0.0), &abs(&gy), None).lambda_re.abs();
        let tg: Vec<f64> = g.targets.to_vec::<f32>().unwrap().iter().map(|&x| x as f64).collect();
        let sg: Vec<f64> = g.sources.to_vec::<f32>().unwrap().iter().map(|&x| x as f64).collect();
        let e_v = worst(&download(&g.values).data, &want.v.data, &kty.data);
        let e_t = worst(&tg, &want.t, &t_scale);
        let e_s = worst(&sg, &want.s, &s_scale);
        let e_l = (g.lambda.to_scalar().unwrap() as f64 - want.lambda_re).abs() / lam_scale.max(1e-30);
        // 2e-5 of the absolute scale: a few hundred ε (sums over ≤ 400 anchors).
        prop_assert!(e_v < 2e-5 && e_t < 2e-5 && e_s < 2e-5 && e_l < 2e-5, "V {} t {} s {} λ {}", e_v, e_t, e_s, e_l);
    }
}

/// The bar: n = m = 4096, f32, max error ≤ 1e-4 relative (to the absolute scale).
#[test]
fn apply_4096_within_1e4() {
    let dev = device();
    let (n, c) = (4096, 2);
    let (s, t, v) = (coords(n, 0, 11), coords(n, 0, 12), vals(n, c, 3));
    let lam = 0.5;
    let y = lapis_ops::laplace_apply(
        &up1(&dev, &s),
        &up1(&dev, &t),
        &upload(&dev, &v),
        lam as f32,
    )
    .unwrap();
    let (want, _) = r::laplace_apply(&s, &t, &v, (lam, 0.0));
    let (scale, _) = r::laplace_apply(&s, &t, &abs(&v), (lam, 0.0));
    let err = worst(&download(&y).data, &want.data, &scale.data);
    eprintln!("laplace_apply n = m = 4096: max |ΔY| / (K|V|) = {err:.3e}");
    assert!(err <= 1e-4, "{err}");
}

/// Gram mode equals rectangular mode with t = s.
#[test]
fn gram_equals_apply() {
    let dev = device();
    let x = up1(&dev, &coords(300, 1, 4));
    let v = upload(&dev, &vals(300, 3, 4));
    let a = lapis_ops::laplace_gram(&x, &v, 0.7)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = lapis_ops::laplace_apply(&x, &x, &v, 0.7)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

/// λ·spread up to 1e6: finite output, far sources underflow to exactly 0.
#[test]
fn huge_spread_stays_finite() {
    let dev = device();
    let s = up1(&dev, &[-1e6, 0.0, 1e6]);
    let t = up1(&dev, &[0.0, 5e5]);
    let v = Tensor::from_slice(&dev, &[3], &[1.0f32, 2.0, 3.0]).unwrap();
    let y = lapis_ops::laplace_apply(&s, &t, &v, 1.0)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(y, vec![2.0, 0.0]);
}

#[test]
fn typed_errors() {
    let dev = device();
    let s = up1(&dev, &[0.0, 1.0]);
    let v = Tensor::from_slice(&dev, &[2], &[1.0f32, 1.0]).unwrap();
    for lam in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            lapis_ops::laplace_apply(&s, &s, &v, lam),
            Err(LapisError::InvalidArgument { name: "lambda", .. })
        ));
    }
    // Non-finite coordinates: a deferred device check naming the argument.
    let bad = Tensor::from_slice(&dev, &[2], &[0.0f32, f32::NAN]).unwrap();
    let e = deferred_err(&dev, lapis_ops::laplace_apply(&bad, &s, &v, 1.0));
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                name: "sources",
                ..
            }
        ),
        "{e}"
    );
    let e = deferred_err(&dev, lapis_ops::laplace_apply(&s, &bad, &v, 1.0));
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                name: "targets",
                ..
            }
        ),
        "{e}"
    );
    let e = deferred_err(
        &dev,
        lapis_ops::laplace_apply_phased_backward(&s, &bad, &v, 1.0, 0.5, &v, &v),
    );
    assert!(
        matches!(
            e,
            LapisError::InvalidArgument {
                op: "laplace_apply_phased_backward",
                name: "targets",
                ..
            }
        ),
        "{e}"
    );
    let v3 = Tensor::from_slice(&dev, &[3], &[1.0f32; 3]).unwrap();
    assert!(matches!(
        lapis_ops::laplace_apply(&s, &s, &v3, 1.0),
        Err(LapisError::ShapeMismatch { .. })
    ));
    assert!(
        matches!(
            Tensor::from_slice::<f32>(&dev, &[0], &[]),
            Err(LapisError::Shape { .. })
        ),
        "empty inputs are refused"
    );
}

proptest! {
    #![proptest_config(cases(16))]

    /// Phased λ = a + i·b: same scale argument as the real case (|d| = e^{−aΔ}); the phase
    /// adds cos/sin of bΔ with ≲ bΔ·ε error per factor, bounded here by b·spread ≤ 100·20.
    #[test]
    fn phased_apply_matches_dense_reference(n in 1usize..400, m in 1usize..400, c in 1usize..=4, kind in 0u8..2, a in prop::sample::select(vec![0.1f64, 1.0]), b in prop::sample::select(vec![-3.0f64, 0.5, 10.0]), seed in 0u64..1000) {
        let dev = device();
        let (s, t, v) = (coords(n, kind, seed), coords(m, kind, seed + 1), vals(n, c, seed));
        let (yr, yi) = lapis_ops::laplace_apply_phased(&up1(&dev, &s), &up1(&dev, &t), &upload(&dev, &v), a as f32, b as f32).unwrap();
        let lam = (a as f32 as f64, b as f32 as f64);
        let (wr, wi) = r::laplace_apply(&s, &t, &v, lam);
        let (scale, _) = r::laplace_apply(&s, &t, &abs(&v), (lam.0, 0.0));
        let er = worst(&download(&yr).data, &wr.data, &scale.data);
        let ei = worst(&download(&yi).data, &wi.data, &scale.data);
        prop_assert!(er < 1e-4 && ei < 1e-4, "re {} im {}", er, ei);
    }
}

proptest! {
    #![proptest_config(cases(16))]

    /// Phased gradients vs the reference's closed forms (`gy_im` included), scaled as in the
    /// real case by the absolute sums (|K| = e^{−a|t−s|}).
    #[test]
    fn phased_gradients_match_dense_reference(n in 1usize..150, m in 1usize..150, c in 1usize..=3, kind in 0u8..2, a in prop::sample::select(vec![0.3f64, 2.0]), b in prop::sample::select(vec![-1.5f64, 0.7]), seed in 0u64..1000) {
        let dev = device();
        let (s, t, v) = (coords(n, kind, seed), coords(m, kind, seed + 1), vals(n, c, seed));
        let (gr, gi) = (vals(m, c, seed + 5), vals(m, c, seed + 6));
        let (g, gb) = lapis_ops::laplace_apply_phased_backward(&up1(&dev, &s), &up1(&dev, &t), &upload(&dev, &v), a as f32, b as f32, &upload(&dev, &gr), &upload(&dev, &gi)).unwrap();
        let lam = (a as f32 as f64, b as f32 as f64);
        let want = r::laplace_apply_grad(&s, &t, &v, lam, &gr, Some(&gi));
        let gabs = RefTensor::new(&gr.shape, gr.data.iter().zip(&gi.data).map(|(x, y)| x.abs() + y.abs()).collect());
        let (kv, _) = r::laplace_apply(&s, &t, &abs(&v), (lam.0, 0.0));
        let (kty, _) = r::laplace_apply(&t, &s, &gabs, (lam.0, 0.0));
        let lmod = (lam.0 * lam.0 + lam.1 * lam.1).sqrt();
        let t_scale: Vec<f64> = (0..m).map(|j| lmod * (0..c).map(|ch| gabs.data[j * c + ch] * kv.data[j * c + ch]).sum::<f64>()).collect();
        let s_scale: Vec<f64> = (0..n).map(|i| lmod * (0..c).map(|ch| v.data[i * c + ch].abs() * kty.data[i * c + ch]).sum::<f64>()).collect();
        let l_scale = r::laplace_apply_grad(&s, &t, &abs(&v), (lam.0, 0.0), &gabs, None).lambda_re.abs();
        let tg: Vec<f64> = g.targets.to_vec::<f32>().unwrap().iter().map(|&x| x as f64).collect();
        let sg: Vec<f64> = g.sources.to_vec::<f32>().unwrap().iter().map(|&x| x as f64).collect();
        let e_v = worst(&download(&g.values).data, &want.v.data, &kty.data);
        let e_t = worst(&tg, &want.t, &t_scale);
        let e_s = worst(&sg, &want.s, &s_scale);
        let e_a = (g.lambda.to_scalar().unwrap() as f64 - want.lambda_re).abs() / l_scale.max(1e-30);
        let e_b = (gb.to_scalar().unwrap() as f64 - want.lambda_im).abs() / l_scale.max(1e-30);
        prop_assert!(e_v < 1e-4 && e_t < 1e-4 && e_s < 1e-4 && e_a < 1e-4 && e_b < 1e-4, "V {} t {} s {} a {} b {}", e_v, e_t, e_s, e_a, e_b);
    }
}

/// Gram-mode gradients (x̄ = s̄ + t̄) vs the reference, with exact ties among the anchors.
#[test]
fn gram_gradients_match_reference() {
    let dev = device();
    let (n, c, lam) = (150, 2, 0.8f64);
    let x = coords(n, 1, 21);
    let v = vals(n, c, 22);
    let gy = vals(n, c, 23);
    let (gv, gx, gl) = lapis_ops::laplace_gram_backward(
        &up1(&dev, &x),
        &upload(&dev, &v),
        lam as f32,
        &upload(&dev, &gy),
    )
    .unwrap();
    let want = r::laplace_gram_grad(&x, &v, (lam as f32 as f64, 0.0), &gy, None);
    let (kty, _) = r::laplace_apply(&x, &x, &abs(&gy), (lam, 0.0));
    let (kv, _) = r::laplace_apply(&x, &x, &abs(&v), (lam, 0.0));
    let x_scale: Vec<f64> = (0..n)
        .map(|i| {
            lam * (0..c)
                .map(|ch| {
                    v.data[i * c + ch].abs() * kty.data[i * c + ch]
                        + gy.data[i * c + ch].abs() * kv.data[i * c + ch]
                })
                .sum::<f64>()
        })
        .collect();
    let gx: Vec<f64> = gx
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&a| a as f64)
        .collect();
    assert!(worst(&download(&gv).data, &want.v.data, &kty.data) < 2e-5);
    assert!(worst(&gx, &want.x, &x_scale) < 2e-5);
    assert_eq!(gl.shape(), &[1], "λ̄ is a [1] tensor");
    let gl = gl.to_scalar().unwrap();
    assert!((gl as f64 - want.lambda_re).abs() < 2e-5 * want.lambda_re.abs().max(1.0));
}

/// The bits of an f32 tensor (for exact comparisons).
fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Every Laplace op takes its rates as `impl Into<Scalar>`: an `f32`, `Scalar::Value`, a
/// one-element tensor of any shape (`[1]`, `[1, 1]`) give bit-identical results, forward and
/// backward (the tensor is read on the host once, so the kernels see the same value); the
/// rate gradients are `[1]` tensors.
#[test]
fn scalar_forms_agree() {
    use lapis_ops::Scalar;
    let dev = device();
    let (n, m, c) = (37, 23, 3);
    let (s, t) = (up1(&dev, &coords(n, 0, 31)), up1(&dev, &coords(m, 0, 32)));
    let v = upload(&dev, &vals(n, c, 33));
    let gy = upload(&dev, &vals(m, c, 34));
    let lam = 0.7f32;
    let lam1 = Tensor::from_slice(&dev, &[1], &[lam]).unwrap();
    let lam11 = Tensor::from_slice(&dev, &[1, 1], &[lam]).unwrap();

    let want = bits(&lapis_ops::laplace_apply(&s, &t, &v, lam).unwrap());
    for (what, y) in [
        (
            "Scalar::Value",
            lapis_ops::laplace_apply(&s, &t, &v, Scalar::Value(lam)),
        ),
        ("&Tensor [1]", lapis_ops::laplace_apply(&s, &t, &v, &lam1)),
        (
            "&Tensor [1, 1]",
            lapis_ops::laplace_apply(&s, &t, &v, &lam11),
        ),
        (
            "Scalar::Tensor",
            lapis_ops::laplace_apply(&s, &t, &v, Scalar::Tensor(&lam1)),
        ),
    ] {
        assert_eq!(bits(&y.unwrap()), want, "laplace_apply with {what}");
    }
    assert_eq!(
        bits(&lapis_ops::laplace_gram(&s, &upload(&dev, &vals(n, 1, 9)), &lam1).unwrap()),
        bits(&lapis_ops::laplace_gram(&s, &upload(&dev, &vals(n, 1, 9)), lam).unwrap()),
        "laplace_gram"
    );
    let (sh, sl) = (
        s.clone(),
        Tensor::from_slice(&dev, &[n], &vec![0.0f32; n]).unwrap(),
    );
    let (th, tl) = (
        t.clone(),
        Tensor::from_slice(&dev, &[m], &vec![0.0f32; m]).unwrap(),
    );
    assert_eq!(
        bits(&lapis_ops::laplace_apply_split((&sh, &sl), (&th, &tl), &v, &lam1).unwrap()),
        bits(&lapis_ops::laplace_apply_split((&sh, &sl), (&th, &tl), &v, lam).unwrap()),
        "laplace_apply_split"
    );

    // Backward: the same gradients, λ̄ a [1] tensor.
    let g1 = lapis_ops::laplace_apply_backward(&s, &t, &v, lam, &gy).unwrap();
    let g2 = lapis_ops::laplace_apply_backward(&s, &t, &v, &lam1, &gy).unwrap();
    assert_eq!(g1.lambda.shape(), &[1]);
    for (a, b) in [
        (&g1.values, &g2.values),
        (&g1.sources, &g2.sources),
        (&g1.targets, &g2.targets),
        (&g1.lambda, &g2.lambda),
    ] {
        assert_eq!(bits(a), bits(b));
    }
    let (gv1, gx1, gl1) = lapis_ops::laplace_gram_backward(&s, &v, lam, &v).unwrap();
    let (gv2, gx2, gl2) = lapis_ops::laplace_gram_backward(&s, &v, &lam11, &v).unwrap();
    assert_eq!(gl1.shape(), &[1]);
    assert_eq!(
        (bits(&gv1), bits(&gx1), bits(&gl1)),
        (bits(&gv2), bits(&gx2), bits(&gl2))
    );

    // Phased: a and b each f32 or tensor, mixed freely.
    let (a, b) = (0.9f32, -1.7f32);
    let (at, bt) = (
        Tensor::from_slice(&dev, &[1], &[a]).unwrap(),
        Tensor::from_slice(&dev, &[1], &[b]).unwrap(),
    );
    let (wr, wi) = lapis_ops::laplace_apply_phased(&s, &t, &v, a, b).unwrap();
    for (yr, yi) in [
        lapis_ops::laplace_apply_phased(&s, &t, &v, &at, &bt).unwrap(),
        lapis_ops::laplace_apply_phased(&s, &t, &v, a, &bt).unwrap(),
        lapis_ops::laplace_apply_phased(&s, &t, &v, &at, b).unwrap(),
    ] {
        assert_eq!((bits(&yr), bits(&yi)), (bits(&wr), bits(&wi)));
    }
    let (p1, gb1) = lapis_ops::laplace_apply_phased_backward(&s, &t, &v, a, b, &gy, &gy).unwrap();
    let (p2, gb2) =
        lapis_ops::laplace_apply_phased_backward(&s, &t, &v, &at, &bt, &gy, &gy).unwrap();
    assert_eq!((p1.lambda.shape(), gb1.shape()), (&[1][..], &[1][..]));
    assert_eq!(
        (bits(&p1.values), bits(&p1.sources), bits(&p1.targets)),
        (bits(&p2.values), bits(&p2.sources), bits(&p2.targets))
    );
    assert_eq!(
        (bits(&p1.lambda), bits(&gb1)),
        (bits(&p2.lambda), bits(&gb2))
    );
}

/// A tensor scalar that is not one f32 element is a typed error naming the op and the
/// argument; range checks apply to tensor values as to f32s.
#[test]
fn tensor_scalars_must_hold_one_f32() {
    let dev = device();
    let s = up1(&dev, &[0.0, 1.0]);
    let v = Tensor::from_slice(&dev, &[2], &[1.0f32, 1.0]).unwrap();
    let two = Tensor::from_slice(&dev, &[2], &[1.0f32, 1.0]).unwrap();
    let int = Tensor::from_slice(&dev, &[1], &[1u32]).unwrap();
    let neg = Tensor::from_slice(&dev, &[1], &[-1.0f32]).unwrap();
    let one = Tensor::from_slice(&dev, &[1], &[1.0f32]).unwrap();
    for bad in [&two, &int] {
        let e = lapis_ops::laplace_apply(&s, &s, &v, bad).unwrap_err();
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
        assert!(e.to_string().contains("one f32 element"), "{e}");
        assert!(matches!(
            lapis_ops::laplace_apply_backward(&s, &s, &v, bad, &v),
            Err(LapisError::InvalidArgument {
                op: "laplace_apply_backward",
                name: "lambda",
                ..
            })
        ));
        assert!(matches!(
            lapis_ops::laplace_gram(&s, &v, bad),
            Err(LapisError::InvalidArgument { name: "lambda", .. })
        ));
        assert!(matches!(
            lapis_ops::laplace_apply_phased(&s, &s, &v, 1.0, bad),
            Err(LapisError::InvalidArgument {
                op: "laplace_apply_phased",
                name: "b",
                ..
            })
        ));
        assert!(matches!(
            lapis_ops::laplace_apply_phased_backward(&s, &s, &v, bad, &one, &v, &v),
            Err(LapisError::InvalidArgument {
                op: "laplace_apply_phased_backward",
                name: "a",
                ..
            })
        ));
    }
    // A tensor rate's range is checked on the device: the op does not read it back, and
    // the typed error surfaces at the next read (here `Device::check`; `to_vec` likewise).
    let e = deferred_err(&dev, lapis_ops::laplace_apply(&s, &s, &v, &neg));
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
    let nan = Tensor::from_slice(&dev, &[1], &[f32::NAN]).unwrap();
    let e = deferred_err(&dev, lapis_ops::laplace_apply_phased(&s, &s, &v, 1.0, &nan));
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "b", .. }),
        "{e}"
    );
    let e = deferred_err(&dev, lapis_ops::phase_real(&v, &v, &nan));
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "phi", .. }),
        "{e}"
    );
    // A natural read reports it too, instead of returning the data.
    let y = lapis_ops::laplace_apply_backward(&s, &s, &v, &neg, &v);
    if let Ok(g) = y {
        let e = g.values.to_vec::<f32>().unwrap_err();
        assert!(
            matches!(e, LapisError::InvalidArgument { name: "lambda", .. }),
            "{e}"
        );
    }
    // Checks are cleared after an error: good input passes again.
    let y = lapis_ops::laplace_apply(&s, &s, &v, &one).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap().len(), 2);
}

/// The backward on the forward's sort (`laplace_apply_sorted` +
/// `laplace_apply_backward_sorted`, and the phased pair; what the tape uses) gives bit-identical outputs and
/// gradients to `laplace_apply` + `laplace_apply_backward`, for uniform, tie-heavy and
/// widely spread anchors, `V [n]` and `[n, c]`; values of another shape are a typed error.
#[test]
fn backward_on_the_forward_sort_is_identical() {
    let dev = device();
    for (case, &(n, m, c, kind)) in [
        (1usize, 1usize, 1usize, 0u8),
        (37, 50, 3, 1),
        (300, 129, 1, 2),
        (1000, 1000, 2, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 100 + case as u64;
        let s = up1(&dev, &coords(n, kind, seed));
        let t = up1(&dev, &coords(m, kind, seed + 1));
        let vr = vals(n, c, seed + 2);
        let gr = vals(m, c, seed + 3);
        let (v, g) = if c == 1 {
            (up1(&dev, &vr.data), up1(&dev, &gr.data))
        } else {
            (upload(&dev, &vr), upload(&dev, &gr))
        };
        let lam = 0.7f32;
        let y = lapis_ops::laplace_apply(&s, &t, &v, lam).unwrap();
        let (ys, sort) = lapis_ops::laplace_apply_sorted(&s, &t, &v, lam).unwrap();
        assert_eq!(bits(&y), bits(&ys), "forward, case {case}");
        let a = lapis_ops::laplace_apply_backward(&s, &t, &v, lam, &g).unwrap();
        let b = lapis_ops::laplace_apply_backward_sorted(&sort, &v, &g).unwrap();
        for (what, x, z) in [
            ("values", &a.values, &b.values),
            ("sources", &a.sources, &b.sources),
            ("targets", &a.targets, &b.targets),
            ("lambda", &a.lambda, &b.lambda),
        ] {
            assert_eq!(bits(x), bits(z), "{what}, case {case}");
        }
        let wrong = lapis_ops::zeros(&dev, &[n + 1], lapis_ops::DType::F32).unwrap();
        assert!(lapis_ops::laplace_apply_backward_sorted(&sort, &wrong, &g).is_err());

        // Phased: the same, with both upstream parts nonzero.
        let (a, b) = (0.7f32, 1.9f32);
        let g2 = lapis_ops::affine(&g, -0.5, 0.25).unwrap();
        let (pr, pi) = lapis_ops::laplace_apply_phased(&s, &t, &v, a, b).unwrap();
        let ((qr, qi), psort) = lapis_ops::laplace_apply_phased_sorted(&s, &t, &v, a, b).unwrap();
        assert_eq!(
            (bits(&pr), bits(&pi)),
            (bits(&qr), bits(&qi)),
            "phased forward, case {case}"
        );
        let (ga, gb) = lapis_ops::laplace_apply_phased_backward(&s, &t, &v, a, b, &g, &g2).unwrap();
        let (ha, hb) =
            lapis_ops::laplace_apply_phased_backward_sorted(&psort, &v, &g, &g2).unwrap();
        for (what, x, z) in [
            ("values", &ga.values, &ha.values),
            ("sources", &ga.sources, &ha.sources),
            ("targets", &ga.targets, &ha.targets),
            ("a", &ga.lambda, &ha.lambda),
            ("b", &gb, &hb),
        ] {
            assert_eq!(bits(x), bits(z), "phased {what}, case {case}");
        }
        // A sort from the other kind of forward is refused.
        assert!(lapis_ops::laplace_apply_backward_sorted(&psort, &v, &g).is_err());
        assert!(lapis_ops::laplace_apply_phased_backward_sorted(&sort, &v, &g, &g2).is_err());
    }
}

/// The short-operator path (forward, reverse and tie sweeps of one row in one cube, one
/// launch) against the level-by-level scans: one operator is one segment, chunked alike
/// by both, so outputs and every gradient, real and phased, must be bitwise equal — for
/// uniform, tie-heavy and widely spread anchors, from one chunk to three levels.
#[test]
fn one_cube_sweeps_are_bitwise_the_level_sweeps() {
    use lapis_ops::decay_scan::{set_scan_path, ScanPath};
    let dev = device();
    for (case, &(n, m, c, kind)) in [
        (5usize, 7usize, 1usize, 0u8),
        (40, 50, 3, 1),
        (700, 129, 2, 2),
        (1000, 1000, 2, 0),
        (2000, 2096, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 300 + case as u64;
        let s = up1(&dev, &coords(n, kind, seed));
        let t = up1(&dev, &coords(m, kind, seed + 1));
        let v = upload(&dev, &vals(n, c, seed + 2));
        let g = upload(&dev, &vals(m, c, seed + 3));
        let g2 = lapis_ops::affine(&g, -0.5, 0.25).unwrap();
        let run = |path| {
            let old = set_scan_path(path);
            let y = lapis_ops::laplace_apply(&s, &t, &v, 0.7f32).unwrap();
            let gr = lapis_ops::laplace_apply_backward(&s, &t, &v, 0.7f32, &g).unwrap();
            let (pr, pi) = lapis_ops::laplace_apply_phased(&s, &t, &v, 0.7f32, 1.9f32).unwrap();
            let (gp, gb) =
                lapis_ops::laplace_apply_phased_backward(&s, &t, &v, 0.7f32, 1.9f32, &g, &g2)
                    .unwrap();
            set_scan_path(old);
            [
                y, gr.values, gr.sources, gr.targets, gr.lambda, pr, pi, gp.values, gp.sources,
                gp.targets, gp.lambda, gb,
            ]
            .iter()
            .map(bits)
            .collect::<Vec<_>>()
        };
        let (one, levels) = (run(ScanPath::OneCube), run(ScanPath::Levels));
        for (i, (a, b)) in one.iter().zip(&levels).enumerate() {
            assert_eq!(a, b, "output {i}, case {case}");
        }
    }
}

/// One head of the multi-head test: `(s, t, V, Ḡr, Ḡi, a, b)`.
type Head = (
    Vec<f64>,
    Vec<f64>,
    RefTensor,
    RefTensor,
    RefTensor,
    f64,
    f64,
);

proptest! {
    #![proptest_config(cases(16))]

    /// The multi-head ops (`laplace_apply_heads_sorted`, `laplace_apply_phased_heads_sorted`
    /// and their backward on the kept sort): each head against the dense f64 reference of
    /// its own operator, forward and every gradient (per-head λ̄, ā, b̄). Heads differ in
    /// anchors, values and rates, so a leak across heads (a sweep crossing a row end, a
    /// wrong row's rate) shows. Same bounds as the one-head tests (2e-5 of the absolute
    /// scale: the sums of |terms|).
    #[test]
    fn heads_match_dense_reference(h in 1usize..=4, n in 1usize..120, m in 1usize..120, c in 1usize..=3, kind in 0u8..3, phased in any::<bool>(), seed in 0u64..1000) {
        let dev = device();
        let hs: Vec<Head> = (0..h).map(|k| {
            let sd = seed + 10 * k as u64;
            let a = [0.3f64, 1.0, 2.5, 7.0][k] as f32 as f64;
            let b = if phased { [0.9f64, -2.0, 0.4, 3.0][k] as f32 as f64 } else { 0.0 };
            (coords(n, kind, sd), coords(m, kind, sd + 1), vals(n, c, sd + 2), vals(m, c, sd + 3), vals(m, c, sd + 4), a, b)
        }).collect();
        let cat = |f: &dyn Fn(usize) -> Vec<f64>| -> Vec<f32> { (0..h).flat_map(f).map(|v| v as f32).collect() };
        let s = Tensor::from_slice(&dev, &[h, n], &cat(&|k| hs[k].0.clone())).unwrap();
        let t = Tensor::from_slice(&dev, &[h, m], &cat(&|k| hs[k].1.clone())).unwrap();
        let v = Tensor::from_slice(&dev, &[h, n, c], &cat(&|k| hs[k].2.data.clone())).unwrap();
        let gr = Tensor::from_slice(&dev, &[h, m, c], &cat(&|k| hs[k].3.data.clone())).unwrap();
        let gi = Tensor::from_slice(&dev, &[h, m, c], &cat(&|k| hs[k].4.data.clone())).unwrap();
        let ra = Tensor::from_slice(&dev, &[h], &cat(&|k| vec![hs[k].5])).unwrap();
        let rb = Tensor::from_slice(&dev, &[h], &cat(&|k| vec![hs[k].6])).unwrap();
        let (yr, yi, g, gb) = if phased {
            let ((yr, yi), sort) = lapis_ops::laplace_apply_phased_heads_sorted(&s, &t, &v, &ra, &rb).unwrap();
            let (g, gb) = lapis_ops::laplace_apply_phased_backward_sorted(&sort, &v, &gr, &gi).unwrap();
            (yr, Some(yi), g, Some(gb))
        } else {
            let (y, sort) = lapis_ops::laplace_apply_heads_sorted(&s, &t, &v, &ra).unwrap();
            (y, None, lapis_ops::laplace_apply_backward_sorted(&sort, &v, &gr).unwrap(), None)
        };
        prop_assert_eq!(yr.shape(), &[h, m, c]);
        prop_assert_eq!(g.sources.shape(), &[h, n]);
        prop_assert_eq!(g.targets.shape(), &[h, m]);
        prop_assert_eq!(g.lambda.shape(), &[h]);
        let d = |t: &Tensor| -> Vec<f64> { t.to_vec::<f32>().unwrap().iter().map(|&x| x as f64).collect() };
        let (yr, yi) = (d(&yr), yi.as_ref().map(d));
        let (gv, gs, gt, gl, gbv) = (d(&g.values), d(&g.sources), d(&g.targets), d(&g.lambda), gb.as_ref().map(d));
        for (k, (sk, tk, vk, grk, gik, a, b)) in hs.iter().enumerate() {
            let lam = (*a, *b);
            let (want_r, want_i) = r::laplace_apply(sk, tk, vk, lam);
            let (scale, _) = r::laplace_apply(sk, tk, &abs(vk), (*a, 0.0));
            let at = |x: &[f64], len: usize| x[k * len..(k + 1) * len].to_vec();
            prop_assert!(worst(&at(&yr, m * c), &want_r.data, &scale.data) < 2e-5, "head {} Re Y", k);
            if let Some(yi) = &yi {
                prop_assert!(worst(&at(yi, m * c), &want_i.data, &scale.data) < 2e-5, "head {} Im Y", k);
            }
            let want = r::laplace_apply_grad(sk, tk, vk, lam, grk, phased.then_some(gik));
            let gabs = if phased {
                RefTensor::new(&grk.shape, grk.data.iter().zip(&gik.data).map(|(x, y)| x.abs() + y.abs()).collect())
            } else {
                abs(grk)
            };
            let (kty, _) = r::laplace_apply(tk, sk, &gabs, (*a, 0.0));
            let modl = (a * a + b * b).sqrt();
            let t_scale: Vec<f64> = (0..m).map(|j| modl * (0..c).map(|ch| gabs.data[j * c + ch] * scale.data[j * c + ch]).sum::<f64>()).collect();
            let s_scale: Vec<f64> = (0..n).map(|i| modl * (0..c).map(|ch| vk.data[i * c + ch].abs() * kty.data[i * c + ch]).sum::<f64>()).collect();
            let l_scale = r::laplace_apply_grad(sk, tk, &abs(vk), (*a, 0.0), &gabs, None).lambda_re.abs().max(1e-30);
            let e_v = worst(&at(&gv, n * c), &want.v.data, &kty.data);
            let e_s = worst(&at(&gs, n), &want.s, &s_scale);
            let e_t = worst(&at(&gt, m), &want.t, &t_scale);
            let e_a = (gl[k] - want.lambda_re).abs() / l_scale;
            let e_b = gbv.as_ref().map_or(0.0, |gb| (gb[k] - want.lambda_im).abs() / l_scale);
            prop_assert!(e_v < 2e-5 && e_s < 2e-5 && e_t < 2e-5 && e_a < 2e-5 && e_b < 2e-5,
                "head {} of {}: V {} s {} t {} a {} b {}", k, h, e_v, e_s, e_t, e_a, e_b);
        }
    }
}
