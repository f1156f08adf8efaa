//! OU covariance ops vs the dense f64 reference (dense Cholesky) and the reference's
//! O(d) forms.

use lapis_ops::reference as r;
use lapis_ops::{OuCovariance, Tensor};
use lapis_tests::*;
use proptest::prelude::*;

fn up(dev: &lapis_ops::Device, x: &[f64]) -> Tensor {
    Tensor::from_slice(
        dev,
        &[x.len()],
        &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap()
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

proptest! {
    #![proptest_config(cases(24))]

    /// Conditioning sets the tolerance: with gaps ≥ ~0.05/λ, 1 − ρ² ≥ 0.1, the AR(1) steps
    /// amplify f32 rounding by ≤ 1/(1 − ρ²) ≈ 10: 1e-4 relative on Mahalanobis/solve, 1e-4·d
    /// absolute on log det (a sum of d logs each with ≲ 10 ε error).
    #[test]
    fn ou_ops_match_dense(d in 1usize..120, lam in prop::sample::select(vec![0.05f64, 0.5, 2.0]), seed in 0u64..1000) {
        let dev = device();
        // Coordinates: a shuffled grid with jitter (no near-ties), σ in [0.5, 2].
        let mut x: Vec<f64> = (0..d).map(|i| (i as f64 * 1.3 + lcg(1, seed + i as u64, 0.0, 0.5)[0]) / lam).map(|v| v as f32 as f64).collect();
        let shuffle = lcg(d, seed, 0.0, 1.0);
        let mut idx: Vec<usize> = (0..d).collect();
        idx.sort_by(|&a, &b| shuffle[a].total_cmp(&shuffle[b]));
        x = idx.iter().map(|&i| x[i]).collect();
        let sigma = lcg(d, seed + 9, 0.5, 2.0);
        let rv = lcg(d, seed + 3, -1.0, 1.0);
        let lam32 = lam as f32 as f64;
        let cov = OuCovariance::new(&up(&dev, &x), lam as f32, &up(&dev, &sigma)).unwrap();
        let dense = r::ou_cov_dense(&x, lam32, &sigma);
        let l = r::cholesky(&dense);
        let want_logdet = r::cholesky_logdet(&l);
        let got_logdet = cov.logdet().unwrap().to_scalar().unwrap() as f64;
        prop_assert!((got_logdet - want_logdet).abs() <= 1e-4 * d as f64 + 1e-5, "logdet {} vs {}", got_logdet, want_logdet);
        let rt = up(&dev, &rv);
        let want_solve = r::cholesky_solve(&l, &rv);
        let got_solve: Vec<f64> = cov.solve(&rt).unwrap().to_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect();
        let scale = want_solve.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        lapis_ops::reference::assert_close(&got_solve, &want_solve, 0.0, 1e-4 * scale).map_err(TestCaseError::fail)?;
        let want_m: f64 = rv.iter().zip(&want_solve).map(|(a, b)| a * b).sum();
        let got_m = cov.mahalanobis(&rt).unwrap().to_scalar().unwrap() as f64;
        prop_assert!((got_m - want_m).abs() <= 1e-4 * want_m.abs() + 1e-6, "mahalanobis {} vs {}", got_m, want_m);
        let nll = cov.nll(&rt).unwrap().to_scalar().unwrap() as f64;
        let want_nll = 0.5 * (want_m + want_logdet + d as f64 * (2.0 * std::f64::consts::PI).ln());
        prop_assert!((nll - want_nll).abs() <= 1e-4 * (want_nll.abs() + d as f64), "nll {} vs {}", nll, want_nll);
        // Sampling is the AR(1) map of ε: matches the reference draw from the same ε.
        let eps = lcg(d, seed + 17, -2.0, 2.0);
        let got_v: Vec<f64> = cov.sample(&up(&dev, &eps)).unwrap().to_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect();
        let want_v = r::ou_sample(&x, lam32, &sigma, &eps);
        lapis_ops::reference::assert_close(&got_v, &want_v, 1e-4, 1e-5).map_err(TestCaseError::fail)?;
    }
}

/// Many draws from `ε ~ N(0, 1)`: the empirical covariance approaches Σ.
#[test]
fn ou_sample_covariance() {
    let dev = device();
    let (d, draws) = (6, 40_000);
    let x = [0.0, 0.3, 2.0, 0.1, 1.2, 5.0];
    let sigma = [1.0, 0.5, 2.0, 1.5, 1.0, 0.7];
    let cov = OuCovariance::new(&up(&dev, &x), 0.8, &up(&dev, &sigma)).unwrap();
    // [d, draws]: every column is one draw.
    let eps = lapis_ops::normal(&dev, &[d, draws], 0.0, 1.0, 99).unwrap();
    let v = cov.sample(&eps).unwrap().to_vec::<f32>().unwrap();
    let want = r::ou_cov_dense(&x, 0.8f32 as f64, &sigma);
    for i in 0..d {
        for j in 0..d {
            let emp: f64 = (0..draws)
                .map(|k| v[i * draws + k] as f64 * v[j * draws + k] as f64)
                .sum::<f64>()
                / draws as f64;
            let w = want.data[i * d + j];
            // Standard error of a product moment ≈ σ_iσ_j·√(2/draws) ≈ 0.007·σ_iσ_j; 5 SE.
            assert!(
                (emp - w).abs() < 5.0 * sigma[i] * sigma[j] * (2.0 / draws as f64).sqrt(),
                "({i},{j}): {emp} vs {w}"
            );
        }
    }
}

/// Tied coordinates: finite results thanks to the 1e-8 floor on 1 − ρ².
#[test]
fn ou_ties_stay_finite() {
    let dev = device();
    let cov = OuCovariance::new(
        &up(&dev, &[1.0, 1.0, 2.0]),
        1.0,
        &up(&dev, &[1.0, 1.0, 1.0]),
    )
    .unwrap();
    assert!(cov.logdet().unwrap().to_scalar().unwrap().is_finite());
    let s = cov
        .solve(&up(&dev, &[1.0, -1.0, 0.5]))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(s.iter().all(|v| v.is_finite()), "{s:?}");
    assert!(OuCovariance::new(&up(&dev, &[0.0, 1.0]), 0.0, &up(&dev, &[1.0, 1.0])).is_err());
    // Bad σ and coordinates are deferred device checks (no read in the op).
    let e = deferred_err(
        &dev,
        OuCovariance::new(&up(&dev, &[0.0, 1.0]), 1.0, &up(&dev, &[1.0, -1.0])).map(|_| ()),
    );
    assert!(e.to_string().contains("sigma"), "{e}");
    let e = deferred_err(
        &dev,
        OuCovariance::new(&up(&dev, &[0.0, f64::NAN]), 1.0, &up(&dev, &[1.0, 1.0])).map(|_| ()),
    );
    assert!(e.to_string().contains('x'), "{e}");
}

/// NLL gradients vs central finite differences of the f64 reference NLL
/// (`½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` by dense Cholesky), h = 1e-5 relative.
#[test]
fn ou_nll_gradients_match_finite_differences() {
    let dev = device();
    for (d, lam, seed) in [
        (1usize, 0.7f64, 1u64),
        (5, 0.3, 2),
        (40, 1.1, 3),
        (90, 0.05, 4),
    ] {
        let x: Vec<f64> = {
            let base = lcg(d, seed, 0.0, 0.4);
            let perm = lcg(d, seed + 50, 0.0, 1.0);
            let mut idx: Vec<usize> = (0..d).collect();
            idx.sort_by(|&a, &b| perm[a].total_cmp(&perm[b]));
            idx.iter()
                .map(|&i| ((i as f64 * 1.1 + base[i]) / lam) as f32 as f64)
                .collect()
        };
        let sigma = lcg(d, seed + 9, 0.5, 2.0);
        let rv = lcg(d, seed + 3, -1.0, 1.0);
        let lam32 = lam as f32 as f64;
        let nll = |x: &[f64], lam: f64, sigma: &[f64], rv: &[f64]| {
            let l = r::cholesky(&r::ou_cov_dense(x, lam, sigma));
            let sol = r::cholesky_solve(&l, rv);
            let m: f64 = rv.iter().zip(&sol).map(|(a, b)| a * b).sum();
            0.5 * (m + r::cholesky_logdet(&l) + x.len() as f64 * (2.0 * std::f64::consts::PI).ln())
        };
        let cov = OuCovariance::new(&up(&dev, &x), lam as f32, &up(&dev, &sigma)).unwrap();
        let g = cov.nll_backward(&up(&dev, &rv)).unwrap();
        let h = 1e-5;
        let fd_r = r::finite_diff(|v| nll(&x, lam32, &sigma, v), &rv, h);
        let fd_s = r::finite_diff(|v| nll(&x, lam32, v, &rv), &sigma, h);
        let fd_x = r::finite_diff(|v| nll(v, lam32, &sigma, &rv), &x, h);
        let fd_l = r::finite_diff(|v| nll(&x, v[0], &sigma, &rv), &[lam32], h * lam32)[0];
        let to64 = |t: &Tensor| {
            t.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        };
        for (name, got, want) in [
            ("r", to64(&g.r), fd_r),
            ("sigma", to64(&g.sigma), fd_s),
            ("x", to64(&g.x), fd_x),
        ] {
            let scale = want.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
            // f32 sweeps vs f64 differences: 1e-3 of the block's largest entry (the chain
            // amplifies rounding by ≤ 1/(1 − ρ²) ≈ 10 here).
            r::assert_close(&got, &want, 0.0, 1e-3 * scale)
                .unwrap_or_else(|m| panic!("d = {d}, {name}: {m}"));
        }
        let g_l = g.lambda.to_scalar().unwrap() as f64;
        assert!(
            (g_l - fd_l).abs() <= 1e-3 * fd_l.abs().max(1.0),
            "d = {d}: λ̄ {g_l} vs {fd_l}"
        );
    }
}
