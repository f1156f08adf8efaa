//! Reference linear-recurrence scan: the definition, one step at a time, in f64.

use super::tensor::RefTensor;

/// `h_k = d_k h_{k−1} + u_k` (forward, `h_{−1} = 0`) or `h_k = d_k h_{k+1} + u_k`
/// (reverse, `h_N = 0`), channel by channel; `u` is `[N]` or `[N, c]`, `d` is `[N]`.
///
/// # Panics
/// If `u`'s leading dimension is not `d.len()`.
pub fn linear_scan(d: &[f64], u: &RefTensor, reverse: bool) -> RefTensor {
    let n = d.len();
    assert_eq!(
        u.shape.first().copied().unwrap_or(0),
        n,
        "linear_scan: u {:?} vs d [{n}]",
        u.shape
    );
    let c = if u.shape.len() == 1 {
        1
    } else {
        u.numel() / n.max(1)
    };
    let mut h = u.clone();
    for ch in 0..c {
        let mut acc = 0.0;
        for i in 0..n {
            let k = if reverse { n - 1 - i } else { i };
            acc = d[k] * acc + u.data[k * c + ch];
            h.data[k * c + ch] = acc;
        }
    }
    h
}
