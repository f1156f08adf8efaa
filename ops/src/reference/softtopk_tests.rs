//! Tests of the LapSum references: hand values, the closed-form threshold against the
//! bisection one (random rows, ties, constant rows, n = 1, spreads up to 1e30, α = 1e-6, k
//! near 0 and n), the properties of `softtopk-engine.md` §7, the α → 0 limits, the
//! truncation rule, and every backward against [`finite_diff`].
//!
//! Inputs come from a small deterministic LCG. Gradient checks use `h = 1e-6` and accept
//! `max_k |g_k − fd_k| ≤ 1e-6 · max_k |fd_k| + 1e-8` per parameter block: the functions
//! are C¹ with second-derivative kinks only where some `r_i − b` (or `b_i − r_j`,
//! `r_i − r_j`) is 0, which random data hits with probability ~n·h, and `1e-8` covers the
//! rounding noise `ε|ℓ|/h ≈ 1e-10·|ℓ|` of a gradient that is 0 (e.g. `∂α` for n = 1).
//! Soft rank puts a tie exactly on a kink; see its test for the step used there.

use super::*;
use crate::reference::finite_diff;

// ------------------------------------------------------------------ helpers

/// 64-bit LCG (Knuth's MMIX constants); `uniform` takes the top 53 bits.
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }

    /// Log-uniform in `[lo, hi]`.
    fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        self.range(lo.ln(), hi.ln()).exp()
    }

    fn index(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// A random permutation of `0..n` (Fisher–Yates).
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            perm.swap(i, self.index(i + 1));
        }
        perm
    }

    /// Distinct values with gaps ≥ 0.09 in random order: `perm(i)·0.1 + U(0, 0.01)`.
    fn distinct(&mut self, n: usize) -> Vec<f64> {
        self.permutation(n)
            .into_iter()
            .map(|i| i as f64 * 0.1 + self.range(0.0, 0.01))
            .collect()
    }
}

const H: f64 = 1e-6;
const GRAD_TOL: f64 = 1e-6;
/// Absolute floor of the gradient checks: rounding noise of the central difference.
const FD_NOISE: f64 = 1e-8;

/// Norm-wise relative error `max |got − want| / max |want|` (absolute when `want` is 0).
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let num = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    let den = want.iter().map(|w| w.abs()).fold(0.0, f64::max);
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

fn assert_grad(name: &str, got: &[f64], fd: &[f64]) {
    assert_eq!(got.len(), fd.len(), "{name}: length mismatch");
    let err = got
        .iter()
        .zip(fd)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    let scale = fd.iter().map(|w| w.abs()).fold(0.0, f64::max);
    let tol = GRAD_TOL * scale + FD_NOISE;
    assert!(
        err <= tol,
        "{name}: max abs err {err:.3e} > {tol:.3e} (rel err {:.3e})\n got {got:?}\n fd  {fd:?}",
        rel_err(got, fd)
    );
}

fn row_sum(p: &RefTensor, b: usize) -> f64 {
    let n = p.shape[1];
    p.data[b * n..(b + 1) * n].iter().sum()
}

