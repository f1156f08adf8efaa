//! argsort / argsort_rows vs `reference::argsort` (std's stable `sort_by`): exact.
//!
//! `argsort_rows` has two paths: one cube per row (bitonic, `2 ≤ n ≤ 4096`) and the global
//! radix sort (`n = 1`, `n > 4096`); the row lengths below straddle both and the padding
//! boundaries of the bitonic one (powers of two ± 1).

use lapis_ops::reference as r;
use lapis_ops::Tensor;
use lapis_tests::*;
use proptest::prelude::*;

/// Key patterns the issue names: random, sorted, reversed, constant, tie-heavy, plus
/// IEEE edge values (signed zeros, infinities, NaN, subnormals, extremes) with random signs.
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
                    1e-38, // subnormal
                    -3.5,
                    f32::from_bits(1), // smallest subnormal
                    f32::MIN_POSITIVE,
                    f32::MAX,
                ][i % 10]
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
    fn argsort_rows_sorts_each_row(rows in prop::sample::select(vec![1usize, 2, 7, 17, 256]), cols in prop_oneof![1usize..=64, Just(257usize)], pattern in 0u8..6, seed in 0u64..1000) {
        check_rows(lapis_ops::argsort_rows, rows, cols, pattern, seed);
        check_rows(lapis_ops::sort::argsort_rows_radix, rows, cols, pattern, seed);
    }
}

/// Row lengths at the bitonic path's edges (smallest rows, padding to a power of two ± 1,
/// the 4096 limit and the first radix length past it).
const EDGE_COLS: [usize; 9] = [2, 3, 255, 256, 257, 1000, 4095, 4096, 4097];

proptest! {
    #![proptest_config(cases(12))]

    #[test]
    fn argsort_rows_edge_lengths(rows in prop::sample::select(vec![1usize, 7, 256]), cols in prop::sample::select(EDGE_COLS.to_vec()), pattern in 0u8..6, seed in 0u64..1000) {
        check_rows(lapis_ops::argsort_rows, rows, cols, pattern, seed);
    }
}

/// Every edge length with B ∈ {1, 7} and every pattern, and with B = 256 once per length.
#[test]
fn argsort_rows_edge_lengths_all_patterns() {
    for (k, &cols) in EDGE_COLS.iter().enumerate() {
        for rows in [1, 7] {
            for pattern in 0..6 {
                check_rows(lapis_ops::argsort_rows, rows, cols, pattern, 17 + k as u64);
            }
        }
        check_rows(lapis_ops::argsort_rows, 256, cols, k as u8, 5);
    }
}

/// The bitonic path with every cube size (32…256 units; `argsort_rows` picks one per row
/// length and device, lavapipe never gets past 64), at lengths where the units' share of
/// pairs per stage changes (`n/2` below, at and above the cube size).
#[test]
fn argsort_rows_bitonic_every_cube_size() {
    for (k, max_units) in [32u32, 64, 128, 256].into_iter().enumerate() {
        for (j, cols) in [2usize, 3, 64, 65, 255, 512, 513, 1000, 4096]
            .into_iter()
            .enumerate()
        {
            let sort = |t: &Tensor| lapis_ops::sort::argsort_rows_bitonic(t, max_units);
            check_rows(sort, 3, cols, ((j + k) % 6) as u8, (7 * k + j) as u64);
        }
    }
}

/// More rows than one grid axis holds (65 535 cubes on wgpu): the one-cube-per-row grid
/// spreads over two axes.
#[test]
fn argsort_rows_more_rows_than_a_grid_axis() {
    check_rows(lapis_ops::argsort_rows, 70_000, 3, 4, 9);
}

/// The bitonic path refuses what it cannot sort.
#[test]
fn argsort_rows_bitonic_limits() {
    let dev = device();
    for cols in [1usize, 4097] {
        let t = Tensor::from_slice(&dev, &[2, cols], &keys(2 * cols, 0, 1)).unwrap();
        assert!(
            lapis_ops::sort::argsort_rows_bitonic(&t, 256).is_err(),
            "n = {cols}"
        );
    }
}

/// `argsort_rows` (or one of its paths) on `[rows, cols]` keys of `pattern`: `perm` and
/// the sorted keys (bit for bit, any NaN for NaN) against the stable reference, row by row.
fn check_rows(
    sort: impl Fn(&Tensor) -> lapis_ops::Result<(Tensor, Tensor)>,
    rows: usize,
    cols: usize,
    pattern: u8,
    seed: u64,
) {
    let dev = device();
    let k = keys(rows * cols, pattern, seed);
    let t = Tensor::from_slice(&dev, &[rows, cols], &k).unwrap();
    let (sorted, perm) = sort(&t).unwrap();
    assert_eq!(sorted.shape(), &[rows, cols]);
    assert_eq!(perm.shape(), &[rows, cols]);
    let got = perm.to_vec::<u32>().unwrap();
    let s = sorted.to_vec::<f32>().unwrap();
    let ctx = format!("[{rows}, {cols}], pattern {pattern}, seed {seed}");
    for b in 0..rows {
        let row = &k[b * cols..(b + 1) * cols];
        let want = r::argsort(&row.iter().map(|&v| v as f64).collect::<Vec<_>>());
        assert_eq!(
            &got[b * cols..(b + 1) * cols],
            want.as_slice(),
            "perm of row {b}, {ctx}"
        );
        for (i, &j) in want.iter().enumerate() {
            let (g, w) = (s[b * cols + i], row[j as usize]);
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "sorted[{b}, {i}] = {g:e}, want {w:e}, {ctx}"
            );
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
