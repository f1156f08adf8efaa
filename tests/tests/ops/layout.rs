//! permute / transpose / reshape / slice / concat / broadcast_to vs the reference: exact
//! (pure data movement, so any difference is a bug).

use lapis_ops::reference as r;
use lapis_tests::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(cases(32))]

    #[test]
    fn permute_is_exact(x in any_tensor(4, 20_000, -1.0, 1.0), seed in any::<u64>()) {
        let dev = device();
        let rank = x.shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        // Fisher-Yates from the seed.
        let mut s = seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let got = lapis_ops::permute(&upload(&dev, &x), &perm).unwrap();
        check("permute", &got, &r::permute(&x, &perm), 0.0, 0.0)?;
        let d0 = (seed as usize) % rank;
        let d1 = (seed as usize / 7) % rank;
        let got = lapis_ops::transpose(&upload(&dev, &x), d0, d1).unwrap();
        check("transpose", &got, &r::transpose(&x, d0, d1), 0.0, 0.0)?;
    }

    #[test]
    fn reshape_keeps_data(x in any_tensor(4, 20_000, -1.0, 1.0)) {
        let dev = device();
        let n = x.data.len();
        let got = upload(&dev, &x).reshape(&[n]).unwrap();
        check("reshape", &got, &r::reshape(&x, &[n]), 0.0, 0.0)?;
    }

    #[test]
    fn slice_is_exact(x in any_tensor(4, 20_000, -1.0, 1.0), axis_pick in 0usize..4, a in 0usize..1000, b in 0usize..1000) {
        let dev = device();
        let axis = axis_pick % x.shape.len();
        let len = x.shape[axis];
        let (s, e) = { let (s, e) = (a % len, b % len); (s.min(e), s.max(e) + 1) };
        let got = lapis_ops::slice(&upload(&dev, &x), axis, s, e).unwrap();
        check("slice", &got, &r::slice(&x, axis, s, e), 0.0, 0.0)?;
    }

    #[test]
    fn concat_is_exact(base in shape(4, 5_000), axis_pick in 0usize..4, extra in prop::collection::vec(1usize..=40, 1..=3)) {
        let dev = device();
        let axis = axis_pick % base.len();
        let parts: Vec<r::RefTensor> = extra.iter().enumerate().map(|(j, &len)| {
            let mut s = base.clone();
            s[axis] = len;
            let n: usize = s.iter().product();
            r::RefTensor::new(&s, (0..n).map(|i| (i + 1000 * j) as f64).collect())
        }).collect();
        let dev_parts: Vec<lapis_ops::Tensor> = parts.iter().map(|p| upload(&dev, p)).collect();
        let got = lapis_ops::concat(&dev_parts.iter().collect::<Vec<_>>(), axis).unwrap();
        check("concat", &got, &r::concat(&parts.iter().collect::<Vec<_>>(), axis), 0.0, 0.0)?;
    }

    #[test]
    fn broadcast_to_is_exact(x in any_tensor(3, 2_000, -1.0, 1.0), ones in prop::collection::vec(any::<bool>(), 3), lead in 1usize..=3) {
        let dev = device();
        // Set some axes of x to 1, then broadcast back up (plus a new leading axis).
        let small_shape: Vec<usize> = x.shape.iter().zip(&ones).map(|(&d, &o)| if o { 1 } else { d }).collect();
        let mut small = x.clone();
        for (d, &len) in small_shape.iter().enumerate() {
            small = r::slice(&small, d, 0, len);
        }
        let mut target = vec![lead];
        target.extend(&x.shape);
        let got = lapis_ops::broadcast_to(&upload(&dev, &small), &target).unwrap();
        check("broadcast_to", &got, &r::broadcast_to(&small, &target), 0.0, 0.0)?;
    }
}
