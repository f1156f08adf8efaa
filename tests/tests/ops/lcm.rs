//! REMIX's Laplace covariance model (`LaplaceCovariance`, `lcm_frobenius`) vs the dense f64
//! references of `reference::covariance` (dense Cholesky; analytic gradients that the
//! reference's own unit tests check against finite differences).
//!
//! Tolerances. Every filter quantity is bounded (`P ∈ [0, 1]`, `S ∈ [u, u + w²]`), so f32
//! rounding grows with the condition of the chain: with gaps ≥ 0.05/λ (`1 − ρ² ≥ 0.1`) and
//! `u ≥ 0.05`, `u + w² ≤ 2.3`, the observed relative errors are ≲ 1e-5; we allow 1e-4 of
//! the largest entry for values and 2e-3 for gradients (they subtract O(1) terms such as
//! `Σ⁻¹` and `yyᵀ` in the NLL's `Σ̄`, then go through two more scans), and 1e-4·d absolute
//! for log det (a sum of d logarithms).

use lapis_ops::reference as r;
use lapis_ops::{LapisError, LaplaceCovariance, LcmGrads, Tensor};
use lapis_tests::*;
use proptest::prelude::*;

fn up(dev: &lapis_ops::Device, shape: &[usize], x: &[f64]) -> Tensor {
    Tensor::from_slice(dev, shape, &x.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap()
}

fn to64(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect()
}

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

/// A random LCM: shuffled anchors with gaps ≥ `gap`/λ (or exact ties when `ties`), u in
/// [0.05, 2] (or 0 when `pure_ou`), w in ±[0.3, 1.5]. Values rounded to f32.
struct Model {
    a: Vec<f64>,
    u: Vec<f64>,
    w: Vec<f64>,
    lam: f64,
}

fn model(d: usize, lam: f64, gap: f64, ties: bool, pure_ou: bool, seed: u64) -> Model {
    let jitter = lcg(d, seed, 0.0, gap);
    let shuffle = lcg(d, seed + 50, 0.0, 1.0);
    let mut idx: Vec<usize> = (0..d).collect();
    idx.sort_by(|&a, &b| shuffle[a].total_cmp(&shuffle[b]));
    let a = idx
        .iter()
        .map(|&i| {
            let slot = if ties { (i / 3) as f64 } else { i as f64 };
            let j = if ties { 0.0 } else { jitter[i] };
            ((slot * 2.0 * gap + j) / lam) as f32 as f64
        })
        .collect();
    let u = if pure_ou {
        vec![0.0; d]
    } else {
        lcg(d, seed + 7, 0.05, 2.0)
    };
    let sign = lcg(d, seed + 8, -1.0, 1.0);
    let w = lcg(d, seed + 9, 0.3, 1.5)
        .iter()
        .zip(&sign)
        .map(|(m, s)| if *s < 0.0 { -m } else { *m })
        .collect();
    Model {
        a,
        u,
        w,
        lam: lam as f32 as f64,
    }
}

fn build(dev: &lapis_ops::Device, m: &Model) -> LaplaceCovariance {
    let d = m.a.len();
    LaplaceCovariance::new(
        &up(dev, &[d], &m.a),
        m.lam as f32,
        &up(dev, &[d], &m.u),
        &up(dev, &[d], &m.w),
    )
    .unwrap()
}

/// Column `j` of a row-major `[d, c]` buffer.
fn column(x: &[f64], c: usize, j: usize) -> Vec<f64> {
    x.iter().skip(j).step_by(c).copied().collect()
}

fn scale_of(v: &[f64]) -> f64 {
    v.iter().fold(1e-3f64, |a, x| a.max(x.abs()))
}

/// Each entry replaced by the mean over the anchors equal to its own: at exact ties the
/// anchor gradient is defined per run of tied anchors (the run's total, shared equally —
/// see `lcm.rs`); the reference's `sgn(0) = 0` splits the same total differently.
fn tie_mean(g: &[f64], anchors: &[f64]) -> Vec<f64> {
    anchors
        .iter()
        .map(|x| {
            let run: Vec<f64> = anchors
                .iter()
                .zip(g)
                .filter(|(y, _)| *y == x)
                .map(|(_, v)| *v)
                .collect();
            run.iter().sum::<f64>() / run.len() as f64
        })
        .collect()
}

/// Compares device gradients with `Σ_j weight_j · reference_j` over the columns.
fn check_grads(
    what: &str,
    anchors: &[f64],
    got: &LcmGrads,
    refs: &[(f64, r::RemixGrads)],
    c: usize,
    tol: f64,
) -> Result<(), TestCaseError> {
    let d = refs[0].1.u.len();
    let sum = |f: &dyn Fn(&r::RemixGrads) -> &Vec<f64>| -> Vec<f64> {
        (0..d)
            .map(|i| refs.iter().map(|(wt, g)| wt * f(g)[i]).sum())
            .collect()
    };
    for (name, g, want) in [
        ("u", &to64(&got.u), sum(&|g| &g.u)),
        ("w", &to64(&got.w), sum(&|g| &g.w)),
        (
            "a",
            &tie_mean(&to64(&got.a), anchors),
            tie_mean(&sum(&|g| &g.a), anchors),
        ),
    ] {
        r::assert_close(g, &want, 0.0, tol * scale_of(&want))
            .map_err(|m| TestCaseError::fail(format!("{what} {name}: {m}")))?;
    }
    let want_l: f64 = refs.iter().map(|(wt, g)| wt * g.lambda).sum();
    let got_l = got.lambda.to_scalar().unwrap() as f64;
    prop_assert!(
        (got_l - want_l).abs() <= tol * want_l.abs().max(1.0),
        "{} λ̄ {} vs {}",
        what,
        got_l,
        want_l
    );
    if let (Some(gr), false) = (&got.r, refs[0].1.r.is_empty()) {
        let gr = to64(gr);
        for (j, (wt, g)) in refs.iter().enumerate() {
            let want: Vec<f64> = g.r.iter().map(|v| wt * v).collect();
            r::assert_close(&column(&gr, c, j), &want, 0.0, tol * scale_of(&want))
                .map_err(|m| TestCaseError::fail(format!("{what} r col {j}: {m}")))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(20))]

    /// log det, Mahalanobis, solve, NLL and sampling vs dense Cholesky of Σ.
    #[test]
    fn lcm_ops_match_dense(d in 1usize..90, c in 1usize..4, lam in prop::sample::select(vec![0.05f64, 0.7, 3.0]),
                           gap in prop::sample::select(vec![0.05f64, 1.0]), ties in any::<bool>(), pure_ou in any::<bool>(), seed in 0u64..1000) {
        let dev = device();
        let m = model(d, lam, gap, ties && !pure_ou, pure_ou, seed);
        let cov = build(&dev, &m);
        let sigma = r::remix_cov_dense(&m.u, &m.w, &m.a, m.lam);
        let l = r::cholesky(&sigma);
        let want_ld = r::cholesky_logdet(&l);
        let got_ld = cov.logdet().unwrap().to_scalar().unwrap() as f64;
        prop_assert!((got_ld - want_ld).abs() <= 1e-4 * d as f64 + 1e-5, "logdet {} vs {}", got_ld, want_ld);
        let rv = lcg(d * c, seed + 3, -1.0, 1.0);
        let rt = up(&dev, &[d, c], &rv);
        let solve = to64(&cov.solve(&rt).unwrap());
        let maha = to64(&cov.mahalanobis(&rt).unwrap());
        let nll = to64(&cov.nll(&rt).unwrap());
        for j in 0..c {
            let rj = column(&rv, c, j);
            let want = r::cholesky_solve(&l, &rj);
            r::assert_close(&column(&solve, c, j), &want, 0.0, 1e-4 * scale_of(&want)).map_err(TestCaseError::fail)?;
            let wm: f64 = rj.iter().zip(&want).map(|(x, y)| x * y).sum();
            prop_assert!((maha[j] - wm).abs() <= 1e-4 * wm.abs() + 1e-5, "maha {} vs {}", maha[j], wm);
            let wn = r::remix_nll(&m.u, &m.w, &m.a, m.lam, &rj);
            prop_assert!((nll[j] - wn).abs() <= 1e-4 * (wn.abs() + d as f64), "nll {} vs {}", nll[j], wn);
        }
        // Sampling is a deterministic map of (ε_u, ε_w).
        let eu = lcg(d, seed + 11, -2.0, 2.0);
        let ew = lcg(d, seed + 12, -2.0, 2.0);
        let got = to64(&cov.sample(&up(&dev, &[d], &eu), &up(&dev, &[d], &ew)).unwrap());
        let want = r::remix_sample(&m.u, &m.w, &m.a, m.lam, &eu, &ew);
        r::assert_close(&got, &want, 1e-4, 1e-5).map_err(TestCaseError::fail)?;
    }

    /// Gradients of NLL, Mahalanobis, log det and the solve's VJP vs the reference's
    /// analytic gradients (dense `Σ̄` chained through `Σ(u, w, a, λ)`).
    #[test]
    fn lcm_gradients_match_reference(d in 1usize..60, c in 1usize..3, lam in prop::sample::select(vec![0.05f64, 0.7, 3.0]),
                                     gap in prop::sample::select(vec![0.05f64, 1.0]), ties in any::<bool>(), pure_ou in any::<bool>(), seed in 0u64..1000) {
        let dev = device();
        let m = model(d, lam, gap, ties && !pure_ou, pure_ou, seed);
        let cov = build(&dev, &m);
        let rv = lcg(d * c, seed + 3, -1.0, 1.0);
        let rt = up(&dev, &[d, c], &rv);
        let gw = lcg(c, seed + 4, 0.5, 1.5);
        let gt = up(&dev, &[1, c], &gw);
        let tol = 2e-3;
        let per_col = |f: &dyn Fn(&[f64]) -> r::RemixGrads| -> Vec<(f64, r::RemixGrads)> {
            (0..c).map(|j| (gw[j], f(&column(&rv, c, j)))).collect()
        };
        let nll = cov.nll_backward(&rt, &gt).unwrap();
        check_grads("nll", &m.a, &nll, &per_col(&|x| r::remix_nll_grad(&m.u, &m.w, &m.a, m.lam, x)), c, tol)?;
        let maha = cov.mahalanobis_backward(&rt, &gt).unwrap();
        check_grads("mahalanobis", &m.a, &maha, &per_col(&|x| r::remix_mahalanobis_grad(&m.u, &m.w, &m.a, m.lam, x)), c, tol)?;
        let ld = cov.logdet_backward(1.5).unwrap();
        check_grads("logdet", &m.a, &ld, &[(1.5, r::remix_logdet_grad(&m.u, &m.w, &m.a, m.lam))], c, tol)?;
        let gy = lcg(d * c, seed + 5, -1.0, 1.0);
        let sb = cov.solve_backward(&rt, &up(&dev, &[d, c], &gy)).unwrap();
        let refs: Vec<(f64, r::RemixGrads)> = (0..c)
            .map(|j| (1.0, r::remix_solve_grad(&m.u, &m.w, &m.a, m.lam, &column(&rv, c, j), &column(&gy, c, j))))
            .collect();
        check_grads("solve", &m.a, &sb, &refs, c, tol)?;
    }

    /// The Frobenius objective and its gradients vs the reference's matvec formula and
    /// its dense `Σ̄ = 2(Σ − S)` gradients.
    #[test]
    fn lcm_frobenius_matches_reference(d in 1usize..80, b in 1usize..6, lam in prop::sample::select(vec![0.05f64, 0.7, 3.0]), seed in 0u64..1000) {
        let dev = device();
        let m = model(d, lam, 0.5, false, false, seed);
        let v = lcg(b * d, seed + 21, -1.5, 1.5);
        let vt = up(&dev, &[b, d], &v);
        let vr = r::RefTensor::new(&[b, d], v.clone());
        let (a, u, w) = (up(&dev, &[d], &m.a), up(&dev, &[d], &m.u), up(&dev, &[d], &m.w));
        let got = lapis_ops::lcm_frobenius(&a, m.lam as f32, &u, &w, &vt).unwrap().to_scalar().unwrap() as f64;
        let want = r::remix_frobenius_batch(&m.u, &m.w, &m.a, m.lam, &vr);
        // A sum of O(d²) products of O(1) terms: 1e-4 relative to the sum of magnitudes.
        let mag = r::remix_frobenius_batch(&m.u, &m.w, &m.a, m.lam, &r::RefTensor::new(&[b, d], vec![0.0; b * d])).abs() + d as f64;
        prop_assert!((got - want).abs() <= 1e-4 * mag, "F {} vs {}", got, want);
        let g = lapis_ops::lcm_frobenius_backward(&a, m.lam as f32, &u, &w, &vt).unwrap();
        check_grads("frobenius", &m.a, &g, &[(1.0, r::remix_frobenius_batch_grad(&m.u, &m.w, &m.a, m.lam, &vr))], 1, 2e-3)?;
    }
}

/// The sample's VJP vs central finite differences of the f64 reference sampler (a
/// deterministic map of ε), h = 1e-5 relative.
#[test]
fn lcm_sample_gradients_match_finite_differences() {
    let dev = device();
    for (d, lam, seed) in [(1usize, 0.7f64, 1u64), (7, 0.3, 2), (50, 2.0, 3)] {
        let m = model(d, lam, 0.3, false, false, seed);
        let cov = build(&dev, &m);
        let eu = lcg(d, seed + 11, -2.0, 2.0);
        let ew = lcg(d, seed + 12, -2.0, 2.0);
        let gx = lcg(d, seed + 13, -1.0, 1.0);
        let g = cov
            .sample_backward(
                &up(&dev, &[d], &eu),
                &up(&dev, &[d], &ew),
                &up(&dev, &[d], &gx),
            )
            .unwrap();
        let f = |u: &[f64], w: &[f64], a: &[f64], lam: f64| -> f64 {
            r::remix_sample(u, w, a, lam, &eu, &ew)
                .iter()
                .zip(&gx)
                .map(|(x, g)| x * g)
                .sum()
        };
        let h = 1e-5;
        let fd_u = r::finite_diff(|v| f(v, &m.w, &m.a, m.lam), &m.u, h);
        let fd_w = r::finite_diff(|v| f(&m.u, v, &m.a, m.lam), &m.w, h);
        let fd_a = r::finite_diff(|v| f(&m.u, &m.w, v, m.lam), &m.a, h);
        let fd_l = r::finite_diff(|v| f(&m.u, &m.w, &m.a, v[0]), &[m.lam], h * m.lam)[0];
        for (name, got, want) in [("u", &g.u, fd_u), ("w", &g.w, fd_w), ("a", &g.a, fd_a)] {
            r::assert_close(&to64(got), &want, 0.0, 1e-3 * scale_of(&want))
                .unwrap_or_else(|e| panic!("d = {d}, {name}: {e}"));
        }
        let g_l = g.lambda.to_scalar().unwrap() as f64;
        assert!(
            (g_l - fd_l).abs() <= 1e-3 * fd_l.abs().max(1.0),
            "d = {d}: λ̄ {g_l} vs {fd_l}"
        );
    }
}

/// Many draws: the empirical covariance of `sample` approaches Σ (nugget included).
#[test]
fn lcm_sample_covariance() {
    let dev = device();
    let (d, draws) = (5, 40_000);
    let m = Model {
        a: vec![0.0, 0.4, 2.0, 0.1, 1.0],
        u: vec![0.3, 1.0, 0.1, 0.5, 0.2],
        w: vec![1.0, -0.5, 1.5, 0.8, 1.2],
        lam: 0.8,
    };
    let cov = build(&dev, &m);
    let eu = lapis_ops::normal(&dev, &[d, draws], 0.0, 1.0, 5).unwrap();
    let ew = lapis_ops::normal(&dev, &[d, draws], 0.0, 1.0, 6).unwrap();
    let x = to64(&cov.sample(&eu, &ew).unwrap());
    let want = r::remix_cov_dense(&m.u, &m.w, &m.a, m.lam);
    for i in 0..d {
        for j in 0..d {
            let emp: f64 = (0..draws)
                .map(|k| x[i * draws + k] * x[j * draws + k])
                .sum::<f64>()
                / draws as f64;
            let sd = (want.data[i * d + i] * want.data[j * d + j]).sqrt();
            // SE of a product moment ≤ √(2/draws)·σ_iσ_j ≈ 0.007σ_iσ_j; 5 SE.
            assert!(
                (emp - want.data[i * d + j]).abs() < 5.0 * sd * (2.0 / draws as f64).sqrt(),
                "({i},{j}): {emp} vs {}",
                want.data[i * d + j]
            );
        }
    }
}

/// A long, strongly correlated chain (d = 1000, gaps 0.002/λ so ρ ≈ 0.998): log det and
/// Mahalanobis stay within 1e-3 relative of dense Cholesky, where the tridiagonal
/// `K⁻¹ + diag(w²/u)` form would carry 1/(1 − ρ²) ≈ 250 entries.
#[test]
fn lcm_strong_correlation_is_accurate() {
    let dev = device();
    let d = 1000;
    let m = Model {
        a: (0..d).map(|i| (i as f64 * 0.002) as f32 as f64).collect(),
        u: vec![0.01; d]
            .iter()
            .map(|&v: &f64| v as f32 as f64)
            .collect(),
        w: vec![1.0; d],
        lam: 1.0,
    };
    let cov = build(&dev, &m);
    let sigma = r::remix_cov_dense(&m.u, &m.w, &m.a, m.lam);
    let l = r::cholesky(&sigma);
    let want_ld = r::cholesky_logdet(&l);
    let got_ld = cov.logdet().unwrap().to_scalar().unwrap() as f64;
    assert!(
        (got_ld - want_ld).abs() <= 1e-3 * want_ld.abs(),
        "logdet {got_ld} vs {want_ld}"
    );
    let rv = lcg(d, 3, -1.0, 1.0);
    let want: f64 = rv
        .iter()
        .zip(&r::cholesky_solve(&l, &rv))
        .map(|(a, b)| a * b)
        .sum();
    let got = cov
        .mahalanobis(&up(&dev, &[d], &rv))
        .unwrap()
        .to_scalar()
        .unwrap() as f64;
    assert!((got - want).abs() <= 1e-3 * want, "maha {got} vs {want}");
}

/// Typed errors, never panics, for bad arguments.
#[test]
fn lcm_rejects_bad_arguments() {
    let dev = device();
    let v = |x: &[f64]| up(&dev, &[x.len()], x);
    let (a, u, w) = (v(&[0.0, 1.0]), v(&[1.0, 1.0]), v(&[0.5, 0.5]));
    assert!(LaplaceCovariance::new(&a, 1.0, &u, &w).is_ok());
    for lam in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let e = LaplaceCovariance::new(&a, lam, &u, &w)
            .err()
            .expect("bad λ accepted");
        assert!(e.to_string().contains("lambda"), "{e}");
    }
    // Values of a, u, w are deferred device checks (no read in the op).
    let new = |a: &Tensor, u: &Tensor, w: &Tensor| LaplaceCovariance::new(a, 1.0, u, w).map(|_| ());
    let e = deferred_err(&dev, new(&a, &v(&[-1.0, 1.0]), &w));
    assert!(e.to_string().contains('u'), "{e}");
    let e = deferred_err(&dev, new(&a, &v(&[0.0, 1.0]), &v(&[0.0, 1.0])));
    assert!(e.to_string().contains("u + w²"), "{e}");
    let e = deferred_err(&dev, new(&v(&[0.0, f64::NAN]), &u, &w));
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "a", .. }),
        "{e}"
    );
    assert!(LaplaceCovariance::new(&a, 1.0, &v(&[1.0]), &w).is_err());
    let e = deferred_err(&dev, new(&a, &u, &v(&[f64::INFINITY, 1.0])));
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "w", .. }),
        "{e}"
    );
    // A tensor λ: shape at once, value on the device.
    let bad = Tensor::from_slice(&dev, &[1], &[-1.0f32]).unwrap();
    let e = deferred_err(&dev, LaplaceCovariance::new(&a, &bad, &u, &w).map(|_| ()));
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "lambda", .. }),
        "{e}"
    );
    let two = Tensor::from_slice(&dev, &[2], &[1.0f32, 1.0]).unwrap();
    assert!(LaplaceCovariance::new(&a, &two, &u, &w).is_err());
    let cov = LaplaceCovariance::new(&a, 1.0, &u, &w).unwrap();
    assert!(cov.solve(&v(&[1.0, 2.0, 3.0])).is_err());
    assert!(cov.nll_backward(&v(&[1.0, 2.0]), &v(&[1.0, 1.0])).is_err());
    assert!(cov.sample(&v(&[1.0, 2.0]), &v(&[1.0])).is_err());
    let batch = up(&dev, &[2, 3], &[0.0; 6]);
    assert!(lapis_ops::lcm_frobenius(&a, 1.0, &u, &w, &batch).is_err());
    assert!(lapis_ops::lcm_frobenius(&a, -1.0, &u, &w, &up(&dev, &[2, 2], &[0.0; 4])).is_err());
}

