//! softmax / log_softmax vs the reference.

use lapis_ops::reference as r;
use lapis_tests::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(cases(24))]

    /// Each output is one exp and one division (or log) of f32 values after an exact
    /// max-subtraction; the sum over a line accumulates ≤ len·ε relative error. With
    /// len ≤ 1000: 1e-4 relative on probabilities, 1e-5·|x| absolute on log-probabilities.
    #[test]
    fn softmax_matches_reference(x in any_tensor(4, 20_000, -30.0, 30.0), axis_pick in 0usize..4) {
        let dev = device();
        let axis = axis_pick % x.shape.len();
        let t = upload(&dev, &x);
        check("softmax", &lapis_ops::softmax(&t, axis).unwrap(), &r::softmax(&x, axis), 1e-4, 1e-7)?;
        check("log_softmax", &lapis_ops::log_softmax(&t, axis).unwrap(), &r::log_softmax(&x, axis), 1e-5, 1e-4)?;
    }
}

/// Huge logits: the max subtraction keeps everything finite (no inf/inf).
#[test]
fn softmax_huge_logits() {
    let dev = device();
    let x = lapis_ops::Tensor::from_slice(&dev, &[1, 4], &[1e30f32, -1e30, 0.0, 1e30]).unwrap();
    let p = lapis_ops::softmax(&x, 1).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(p, vec![0.5, 0.0, 0.0, 0.5]);
    let lp = lapis_ops::log_softmax(&x, 1)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        (lp[0] + std::f32::consts::LN_2).abs() < 1e-6 && lp[1] == -2e30,
        "{lp:?}"
    );
}
