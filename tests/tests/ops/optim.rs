//! The fused Adam/AdamW step vs `reference::adam_step`.

use lapis_ops::reference as r;
use lapis_ops::{adam_update, AdamStep, Tensor};
use lapis_tests::*;
use proptest::prelude::*;

fn vals(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let u = ((i as u64 * 2654435761 + seed * 97) % 10007) as f64 / 10007.0;
            (lo + (hi - lo) * u) as f32 as f64
        })
        .collect()
}

fn up(dev: &lapis_ops::Device, v: &[f64]) -> Tensor {
    Tensor::from_slice(
        dev,
        &[v.len()],
        &v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(cases(24))]

    /// Random sizes (1 … 5000, one past a 256-unit cube included), moments, step counts
    /// and hyper-parameters. Each output is a few f32 roundings of its terms: the error is
    /// bounded by 1e-6 of `|δp| + |lr·m̂/(√v̂+ε)|` for p (≈ 8 ulp), and 1e-6 of
    /// `|β m| + |(1−β) g|` (resp. for v) for the moments.
    #[test]
    fn adam_update_matches_reference(
        n in prop_oneof![1usize..=300, prop::sample::select(vec![257usize, 1000, 5000])],
        t in 1i32..50,
        lr in prop::sample::select(vec![1e-4f64, 1e-3, 0.1]),
        wd in prop::sample::select(vec![0.0f64, 0.01, 0.1]),
        beta1 in prop::sample::select(vec![0.0f64, 0.9, 0.95]),
        beta2 in prop::sample::select(vec![0.99f64, 0.999]),
        seed in 0u64..1000,
    ) {
        let dev = device();
        let p = vals(n, seed, -2.0, 2.0);
        let g = vals(n, seed + 1, -1.0, 1.0);
        let m = vals(n, seed + 2, -0.5, 0.5);
        let v = vals(n, seed + 3, 0.0, 0.3);
        let eps = 1e-8;
        let (pn, mn, vn) = adam_update(&up(&dev, &p), &up(&dev, &g), &up(&dev, &m), &up(&dev, &v),
            &AdamStep { beta1, beta2, lr, eps, weight_decay: wd, t }).unwrap();
        let (pw, mw, vw) = r::adam_step(&p, &g, &m, &v, (beta1, beta2), lr, eps, wd, t);
        let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let (pg, mg, vg) = (download(&pn).data, download(&mn).data, download(&vn).data);
        for i in 0..n {
            let step = lr * (mw[i] / c1).abs() / ((vw[i] / c2).sqrt() + eps);
            let tp = 1e-6 * ((1.0 - lr * wd) * p[i].abs() + step) + 1e-30;
            prop_assert!((pg[i] - pw[i]).abs() <= tp, "p[{}]: {} vs {} (tol {})", i, pg[i], pw[i], tp);
            let tm = 1e-6 * (beta1 * m[i].abs() + (1.0 - beta1) * g[i].abs()) + 1e-30;
            prop_assert!((mg[i] - mw[i]).abs() <= tm, "m[{}]: {} vs {}", i, mg[i], mw[i]);
            let tv = 1e-6 * (beta2 * v[i] + (1.0 - beta2) * g[i] * g[i]) + 1e-30;
            prop_assert!((vg[i] - vw[i]).abs() <= tv, "v[{}]: {} vs {}", i, vg[i], vw[i]);
        }
    }
}
