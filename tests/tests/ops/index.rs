//! gather / index_select / scatter_add / index_add vs the reference. Gather and select
//! are exact; scatter sums are exact here too (integer-valued f32 sums < 2^24).

use lapis_ops::reference as r;
use lapis_ops::Tensor;
use lapis_tests::*;
use proptest::prelude::*;

fn indices(n: usize, len: usize, seed: u64) -> Vec<u32> {
    (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed * 7) % len as u64) as u32)
        .collect()
}

proptest! {
    #![proptest_config(cases(32))]

    #[test]
    fn gather_is_exact(x in any_tensor(3, 10_000, -1.0, 1.0), axis_pick in 0usize..3, k in 1usize..40, seed in any::<u32>()) {
        let dev = device();
        let axis = axis_pick % x.shape.len();
        let mut ishape = x.shape.clone();
        ishape[axis] = k;
        let n: usize = ishape.iter().product();
        let idx = indices(n, x.shape[axis], seed as u64);
        let it = Tensor::from_slice(&dev, &ishape, &idx).unwrap();
        let got = lapis_ops::gather(&upload(&dev, &x), axis, &it).unwrap();
        check("gather", &got, &r::gather(&x, axis, &ishape, &idx), 0.0, 0.0)?;
    }

    #[test]
    fn index_select_is_exact(x in any_tensor(3, 10_000, -1.0, 1.0), axis_pick in 0usize..3, k in 1usize..40, seed in any::<u32>()) {
        let dev = device();
        let axis = axis_pick % x.shape.len();
        let idx = indices(k, x.shape[axis], seed as u64);
        let it = Tensor::from_slice(&dev, &[k], &idx).unwrap();
        let got = lapis_ops::index_select(&upload(&dev, &x), axis, &it).unwrap();
        check("index_select", &got, &r::index_select(&x, axis, &idx), 0.0, 0.0)?;
    }

    #[test]
    fn scatter_add_is_exact(base_shape in shape(3, 5_000), axis_pick in 0usize..3, k in 1usize..40, seed in any::<u32>()) {
        let dev = device();
        let axis = axis_pick % base_shape.len();
        let nb: usize = base_shape.iter().product();
        let base = r::RefTensor::new(&base_shape, (0..nb).map(|i| (i % 13) as f64).collect());
        let mut ishape = base_shape.clone();
        ishape[axis] = k;
        let n: usize = ishape.iter().product();
        let idx = indices(n, base_shape[axis], seed as u64);
        let src = r::RefTensor::new(&ishape, (0..n).map(|i| (i % 7) as f64 - 3.0).collect());
        let it = Tensor::from_slice(&dev, &ishape, &idx).unwrap();
        let got = lapis_ops::scatter_add(&upload(&dev, &base), axis, &it, &upload(&dev, &src)).unwrap();
        check("scatter_add", &got, &r::scatter_add(&base, axis, &ishape, &idx, &src), 0.0, 0.0)?;
    }

    /// index_add (the adjoint of index_select) with repeated indices: sums are exact.
    #[test]
    fn index_add_is_exact(x_shape in shape(3, 5_000), axis_pick in 0usize..3, k in 1usize..40, seed in any::<u32>()) {
        let dev = device();
        let axis = axis_pick % x_shape.len();
        let len = x_shape[axis];
        let idx = indices(k, len, seed as u64);
        let mut sshape = x_shape.clone();
        sshape[axis] = k;
        let n: usize = sshape.iter().product();
        let src = r::RefTensor::new(&sshape, (0..n).map(|i| (i % 5) as f64 - 2.0).collect());
        let want = r::index_add(&src, axis, &idx, len);
        let it = Tensor::from_slice(&dev, &[k], &idx).unwrap();
        let got = lapis_ops::index_add(&upload(&dev, &src), axis, &it, len).unwrap();
        check("index_add", &got, &want, 0.0, 0.0)?;
    }
}
