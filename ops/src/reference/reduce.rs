//! Reduction references: [`reduce`] along one axis, [`reduce_all`], and [`argmax`].
//!
//! For a lane `x_0, …, x_{n−1}` (the elements along the reduced axis, or all elements):
//!
//! * `sum = Σ_i x_i` (0 for an empty lane), summed in index order;
//! * `mean = (Σ_i x_i) / n` (NaN for an empty lane, as `0 / 0`);
//! * `max = max_i x_i`, `min = min_i x_i`: NaN if any `x_i` is NaN; −∞ (max) or +∞ (min)
//!   for an empty lane, the identities of the two operations;
//! * `argmax = min { i : x_i = max_j x_j }`, the first index of the maximum; a NaN
//!   counts as larger than every number (so the first NaN wins), as in torch.
//!
//! Along an axis the output keeps the axis with length 1.

use super::tensor::{check_axis, lanes, RefTensor};
use crate::kinds::ReduceOp;

/// `op` over one lane of values (see the module docs).
fn reduce_lane(op: ReduceOp, lane: &[f64]) -> f64 {
    let nan_max = |acc: f64, v: f64| {
        if acc.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            acc.max(v)
        }
    };
    let nan_min = |acc: f64, v: f64| {
        if acc.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            acc.min(v)
        }
    };
    match op {
        ReduceOp::Sum => lane.iter().sum(),
        ReduceOp::Mean => lane.iter().sum::<f64>() / lane.len() as f64,
        ReduceOp::Max => lane.iter().copied().fold(f64::NEG_INFINITY, nan_max),
        ReduceOp::Min => lane.iter().copied().fold(f64::INFINITY, nan_min),
    }
}

/// Collects the lanes of `x` along `axis` and maps each through `f`, in row-major order
/// of the output (whose shape is `x`'s with `shape[axis] = 1`).
fn map_lanes<T>(x: &RefTensor, axis: usize, mut f: impl FnMut(&[f64]) -> T) -> Vec<T> {
    let (outer, len, inner) = lanes(&x.shape, axis);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for n in 0..inner {
            let lane: Vec<f64> = (0..len)
                .map(|i| x.data[(o * len + i) * inner + n])
                .collect();
            out.push(f(&lane));
        }
    }
    out
}

/// Reduce along `axis`, keeping the axis with length 1 (out shape = shape with
/// `shape[axis] = 1`).
///
/// # Panics
///
/// If `axis` is not less than the rank of `x`.
pub fn reduce(op: ReduceOp, x: &RefTensor, axis: usize) -> RefTensor {
    check_axis(&format!("reduce {}", op.name()), &x.shape, axis);
    let mut shape = x.shape.clone();
    shape[axis] = 1;
    let data = map_lanes(x, axis, |lane| reduce_lane(op, lane));
    RefTensor::new(&shape, data)
}

/// Reduce over all elements: returns shape `[1]`.
pub fn reduce_all(op: ReduceOp, x: &RefTensor) -> RefTensor {
    RefTensor::new(&[1], vec![reduce_lane(op, &x.data)])
}

/// Index of the first maximum of a non-empty lane; the first NaN if there is one.
fn argmax_lane(lane: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in lane.iter().enumerate().skip(1) {
        let best_v = lane[best];
        if best_v.is_nan() {
            break;
        }
        if v.is_nan() || v > best_v {
            best = i;
        }
    }
    best
}

/// argmax along `axis`, keeping the axis with length 1; the first index of the max on
/// ties (a NaN counts as the maximum, so the first NaN's index is returned if any).
///
/// Returns `(out shape, indices)`, the out shape being `x`'s with `shape[axis] = 1` and
/// the indices in row-major order of it.
///
/// # Panics
///
/// If `axis` is not less than the rank of `x`, if `x.shape[axis] == 0` while the output
/// is non-empty (the argmax of an empty lane is undefined), or if `x.shape[axis]`
/// exceeds `u32::MAX + 1`.
pub fn argmax(x: &RefTensor, axis: usize) -> (Vec<usize>, Vec<u32>) {
    check_axis("argmax", &x.shape, axis);
    let mut shape = x.shape.clone();
    shape[axis] = 1;
    let indices = map_lanes(x, axis, |lane| {
        assert!(
            !lane.is_empty(),
            "argmax: axis {axis} of shape {:?} is empty",
            x.shape
        );
        let i = argmax_lane(lane);
        u32::try_from(i).unwrap_or_else(|_| panic!("argmax: index {i} does not fit in u32"))
    });
    (shape, indices)
}
