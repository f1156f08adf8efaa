//! Sizes past llvmpipe's loop limit: lavapipe silently stops a shader invocation's loops
//! after 65 535 iterations in total (no error, the tail is simply not computed). Every op
//! that loops per unit keeps its loops short (chunking, splitting, or a reduction path);
//! these tests take each one past 65 535 on the loop it used to run.

use lapis_ops::reference as r;
use lapis_ops::Tensor;
use lapis_tests::*;

fn keys(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u64 + 1)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed.wrapping_mul(1442695040888963407))
                >> 40;
            // 2^24 distinct values over 2^21 keys: many exact ties.
            (x % 100_000) as f32 * 0.01 - 500.0
        })
        .collect()
}

/// Argsort of 2^21 keys: 65 536 radix chunks of 32 under the old sizing (fails there).
#[test]
fn argsort_past_the_loop_limit() {
    let dev = device();
    let n = 1 << 21;
    let k = keys(n, 5);
    let (_, perm) = lapis_ops::argsort(&Tensor::from_slice(&dev, &[n], &k).unwrap()).unwrap();
    let want = r::argsort(&k.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert!(
        perm.to_vec::<u32>().unwrap() == want,
        "argsort of 2^21 keys differs from the stable reference"
    );
}

/// A linear scan of 2^22 steps (65 536 chunk totals under the old sizing, which fails), forward
/// and reverse. Decays in [0.5, 1): the f32 error stays ≤ ~1e-5 of the running magnitude.
#[test]
fn linear_scan_past_the_loop_limit() {
    let dev = device();
    let n = 1 << 22;
    let d: Vec<f32> = keys(n, 7).iter().map(|v| 0.75 + v / 2000.0).collect();
    let u: Vec<f32> = keys(n, 8).iter().map(|v| v / 500.0).collect();
    let dt = Tensor::from_slice(&dev, &[n], &d).unwrap();
    let ut = Tensor::from_slice(&dev, &[n], &u).unwrap();
    let d64: Vec<f64> = d.iter().map(|&v| v as f64).collect();
    let u64r = r::RefTensor::new(&[n], u.iter().map(|&v| v as f64).collect());
    for reverse in [false, true] {
        let got: Vec<f64> = lapis_ops::linear_scan(&dt, &ut, reverse)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let want = r::linear_scan(&d64, &u64r, reverse);
        // |h| ≤ max|u| / (1 − max d) = 4; 1e-4 absolute leaves f32 room over 4M steps.
        r::assert_close(&got, &want.data, 0.0, 1e-4)
            .unwrap_or_else(|m| panic!("reverse = {reverse}: {m}"));
    }
}

/// Softmax over one row of 70 000 (three loops of 70 000 in the one-unit kernel).
#[test]
fn softmax_long_row() {
    let dev = device();
    let n = 70_000;
    let x: Vec<f32> = keys(n, 9).iter().map(|v| v / 50.0).collect();
    let xr = r::RefTensor::new(&[1, n], x.iter().map(|&v| v as f64).collect());
    let t = Tensor::from_slice(&dev, &[1, n], &x).unwrap();
    let got = lapis_ops::softmax(&t, 1).unwrap().to_vec::<f32>().unwrap();
    let want = r::softmax(&xr, 1);
    let sum: f64 = got.iter().map(|&v| v as f64).sum();
    assert!((sum - 1.0).abs() < 1e-4, "softmax sums to {sum}");
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    // exp in f32: 1e-5 relative per entry.
    r::assert_close(&got, &want.data, 1e-4, 0.0).unwrap();
}

/// index_add with 70 000 source rows (each output unit loops over the index list).
#[test]
fn index_add_long_index() {
    let dev = device();
    let (k, len, inner) = (70_000usize, 5usize, 2usize);
    let idx: Vec<u32> = (0..k).map(|i| ((i * 7 + i / 3) % len) as u32).collect();
    let src: Vec<f32> = keys(k * inner, 11).iter().map(|v| v / 500.0).collect();
    let sr = r::RefTensor::new(&[k, inner], src.iter().map(|&v| v as f64).collect());
    let got = lapis_ops::index_add(
        &Tensor::from_slice(&dev, &[k, inner], &src).unwrap(),
        0,
        &Tensor::from_slice(&dev, &[k], &idx).unwrap(),
        len,
    )
    .unwrap()
    .to_vec::<f32>()
    .unwrap();
    let want = r::index_add(&sr, 0, &idx, len);
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    // Sums of 14 000 terms of size ≤ 1 in f32: 1e-2 absolute is ~100× the expected error.
    r::assert_close(&got, &want.data, 0.0, 1e-2).unwrap();
}
