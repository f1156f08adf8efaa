//! Linear-recurrence scan vs `reference::linear_scan`.

use lapis_ops::reference::{self as r, RefTensor};
use lapis_ops::Tensor;
use lapis_tests::*;
use proptest::prelude::*;

/// Lengths around the chunking: 1, small, one past a chunk (32), and long enough for
/// several chunks per unit of work.
fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=40,
        prop::sample::select(vec![63usize, 64, 65, 255, 256, 257, 1000, 4097]),
        5000usize..70_000
    ]
}

proptest! {
    #![proptest_config(cases(24))]

    /// f32 error of a linear recurrence: |h_k − ĥ_k| ≤ ≈2·n_k·ε·h̃_k where h̃ is the scan of
    /// (|d|, |u|) and n_k the number of terms that reach k (at most N). We allow
    /// 4·min(N, 1/(1−max d))·ε·h̃_k + 1e-30 per element: the memory of the recurrence, not N,
    /// bounds how many rounding errors survive when d < 1.
    #[test]
    fn scan_matches_reference(n in len(), c in 1usize..=8, dmax in prop::sample::select(vec![0.0f64, 0.5, 0.99, 1.0]), reverse in any::<bool>(), seed in 0u64..1000) {
        let dev = device();
        let d: Vec<f64> = (0..n).map(|i| dmax * (((i as u64 * 2654435761 + seed) % 1009) as f64 / 1009.0)).map(|v| v as f32 as f64).collect();
        let u = as_f32(&RefTensor::new(&[n, c], (0..n * c).map(|i| (((i as u64 * 40503 + seed * 7) % 2001) as f64 / 1000.0) - 1.0).collect()));
        let dt = Tensor::from_slice(&dev, &[n], &d.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap();
        let got = lapis_ops::linear_scan(&dt, &upload(&dev, &u), reverse).unwrap();
        let want = r::linear_scan(&d, &u, reverse);
        let abs_u = RefTensor::new(&u.shape, u.data.iter().map(|v| v.abs()).collect());
        let bound = r::linear_scan(&d, &abs_u, reverse);
        let memory = if dmax < 1.0 { (1.0 / (1.0 - dmax)).min(n as f64) } else { n as f64 };
        let g = download(&got);
        prop_assert_eq!(&g.shape, &want.shape);
        for (i, ((gv, wv), bv)) in g.data.iter().zip(&want.data).zip(&bound.data).enumerate() {
            let tol = 4.0 * (memory + 1.0) * 1.2e-7 * bv + 1e-30;
            prop_assert!((gv - wv).abs() <= tol, "index {}: got {}, want {}, tol {}", i, gv, wv, tol);
        }
    }
}

#[test]
fn scan_rejects_bad_arguments() {
    let dev = device();
    let d = Tensor::from_slice(&dev, &[3], &[0.5f32; 3]).unwrap();
    let u = Tensor::from_slice(&dev, &[4, 2], &[1.0f32; 8]).unwrap();
    assert!(matches!(
        lapis_ops::linear_scan(&d, &u, false),
        Err(lapis_ops::LapisError::ShapeMismatch { .. })
    ));
    let d2 = Tensor::from_slice(&dev, &[3, 1], &[0.5f32; 3]).unwrap();
    assert!(matches!(
        lapis_ops::linear_scan(&d2, &d, false),
        Err(lapis_ops::LapisError::Shape { .. })
    ));
}
