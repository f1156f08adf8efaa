//! f16 / bf16 storage: upload/download round trips and ops computed in f32 on half
//! storage (where the device stores the type; bf16 is refused with a typed error on
//! devices without it, e.g. wgpu/lavapipe).

use lapis_ops::reference as r;
use lapis_ops::{DType, LapisError, Tensor, UnaryOp};
use lapis_tests::*;

#[test]
fn half_round_trips_and_ops() {
    let dev = device();
    let data: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 37.0).collect();
    for dtype in [DType::F16, DType::BF16] {
        let t = match Tensor::from_f32(&dev, &[1000], &data, dtype) {
            Ok(t) => t,
            Err(LapisError::DType { got, .. }) => {
                assert_eq!(got, dtype);
                assert!(!dev.supports(dtype), "refused a dtype the device supports");
                eprintln!(
                    "dtype test: {} not stored on {} (typed error checked)",
                    dtype.name(),
                    dev.info().name
                );
                continue;
            }
            Err(e) => panic!("unexpected error {e}"),
        };
        assert_eq!(t.dtype(), dtype);
        let back = t.to_f32_vec().unwrap();
        // One rounding to the half type: relative 2^-11 (f16) or 2^-8 (bf16).
        let eps = if dtype == DType::F16 { 4.9e-4 } else { 3.9e-3 };
        r::assert_close(
            &back.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            eps,
            0.0,
        )
        .unwrap();
        // tanh computed in f32 from the half input, rounded once on store.
        let y = lapis_ops::unary(UnaryOp::Tanh, &t).unwrap();
        assert_eq!(y.dtype(), dtype);
        let want: Vec<f64> = back.iter().map(|&v| (v as f64).tanh()).collect();
        let got: Vec<f64> = y.to_f32_vec().unwrap().iter().map(|&v| v as f64).collect();
        r::assert_close(&got, &want, eps, 1e-6).unwrap();
        // Cast to f32 on the device is exact.
        let f = lapis_ops::to_dtype(&t, DType::F32).unwrap();
        assert_eq!(f.to_vec::<f32>().unwrap(), back);
    }
}

#[test]
fn to_vec_checks_the_dtype() {
    let dev = device();
    let t = Tensor::from_slice(&dev, &[2], &[1.0f32, 2.0]).unwrap();
    assert!(matches!(t.to_vec::<u32>(), Err(LapisError::DType { .. })));
}
