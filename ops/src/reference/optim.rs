//! f64 reference of the fused optimizer step (`crate::optim`).

/// One Adam/AdamW step in f64, entry by entry: `m ← β₁m + (1−β₁)g`,
/// `v ← β₂v + (1−β₂)g²`, `p ← (1 − lr·wd)p − lr·m̂/(√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`,
/// `v̂ = v/(1−β₂ᵗ)`. Returns the new `(p, m, v)`.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    p: &[f64],
    g: &[f64],
    m: &[f64],
    v: &[f64],
    (beta1, beta2): (f64, f64),
    lr: f64,
    eps: f64,
    weight_decay: f64,
    t: i32,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.len() {
        let mi = beta1 * m[i] + (1.0 - beta1) * g[i];
        let vi = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
        out.0
            .push((1.0 - lr * weight_decay) * p[i] - lr * (mi / c1) / ((vi / c2).sqrt() + eps));
        out.1.push(mi);
        out.2.push(vi);
    }
    out
}
