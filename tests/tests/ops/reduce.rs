//! Reductions (cubek-reduce) vs `reference::{reduce, reduce_all, argmax}`.

use lapis_ops::reference as r;
use lapis_ops::ReduceOp;
use lapis_tests::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(cases(24))]

    /// Sum of `n` f32 terms: |error| ≲ n·ε·Σ|x| in the worst order, far less with the tree
    /// orders cubek uses. With |x| < 10 and n ≤ 20 000 we allow 1e-5·n^{1/2}·max|Σ| + 1e-4:
    /// the atol covers cancellation (Σ near 0 while Σ|x| is large). Max/min are exact.
    #[test]
    fn reduce_axis_matches_reference(x in any_tensor(4, 20_000, -10.0, 10.0), axis_pick in 0usize..4) {
        let dev = device();
        let axis = axis_pick % x.shape.len();
        let t = upload(&dev, &x);
        let n = x.shape[axis] as f64;
        for op in ReduceOp::ALL {
            let got = lapis_ops::reduce(op, &t, axis).unwrap();
            let (rtol, atol) = match op {
                ReduceOp::Sum => (1e-5, 1e-5 * 10.0 * n),
                ReduceOp::Mean => (1e-5, 1e-5 * 10.0),
                ReduceOp::Max | ReduceOp::Min => (0.0, 0.0),
            };
            check(op.name(), &got, &r::reduce(op, &x, axis), rtol, atol)?;
        }
    }

    #[test]
    fn reduce_all_matches_reference(x in any_tensor(3, 50_000, -10.0, 10.0)) {
        let dev = device();
        let t = upload(&dev, &x);
        let n = x.data.len() as f64;
        for op in ReduceOp::ALL {
            let got = lapis_ops::reduce_all(op, &t).unwrap();
            let (rtol, atol) = match op {
                ReduceOp::Sum => (1e-5, 1e-5 * 10.0 * n.sqrt() * 10.0),
                ReduceOp::Mean => (1e-5, 1e-4),
                _ => (0.0, 0.0),
            };
            check(op.name(), &got, &r::reduce_all(op, &x), rtol, atol)?;
        }
    }

    /// Argmax is exact. Values are distinct multiples of 1/8 shuffled by the seed, so
    /// there are no ties (tie order is cubek's, not specified here).
    #[test]
    fn argmax_matches_reference(shape in shape(3, 10_000), axis_pick in 0usize..3, seed in 1u64..10_000) {
        let dev = device();
        let axis = axis_pick % shape.len();
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n).map(|i| (((i as u64).wrapping_mul(2654435761).wrapping_add(seed)) % 1_000_003) as f64 / 8.0).collect();
        let x = r::RefTensor::new(&shape, data);
        let got = lapis_ops::argmax(&upload(&dev, &x), axis).unwrap();
        let (want_shape, want) = r::argmax(&x, axis);
        prop_assert_eq!(got.shape(), want_shape.as_slice());
        prop_assert_eq!(got.to_vec::<u32>().unwrap(), want);
    }
}