/// `(r, k, α)` threshold cases covering every regime the engine spec lists.
fn threshold_cases() -> Vec<(Vec<f64>, f64, f64)> {
    let mut rng = Lcg(0x5eed_7091);
    let mut cases = Vec::new();
    // Random rows, random k and α.
    for &n in &[1, 2, 3, 5, 8, 17, 40] {
        for _ in 0..8 {
            let r = rng.vec(n, -3.0, 3.0);
            let k = n as f64 * rng.range(0.001, 0.999);
            cases.push((r, k, rng.log_range(0.05, 3.0)));
        }
    }
    // Ties: values from four levels; random and integer k.
    let levels = [-1.0, 0.0, 0.5, 2.0];
    for &n in &[2, 4, 7, 16] {
        for rep in 0..6 {
            let r: Vec<f64> = (0..n).map(|_| levels[rng.index(4)]).collect();
            let k = if rep % 2 == 0 {
                n as f64 * rng.range(0.01, 0.99)
            } else {
                (1 + rng.index(n - 1)) as f64
            };
            cases.push((r, k, rng.log_range(0.01, 2.0)));
        }
    }
    // Integer k on distinct rows.
    for &n in &[2, 5, 9] {
        for k in 1..n {
            cases.push((rng.vec(n, -2.0, 2.0), k as f64, 0.3));
        }
    }
    // Constant rows, k on both sides of S = n/2 and at it.
    for &(n, v) in &[(1, 0.7), (3, -4e5), (6, 2.5)] {
        for &k in &[0.25 * n as f64, 0.5 * n as f64, 0.75 * n as f64] {
            cases.push((vec![v; n], k, 0.8));
        }
    }
    // n = 1, k across (0, 1).
    for &k in &[1e-9, 0.1, 0.5, 0.9, 1.0 - 1e-9] {
        cases.push((vec![-1.25], k, 1.5));
    }
    // Huge spreads: a third of the entries ±U(1e29, 1e30), the rest O(1); α = 1.
    for &n in &[2, 3, 6, 12, 30] {
        for rep in 0..6 {
            let r: Vec<f64> = (0..n)
                .map(|_| match rng.index(3) {
                    0 => rng.range(1e29, 1e30),
                    1 => -rng.range(1e29, 1e30),
                    _ => rng.range(-3.0, 3.0),
                })
                .collect();
            let k = if rep < 3 {
                n as f64 * rng.range(0.01, 0.99)
            } else {
                (1 + rng.index(n - 1)) as f64
            };
            cases.push((r, k, 1.0));
        }
    }
    // Tiny α.
    for &n in &[1, 4, 10, 25] {
        for _ in 0..5 {
            let k = n as f64 * rng.range(0.01, 0.99);
            cases.push((rng.vec(n, -1.0, 1.0), k, 1e-6));
        }
    }
    // k near 0 and near n.
    for &n in &[1, 3, 10, 40] {
        for &alpha in &[1e-6, 0.5] {
            let r = rng.vec(n, -2.0, 2.0);
            for &k in &[1e-12, 1e-6, n as f64 - 1e-6, n as f64 - 1e-9] {
                cases.push((r.clone(), k, alpha));
            }
        }
    }
    cases
}

// ------------------------------------------------------------------ Laplace CDF / density

#[test]
fn laplace_cdf_pdf_hand_values() {
    // F(0) = ½; F(−ln 2) = ½·½ = ¼; F(ln 2) = 1 − ¼ = ¾; f(0) = ½; f(±ln 2) = ¼.
    assert_eq!(laplace_cdf(0.0), 0.5);
    assert!((laplace_cdf(-std::f64::consts::LN_2) - 0.25).abs() < 1e-16);
    assert!((laplace_cdf(std::f64::consts::LN_2) - 0.75).abs() < 1e-16);
    assert_eq!(laplace_pdf(0.0), 0.5);
    assert!((laplace_pdf(-std::f64::consts::LN_2) - 0.25).abs() < 1e-16);
    assert!((laplace_pdf(std::f64::consts::LN_2) - 0.25).abs() < 1e-16);
    // Far tails saturate without overflow.
    assert_eq!(laplace_cdf(-1e6), 0.0);
    assert_eq!(laplace_cdf(1e6), 1.0);
    assert_eq!(laplace_pdf(1e6), 0.0);
    for &x in &[-7.0, -1.3, -0.2, 0.4, 2.0, 9.0] {
        // Symmetry F(x) + F(−x) = 1, and f = F'.
        assert!((laplace_cdf(x) + laplace_cdf(-x) - 1.0).abs() < 1e-15);
        let fd = finite_diff(|v| laplace_cdf(v[0]), &[x], H)[0];
        assert!((fd - laplace_pdf(x)).abs() < 1e-9, "F'({x}) = {fd}");
    }
}

// ------------------------------------------------------------------ threshold

