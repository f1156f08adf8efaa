//! rfft (cubek-fft) vs the O(n²) reference DFT.

use lapis_ops::reference as r;
use lapis_tests::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(cases(12))]

    /// FFT error is O(log n·ε) relative to ‖x‖₁ ≥ max|X_k|: 1e-5·Σ|x| absolute.
    #[test]
    fn rfft_matches_dft(log_n in 1u32..=10, batch in 1usize..=3, seed in 0u64..100) {
        let dev = device();
        let n = 1usize << log_n;
        let x = as_f32(&r::RefTensor::new(&[batch, n], (0..batch * n).map(|i| ((((i as u64) * 7919 + seed) % 1001) as f64 / 500.0) - 1.0).collect()));
        let (re, im) = lapis_ops::rfft(&upload(&dev, &x)).unwrap();
        let (wr, wi) = r::rfft(&x);
        let l1: f64 = x.data.iter().map(|v| v.abs()).sum::<f64>() / batch as f64;
        check("rfft re", &re, &wr, 0.0, 1e-5 * l1)?;
        check("rfft im", &im, &wi, 0.0, 1e-5 * l1)?;
    }
}

#[test]
fn rfft_refuses_other_lengths() {
    let dev = device();
    let x = lapis_ops::Tensor::from_slice(&dev, &[1000], &vec![0.0f32; 1000]).unwrap();
    assert!(matches!(
        lapis_ops::rfft(&x),
        Err(lapis_ops::LapisError::InvalidArgument { name: "n", .. })
    ));
}
