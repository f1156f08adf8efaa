//! Softmax references along one axis, in the max-subtracted (numerically stable) form.
//!
//! For a lane `x_0, …, x_{n−1}` along the axis, with `m = max_j x_j`:
//!
//! * `softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m}`;
//! * `log_softmax(x)_i = x_i − m − ln Σ_j e^{x_j − m}`.
//!
//! Subtracting `m` changes nothing mathematically but keeps every exponent ≤ 0, so the
//! sum lies in `[1, n]`. A lane containing NaN, or whose max is ±∞, gives NaN (as in
//! torch); an empty axis gives an empty output.

use super::tensor::{check_axis, lanes, RefTensor};

/// Applies `f` to every lane of `x` along `axis`, writing the result back in place of
/// the lane; the output has `x`'s shape.
fn per_lane(x: &RefTensor, axis: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> RefTensor {
    let (outer, len, inner) = lanes(&x.shape, axis);
    let mut out = x.clone();
    for o in 0..outer {
        for n in 0..inner {
            let offset = |i: usize| (o * len + i) * inner + n;
            let lane: Vec<f64> = (0..len).map(|i| x.data[offset(i)]).collect();
            for (i, y) in f(&lane).into_iter().enumerate() {
                out.data[offset(i)] = y;
            }
        }
    }
    out
}

/// `max_j x_j` of a lane, NaN if any element is NaN (−∞ for an empty lane).
fn lane_max(lane: &[f64]) -> f64 {
    lane.iter().copied().fold(f64::NEG_INFINITY, |acc, v| {
        if acc.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            acc.max(v)
        }
    })
}

/// Softmax along `axis` (max-subtracted): `y_i = e^{x_i − m} / Σ_j e^{x_j − m}`.
///
/// # Panics
///
/// If `axis` is not less than the rank of `x`.
pub fn softmax(x: &RefTensor, axis: usize) -> RefTensor {
    check_axis("softmax", &x.shape, axis);
    per_lane(x, axis, |lane| {
        let m = lane_max(lane);
        let exps: Vec<f64> = lane.iter().map(|&v| (v - m).exp()).collect();
        let sum: f64 = exps.iter().sum();
        exps.iter().map(|&e| e / sum).collect()
    })
}

/// Log-softmax along `axis`: `y_i = x_i − m − ln Σ_j e^{x_j − m}`, `m = max_j x_j`.
///
/// # Panics
///
/// If `axis` is not less than the rank of `x`.
pub fn log_softmax(x: &RefTensor, axis: usize) -> RefTensor {
    check_axis("log_softmax", &x.shape, axis);
    per_lane(x, axis, |lane| {
        let m = lane_max(lane);
        let log_sum = lane.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        lane.iter().map(|&v| v - m - log_sum).collect()
    })
}