#[test]
fn threshold_hand_values() {
    // n = 1: S(b) = F((r − b)/α); k = ½ gives b = r; k = ¼ gives ½e^{(3 − b)/2} = ¼, so
    // b = 3 + 2 ln 2.
    assert_eq!(soft_topk_threshold(&[3.0], 0.5, 2.0), 3.0);
    let b = soft_topk_threshold(&[3.0], 0.25, 2.0);
    assert!(
        (b - (3.0 + 2.0 * std::f64::consts::LN_2)).abs() < 1e-15,
        "{b}"
    );
    // Constant row of 4: S(1.5) = 2; k = 1 needs 4·½e^{(1.5 − b)/α} = 1, b = 1.5 + α ln 2.
    assert_eq!(soft_topk_threshold(&[1.5; 4], 2.0, 0.7), 1.5);
    let b = soft_topk_threshold(&[1.5; 4], 1.0, 0.7);
    assert!(
        (b - (1.5 + 0.7 * std::f64::consts::LN_2)).abs() < 1e-15,
        "{b}"
    );
    // ±1e30 contribute exactly 1 and 0 at any moderate b. k = 2: F(0.3 − b) + F(0.7 − b) = 1,
    // so b = 0.5 by symmetry. k = 1.5: both terms ½e^{r − b}, b = ln(e^{0.3} + e^{0.7}).
    let r = [-1e30, 0.3, 0.7, 1e30];
    let b = soft_topk_threshold(&r, 2.0, 1.0);
    assert!((b - 0.5).abs() < 1e-15, "{b}");
    let b = soft_topk_threshold(&r, 1.5, 1.0);
    let want = (0.3f64.exp() + 0.7f64.exp()).ln();
    assert!((b - want).abs() < 1e-15, "{b} vs {want}");
    // Two points a gap of 1e30 apart, k = 1: ½e^{−b} = ½e^{b − 1e30}, b = 5e29 (the
    // quadratic's v = e^{5e29} would overflow; the log form does not).
    let b = soft_topk_threshold(&[0.0, 1e30], 1.0, 1.0);
    assert!((b - 5e29).abs() <= 5e29 * 1e-15, "{b}");
    // The bisection agrees on all of the above.
    for (r, k, alpha, want) in [
        (vec![3.0], 0.25, 2.0, 3.0 + 2.0 * std::f64::consts::LN_2),
        (vec![1.5; 4], 1.0, 0.7, 1.5 + 0.7 * std::f64::consts::LN_2),
        (r.to_vec(), 2.0, 1.0, 0.5),
        (r.to_vec(), 1.5, 1.0, want),
    ] {
        let b = soft_topk_threshold_bisect(&r, k, alpha);
        assert!((b - want).abs() < 1e-14, "bisect {r:?}, {k}: {b} vs {want}");
    }
}

#[test]
fn threshold_closed_form_matches_bisection() {
    let cases = threshold_cases();
    assert!(cases.len() > 150, "{} cases", cases.len());
    for (r, k, alpha) in &cases {
        let closed = soft_topk_threshold(r, *k, *alpha);
        let bisect = soft_topk_threshold_bisect(r, *k, *alpha);
        // Both resolve b to about an ulp of the largest anchor (the closed form adds
        // α·ln(…) to an anchor; the bisection ends on adjacent floats), plus rounding in
        // the ln terms, a few ulps of α.
        let scale = r.iter().fold(closed.abs(), |acc, v| acc.max(v.abs()));
        let tol = 1e-10 * alpha + 4.0 * f64::EPSILON * scale;
        assert!(
            closed.is_finite() && (closed - bisect).abs() <= tol,
            "r {r:?} k {k} α {alpha}: closed {closed} bisect {bisect} (tol {tol:e})"
        );
    }
}

// ------------------------------------------------------------------ soft top-k forward

#[test]
fn soft_topk_sums_to_k_lies_in_unit_interval_and_is_monotone() {
    let mut rng = Lcg(17);
    for &n in &[1, 2, 6, 33] {
        let rows = 5;
        // Rows with ties in the last one (values on a grid of 0.5).
        let mut data = rng.vec(rows * n, -3.0, 3.0);
        for v in &mut data[(rows - 1) * n..] {
            *v = (*v * 2.0).round() / 2.0;
        }
        let r = RefTensor::new(&[rows, n], data);
        let k: Vec<f64> = (0..rows)
            .map(|_| n as f64 * rng.range(0.01, 0.99))
            .collect();
        // |x| ≤ 6/0.3 = 20 keeps 1 − ½e^{−|x|} < 1 in f64, so p ∈ (0, 1) strictly.
        let alpha: Vec<f64> = (0..rows).map(|_| rng.log_range(0.3, 4.0)).collect();
        let p = soft_topk(&r, &k, &alpha);
        assert_eq!(p.shape, vec![rows, n]);
        for (b, &kb) in k.iter().enumerate() {
            let sum = row_sum(&p, b);
            assert!(
                (sum - kb).abs() <= 1e-13 * n as f64,
                "row {b}: Σp = {sum}, k = {kb}"
            );
            let (rr, pp) = (&r.data[b * n..(b + 1) * n], &p.data[b * n..(b + 1) * n]);
            for i in 0..n {
                assert!(pp[i] > 0.0 && pp[i] < 1.0, "row {b}: p[{i}] = {}", pp[i]);
                for j in 0..n {
                    if rr[i] < rr[j] {
                        assert!(pp[i] <= pp[j], "row {b}: not monotone at {i}, {j}");
                    } else if rr[i] == rr[j] {
                        assert_eq!(pp[i], pp[j], "row {b}: ties differ at {i}, {j}");
                    }
                }
            }
        }
    }
}