/// The innovation variances `S_k` of the Riccati recursion in f64 on sorted anchors (no
/// ties, so the `1 − ρ²` floor is not reached).
fn riccati64(m: &Model) -> Vec<f64> {
    let d = m.a.len();
    let mut idx: Vec<usize> = (0..d).collect();
    idx.sort_by(|&i, &j| m.a[i].total_cmp(&m.a[j]));
    let (mut prev, mut out) = (0.0f64, Vec::with_capacity(d));
    for (k, &i) in idx.iter().enumerate() {
        let pm = if k == 0 {
            1.0
        } else {
            let r = (-m.lam * (m.a[i] - m.a[idx[k - 1]])).exp();
            1.0 - r * r + r * r * prev
        };
        let s = m.w[i] * m.w[i] * pm + m.u[i];
        prev = pm * m.u[i] / s;
        out.push(s);
    }
    out
}

/// The chunked Möbius-product Riccati recursion (the default above d = 4096) against the
/// f64 recursion and the one-unit path: chunk lengths 1, 3, 7, 64 and one chunk for the
/// whole chain; d up to 20 000 (the default path at d = 20 000 uses chunks of 32 on
/// wgpu); weak and strong correlation (λ·gap from 2 down to 0.002). Bound: 2e-5 relative
/// per `S_k` (measured errors printed), and the log det of both paths within 1e-5
/// relative of each other.
#[test]
fn lcm_chunked_riccati_matches_sequential() {
    let dev = device();
    for (d, lam, gap) in [
        (5usize, 0.7f64, 1.0f64),
        (90, 3.0, 0.05),
        (1000, 1.0, 0.002),
        (20_000, 0.7, 0.05),
    ] {
        let m = model(d, lam, gap, false, false, d as u64);
        let want = riccati64(&m);
        let (a, u, w) = (
            up(&dev, &[d], &m.a),
            up(&dev, &[d], &m.u),
            up(&dev, &[d], &m.w),
        );
        let mut chunks: Vec<Option<usize>> =
            vec![None, Some(d), Some(1), Some(3), Some(7), Some(64)];
        if d > 5000 {
            chunks.retain(|c| !matches!(c, Some(1) | Some(3)));
        }
        let mut logdets = Vec::new();
        for chunk in chunks {
            let cov =
                LaplaceCovariance::with_riccati_chunk(&a, m.lam as f32, &u, &w, chunk).unwrap();
            let got = to64(cov.innovation_variances());
            let err = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / w)
                .fold(0.0, f64::max);
            eprintln!("riccati d={d} λ={lam} gap={gap} chunk={chunk:?}: max rel err {err:.2e}");
            assert!(err <= 2e-5, "d={d} chunk={chunk:?}: rel err {err}");
            logdets.push(cov.logdet().unwrap().to_scalar().unwrap() as f64);
        }
        for l in &logdets {
            assert!(
                (l - logdets[0]).abs() <= 1e-5 * logdets[0].abs().max(1.0),
                "log det {l} vs {}",
                logdets[0]
            );
        }
    }
}
