//! argsort / argsort_rows vs `reference::argsort` (std's stable `sort_by`): exact.

use lapis_ops::reference as r;
use lapis_ops::Tensor;
use lapis_tests::*;
use proptest::prelude::*;

/// Key patterns the issue names: random, sorted, reversed, constant, tie-heavy, plus
/// signed zeros, infinities and NaN.
fn keys(n: usize, pattern: u8, seed: u64) -> Vec<f32> {
    let rnd = |i: usize| {
        ((i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(seed * 1442695040888963407)
            >> 33) as f32
            / 2f32.powi(31)
    };
    (0..n)
        .map(|i| match pattern % 6 {
            0 => rnd(i) * 2000.0 - 1000.0,
            1 => i as f32 * 0.5 - 7.0,
            2 => (n - i) as f32 * 3.0,
            3 => 4.25,
            4 => (rnd(i) * 5.0).floor() - 2.0, // five distinct values: heavy ties
            _ => {
                [
                    0.0,
                    -0.0,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::NAN,
                    1e-38,
                    -3.5,
                ][i % 7]
                    * if rnd(i) > 0.5 { 1.0 } else { -1.0 }
            }
        })
        .collect()
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=70,
        prop::sample::select(vec![255usize, 256, 257, 1023, 1025, 4096]),
        5000usize..40_000
    ]
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn argsort_matches_stable_sort(n in size(), pattern in 0u8..6, seed in 0u64..1000) {
        let dev = device();
        let k = keys(n, pattern, seed);
        let t = Tensor::from_slice(&dev, &[n], &k).unwrap();
        let (sorted, perm) = lapis_ops::argsort(&t).unwrap();
        let want = r::argsort(&k.iter().map(|&v| v as f64).collect::<Vec<_>>());
        prop_assert_eq!(perm.to_vec::<u32>().unwrap(), want.clone());
        let s = sorted.to_vec::<f32>().unwrap();
        for (i, &j) in want.iter().enumerate() {
            let w = k[j as usize];
            prop_assert!(s[i].to_bits() == w.to_bits() || (s[i].is_nan() && w.is_nan()), "sorted[{}] = {}, want {}", i, s[i], w);
        }
    }

    #[test]
    fn argsort_rows_sorts_each_row(rows in prop::sample::select(vec![1usize, 2, 7, 17, 256]), cols in prop_oneof![1usize..=40, Just(257usize)], pattern in 0u8..6, seed in 0u64..1000) {
        let dev = device();
        let k = keys(rows * cols, pattern, seed);
        let t = Tensor::from_slice(&dev, &[rows, cols], &k).unwrap();
        let (_, perm) = lapis_ops::argsort_rows(&t).unwrap();
        let got = perm.to_vec::<u32>().unwrap();
        for b in 0..rows {
            let row: Vec<f64> = k[b * cols..(b + 1) * cols].iter().map(|&v| v as f64).collect();
            let want = r::argsort(&row);
            prop_assert_eq!(&got[b * cols..(b + 1) * cols], want.as_slice(), "row {}", b);
        }
    }
}

/// One long array: 2^20 keys with ties, against the reference.
#[test]
fn argsort_2_pow_20() {
    let dev = device();
    let n = 1 << 20;
    let k = keys(n, 4, 3);
    let (_, perm) = lapis_ops::argsort(&Tensor::from_slice(&dev, &[n], &k).unwrap()).unwrap();
    let want = r::argsort(&k.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert!(
        perm.to_vec::<u32>().unwrap() == want,
        "2^20 argsort differs from the stable reference"
    );
}