#[test]
fn soft_topk_sum_holds_for_every_threshold_case_with_resolvable_b() {
    // Σp = k holds to rounding whenever b is resolved finely relative to α; with
    // |r| ~ 1e30 and α = 1 the ulp of b (~1e14) is not, so those rows only need finite
    // output in [0, 1].
    for (r, k, alpha) in threshold_cases() {
        let n = r.len();
        let p = soft_topk(&RefTensor::new(&[1, n], r.clone()), &[k], &[alpha]);
        assert!(
            p.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "{r:?}: {p:?}"
        );
        let scale = r.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
        if scale * f64::EPSILON <= 1e-6 * alpha {
            let sum = row_sum(&p, 0);
            assert!(
                (sum - k).abs() <= 1e-9 * n as f64,
                "r {r:?} k {k} α {alpha}: Σp = {sum}"
            );
        }
    }
}

#[test]
fn soft_topk_extreme_inputs_stay_finite() {
    // Spreads up to 1e300 (differences up to 2e300 stay finite), α from 1e-6 to 1e6.
    let r = RefTensor::new(
        &[3, 4],
        vec![
            -1e300, 1e300, 0.0, 1.0, //
            -1e30, -1e30, 1e30, 3.0, //
            1e-300, -1e-300, 0.0, 5e-324,
        ],
    );
    for &alpha in &[1e-6, 1.0, 1e6] {
        for &k in &[1e-9, 0.5, 1.0, 2.0, 3.5, 4.0 - 1e-9] {
            let p = soft_topk(&r, &[k; 3], &[alpha; 3]);
            assert!(p.data.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
            let (gr, gk, ga) = soft_topk_backward(&r, &[k; 3], &[alpha; 3], &p);
            assert!(
                gr.data.iter().chain(&gk).chain(&ga).all(|v| v.is_finite()),
                "α {alpha} k {k}: {gr:?} {gk:?} {ga:?}"
            );
        }
    }
}

#[test]
fn soft_topk_tends_to_hard_mask() {
    // Gaps ≥ 0.09 and α = 1e-3: every p is within ½e^{−45} ≈ 1e-20 of 0 or 1 (for integer
    // k the threshold sits mid-gap).
    let mut rng = Lcg(99);
    for &n in &[2, 5, 16] {
        let row = rng.distinct(n);
        let r = RefTensor::new(&[1, n], row.clone());
        for k in 1..n {
            let p = soft_topk(&r, &[k as f64], &[1e-3]);
            let mask = hard_topk_mask(&row, k);
            let err = rel_err(&p.data, &mask);
            assert!(err <= 1e-12, "n {n} k {k}: {:?} vs {mask:?}", p.data);
        }
    }
}

#[test]
fn hard_topk_mask_hand_values() {
    let r = [0.5, 2.0, 2.0, -1.0];
    assert_eq!(hard_topk_mask(&r, 0), vec![0.0; 4]);
    // The tie at 2.0 goes to the lower index.
    assert_eq!(hard_topk_mask(&r, 1), vec![0.0, 1.0, 0.0, 0.0]);
    assert_eq!(hard_topk_mask(&r, 2), vec![0.0, 1.0, 1.0, 0.0]);
    assert_eq!(hard_topk_mask(&r, 3), vec![1.0, 1.0, 1.0, 0.0]);
    assert_eq!(hard_topk_mask(&r, 4), vec![1.0; 4]);
    // −0 and +0 tie numerically.
    assert_eq!(hard_topk_mask(&[-0.0, 0.0], 1), vec![1.0, 0.0]);
    assert_eq!(hard_topk_mask(&[0.0, -0.0], 1), vec![1.0, 0.0]);
}

// ------------------------------------------------------------------ soft top-k backward

#[test]
fn soft_topk_backward_matches_finite_differences() {
    let mut rng = Lcg(4242);
    for &n in &[1, 2, 5, 12] {
        let rows = 3;
        let mut data = rng.vec(rows * n, -2.0, 2.0);
        if n > 1 {
            data[1] = data[0]; // a tie
        }
        let k: Vec<f64> = (0..rows).map(|_| rng.range(0.2, n as f64 - 0.2)).collect();
        let alpha: Vec<f64> = (0..rows).map(|_| rng.range(0.3, 2.0)).collect();
        let g = RefTensor::new(&[rows, n], rng.vec(rows * n, -1.0, 1.0));
        let loss = |r: &[f64], k: &[f64], a: &[f64]| {
            let p = soft_topk(&RefTensor::new(&[rows, n], r.to_vec()), k, a);
            p.data.iter().zip(&g.data).map(|(p, g)| p * g).sum::<f64>()
        };
        let r = RefTensor::new(&[rows, n], data);
        let (gr, gk, ga) = soft_topk_backward(&r, &k, &alpha, &g);
        let fd_r = finite_diff(|x| loss(x, &k, &alpha), &r.data, H);
        let fd_k = finite_diff(|x| loss(&r.data, x, &alpha), &k, H);
        let fd_a = finite_diff(|x| loss(&r.data, &k, x), &alpha, H);
        assert_grad(&format!("n {n}: ∂r"), &gr.data, &fd_r);
        assert_grad(&format!("n {n}: ∂k"), &gk, &fd_k);
        assert_grad(&format!("n {n}: ∂α"), &ga, &fd_a);
    }
}

#[test]
fn soft_topk_backward_with_underflowing_densities() {
    // r = [0, 2000], α = 1, k = 1: b = 1000 and both f_i = ½e^{−1000} underflow to 0. The
    // normalised weights are still ½, ½: ḡ = mean(g); ∂r = f/α(...) = 0; ∂α = 0 (f = 0).
    let r = RefTensor::new(&[1, 2], vec![0.0, 2000.0]);
    let g = RefTensor::new(&[1, 2], vec![0.25, -1.0]);
    let (gr, gk, ga) = soft_topk_backward(&r, &[1.0], &[1.0], &g);
    assert_eq!(gr.data, vec![0.0, 0.0]);
    assert_eq!(gk, vec![-0.375]);
    assert_eq!(ga, vec![0.0]);
}

// ------------------------------------------------------------------ truncated

/// `(r [B, n], k, α)` batches for the truncation tests, no ties.
fn truncation_batches(rng: &mut Lcg) -> Vec<(RefTensor, Vec<f64>, Vec<f64>)> {
    let mut out = Vec::new();
    for &n in &[1, 4, 8, 32] {
        let rows = 6;
        let r = RefTensor::new(&[rows, n], rng.vec(rows * n, -3.0, 3.0));
        let k: Vec<f64> = (0..rows)
            .map(|b| match b {
                0 if n > 1 => 1.0,
                1 if n > 2 => 1.5,
                2 if n > 2 => 2.0,
                _ => n as f64 * rng.range(0.02, 0.98),
            })
            .collect();
        let alpha: Vec<f64> = (0..rows).map(|_| rng.log_range(0.1, 3.0)).collect();
        out.push((r, k, alpha));
    }
    out
}

#[test]
fn truncated_follows_the_rule() {
    let mut rng = Lcg(2026);
    for (r, k, alpha) in truncation_batches(&mut rng) {
        let n = r.shape[1];
        for &(c_cap, c_tau) in &[(1.0, 1.8), (2.0, 1.8), (4.0, 1.8), (2.0, 0.0), (2.0, 50.0)] {
            let p = soft_topk(&r, &k, &alpha);
            let (idx, val) = soft_topk_truncated(&r, &k, &alpha, c_cap, c_tau);
            let dense = soft_topk_truncated_dense(&r, &k, &alpha, c_cap, c_tau);
            for b in 0..r.shape[0] {
                let row = &p.data[b * n..(b + 1) * n];
                // The rule, recomputed from sorted values.
                let m = ((c_cap * k[b]).ceil() as usize).min(n);
                let mut desc = row.to_vec();
                desc.sort_by(|x, y| y.total_cmp(x));
                let tau = (c_tau * k[b] / n as f64).clamp(desc[m - 1], desc[0]);
                let passing = row.iter().filter(|&&v| v >= tau).count();
                let kept = passing.min(m);
                let ctx = format!("n {n} row {b} k {} c_cap {c_cap} c_tau {c_tau}", k[b]);
                assert!((1..=m).contains(&kept), "{ctx}: kept {kept} of m {m}");
                assert_eq!(idx[b].len(), m, "{ctx}: capacity");
                assert_eq!(val[b].len(), m, "{ctx}: capacity");
                // Kept entries first, descending, equal to the dense p; then padding.
                for j in 0..m {
                    if j < kept {
                        let i = idx[b][j] as usize;
                        assert_eq!(val[b][j], row[i], "{ctx}: value of slot {j}");
                        assert!(row[i] >= tau, "{ctx}: slot {j} below τ");
                        if j > 0 {
                            assert!(val[b][j] <= val[b][j - 1], "{ctx}: order at {j}");
                        }
                    } else {
                        assert_eq!((idx[b][j], val[b][j]), (u32::MAX, 0.0), "{ctx}: pad {j}");
                    }
                }
                let sum: f64 = val[b].iter().sum();
                // Not renormalised: Σ kept ≤ Σ p = k (up to the rounding of Σ p).
                assert!(sum <= k[b] + 1e-13, "{ctx}: Σ kept {sum} > k");
                // Dense view: p at kept indices, 0 elsewhere.
                let dense_row = &dense.data[b * n..(b + 1) * n];
                for i in 0..n {
                    let want = if idx[b][..kept].contains(&(i as u32)) {
                        row[i]
                    } else {
                        0.0
                    };
                    assert_eq!(dense_row[i], want, "{ctx}: dense[{i}]");
                }
            }
        }
    }
}

#[test]
fn truncated_hand_cases() {
    // r = [3, 0, −1, −2], α = ½, k = 1, c_cap = 2 → m = 2, c_τ·k/n = 1.8/4 = 0.45. Here
    // p_(2) = p_1 < 0.45 < p_(1) = p_0, so τ = 0.45 keeps only index 0: one pad slot.
    let r = RefTensor::new(&[1, 4], vec![3.0, 0.0, -1.0, -2.0]);
    let p = soft_topk(&r, &[1.0], &[0.5]);
    assert!(p.data[1] < 0.45 && p.data[0] > 0.45, "{p:?}");
    let (idx, val) = soft_topk_truncated(&r, &[1.0], &[0.5], 2.0, 1.8);
    assert_eq!(idx, vec![vec![0, u32::MAX]]);
    assert_eq!(val, vec![vec![p.data[0], 0.0]]);
    // Ties at p_(m): r = [1, 1, 1, 0], k = 1, c_cap = 2 → m = 2; τ = p_(2) = p_(1) passes
    // all three tied entries, the capacity keeps the two lowest indices.
    let r = RefTensor::new(&[1, 4], vec![1.0, 1.0, 1.0, 0.0]);
    let p = soft_topk(&r, &[1.0], &[1.0]);
    let (idx, val) = soft_topk_truncated(&r, &[1.0], &[1.0], 2.0, 1.8);
    assert_eq!(idx, vec![vec![0, 1]]);
    assert_eq!(val, vec![vec![p.data[0], p.data[1]]]);
    // c_cap·k ≥ n caps m at n: n = 1 always keeps its single entry.
    let r = RefTensor::new(&[1, 1], vec![-7.0]);
    let (idx, val) = soft_topk_truncated(&r, &[0.3], &[1.0], 4.0, 1.8);
    assert_eq!(idx, vec![vec![0]]);
    assert!((val[0][0] - 0.3).abs() < 1e-15, "{val:?}");
}

#[test]
fn truncated_backward_matches_finite_differences_with_frozen_mask() {
    let mut rng = Lcg(7);
    let (c_cap, c_tau) = (2.0, 1.8);
    for (r, k, alpha) in truncation_batches(&mut rng) {
        // m = ⌈c_cap·k⌉ jumps where c_cap·k is an integer (k = 1, 1.5, 2 here), so a step
        // in k could change the mask there: move k off those points.
        let k: Vec<f64> = k.iter().map(|v| v + 0.01).collect();
        let (rows, n) = (r.shape[0], r.shape[1]);
        let g = RefTensor::new(&[rows, n], rng.vec(rows * n, -1.0, 1.0));
        // The kept index sets, padding dropped: at k = 1 with c_cap = 2 a step in k moves
        // the capacity m = ⌈c_cap·k⌉ from 2 to 3 without changing the mask.
        let kept_sets = |idx: Vec<Vec<u32>>| -> Vec<Vec<u32>> {
            idx.into_iter()
                .map(|row| {
                    let mut kept: Vec<u32> = row.into_iter().filter(|&i| i != u32::MAX).collect();
                    kept.sort_unstable();
                    kept
                })
                .collect()
        };
        let base = kept_sets(soft_topk_truncated(&r, &k, &alpha, c_cap, c_tau).0);
        // ℓ = Σ g·p̃; the data keep every p away from τ and from each other by ≫ h, so
        // the mask is constant over the stencil (asserted, not assumed).
        let loss = |x: &[f64], k: &[f64], a: &[f64]| {
            let rt = RefTensor::new(&[rows, n], x.to_vec());
            let moved = kept_sets(soft_topk_truncated(&rt, k, a, c_cap, c_tau).0);
            assert_eq!(moved, base, "the mask moved under a step of {H}");
            let pt = soft_topk_truncated_dense(&rt, k, a, c_cap, c_tau);
            pt.data.iter().zip(&g.data).map(|(p, g)| p * g).sum::<f64>()
        };
        let (gr, gk, ga) = soft_topk_truncated_backward(&r, &k, &alpha, c_cap, c_tau, &g);
        let fd_r = finite_diff(|x| loss(x, &k, &alpha), &r.data, H);
        let fd_k = finite_diff(|x| loss(&r.data, x, &alpha), &k, H);
        let fd_a = finite_diff(|x| loss(&r.data, &k, x), &alpha, H);
        assert_grad(&format!("n {n}: ∂r"), &gr.data, &fd_r);
        assert_grad(&format!("n {n}: ∂k"), &gk, &fd_k);
        assert_grad(&format!("n {n}: ∂α"), &ga, &fd_a);
        // Dropped entries pass no gradient: the result equals the dense VJP of g ⊙ mask.
        let dense = soft_topk_truncated_dense(&r, &k, &alpha, c_cap, c_tau);
        let masked: Vec<f64> = g
            .data
            .iter()
            .zip(&dense.data)
            .map(|(g, p)| if *p > 0.0 { *g } else { 0.0 })
            .collect();
        let want = soft_topk_backward(&r, &k, &alpha, &RefTensor::new(&[rows, n], masked));
        assert_eq!((gr, gk, ga), want);
    }
}

// ------------------------------------------------------------------ soft rank

#[test]
fn soft_rank_sums_to_triangle_number_and_tends_to_hard_rank() {
    let mut rng = Lcg(31);
    for &n in &[1, 2, 7, 20] {
        for &alpha in &[1e-3, 0.1, 1.0, 50.0] {
            let r = rng.vec(n, -3.0, 3.0);
            let rank = soft_rank(&r, alpha);
            let sum: f64 = rank.iter().sum();
            let want = (n * (n + 1)) as f64 / 2.0;
            // n² terms of size ≤ 1 summed in f64.
            assert!(
                (sum - want).abs() <= 64.0 * f64::EPSILON * (n * n) as f64,
                "n {n} α {alpha}: Σ rank = {sum}"
            );
            assert!(
                rank.iter().all(|v| (1.0..=n as f64).contains(v)),
                "{rank:?}"
            );
        }
        // α → 0 on gaps ≥ 0.09: within n·½e^{−90} of the 1-based hard rank.
        let r = rng.distinct(n);
        let rank = soft_rank(&r, 1e-3);
        for (i, ri) in r.iter().enumerate() {
            let hard = 1 + r.iter().filter(|&rj| rj < ri).count();
            assert!((rank[i] - hard as f64).abs() < 1e-12, "{i}: {}", rank[i]);
        }
    }
    // Ties share the mean of their ranks: [0, 1, 1, 2] → [1, 2.5, 2.5, 4].
    let rank = soft_rank(&[0.0, 1.0, 1.0, 2.0], 1e-3);
    assert!(rel_err(&rank, &[1.0, 2.5, 2.5, 4.0]) < 1e-12, "{rank:?}");
}

#[test]
fn soft_rank_backward_matches_finite_differences() {
    let mut rng = Lcg(808);
    for &n in &[1, 2, 6, 15] {
        let mut r = rng.vec(n, -2.0, 2.0);
        if n > 2 {
            r[2] = r[0]; // a tie
        }
        let alpha = rng.range(0.2, 2.0);
        let g = rng.vec(n, -1.0, 1.0);
        let loss = |r: &[f64], a: f64| {
            let rank = soft_rank(r, a);
            rank.iter().zip(&g).map(|(x, y)| x * y).sum::<f64>()
        };
        // The tie sits on the kink of f: there the central difference of F((r_0 − r_2)/α)
        // is 1/(2α) − h/(4α²) + O(h²), only O(h) accurate, so this test steps h = 1e-7
        // (error ≲ 1e-7·|g|/α² ≈ 3e-6 absolute on gradients of size ~3, rounding noise
        // ε|ℓ|/h ≈ 1e-8).
        let h = 1e-7;
        let (gr, ga) = soft_rank_backward(&r, alpha, &g);
        assert_grad(
            &format!("n {n}: ∂r"),
            &gr,
            &finite_diff(|x| loss(x, alpha), &r, h),
        );
        assert_grad(
            &format!("n {n}: ∂α"),
            &[ga],
            &finite_diff(|x| loss(&r, x[0]), &[alpha], h),
        );
    }
}

// ------------------------------------------------------------------ soft sort

/// `b` with `Σ_j F((b − r_j)/α) = target` by plain bisection on `G` itself (not via the
/// `G = n − S` identity the reference uses).
fn soft_sort_value_by_bisection(r: &[f64], target: f64, alpha: f64) -> f64 {
    let g = |b: f64| {
        r.iter()
            .map(|&rj| laplace_cdf((b - rj) / alpha))
            .sum::<f64>()
    };
    let mut lo = r.iter().copied().fold(f64::INFINITY, f64::min) - 50.0 * alpha;
    let mut hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 50.0 * alpha;
    for _ in 0..200 {
        let mid = lo + 0.5 * (hi - lo);
        if g(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo + 0.5 * (hi - lo)
}

#[test]
fn soft_sort_is_ascending_solves_its_equation_and_tends_to_hard_sort() {
    let mut rng = Lcg(555);
    for &n in &[1, 2, 5, 13] {
        for &alpha in &[1e-2, 0.3, 2.0] {
            let mut r = rng.vec(n, -3.0, 3.0);
            if n > 3 {
                r[3] = r[1]; // a tie
            }
            let s = soft_sort(&r, alpha);
            assert!(s.windows(2).all(|w| w[0] <= w[1]), "not ascending: {s:?}");
            for (i, &b) in s.iter().enumerate() {
                let want = soft_sort_value_by_bisection(&r, i as f64 + 0.5, alpha);
                assert!(
                    (b - want).abs() <= 1e-9 * alpha + 1e-14,
                    "n {n} α {alpha} i {i}: {b} vs {want}"
                );
            }
            // Order-invariant: a permuted row sorts to the same values.
            let perm = rng.permutation(n);
            let shuffled: Vec<f64> = perm.iter().map(|&i| r[i]).collect();
            assert_eq!(soft_sort(&shuffled, alpha), s);
        }
        // α → 0 on gaps ≥ 0.09: b_i is within ~α·e^{−90} of the i-th smallest.
        let r = rng.distinct(n);
        let mut hard = r.clone();
        hard.sort_by(f64::total_cmp);
        let s = soft_sort(&r, 1e-3);
        assert!(rel_err(&s, &hard) <= 1e-12, "{s:?} vs {hard:?}");
    }
}

#[test]
fn soft_sort_backward_matches_finite_differences() {
    let mut rng = Lcg(1234);
    for &n in &[1, 2, 6, 15] {
        let mut r = rng.vec(n, -2.0, 2.0);
        if n > 2 {
            r[2] = r[1]; // a tie
        }
        let alpha = rng.range(0.2, 2.0);
        let g = rng.vec(n, -1.0, 1.0);
        let loss = |r: &[f64], a: f64| {
            let s = soft_sort(r, a);
            s.iter().zip(&g).map(|(x, y)| x * y).sum::<f64>()
        };
        let (gr, ga) = soft_sort_backward(&r, alpha, &g);
        assert_grad(
            &format!("n {n}: ∂r"),
            &gr,
            &finite_diff(|x| loss(x, alpha), &r, H),
        );
        assert_grad(
            &format!("n {n}: ∂α"),
            &[ga],
            &finite_diff(|x| loss(&r, x[0]), &[alpha], H),
        );
    }
}

// ------------------------------------------------------------------ argument checks

#[test]
#[should_panic(expected = "k must lie in (0, n)")]
fn threshold_rejects_k_at_n() {
    soft_topk_threshold(&[0.0, 1.0], 2.0, 1.0);
}

#[test]
#[should_panic(expected = "k must lie in (0, n)")]
fn threshold_rejects_k_zero() {
    soft_topk_threshold(&[0.0, 1.0], 0.0, 1.0);
}

#[test]
#[should_panic(expected = "alpha must be finite and > 0")]
fn threshold_rejects_alpha_zero() {
    soft_topk_threshold(&[0.0, 1.0], 1.0, 0.0);
}

#[test]
#[should_panic(expected = "every r must be finite")]
fn soft_topk_rejects_nan() {
    soft_topk(
        &RefTensor::new(&[1, 2], vec![f64::NAN, 1.0]),
        &[1.0],
        &[1.0],
    );
}

#[test]
#[should_panic(expected = "k and alpha need one entry per row")]
fn soft_topk_rejects_short_k() {
    soft_topk(&RefTensor::new(&[2, 2], vec![0.0; 4]), &[1.0], &[1.0, 1.0]);
}

#[test]
#[should_panic(expected = "c_cap must be finite and > 0")]
fn truncated_rejects_zero_capacity() {
    soft_topk_truncated(
        &RefTensor::new(&[1, 2], vec![0.0, 1.0]),
        &[1.0],
        &[1.0],
        0.0,
        1.8,
    );
}
