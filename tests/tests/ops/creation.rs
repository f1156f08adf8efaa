//! fill / arange vs the reference; uniform / normal by their statistics (fixed seeds).

use lapis_ops::reference as r;
use lapis_ops::{DType, Tensor};
use lapis_tests::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn fill_and_arange_match_reference(shape in shape(3, 20_000), v in -1e6f32..1e6, start in -100.0f32..100.0, step in -2.0f32..2.0) {
        let dev = device();
        let got = lapis_ops::fill(&dev, &shape, v, DType::F32).unwrap();
        check("fill", &got, &r::fill(&shape, v as f64), 0.0, 0.0)?;
        let n: usize = shape.iter().product();
        let got = lapis_ops::arange(&dev, start, step, n, DType::F32).unwrap();
        // start + i·step in f32: one rounding of the product and one of the sum.
        let want = r::arange(start as f64, step as f64, n);
        check("arange", &got, &want, 2.4e-7, 2.4e-7 * (start.abs() + step.abs() * n as f32) as f64)?;
    }
}

fn stats(t: &Tensor) -> (f64, f64, Vec<f32>) {
    let v = t.to_vec::<f32>().unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var, v)
}

/// Uniform[-1, 3) on 2^18 samples: mean 1 ± 5σ/√n (σ² = 16/12), variance 4/3 ± 2%,
/// every sample in range; the same seed reproduces the same values, another seed differs.
#[test]
fn uniform_statistics_and_seed() {
    let dev = device();
    let n = 1 << 18;
    let t = lapis_ops::uniform(&dev, &[n], -1.0, 3.0, 42).unwrap();
    let (mean, var, v) = stats(&t);
    let se = (16.0f64 / 12.0 / n as f64).sqrt();
    assert!((mean - 1.0).abs() < 5.0 * se, "mean {mean}");
    assert!((var / (16.0 / 12.0) - 1.0).abs() < 0.02, "var {var}");
    assert!(v.iter().all(|&x| (-1.0..3.0).contains(&x)));
    let again = lapis_ops::uniform(&dev, &[n], -1.0, 3.0, 42)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(v, again, "same seed, same values");
    let other = lapis_ops::uniform(&dev, &[n], -1.0, 3.0, 43)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(v, other, "different seed, different values");
}

/// Normal(2, 0.5) on 2^18 samples: mean within 5 standard errors, std within 1%,
/// 68.3% ± 1% within one σ; no NaN.
#[test]
fn normal_statistics() {
    let dev = device();
    let n = 1 << 18;
    let t = lapis_ops::normal(&dev, &[n], 2.0, 0.5, 7).unwrap();
    let (mean, var, v) = stats(&t);
    assert!(
        (mean - 2.0).abs() < 5.0 * 0.5 / (n as f64).sqrt(),
        "mean {mean}"
    );
    assert!((var.sqrt() / 0.5 - 1.0).abs() < 0.01, "std {}", var.sqrt());
    let within = v.iter().filter(|&&x| (x - 2.0).abs() < 0.5).count() as f64 / n as f64;
    assert!((within - 0.6827).abs() < 0.01, "within 1σ: {within}");
    assert!(v.iter().all(|x| x.is_finite()));
}

/// More elements than one grid axis can hold (65 535 cubes × 256 units): the launch grid
/// spreads over two axes and every element is still written exactly once.
#[test]
fn grid_spreads_past_one_axis() {
    let dev = device();
    let n = 65_535 * 256 + 301;
    let t = lapis_ops::arange(&dev, 0.0, 1.0, n, DType::F32).unwrap();
    let t = lapis_ops::add_scalar(&t, 0.0).unwrap(); // a second kernel over the same grid
    let v = t.to_vec::<f32>().unwrap();
    // f32(i) is exactly what the kernel computes (one rounding of an integer).
    if let Some(i) = (0..n).find(|&i| v[i] != i as f32) {
        panic!("element {i}: got {}, want {}", v[i], i as f32);
    }
}
