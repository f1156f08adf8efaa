//! Layout references: [`permute`], [`transpose`], [`reshape`], [`broadcast_to`],
//! [`concat()`] and [`slice()`]. All of them materialise a new contiguous tensor.
//!
//! * `permute(x, perm)`: `y.shape[d] = x.shape[perm[d]]` and `y[i] = x[j]` with
//!   `j[perm[d]] = i[d]` (torch semantics).
//! * `transpose(x, d0, d1)`: the permute that swaps axes `d0` and `d1`.
//! * `reshape(x, s)`: the same row-major data under shape `s` (same element count).
//! * `broadcast_to(x, s)`: `y[p] = x[p↓x]`, where `p↓x` drops `p`'s leading dims
//!   beyond `x`'s rank and zeroes the index along `x`'s length-1 dims (numpy rules).
//! * `concat(xs, axis)`: `y[…, i, …] = xs[k][…, i − o_k, …]` for
//!   `o_k = Σ_{l<k} xs[l].shape[axis] ≤ i < o_k + xs[k].shape[axis]`.
//! * `slice(x, axis, start, end)`: `y[…, i, …] = x[…, start + i, …]` for
//!   `0 ≤ i < end − start`.

use super::tensor::{
    broadcast_shape, broadcast_source, check_axis, lanes, numel_of, ravel, unravel, RefTensor,
};

/// Permutes the axes: `out.shape[i] = x.shape[perm[i]]` and
/// `out[i_0, …] = x[j]` with `j[perm[d]] = i_d` (torch semantics).
///
/// # Panics
///
/// If `perm` is not a permutation of `0..rank`.
pub fn permute(x: &RefTensor, perm: &[usize]) -> RefTensor {
    let rank = x.shape.len();
    // A permutation names every axis exactly once.
    let mut seen = vec![false; rank];
    let mut is_permutation = perm.len() == rank;
    for &p in perm {
        if p >= rank || seen[p] {
            is_permutation = false;
            break;
        }
        seen[p] = true;
    }
    assert!(
        is_permutation,
        "permute: {perm:?} is not a permutation of the axes of shape {:?}",
        x.shape
    );
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let data = (0..numel_of(&shape))
        .map(|flat| {
            let out_idx = unravel(flat, &shape);
            let mut src_idx = vec![0; rank];
            for (d, &p) in perm.iter().enumerate() {
                src_idx[p] = out_idx[d];
            }
            x.data[ravel(&src_idx, &x.shape)]
        })
        .collect();
    RefTensor { shape, data }
}

/// Swaps axes `d0` and `d1` (`d0 == d1` is the identity).
///
/// # Panics
///
/// If `d0` or `d1` is not less than the rank of `x`.
pub fn transpose(x: &RefTensor, d0: usize, d1: usize) -> RefTensor {
    check_axis("transpose", &x.shape, d0);
    check_axis("transpose", &x.shape, d1);
    let mut perm: Vec<usize> = (0..x.shape.len()).collect();
    perm.swap(d0, d1);
    permute(x, &perm)
}

/// The same row-major data under a new shape.
///
/// # Panics
///
/// If `shape` does not have `x`'s element count.
pub fn reshape(x: &RefTensor, shape: &[usize]) -> RefTensor {
    assert!(
        numel_of(shape) == x.numel(),
        "reshape: cannot reshape {:?} ({} elements) to {shape:?} ({} elements)",
        x.shape,
        x.numel(),
        numel_of(shape)
    );
    RefTensor::new(shape, x.data.clone())
}

/// Broadcast `x` to `shape` (numpy rules): `out[p] = x[p↓x]`.
///
/// # Panics
///
/// If `x`'s shape does not broadcast to `shape` (`shape` has lower rank, or some
/// aligned dim of `x` is neither 1 nor equal to `shape`'s).
pub fn broadcast_to(x: &RefTensor, shape: &[usize]) -> RefTensor {
    assert!(
        broadcast_shape(&x.shape, shape).as_deref() == Some(shape),
        "broadcast_to: shape {:?} does not broadcast to {shape:?}",
        x.shape
    );
    let data = (0..numel_of(shape))
        .map(|flat| x.data[broadcast_source(&unravel(flat, shape), &x.shape)])
        .collect();
    RefTensor::new(shape, data)
}

/// Concatenate along `axis` (all other dims equal): the inputs' blocks laid end to end
/// in order along `axis`.
///
/// # Panics
///
/// If `xs` is empty, `axis` is not less than the rank, or the inputs differ in rank or
/// in some dim other than `axis`.
pub fn concat(xs: &[&RefTensor], axis: usize) -> RefTensor {
    assert!(!xs.is_empty(), "concat: no inputs");
    let first = xs[0];
    check_axis("concat", &first.shape, axis);
    for x in xs {
        let same_other_dims = x.shape.len() == first.shape.len()
            && x.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        assert!(
            same_other_dims,
            "concat: shape {:?} does not match {:?} outside axis {axis}",
            x.shape, first.shape
        );
    }
    let mut shape = first.shape.clone();
    shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    // The dims before `axis` are shared, so each input is `outer` blocks of
    // `shape[axis] · inner` contiguous elements; the output interleaves them.
    let (outer, _, inner) = lanes(&first.shape, axis);
    let mut data = Vec::with_capacity(numel_of(&shape));
    for o in 0..outer {
        for x in xs {
            let block = x.shape[axis] * inner;
            data.extend_from_slice(&x.data[o * block..(o + 1) * block]);
        }
    }
    RefTensor::new(&shape, data)
}

/// Slice along one axis: elements `start..end` (end exclusive).
///
/// # Panics
///
/// If `axis` is not less than the rank, or not `start <= end <= x.shape[axis]`.
pub fn slice(x: &RefTensor, axis: usize, start: usize, end: usize) -> RefTensor {
    check_axis("slice", &x.shape, axis);
    assert!(
        start <= end && end <= x.shape[axis],
        "slice: range {start}..{end} is invalid for axis {axis} of shape {:?}",
        x.shape
    );
    let (outer, len, inner) = lanes(&x.shape, axis);
    let mut shape = x.shape.clone();
    shape[axis] = end - start;
    let mut data = Vec::with_capacity(numel_of(&shape));
    for o in 0..outer {
        data.extend_from_slice(&x.data[(o * len + start) * inner..(o * len + end) * inner]);
    }
    RefTensor::new(&shape, data)
}
