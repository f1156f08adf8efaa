//! Reference real DFT, by the definition (O(n²) per line).

use super::tensor::RefTensor;

/// `(Re X, Im X)` with `X_k = Σ_j x_j e^{−2πi jk/n}`, `k = 0 … n/2`, along the last axis.
pub fn rfft(x: &RefTensor) -> (RefTensor, RefTensor) {
    let n = *x.shape.last().expect("rfft: rank ≥ 1");
    let lines = x.numel() / n.max(1);
    let h = n / 2 + 1;
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank ≥ 1") = h;
    let (mut re, mut im) = (vec![0.0; lines * h], vec![0.0; lines * h]);
    for l in 0..lines {
        for k in 0..h {
            for j in 0..n {
                let ang = -2.0 * std::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
                re[l * h + k] += x.data[l * n + j] * ang.cos();
                im[l * h + k] += x.data[l * n + j] * ang.sin();
            }
        }
    }
    (RefTensor::new(&shape, re), RefTensor::new(&shape, im))
}
