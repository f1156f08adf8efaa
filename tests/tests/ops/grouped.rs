//! grouped_linear (SoftMoE's sparse expert layer) and its backward vs the f64 reference on
//! random shapes, groups and masks. Every term is bounded by 1 in magnitude (inputs in
//! [−1, 1]), so an f32 sum of n terms is within the worst-case rounding bound n·2⁻²⁴ of
//! the exact value: that is each check's absolute tolerance (n = din + 1 for y, dout for
//! x̄, the group's row count ≤ m for W̄ and b̄), with rtol 1e-6 on top.

use lapis_ops::reference as r;
use lapis_ops::Tensor;
use lapis_tests::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn grouped_linear_matches_reference(
        m in 1usize..300, din in 1usize..64, dout in 1usize..64, e in 1usize..9,
        seed in any::<u64>(), drop in 0.0f64..0.6,
    ) {
        let dev = device();
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 33) as f64 / (1u64 << 31) as f64 };
        let group: Vec<u32> = (0..m).map(|_| (next() * e as f64) as u32 % e as u32).collect();
        let mask: Vec<f64> = (0..m).map(|_| if next() < drop { 0.0 } else { 1.0 }).collect();
        let x: Vec<f64> = (0..m * din).map(|_| (next() * 2.0 - 1.0) as f32 as f64).collect();
        let w: Vec<f64> = (0..e * din * dout).map(|_| (next() * 2.0 - 1.0) as f32 as f64).collect();
        let b: Vec<f64> = (0..e * dout).map(|_| (next() * 2.0 - 1.0) as f32 as f64).collect();
        let gy: Vec<f64> = (0..m * dout).map(|_| (next() * 2.0 - 1.0) as f32 as f64).collect();
        let up = |shape: &[usize], v: &[f64]| upload(&dev, &r::RefTensor::new(shape, v.to_vec()));
        let gt = Tensor::from_slice(&dev, &[m], &group).unwrap();
        let mt = up(&[m], &mask);
        let (xt, wt, bt) = (up(&[m, din], &x), up(&[e, din, dout], &w), up(&[e, dout], &b));
        let y = lapis_ops::grouped_linear(&xt, &wt, &bt, &gt, &mt).unwrap();
        let want = r::RefTensor::new(&[m, dout], r::grouped_linear(&x, &w, &b, &group, &mask, din, dout));
        let bound = |n: usize| n as f64 * f64::powi(2.0, -24);
        check("grouped_linear", &y, &want, 1e-6, bound(din + 1))?;
        let order = lapis_ops::group_order(&gt, &mt, e).unwrap();
        let g = lapis_ops::grouped_linear_backward(&up(&[m, dout], &gy), &xt, &wt, &gt, &mt, &order).unwrap();
        let (gx, gw, gb) = r::grouped_linear_backward(&gy, &x, &w, &group, &mask, din, dout, e);
        check("grouped_linear x̄", &g.x, &r::RefTensor::new(&[m, din], gx), 1e-6, bound(dout))?;
        check("grouped_linear W̄", &g.w, &r::RefTensor::new(&[e, din, dout], gw), 1e-6, bound(m))?;
        check("grouped_linear b̄", &g.b, &r::RefTensor::new(&[e, dout], gb), 1e-6, bound(m))?;
    }
}

/// Bad routing is refused before launch, naming the argument.
#[test]
fn grouped_linear_rejects_bad_shapes() {
    let dev = device();
    let x = Tensor::from_slice(&dev, &[2, 3], &[0f32; 6]).unwrap();
    let w = Tensor::from_slice(&dev, &[2, 3, 4], &[0f32; 24]).unwrap();
    let b = Tensor::from_slice(&dev, &[2, 4], &[0f32; 8]).unwrap();
    let g = Tensor::from_slice(&dev, &[3], &[0u32; 3]).unwrap();
    let m = Tensor::from_slice(&dev, &[3], &[1f32; 3]).unwrap();
    let e = lapis_ops::grouped_linear(&x, &w, &b, &g, &m).unwrap_err();
    assert!(e.to_string().contains("grouped_linear"), "{e}");
    let bad_b = Tensor::from_slice(&dev, &[3, 4], &[0f32; 12]).unwrap();
    assert!(lapis_ops::grouped_linear(&x, &w, &bad_b, &g, &m).is_err());
    assert!(lapis_ops::group_order(&g, &m, 0).is_err());
}
