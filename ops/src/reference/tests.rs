//! Hand-checkable unit tests of the references: each expected value is derived by
//! hand in the comment next to it.

use super::*;
use crate::kinds::{BinaryOp, ReduceOp, UnaryOp};

fn t(shape: &[usize], data: &[f64]) -> RefTensor {
    RefTensor::new(shape, data.to_vec())
}

/// Asserts element-wise closeness (rtol = atol = 1e-12) and equal shapes.
fn assert_tensor(got: &RefTensor, want_shape: &[usize], want: &[f64]) {
    assert_eq!(got.shape, want_shape, "shape");
    if let Err(msg) = assert_close(&got.data, want, 1e-12, 1e-12) {
        panic!("{msg}\n got  {:?}\n want {:?}", got.data, want);
    }
}

// ---------------------------------------------------------------- tensor & shapes

#[test]
fn tensor_basics() {
    // shape [2, 3]: strides [3, 1]; x[1, 2] is flat 1·3 + 2 = 5.
    let x = t(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(x.numel(), 6);
    assert_eq!(x.strides(), vec![3, 1]);
    assert_eq!(x.get(&[1, 2]), 5.0);
    assert_eq!(x.get(&[0, 1]), 1.0);
    // A scalar has one element and no strides.
    let s = t(&[], &[7.0]);
    assert_eq!(s.numel(), 1);
    assert_eq!(s.strides(), Vec::<usize>::new());
    assert_eq!(s.get(&[]), 7.0);
    // A zero dim makes the tensor empty.
    assert_eq!(t(&[2, 0, 3], &[]).numel(), 0);
    // from_f32 widens exactly: 0.1f32 is not 0.1f64.
    let f = RefTensor::from_f32(&[2], &[0.1, -2.5]);
    assert_eq!(f.data, vec![f64::from(0.1f32), -2.5]);
}

#[test]
#[should_panic(expected = "has 6 elements but data has 5")]
fn new_rejects_wrong_length() {
    let _ = RefTensor::new(&[2, 3], vec![0.0; 5]);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn get_rejects_out_of_bounds() {
    let _ = t(&[2, 3], &[0.0; 6]).get(&[0, 3]);
}

#[test]
fn strides() {
    // [2, 3, 4]: last stride 1, then 4, then 3·4 = 12.
    assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
    assert_eq!(contiguous_strides(&[5]), vec![1]);
    assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
    // A zero dim zeroes the strides of the dims before it.
    assert_eq!(contiguous_strides(&[2, 0, 3]), vec![0, 3, 1]);
}

#[test]
fn broadcast_shapes() {
    // [3, 1] vs [4] → align right: (3, -) and (1, 4) → [3, 4].
    assert_eq!(broadcast_shape(&[3, 1], &[4]), Some(vec![3, 4]));
    assert_eq!(broadcast_shape(&[4], &[3, 1]), Some(vec![3, 4]));
    // [2, 1, 5] vs [3, 1] → [2, 3, 5].
    assert_eq!(broadcast_shape(&[2, 1, 5], &[3, 1]), Some(vec![2, 3, 5]));
    // Scalars broadcast to anything.
    assert_eq!(broadcast_shape(&[], &[2, 3]), Some(vec![2, 3]));
    assert_eq!(broadcast_shape(&[], &[]), Some(vec![]));
    // Size-1 against size-1 stays 1; 1 against 0 gives 0 (numpy).
    assert_eq!(broadcast_shape(&[1, 1], &[1]), Some(vec![1, 1]));
    assert_eq!(broadcast_shape(&[1], &[0]), Some(vec![0]));
    assert_eq!(broadcast_shape(&[0], &[1]), Some(vec![0]));
    // Incompatible: 3 vs 4, 2 vs 3 in the middle, 0 vs 2.
    assert_eq!(broadcast_shape(&[3], &[4]), None);
    assert_eq!(broadcast_shape(&[2, 5], &[3, 5]), None);
    assert_eq!(broadcast_shape(&[0], &[2]), None);
}

#[test]
fn fill_and_arange() {
    assert_tensor(&fill(&[2, 2], 1.5), &[2, 2], &[1.5; 4]);
    assert_tensor(&fill(&[0], 1.5), &[0], &[]);
    assert_tensor(&fill(&[], 3.0), &[], &[3.0]);
    // start 1, step 0.5: 1, 1.5, 2, 2.5.
    assert_tensor(&arange(1.0, 0.5, 4), &[4], &[1.0, 1.5, 2.0, 2.5]);
    assert_tensor(&arange(3.0, -1.0, 3), &[3], &[3.0, 2.0, 1.0]);
    assert_tensor(&arange(0.0, 1.0, 0), &[0], &[]);
}

// ---------------------------------------------------------------- elementwise

#[test]
fn unary_ops() {
    let x = t(&[3], &[-1.0, 0.0, 4.0]);
    let u = |op| unary(op, &x);
    assert_tensor(&u(UnaryOp::Neg), &[3], &[1.0, 0.0, -4.0]);
    assert_tensor(&u(UnaryOp::Abs), &[3], &[1.0, 0.0, 4.0]);
    assert_tensor(&u(UnaryOp::Relu), &[3], &[0.0, 0.0, 4.0]);
    assert_tensor(&u(UnaryOp::Sign), &[3], &[-1.0, 0.0, 1.0]);
    // √-1 = NaN, √0 = 0, √4 = 2.
    assert_tensor(&u(UnaryOp::Sqrt), &[3], &[f64::NAN, 0.0, 2.0]);
    // ln -1 = NaN, ln 0 = -∞, ln 4 = 2 ln 2.
    let ln4 = 2.0 * std::f64::consts::LN_2;
    assert_tensor(&u(UnaryOp::Log), &[3], &[f64::NAN, f64::NEG_INFINITY, ln4]);
    // e^0 = 1, e^ln 2 = 2.
    let e = unary(UnaryOp::Exp, &t(&[2], &[0.0, std::f64::consts::LN_2]));
    assert_tensor(&e, &[2], &[1.0, 2.0]);
    // tanh(ln 2) = (2 - 1/2) / (2 + 1/2) = 3/5; tanh is odd.
    let th = unary(UnaryOp::Tanh, &t(&[2], &[std::f64::consts::LN_2, 0.0]));
    assert_tensor(&th, &[2], &[0.6, 0.0]);
    // sigmoid(0) = 1/2; sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4; sigmoid(-ln 3) = 1/4.
    let ln3 = 3f64.ln();
    let sg = unary(UnaryOp::Sigmoid, &t(&[3], &[0.0, ln3, -ln3]));
    assert_tensor(&sg, &[3], &[0.5, 0.75, 0.25]);
    // Saturation does not produce NaN.
    let sat = unary(UnaryOp::Sigmoid, &t(&[2], &[-1000.0, 1000.0]));
    assert_tensor(&sat, &[2], &[0.0, 1.0]);
}

#[test]
fn gelu() {
    // gelu(0) = 0; gelu(x) - gelu(-x) = x (since tanh is odd).
    let x = 1.3;
    let g = unary(UnaryOp::Gelu, &t(&[3], &[0.0, x, -x]));
    assert_eq!(g.data[0], 0.0);
    assert!((g.data[1] - g.data[2] - x).abs() < 1e-15);
    // gelu(1) = 0.5 (1 + tanh(√(2/π) · 1.044715)); √(2/π) = 0.79788456080,
    // times 1.044715 = 0.83356196894, tanh of it 0.68238398122, so gelu(1) ≈ 0.84119199.
    let g1 = unary(UnaryOp::Gelu, &t(&[1], &[1.0])).data[0];
    assert!((g1 - 0.841_191_99).abs() < 1e-8, "gelu(1) = {g1}");
    // Large |x|: gelu(x) → x for x → +∞ and → 0 for x → -∞.
    let big = unary(UnaryOp::Gelu, &t(&[2], &[20.0, -20.0]));
    assert_tensor(&big, &[2], &[20.0, 0.0]);
}

#[test]
fn sign_and_relu_edges() {
    let x = t(&[4], &[-0.0, 0.0, f64::NAN, f64::NEG_INFINITY]);
    let s = unary(UnaryOp::Sign, &x);
    assert_eq!(s.data[0], 0.0);
    assert_eq!(s.data[1], 0.0);
    assert!(s.data[2].is_nan());
    assert_eq!(s.data[3], -1.0);
    // relu keeps NaN, maps -∞ to 0.
    let r = unary(UnaryOp::Relu, &x);
    assert!(r.data[2].is_nan());
    assert_eq!(r.data[3], 0.0);
    // Shapes (including rank 0 and empty) are preserved.
    assert_tensor(&unary(UnaryOp::Neg, &t(&[], &[2.0])), &[], &[-2.0]);
    assert_tensor(&unary(UnaryOp::Neg, &t(&[0, 3], &[])), &[0, 3], &[]);
}

#[test]
fn binary_ops_same_shape() {
    let a = t(&[2], &[6.0, -2.0]);
    let b = t(&[2], &[3.0, 4.0]);
    let z = |op| binary(op, &a, &b);
    assert_tensor(&z(BinaryOp::Add), &[2], &[9.0, 2.0]);
    assert_tensor(&z(BinaryOp::Sub), &[2], &[3.0, -6.0]);
    assert_tensor(&z(BinaryOp::Mul), &[2], &[18.0, -8.0]);
    assert_tensor(&z(BinaryOp::Div), &[2], &[2.0, -0.5]);
    assert_tensor(&z(BinaryOp::Max), &[2], &[6.0, 4.0]);
    assert_tensor(&z(BinaryOp::Min), &[2], &[3.0, -2.0]);
    // 6^3 = 216, (-2)^4 = 16.
    assert_tensor(&z(BinaryOp::Pow), &[2], &[216.0, 16.0]);
}

#[test]
fn binary_ieee_edges() {
    // 1/0 = ∞, -1/0 = -∞, 0/0 = NaN; (-8)^(1/3) = NaN with powf; 4^0.5 = 2.
    let d = binary(
        BinaryOp::Div,
        &t(&[3], &[1.0, -1.0, 0.0]),
        &t(&[3], &[0.0, 0.0, 0.0]),
    );
    assert_tensor(&d, &[3], &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
    let p = binary(
        BinaryOp::Pow,
        &t(&[2], &[-8.0, 4.0]),
        &t(&[2], &[1.0 / 3.0, 0.5]),
    );
    assert_tensor(&p, &[2], &[f64::NAN, 2.0]);
    // max/min propagate NaN from either side.
    let a = t(&[2], &[f64::NAN, 1.0]);
    let b = t(&[2], &[1.0, f64::NAN]);
    assert_tensor(&binary(BinaryOp::Max, &a, &b), &[2], &[f64::NAN; 2]);
    assert_tensor(&binary(BinaryOp::Min, &a, &b), &[2], &[f64::NAN; 2]);
}

#[test]
fn binary_broadcasts() {
    // [2, 1] + [3]: z[i, j] = a[i] + b[j] → [[10+1, 10+2, 10+3], [20+1, 20+2, 20+3]].
    let a = t(&[2, 1], &[10.0, 20.0]);
    let b = t(&[3], &[1.0, 2.0, 3.0]);
    let z = binary(BinaryOp::Add, &a, &b);
    assert_tensor(&z, &[2, 3], &[11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
    // Operand order matters for sub: b - a = [[1-10, 2-10, 3-10], [1-20, ...]].
    let z = binary(BinaryOp::Sub, &b, &a);
    assert_tensor(&z, &[2, 3], &[-9.0, -8.0, -7.0, -19.0, -18.0, -17.0]);
    // Scalar times a [2, 2].
    let z = binary(
        BinaryOp::Mul,
        &t(&[], &[2.0]),
        &t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]),
    );
    assert_tensor(&z, &[2, 2], &[2.0, 4.0, 6.0, 8.0]);
    // [1, 3] with [2, 1] → [2, 3]: z[i, j] = a[j] / b[i].
    let z = binary(
        BinaryOp::Div,
        &t(&[1, 3], &[2.0, 4.0, 8.0]),
        &t(&[2, 1], &[1.0, 2.0]),
    );
    assert_tensor(&z, &[2, 3], &[2.0, 4.0, 8.0, 1.0, 2.0, 4.0]);
    // Broadcasting against an empty dim gives an empty result.
    let z = binary(BinaryOp::Add, &t(&[0, 1], &[]), &t(&[3], &[1.0, 2.0, 3.0]));
    assert_tensor(&z, &[0, 3], &[]);
}

#[test]
#[should_panic(expected = "do not broadcast")]
fn binary_rejects_incompatible_shapes() {
    let _ = binary(BinaryOp::Add, &t(&[3], &[0.0; 3]), &t(&[4], &[0.0; 4]));
}

// ---------------------------------------------------------------- reductions

#[test]
fn reduce_along_axes() {
    // x = [[1, 2, 3], [4, 5, 6]]
    let x = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // axis 0: columns (1,4), (2,5), (3,6).
    assert_tensor(&reduce(ReduceOp::Sum, &x, 0), &[1, 3], &[5.0, 7.0, 9.0]);
    assert_tensor(&reduce(ReduceOp::Mean, &x, 0), &[1, 3], &[2.5, 3.5, 4.5]);
    assert_tensor(&reduce(ReduceOp::Max, &x, 0), &[1, 3], &[4.0, 5.0, 6.0]);
    assert_tensor(&reduce(ReduceOp::Min, &x, 0), &[1, 3], &[1.0, 2.0, 3.0]);
    // axis 1: rows sum 6 and 15, means 2 and 5.
    assert_tensor(&reduce(ReduceOp::Sum, &x, 1), &[2, 1], &[6.0, 15.0]);
    assert_tensor(&reduce(ReduceOp::Mean, &x, 1), &[2, 1], &[2.0, 5.0]);
    assert_tensor(&reduce(ReduceOp::Max, &x, 1), &[2, 1], &[3.0, 6.0]);
    assert_tensor(&reduce(ReduceOp::Min, &x, 1), &[2, 1], &[1.0, 4.0]);
}

#[test]
fn reduce_middle_axis_of_rank_3() {
    // x[i, j, k] = 100 i + 10 j + k, shape [2, 3, 2]. Sum over j:
    // Σ_j (100 i + 10 j + k) = 300 i + 30 + 3 k → [[30, 33], [330, 333]].
    let data: Vec<f64> = (0..2)
        .flat_map(|i| (0..3).flat_map(move |j| (0..2).map(move |k| (100 * i + 10 * j + k) as f64)))
        .collect();
    let x = t(&[2, 3, 2], &data);
    let s = reduce(ReduceOp::Sum, &x, 1);
    assert_tensor(&s, &[2, 1, 2], &[30.0, 33.0, 330.0, 333.0]);
    // Max over j picks j = 2: 100 i + 20 + k.
    let m = reduce(ReduceOp::Max, &x, 1);
    assert_tensor(&m, &[2, 1, 2], &[20.0, 21.0, 120.0, 121.0]);
}

#[test]
fn reduce_edges() {
    // A size-1 axis is the identity (with the same shape).
    let x = t(&[2, 1], &[3.0, -4.0]);
    for op in ReduceOp::ALL {
        assert_tensor(&reduce(op, &x, 1), &[2, 1], &[3.0, -4.0]);
    }
    // Max/min propagate NaN; sum of an empty axis is 0, mean NaN, max -∞, min +∞.
    let n = t(&[3], &[1.0, f64::NAN, 5.0]);
    assert!(reduce(ReduceOp::Max, &n, 0).data[0].is_nan());
    assert!(reduce(ReduceOp::Min, &n, 0).data[0].is_nan());
    let e = t(&[2, 0], &[]);
    assert_tensor(&reduce(ReduceOp::Sum, &e, 1), &[2, 1], &[0.0, 0.0]);
    assert_tensor(&reduce(ReduceOp::Mean, &e, 1), &[2, 1], &[f64::NAN; 2]);
    let neg_inf = f64::NEG_INFINITY;
    assert_tensor(&reduce(ReduceOp::Max, &e, 1), &[2, 1], &[neg_inf; 2]);
    assert_tensor(&reduce(ReduceOp::Min, &e, 1), &[2, 1], &[f64::INFINITY; 2]);
    // Reducing over the non-empty axis of an empty tensor gives an empty result.
    assert_tensor(&reduce(ReduceOp::Sum, &e, 0), &[1, 0], &[]);
}

#[test]
#[should_panic(expected = "axis 2 is out of range")]
fn reduce_rejects_bad_axis() {
    let _ = reduce(ReduceOp::Sum, &t(&[2, 3], &[0.0; 6]), 2);
}

#[test]
fn reduce_all_ops() {
    // [1, 2, 3, 4, 5, 6]: sum 21, mean 3.5, max 6, min 1.
    let x = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_tensor(&reduce_all(ReduceOp::Sum, &x), &[1], &[21.0]);
    assert_tensor(&reduce_all(ReduceOp::Mean, &x), &[1], &[3.5]);
    assert_tensor(&reduce_all(ReduceOp::Max, &x), &[1], &[6.0]);
    assert_tensor(&reduce_all(ReduceOp::Min, &x), &[1], &[1.0]);
    assert_tensor(&reduce_all(ReduceOp::Sum, &t(&[], &[2.5])), &[1], &[2.5]);
    assert_tensor(&reduce_all(ReduceOp::Sum, &t(&[0], &[])), &[1], &[0.0]);
}

#[test]
fn argmax_first_on_ties() {
    // x = [[1, 3, 3], [7, 0, 7]]: along axis 1, first max at 1 and 0.
    let x = t(&[2, 3], &[1.0, 3.0, 3.0, 7.0, 0.0, 7.0]);
    assert_eq!(argmax(&x, 1), (vec![2, 1], vec![1, 0]));
    // Along axis 0: columns (1,7) → 1, (3,0) → 0, (3,7) → 1.
    assert_eq!(argmax(&x, 0), (vec![1, 3], vec![1, 0, 1]));
    // A NaN counts as the max; the first NaN wins.
    let n = t(&[4], &[1.0, f64::NAN, 9.0, f64::NAN]);
    assert_eq!(argmax(&n, 0), (vec![1], vec![1]));
    // Size-1 axis → index 0; all -∞ → index 0.
    assert_eq!(
        argmax(&t(&[2, 1], &[5.0, 6.0]), 1),
        (vec![2, 1], vec![0, 0])
    );
    let ninf = t(&[2], &[f64::NEG_INFINITY; 2]);
    assert_eq!(argmax(&ninf, 0), (vec![1], vec![0]));
}

#[test]
#[should_panic(expected = "is empty")]
fn argmax_rejects_empty_axis() {
    let _ = argmax(&t(&[2, 0], &[]), 1);
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_2x2() {
    // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]]
    //   = [[1·5 + 2·7, 1·6 + 2·8], [3·5 + 4·7, 3·6 + 4·8]] = [[19, 22], [43, 50]].
    let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = t(&[2, 2], &[5.0, 6.0, 7.0, 8.0]);
    assert_tensor(&matmul(&a, &b), &[2, 2], &[19.0, 22.0, 43.0, 50.0]);
}

#[test]
fn matmul_rectangular() {
    // [1, 3] @ [3, 2]: [1, 2, 3] · columns (1, 0, 1) and (0, 1, 1) = [4, 5].
    let a = t(&[1, 3], &[1.0, 2.0, 3.0]);
    let b = t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_tensor(&matmul(&a, &b), &[1, 2], &[4.0, 5.0]);
    // [2, 1] @ [1, 3] is the outer product of (1, 2) and (3, 4, 5).
    let a = t(&[2, 1], &[1.0, 2.0]);
    let b = t(&[1, 3], &[3.0, 4.0, 5.0]);
    assert_tensor(&matmul(&a, &b), &[2, 3], &[3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
    // k = 0 gives zeros; m = 0 gives an empty result.
    let z = matmul(&t(&[2, 0], &[]), &t(&[0, 3], &[]));
    assert_tensor(&z, &[2, 3], &[0.0; 6]);
    assert_tensor(
        &matmul(&t(&[0, 2], &[]), &t(&[2, 3], &[0.0; 6])),
        &[0, 3],
        &[],
    );
}

#[test]
fn matmul_batched_and_broadcast() {
    // A batch of two 2x2 matrices a[0] = I, a[1] = 2I times the shared rank-2
    // b = [[1, 2], [3, 4]]: c[0] = b, c[1] = 2b.
    let a = t(&[2, 2, 2], &[1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0]);
    let b = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let c = matmul(&a, &b);
    assert_tensor(&c, &[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 8.0]);
    // Rank-2 on the left over a batched right: b @ a[g] = b · (g+1) I.
    let c = matmul(&b, &a);
    assert_tensor(&c, &[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 8.0]);
    // Batch dims [2, 1] and [3] broadcast to [2, 3]; 1x1 matrices so
    // c[i, j] = a[i] · b[j] with a = (1, 2), b = (10, 20, 30).
    let a = t(&[2, 1, 1, 1], &[1.0, 2.0]);
    let b = t(&[3, 1, 1], &[10.0, 20.0, 30.0]);
    let c = matmul(&a, &b);
    assert_tensor(&c, &[2, 3, 1, 1], &[10.0, 20.0, 30.0, 20.0, 40.0, 60.0]);
}

#[test]
#[should_panic(expected = "inner dims differ")]
fn matmul_rejects_inner_mismatch() {
    let _ = matmul(&t(&[2, 3], &[0.0; 6]), &t(&[2, 3], &[0.0; 6]));
}

#[test]
#[should_panic(expected = "do not broadcast")]
fn matmul_rejects_batch_mismatch() {
    let _ = matmul(&t(&[2, 1, 1], &[0.0; 2]), &t(&[3, 1, 1], &[0.0; 3]));
}

// ---------------------------------------------------------------- layout

#[test]
fn transpose_and_permute() {
    // [[1, 2, 3], [4, 5, 6]]ᵀ = [[1, 4], [2, 5], [3, 6]].
    let x = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_tensor(
        &transpose(&x, 0, 1),
        &[3, 2],
        &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0],
    );
    assert_tensor(&transpose(&x, 1, 1), &[2, 3], &x.data);
    // x[i, j, k] = 100 i + 10 j + k on [2, 3, 4]; permute [2, 0, 1] gives shape
    // [4, 2, 3] with y[k, i, j] = x[i, j, k].
    let data: Vec<f64> = (0..24)
        .map(|f| (100 * (f / 12) + 10 * (f / 4 % 3) + f % 4) as f64)
        .collect();
    let x = t(&[2, 3, 4], &data);
    let y = permute(&x, &[2, 0, 1]);
    assert_eq!(y.shape, vec![4, 2, 3]);
    for k in 0..4 {
        for i in 0..2 {
            for j in 0..3 {
                assert_eq!(y.get(&[k, i, j]), x.get(&[i, j, k]));
            }
        }
    }
    // The first few by hand: y[0, 0, :] = x[0, :, 0] = 0, 10, 20; y[0, 1, 0] = 100.
    assert_eq!(&y.data[..4], &[0.0, 10.0, 20.0, 100.0]);
    // Permuting back with the inverse [1, 2, 0] recovers x.
    assert_eq!(permute(&y, &[1, 2, 0]), x);
    // Identity permutation of a rank-0 tensor.
    assert_tensor(&permute(&t(&[], &[1.0]), &[]), &[], &[1.0]);
}

#[test]
#[should_panic(expected = "not a permutation")]
fn permute_rejects_repeated_axis() {
    let _ = permute(&t(&[2, 2], &[0.0; 4]), &[0, 0]);
}

#[test]
fn reshape_keeps_data() {
    let x = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_tensor(&reshape(&x, &[3, 2]), &[3, 2], &x.data);
    assert_tensor(&reshape(&x, &[6, 1, 1]), &[6, 1, 1], &x.data);
    assert_tensor(&reshape(&t(&[1], &[4.0]), &[]), &[], &[4.0]);
}

#[test]
#[should_panic(expected = "cannot reshape")]
fn reshape_rejects_wrong_count() {
    let _ = reshape(&t(&[2, 3], &[0.0; 6]), &[4]);
}

#[test]
fn broadcast_to_shapes() {
    // [3] → [2, 3]: rows repeat.
    let x = t(&[3], &[1.0, 2.0, 3.0]);
    let y = broadcast_to(&x, &[2, 3]);
    assert_tensor(&y, &[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    // [2, 1] → [2, 3]: columns repeat.
    let x = t(&[2, 1], &[1.0, 2.0]);
    assert_tensor(
        &broadcast_to(&x, &[2, 3]),
        &[2, 3],
        &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
    );
    // Scalar → [2]; same shape is the identity; [1] → [0] is empty.
    assert_tensor(&broadcast_to(&t(&[], &[7.0]), &[2]), &[2], &[7.0, 7.0]);
    assert_tensor(&broadcast_to(&x, &[2, 1]), &[2, 1], &[1.0, 2.0]);
    assert_tensor(&broadcast_to(&t(&[1], &[7.0]), &[0]), &[0], &[]);
}

#[test]
#[should_panic(expected = "does not broadcast to")]
fn broadcast_to_rejects_shrinking() {
    // [3] cannot become [1]: broadcasting never shrinks a dim.
    let _ = broadcast_to(&t(&[3], &[0.0; 3]), &[1]);
}

#[test]
#[should_panic(expected = "does not broadcast to")]
fn broadcast_to_rejects_lower_rank() {
    let _ = broadcast_to(&t(&[1, 3], &[0.0; 3]), &[3]);
}

#[test]
fn concat_axes() {
    let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = t(&[2, 1], &[5.0, 6.0]);
    // Along axis 1: rows [1, 2 | 5], [3, 4 | 6].
    assert_tensor(
        &concat(&[&a, &b], 1),
        &[2, 3],
        &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0],
    );
    // Along axis 0: a's rows then c's.
    let c = t(&[1, 2], &[7.0, 8.0]);
    assert_tensor(
        &concat(&[&a, &c], 0),
        &[3, 2],
        &[1.0, 2.0, 3.0, 4.0, 7.0, 8.0],
    );
    // A single input and empty inputs along the axis.
    assert_tensor(&concat(&[&a], 0), &[2, 2], &a.data);
    let e = t(&[2, 0], &[]);
    assert_tensor(&concat(&[&e, &b, &e], 1), &[2, 1], &[5.0, 6.0]);
}

#[test]
#[should_panic(expected = "does not match")]
fn concat_rejects_other_dim_mismatch() {
    let _ = concat(&[&t(&[2, 2], &[0.0; 4]), &t(&[3, 2], &[0.0; 6])], 1);
}

#[test]
fn slice_axes() {
    // x = [[0, 1, 2, 3], [4, 5, 6, 7]]
    let x = t(&[2, 4], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_tensor(&slice(&x, 1, 1, 3), &[2, 2], &[1.0, 2.0, 5.0, 6.0]);
    assert_tensor(&slice(&x, 0, 1, 2), &[1, 4], &[4.0, 5.0, 6.0, 7.0]);
    assert_tensor(&slice(&x, 1, 0, 4), &[2, 4], &x.data);
    assert_tensor(&slice(&x, 1, 2, 2), &[2, 0], &[]);
}

#[test]
#[should_panic(expected = "is invalid")]
fn slice_rejects_past_end() {
    let _ = slice(&t(&[2, 4], &[0.0; 8]), 1, 2, 5);
}

// ---------------------------------------------------------------- softmax

#[test]
fn softmax_values() {
    // softmax([0, ln 3]) = [1, 3] / 4 = [1/4, 3/4].
    let x = t(&[2], &[0.0, 3f64.ln()]);
    assert_tensor(&softmax(&x, 0), &[2], &[0.25, 0.75]);
    // log_softmax = ln of that: [ln 1/4, ln 3/4] = [-ln 4, ln 3 - ln 4].
    let ln4 = 4f64.ln();
    assert_tensor(&log_softmax(&x, 0), &[2], &[-ln4, 3f64.ln() - ln4]);
    // Shift invariance and stability: [1000, 1000 + ln 3] gives the same.
    let big = t(&[2], &[1000.0, 1000.0 + 3f64.ln()]);
    let s = softmax(&big, 0);
    assert!(max_rel_err(&s.data, &[0.25, 0.75], 0.0) < 1e-12);
    let ls = log_softmax(&big, 0);
    assert!(max_rel_err(&ls.data, &[-ln4, 3f64.ln() - ln4], 0.0) < 1e-12);
}

#[test]
fn softmax_along_each_axis() {
    // x = [[0, 0], [0, ln 3]]. Axis 1 (rows): [1/2, 1/2], [1/4, 3/4].
    // Axis 0 (columns): (0, 0) → [1/2, 1/2]; (0, ln 3) → [1/4, 3/4].
    let x = t(&[2, 2], &[0.0, 0.0, 0.0, 3f64.ln()]);
    assert_tensor(&softmax(&x, 1), &[2, 2], &[0.5, 0.5, 0.25, 0.75]);
    assert_tensor(&softmax(&x, 0), &[2, 2], &[0.5, 0.25, 0.5, 0.75]);
    // A size-1 axis: softmax 1, log_softmax 0.
    let y = t(&[3, 1], &[-5.0, 0.0, 5.0]);
    assert_tensor(&softmax(&y, 1), &[3, 1], &[1.0; 3]);
    assert_tensor(&log_softmax(&y, 1), &[3, 1], &[0.0; 3]);
    // -∞ entries get probability 0 (log-prob -∞); empty axis gives empty output.
    let z = t(&[2], &[f64::NEG_INFINITY, 0.0]);
    assert_tensor(&softmax(&z, 0), &[2], &[0.0, 1.0]);
    assert_tensor(&log_softmax(&z, 0), &[2], &[f64::NEG_INFINITY, 0.0]);
    assert_tensor(&softmax(&t(&[2, 0], &[]), 1), &[2, 0], &[]);
}

// ---------------------------------------------------------------- indexing

#[test]
fn gather_torch_doc_example() {
    // torch docs: t = [[1, 2], [3, 4]]; gather(t, 1, [[0, 0], [1, 0]]) = [[1, 1], [4, 3]].
    let x = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let y = gather(&x, 1, &[2, 2], &[0, 0, 1, 0]);
    assert_tensor(&y, &[2, 2], &[1.0, 1.0, 4.0, 3.0]);
    // Along axis 0 with idx [[1, 0]]: y[0, j] = x[idx[0, j], j] = [x[1,0], x[0,1]] = [3, 2].
    let y = gather(&x, 0, &[1, 2], &[1, 0]);
    assert_tensor(&y, &[1, 2], &[3.0, 2.0]);
    // Index smaller than x outside the axis and longer along it:
    // idx [[1, 1, 0]] of shape [1, 3] along axis 1 picks row 0 entries 2, 2, 1.
    let y = gather(&x, 1, &[1, 3], &[1, 1, 0]);
    assert_tensor(&y, &[1, 3], &[2.0, 2.0, 1.0]);
    // Empty index → empty output.
    assert_tensor(&gather(&x, 1, &[2, 0], &[]), &[2, 0], &[]);
}

#[test]
#[should_panic(expected = "out of range for axis 1")]
fn gather_rejects_out_of_range_index() {
    let _ = gather(&t(&[2, 2], &[0.0; 4]), 1, &[1, 1], &[2]);
}

#[test]
#[should_panic(expected = "no larger dims")]
fn gather_rejects_index_larger_than_x() {
    let _ = gather(&t(&[2, 2], &[0.0; 4]), 1, &[3, 1], &[0, 0, 0]);
}

#[test]
fn index_select_rows_and_columns() {
    // x = [[1, 2, 3], [4, 5, 6]]
    let x = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // Columns 2, 0, 2: [[3, 1, 3], [6, 4, 6]].
    let y = index_select(&x, 1, &[2, 0, 2]);
    assert_tensor(&y, &[2, 3], &[3.0, 1.0, 3.0, 6.0, 4.0, 6.0]);
    // Rows 1, 1: [[4, 5, 6], [4, 5, 6]].
    let y = index_select(&x, 0, &[1, 1]);
    assert_tensor(&y, &[2, 3], &[4.0, 5.0, 6.0, 4.0, 5.0, 6.0]);
    // No indices → zero-length axis.
    assert_tensor(&index_select(&x, 0, &[]), &[0, 3], &[]);
}

#[test]
#[should_panic(expected = "out of range")]
fn index_select_rejects_out_of_range_index() {
    let _ = index_select(&t(&[2, 3], &[0.0; 6]), 0, &[2]);
}

#[test]
fn scatter_add_accumulates_repeats() {
    // 1-d: base [0, 0, 0], idx [0, 2, 0, 2, 2], src [1, 2, 3, 4, 5]:
    // out[0] = 1 + 3 = 4, out[1] = 0, out[2] = 2 + 4 + 5 = 11.
    let base = t(&[3], &[0.0; 3]);
    let src = t(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    let y = scatter_add(&base, 0, &[5], &[0, 2, 0, 2, 2], &src);
    assert_tensor(&y, &[3], &[4.0, 0.0, 11.0]);
    // 2-d along axis 1 onto a non-zero base [[10, 20], [30, 40]]:
    // idx [[1, 1], [0, 1]], src [[1, 2], [3, 4]]
    // row 0: out[0, 1] += 1 + 2 → [10, 23]; row 1: out[1, 0] += 3, out[1, 1] += 4 → [33, 44].
    let base = t(&[2, 2], &[10.0, 20.0, 30.0, 40.0]);
    let src = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let y = scatter_add(&base, 1, &[2, 2], &[1, 1, 0, 1], &src);
    assert_tensor(&y, &[2, 2], &[10.0, 23.0, 33.0, 44.0]);
    // Along axis 0 with a [1, 2] index: out[idx[0, j], j] += src[0, j];
    // idx [[1, 0]], src [[5, 6]] → out[1, 0] += 5, out[0, 1] += 6 → [[10, 26], [35, 40]].
    let y = scatter_add(&base, 0, &[1, 2], &[1, 0], &t(&[1, 2], &[5.0, 6.0]));
    assert_tensor(&y, &[2, 2], &[10.0, 26.0, 35.0, 40.0]);
    // An empty index leaves the base unchanged.
    let y = scatter_add(&base, 1, &[2, 0], &[], &t(&[2, 0], &[]));
    assert_eq!(y, base);
}

#[test]
fn scatter_add_reads_only_the_indexed_part_of_a_larger_src() {
    // torch allows src larger than idx: only src[p] for p in idx's shape is read.
    // idx [[0]] of shape [1, 1] along axis 1, src [[7, 100], [100, 100]] → out[0, 0] += 7.
    let base = t(&[2, 2], &[0.0; 4]);
    let src = t(&[2, 2], &[7.0, 100.0, 100.0, 100.0]);
    let y = scatter_add(&base, 1, &[1, 1], &[0], &src);
    assert_tensor(&y, &[2, 2], &[7.0, 0.0, 0.0, 0.0]);
}

#[test]
#[should_panic(expected = "out of range")]
fn scatter_add_rejects_out_of_range_index() {
    let _ = scatter_add(&t(&[2], &[0.0; 2]), 0, &[1], &[2], &t(&[1], &[1.0]));
}

#[test]
#[should_panic(expected = "does not fit in src")]
fn scatter_add_rejects_small_src() {
    let _ = scatter_add(&t(&[2], &[0.0; 2]), 0, &[2], &[0, 1], &t(&[1], &[1.0]));
}

// ---------------------------------------------------------------- comparison

#[test]
fn assert_close_tolerances() {
    // |1.001 - 1| = 1e-3 <= 0 + 1e-2 · 1 passes; with rtol 1e-4 it fails.
    assert!(assert_close(&[1.001], &[1.0], 1e-2, 0.0).is_ok());
    let err = assert_close(&[0.0, 1.001], &[0.0, 1.0], 1e-4, 0.0).unwrap_err();
    assert!(err.contains("flat index 1"), "{err}");
    assert!(err.contains("got 1.001"), "{err}");
    assert!(err.contains("want 1.0"), "{err}");
    assert!(err.contains("1 of 2 elements"), "{err}");
    // atol covers values near 0: |1e-9 - 0| <= 1e-8.
    assert!(assert_close(&[1e-9], &[0.0], 0.0, 1e-8).is_ok());
    assert!(assert_close(&[1e-7], &[0.0], 0.0, 1e-8).is_err());
    // NaN == NaN, equal infinities equal, ±0 equal.
    let special = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
    let special_want = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0];
    assert!(assert_close(&special, &special_want, 0.0, 0.0).is_ok());
    // NaN against a number, a number against NaN, opposite infinities, ∞ against finite.
    assert!(assert_close(&[f64::NAN], &[1.0], 1.0, 1.0).is_err());
    assert!(assert_close(&[1.0], &[f64::NAN], 1.0, 1.0).is_err());
    assert!(assert_close(&[f64::INFINITY], &[f64::NEG_INFINITY], 1.0, 1.0).is_err());
    assert!(assert_close(&[f64::INFINITY], &[1e300], 1.0, 1.0).is_err());
    assert!(assert_close(&[1e300], &[f64::INFINITY], 1.0, 1.0).is_err());
    // Length mismatch is an error; empty slices pass.
    assert!(assert_close(&[1.0], &[1.0, 2.0], 1.0, 1.0).is_err());
    assert!(assert_close(&[], &[], 0.0, 0.0).is_ok());
}

#[test]
fn max_rel_err_values() {
    // Errors: |1.1 - 1| / 1 = 0.1 and |2.2 - 2| / 2 = 0.1 → max 0.1 (up to rounding);
    // |3 - 4| / 4 = 0.25 dominates.
    let e = max_rel_err(&[1.1, 2.2, 3.0], &[1.0, 2.0, 4.0], 0.0);
    assert!((e - 0.25).abs() < 1e-15, "{e}");
    // The floor bounds the denominator near 0: |1e-3 - 0| / max(0, 1e-2) = 0.1.
    let e = max_rel_err(&[1e-3], &[0.0], 1e-2);
    assert!((e - 0.1).abs() < 1e-15, "{e}");
    // Without a floor, any error against 0 is infinite.
    assert_eq!(max_rel_err(&[1e-3], &[0.0], 0.0), f64::INFINITY);
    // Matching specials count as 0; mismatched NaN as ∞.
    let specials = [f64::NAN, f64::INFINITY, 0.0];
    assert_eq!(max_rel_err(&specials, &specials, 0.0), 0.0);
    assert_eq!(max_rel_err(&[f64::NAN], &[1.0], 1.0), f64::INFINITY);
    assert_eq!(max_rel_err(&[1.0], &[f64::NAN], 1.0), f64::INFINITY);
    // Empty → 0; length mismatch → ∞.
    assert_eq!(max_rel_err(&[], &[], 1.0), 0.0);
    assert_eq!(max_rel_err(&[1.0], &[], 1.0), f64::INFINITY);
}
