//! Batched matmul (cubek-matmul) vs `reference::matmul`.

use lapis_ops::reference as r;
use lapis_tests::*;
use proptest::prelude::*;

fn mm_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=8,
        prop::sample::select(vec![15usize, 16, 17, 31, 33, 64, 65, 100])
    ]
}

proptest! {
    #![proptest_config(cases(24))]

    /// f32 dot products of length k: |error| ≤ k·ε·Σ|a_i b_i| (Higham); with |a|,|b| ≤ 1
    /// that is ≤ k²·1.2e-7. We use 2e-6·k absolute (the sums are O(√k) typical) + 1e-5 rel.
    #[test]
    fn matmul_matches_reference(
        batch_a in prop::collection::vec(1usize..=3, 0..=2),
        bcast in any::<bool>(),
        m in mm_dim(), k in mm_dim(), n in mm_dim(),
        seed in 0u64..1000,
    ) {
        let dev = device();
        // b's batch: the same as a's, or broadcast (rank 2) when `bcast`.
        let batch_b: Vec<usize> = if bcast { vec![] } else { batch_a.clone() };
        let mk = |batch: &[usize], rows, cols, salt: u64| {
            let mut s = batch.to_vec();
            s.extend([rows, cols]);
            let len: usize = s.iter().product();
            let d = (0..len).map(|i| ((((i as u64) * 7919 + seed * 31 + salt) % 2003) as f64 / 1001.5) - 1.0).collect();
            as_f32(&r::RefTensor::new(&s, d))
        };
        let (a, b) = if bcast && seed % 2 == 0 {
            (mk(&batch_b, m, k, 1), mk(&batch_a, k, n, 2))
        } else {
            (mk(&batch_a, m, k, 1), mk(&batch_b, k, n, 2))
        };
        let got = lapis_ops::matmul(&upload(&dev, &a), &upload(&dev, &b)).unwrap();
        check("matmul", &got, &r::matmul(&a, &b), 1e-5, 2e-6 * k as f64)?;
    }
}

proptest! {
    #![proptest_config(cases(24))]

    /// `matmul_t`: `op(a) @ op(b)` with transposed operands read through strides (no copy),
    /// every combination, batched and with a shared rank-2 right operand, against the
    /// reference product of the transposed host tensors (same bound as above). Its VJP
    /// (`matmul_t_backward`) against the reference VJP `(Ȳ op(B)ᵀ, op(A)ᵀ Ȳ)`, transposed
    /// back, summed over broadcast batch axes.
    #[test]
    fn matmul_t_matches_reference(
        batch in prop::collection::vec(1usize..=3, 0..=2),
        shared_b in any::<bool>(),
        ta in any::<bool>(), tb in any::<bool>(),
        m in mm_dim(), k in mm_dim(), n in mm_dim(),
        seed in 0u64..1000,
    ) {
        let dev = device();
        let mk = |batch: &[usize], rows, cols, salt: u64| {
            let mut s = batch.to_vec();
            s.extend([rows, cols]);
            let len: usize = s.iter().product();
            let d = (0..len).map(|i| ((((i as u64) * 7919 + seed * 31 + salt) % 2003) as f64 / 1001.5) - 1.0).collect();
            as_f32(&r::RefTensor::new(&s, d))
        };
        let batch_b: Vec<usize> = if shared_b { vec![] } else { batch.clone() };
        // Physical operands: [.., k, m] when `ta` (op(a) = aᵀ is [.., m, k]), likewise b.
        let a = if ta { mk(&batch, k, m, 1) } else { mk(&batch, m, k, 1) };
        let b = if tb { mk(&batch_b, n, k, 2) } else { mk(&batch_b, k, n, 2) };
        let op = |x: &r::RefTensor, t: bool| if t { r::transpose(x, x.shape.len() - 2, x.shape.len() - 1) } else { x.clone() };
        let (oa, ob) = (op(&a, ta), op(&b, tb));
        let (da, db) = (upload(&dev, &a), upload(&dev, &b));
        let got = lapis_ops::matmul_t(&da, &db, ta, tb).unwrap();
        let want = r::matmul(&oa, &ob);
        check("matmul_t", &got, &want, 1e-5, 2e-6 * k as f64)?;
        // VJP: ∂op(A) = G op(B)ᵀ, ∂op(B) = op(A)ᵀ G (summed over b's broadcast batch).
        let g = mk(&want.shape[..want.shape.len() - 2], m, n, 3);
        let (ga, gb) = lapis_ops::matmul_t_backward(&da, &db, ta, tb, &upload(&dev, &g)).unwrap();
        let d_oa = r::matmul(&g, &op(&ob, true));
        let mut d_ob = r::matmul(&op(&oa, true), &g);
        if shared_b {
            // Sum the batch axes out.
            let len = k * n;
            let mut acc = vec![0.0; len];
            for (i, v) in d_ob.data.iter().enumerate() {
                acc[i % len] += v;
            }
            d_ob = r::RefTensor::new(&[k, n], acc);
        }
        let batch_terms = batch.iter().product::<usize>().max(1) as f64;
        check("matmul_t Ā", &ga, &op(&d_oa, ta), 1e-5, 2e-6 * n as f64)?;
        check("matmul_t B̄", &gb, &op(&d_ob, tb), 1e-5, 2e-6 * m as f64 * batch_terms)?;
    }
}

/// A size where the cmma/unit kernels tile: 129×257 @ 257×65, against the reference.
#[test]
fn matmul_odd_large() {
    let dev = device();
    let mk = |rows: usize, cols: usize| {
        let d = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f64 / 50.5) - 1.0)
            .collect();
        as_f32(&r::RefTensor::new(&[rows, cols], d))
    };
    let (a, b) = (mk(129, 257), mk(257, 65));
    let got = lapis_ops::matmul(&upload(&dev, &a), &upload(&dev, &b)).unwrap();
    check(
        "matmul 129x257x65",
        &got,
        &r::matmul(&a, &b),
        1e-5,
        2e-6 * 257.0,
    )
    .unwrap();
}
