//! Tests of the Laplace-operator and covariance references: hand values, closed-form
//! gradients against [`finite_diff`], the O(N) sweeps of `laplace-engine.md` §2–3 against
//! the dense operator, and the O(d) AR(1) / Woodbury forms against dense Cholesky.
//!
//! Inputs come from a small deterministic LCG. Gradient checks use `h = 1e-6` and the
//! norm-wise relative error `max_k |g_k − fd_k| / max_k |fd_k|` per parameter block.

use super::C64;
use crate::reference::covariance::{batch_second_moment, ou_chain};
use crate::reference::*;

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

    fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> RefTensor {
        let n = shape.iter().product();
        RefTensor::new(shape, self.vec(n, lo, hi))
    }

    fn index(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }
}

const H: f64 = 1e-6;
/// Step for REMIX objectives at tied anchors (see [`check_remix_grad`]).
const H_TIES: f64 = 1e-7;
const GRAD_TOL: f64 = 1e-6;

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

fn assert_rel(name: &str, got: &[f64], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    assert!(
        e <= tol,
        "{name}: relative error {e:e} > {tol:e}\n got  {got:?}\n want {want:?}"
    );
}

/// `Σ_k a_k b_k` over two tensors' data.
fn inner(a: &RefTensor, b: &RefTensor) -> f64 {
    a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
}

/// `ℓ = Σ gr·Re Y + Σ gi·Im Y`.
fn loss(y: &(RefTensor, RefTensor), gr: &RefTensor, gi: Option<&RefTensor>) -> f64 {
    inner(&y.0, gr) + gi.map_or(0.0, |g| inner(&y.1, g))
}

/// `n` coordinates in `[0, span)`; with `ties`, about a third of them copy an earlier one.
fn coords(rng: &mut Lcg, n: usize, span: f64, ties: bool) -> Vec<f64> {
    let mut x = rng.vec(n, 0.0, span);
    if ties {
        for k in 1..n {
            if rng.uniform() < 0.35 {
                x[k] = x[rng.index(k)];
            }
        }
    }
    x
}

/// Dense `A B` for square/rectangular rank-2 tensors.
fn mm(a: &RefTensor, b: &RefTensor) -> RefTensor {
    matmul(a, b)
}

fn identity(d: usize) -> RefTensor {
    let mut e = vec![0.0; d * d];
    for i in 0..d {
        e[i * d + i] = 1.0;
    }
    RefTensor::new(&[d, d], e)
}

/// `A x` for a `[d, d]` matrix.
fn matvec(a: &RefTensor, x: &[f64]) -> Vec<f64> {
    let d = x.len();
    (0..a.shape[0])
        .map(|i| (0..d).map(|j| a.data[i * d + j] * x[j]).sum())
        .collect()
}

// ------------------------------------------------------------------ operator: values

#[test]
fn kernel_hand_values() {
    // λ = ln 2: K = 2^{−|t−s|}; |0.5 − 0| = |0.5 − 1| = 0.5 → 2^{−1/2}; |3 − 1| = 2 → 1/4.
    let (re, im) = laplace_kernel(&[0.0, 1.0], &[0.5, 3.0], (2f64.ln(), 0.0));
    assert_eq!(re.shape, vec![2, 2]);
    let h = 0.5f64.sqrt();
    assert_close(&re.data, &[h, h, 0.125, 0.25], 1e-14, 1e-15).unwrap();
    assert_eq!(im.data, vec![0.0; 4]);
    // λ = ln 2 + i·π/2: distance 1 → ½(cos π/2 − i sin π/2) = −i/2;
    // distance ½ → 2^{−1/2}(cos π/4 − i sin π/4) = ½ − i/2; distance 0 → 1.
    let lam = (2f64.ln(), std::f64::consts::FRAC_PI_2);
    let (re, im) = laplace_kernel(&[0.0, 1.0, 0.5], &[0.5], lam);
    assert_close(&re.data, &[0.5, 0.5, 1.0], 1e-14, 1e-15).unwrap();
    assert_close(&im.data, &[-0.5, -0.5, 0.0], 1e-14, 1e-15).unwrap();
    // Apply: V = [[1, 2], [3, 4], [5, 6]] → Y = K V.
    let v = RefTensor::new(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (yr, yi) = laplace_apply(&[0.0, 1.0, 0.5], &[0.5], &v, lam);
    // Re: 0.5·1 + 0.5·3 + 5 = 7, 0.5·2 + 0.5·4 + 6 = 9; Im: −0.5·(1 + 3), −0.5·(2 + 4).
    assert_close(&yr.data, &[7.0, 9.0], 1e-14, 1e-14).unwrap();
    assert_close(&yi.data, &[-2.0, -3.0], 1e-14, 1e-14).unwrap();
}

#[test]
fn apply_equals_kernel_matmul() {
    let mut rng = Lcg(1);
    for &(n, m, c, b) in &[
        (1, 1, 1, 0.0),
        (7, 3, 8, 0.7),
        (20, 33, 2, -1.3),
        (40, 1, 5, 0.0),
    ] {
        let s = coords(&mut rng, n, 5.0, true);
        let t = coords(&mut rng, m, 5.0, false);
        let v = rng.tensor(&[n, c], -1.0, 1.0);
        let lam = (0.8, b);
        let (kr, ki) = laplace_kernel(&s, &t, lam);
        let (yr, yi) = laplace_apply(&s, &t, &v, lam);
        assert_eq!(yr.shape, vec![m, c]);
        assert_close(&yr.data, &mm(&kr, &v).data, 1e-13, 1e-13).unwrap();
        assert_close(&yi.data, &mm(&ki, &v).data, 1e-13, 1e-13).unwrap();
        if b == 0.0 {
            assert!(yi.data.iter().all(|&x| x == 0.0));
        }
    }
}

#[test]
fn gram_equals_apply_with_t_equal_s() {
    let mut rng = Lcg(2);
    for &(n, c, b) in &[(1, 1, 0.0), (9, 3, 0.0), (25, 8, 2.0)] {
        let x = coords(&mut rng, n, 3.0, true);
        let v = rng.tensor(&[n, c], -1.0, 1.0);
        let g = laplace_gram(&x, &v, (1.1, b));
        let a = laplace_apply(&x, &x, &v, (1.1, b));
        assert_eq!(g, a);
        // Each point sees itself with weight 1, so a lone point returns its value.
        if n == 1 {
            assert_eq!(g.0.data, v.data);
        }
    }
}

#[test]
fn empty_operands() {
    let v = RefTensor::new(&[0, 3], vec![]);
    let (yr, yi) = laplace_apply(&[], &[1.0, 2.0], &v, (1.0, 0.0));
    assert_eq!(yr.data, vec![0.0; 6]);
    assert_eq!(yi.shape, vec![2, 3]);
    let v = RefTensor::new(&[2, 3], vec![1.0; 6]);
    let (yr, _) = laplace_apply(&[0.0, 1.0], &[], &v, (1.0, 0.0));
    assert_eq!(yr.shape, vec![0, 3]);
}

#[test]
#[should_panic(expected = "real part must be > 0")]
fn apply_rejects_nonpositive_rate() {
    let v = RefTensor::new(&[1, 1], vec![1.0]);
    let _ = laplace_apply(&[0.0], &[0.0], &v, (0.0, 1.0));
}

#[test]
#[should_panic(expected = "values must have shape [n, c]")]
fn apply_rejects_bad_values_shape() {
    let v = RefTensor::new(&[3, 1], vec![1.0; 3]);
    let _ = laplace_apply(&[0.0, 1.0], &[0.0], &v, (1.0, 0.0));
}

#[test]
#[should_panic(expected = "gy_im must have shape [2, 1]")]
fn grad_rejects_bad_upstream() {
    let v = RefTensor::new(&[1, 1], vec![1.0]);
    let g = RefTensor::new(&[2, 1], vec![1.0; 2]);
    let bad = RefTensor::new(&[1, 2], vec![1.0; 2]);
    let _ = laplace_apply_grad(&[0.0], &[0.0, 1.0], &v, (1.0, 0.0), &g, Some(&bad));
}

// ------------------------------------------------------------------ operator: gradients

/// Checks every block of [`laplace_apply_grad`] against central differences.
fn check_apply_grad(
    rng: &mut Lcg,
    n: usize,
    m: usize,
    c: usize,
    lam: (f64, f64),
    ties: bool,
    with_im: bool,
) {
    let s = coords(rng, n, 4.0, ties);
    let mut t = coords(rng, m, 4.0, ties);
    if ties {
        // Exact source/target ties.
        for tj in t.iter_mut() {
            if rng.uniform() < 0.4 {
                *tj = s[rng.index(n)];
            }
        }
    }
    let v = rng.tensor(&[n, c], -1.0, 1.0);
    let gr = rng.tensor(&[m, c], -1.0, 1.0);
    let gi = rng.tensor(&[m, c], -1.0, 1.0);
    let gi = with_im.then_some(&gi);
    let g = laplace_apply_grad(&s, &t, &v, lam, &gr, gi);
    let ctx = format!("n={n} m={m} c={c} λ={lam:?} ties={ties} im={with_im}");

    let f_v = |x: &[f64]| {
        loss(
            &laplace_apply(&s, &t, &RefTensor::new(&[n, c], x.to_vec()), lam),
            &gr,
            gi,
        )
    };
    assert_rel(
        &format!("V̄ {ctx}"),
        &g.v.data,
        &finite_diff(f_v, &v.data, H),
        GRAD_TOL,
    );
    let f_s = |x: &[f64]| loss(&laplace_apply(x, &t, &v, lam), &gr, gi);
    assert_rel(
        &format!("s̄ {ctx}"),
        &g.s,
        &finite_diff(f_s, &s, H),
        GRAD_TOL,
    );
    let f_t = |x: &[f64]| loss(&laplace_apply(&s, x, &v, lam), &gr, gi);
    assert_rel(
        &format!("t̄ {ctx}"),
        &g.t,
        &finite_diff(f_t, &t, H),
        GRAD_TOL,
    );
    let f_l = |x: &[f64]| loss(&laplace_apply(&s, &t, &v, (x[0], x[1])), &gr, gi);
    let fd = finite_diff(f_l, &[lam.0, lam.1], H);
    assert_rel(&format!("ā {ctx}"), &[g.lambda_re], &fd[..1], GRAD_TOL);
    assert_rel(&format!("b̄ {ctx}"), &[g.lambda_im], &fd[1..], GRAD_TOL);
}

#[test]
fn apply_grad_vs_finite_differences() {
    let mut rng = Lcg(3);
    for &(n, m, c) in &[
        (1, 1, 1),
        (1, 6, 3),
        (9, 1, 2),
        (13, 21, 8),
        (40, 25, 4),
        (60, 60, 1),
    ] {
        for &lam in &[(0.9, 0.0), (1.7, 1.2), (0.4, -2.5)] {
            check_apply_grad(&mut rng, n, m, c, lam, false, lam.1 != 0.0);
            check_apply_grad(&mut rng, n, m, c, lam, true, lam.1 != 0.0);
        }
    }
    // Real λ with an upstream on Im Y (zero here, so b̄ is what the phase direction sees).
    check_apply_grad(&mut rng, 11, 7, 3, (1.0, 0.0), true, true);
    // Complex λ read only through Re Y.
    check_apply_grad(&mut rng, 11, 7, 3, (1.0, 0.8), true, false);
}

#[test]
fn gram_grad_vs_finite_differences() {
    let mut rng = Lcg(4);
    for &(n, c, lam) in &[
        (1, 1, (1.0, 0.0)),
        (8, 8, (1.3, 0.0)),
        (30, 3, (0.7, 1.9)),
        (50, 2, (2.0, -0.6)),
    ] {
        for ties in [false, true] {
            let x = coords(&mut rng, n, 4.0, ties);
            let v = rng.tensor(&[n, c], -1.0, 1.0);
            let gr = rng.tensor(&[n, c], -1.0, 1.0);
            let gi = rng.tensor(&[n, c], -1.0, 1.0);
            let g = laplace_gram_grad(&x, &v, lam, &gr, Some(&gi));
            let f_x = |z: &[f64]| loss(&laplace_gram(z, &v, lam), &gr, Some(&gi));
            assert_rel("x̄", &g.x, &finite_diff(f_x, &x, H), GRAD_TOL);
            let f_v = |z: &[f64]| {
                loss(
                    &laplace_gram(&x, &RefTensor::new(&[n, c], z.to_vec()), lam),
                    &gr,
                    Some(&gi),
                )
            };
            assert_rel("V̄", &g.v.data, &finite_diff(f_v, &v.data, H), GRAD_TOL);
            let f_l = |z: &[f64]| loss(&laplace_gram(&x, &v, (z[0], z[1])), &gr, Some(&gi));
            let fd = finite_diff(f_l, &[lam.0, lam.1], H);
            assert_rel("λ̄", &[g.lambda_re, g.lambda_im], &fd, GRAD_TOL);
        }
    }
}

#[test]
fn tie_subgradient_is_zero() {
    // One source and one target at the same point: Y = V, and the kink's mean slope is 0.
    let v = RefTensor::new(&[1, 2], vec![0.3, -2.0]);
    let g1 = RefTensor::new(&[1, 2], vec![1.0, 0.5]);
    let g = laplace_apply_grad(&[1.5], &[1.5], &v, (2.0, 0.7), &g1, Some(&g1));
    assert_eq!(g.s, vec![0.0]);
    assert_eq!(g.t, vec![0.0]);
    // |t − s| = 0, so ∂Y/∂λ = 0 as well; V̄ = Re(conj(G)·1) = Ḡr.
    assert_eq!((g.lambda_re, g.lambda_im), (0.0, 0.0));
    assert_eq!(g.v.data, vec![1.0, 0.5]);
    // Away from the tie the slope is −λK sgn: t = s + 1, real λ = 2, V = 1, Ḡ = 1:
    // t̄ = −2 e^{−2}, s̄ = +2 e^{−2}.
    let v = RefTensor::new(&[1, 1], vec![1.0]);
    let g1 = RefTensor::new(&[1, 1], vec![1.0]);
    let g = laplace_apply_grad(&[0.0], &[1.0], &v, (2.0, 0.0), &g1, None);
    let e = (-2.0f64).exp();
    assert_close(&g.t, &[-2.0 * e], 1e-15, 0.0).unwrap();
    assert_close(&g.s, &[2.0 * e], 1e-15, 0.0).unwrap();
    // ∂Y/∂a = −|t − s| K = −e^{−2}; ∂Y/∂b = i·∂Y/∂λ is imaginary, unseen by Re: b̄ = 0.
    assert_close(&[g.lambda_re, g.lambda_im], &[-e, 0.0], 1e-15, 1e-300).unwrap();
}

#[test]
fn finite_diff_is_exact_on_quadratics() {
    // f = x0² + 3 x0 x1 − x2: ∇f = (2 x0 + 3 x1, 3 x0, −1); central differences are exact
    // for quadratics up to rounding.
    let f = |x: &[f64]| x[0] * x[0] + 3.0 * x[0] * x[1] - x[2];
    let g = finite_diff(f, &[1.0, -2.0, 5.0], 1e-3);
    assert_close(&g, &[-4.0, 3.0, -1.0], 1e-9, 1e-9).unwrap();
}

// ------------------------------------------------------------------ the engine's sweeps

/// Per-target outputs of the sequential O(N) sweeps of `laplace-engine.md` §2–3.
struct Sweep {
    /// `L + R` (= `Y`), `[m·c]`.
    sum: Vec<C64>,
    /// `L − T − R`: `Σ_i sgn(t − s_i) K V_i`, with `T` the mass of sources tied with the
    /// target (removed from `L` so that `sgn(0) = 0`).
    diff: Vec<C64>,
    /// `L − R` as the spec writes it (tied sources counted with `sgn = +1`).
    diff_raw: Vec<C64>,
    /// `gL + gR = Σ_i |t − s_i| K V_i` (first moment).
    moment: Vec<C64>,
}

/// The merged left/right sweeps with the first-moment (2×2) recurrence, written as the
/// spec states them: ties put sources before targets.
fn sweep(src: &[f64], vals: &[C64], tgt: &[f64], c: usize, lam: C64) -> Sweep {
    // (coordinate, 0 = source / 1 = target, index), sources first at ties.
    let mut ev: Vec<(f64, u8, usize)> = src.iter().enumerate().map(|(i, &z)| (z, 0, i)).collect();
    ev.extend(tgt.iter().enumerate().map(|(j, &z)| (z, 1, j)));
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let n_ev = ev.len();
    let zero = vec![C64::default(); c];
    let u: Vec<Vec<C64>> = ev
        .iter()
        .map(|&(_, kind, i)| {
            if kind == 0 {
                vals[i * c..(i + 1) * c].to_vec()
            } else {
                zero.clone()
            }
        })
        .collect();
    let (mut l, mut gl, mut tie) = (
        vec![zero.clone(); n_ev],
        vec![zero.clone(); n_ev],
        vec![zero.clone(); n_ev],
    );
    for k in 0..n_ev {
        for ch in 0..c {
            if k == 0 {
                l[k][ch] = u[k][ch];
                tie[k][ch] = u[k][ch];
            } else {
                let delta = ev[k].0 - ev[k - 1].0;
                let d = C64::exp_neg(lam, delta);
                l[k][ch] = d * l[k - 1][ch] + u[k][ch];
                gl[k][ch] = d * (gl[k - 1][ch] + l[k - 1][ch].scale(delta));
                let carry = if delta == 0.0 {
                    tie[k - 1][ch]
                } else {
                    C64::default()
                };
                tie[k][ch] = carry + u[k][ch];
            }
        }
    }
    let (mut r, mut gr) = (vec![zero.clone(); n_ev], vec![zero.clone(); n_ev]);
    for k in (0..n_ev.saturating_sub(1)).rev() {
        let delta = ev[k + 1].0 - ev[k].0;
        let d = C64::exp_neg(lam, delta);
        for ch in 0..c {
            let next = r[k + 1][ch] + u[k + 1][ch];
            r[k][ch] = d * next;
            gr[k][ch] = d * (gr[k + 1][ch] + next.scale(delta));
        }
    }
    let m = tgt.len();
    let mut out = Sweep {
        sum: vec![C64::default(); m * c],
        diff: vec![C64::default(); m * c],
        diff_raw: vec![C64::default(); m * c],
        moment: vec![C64::default(); m * c],
    };
    for (k, &(_, kind, j)) in ev.iter().enumerate() {
        if kind == 1 {
            for ch in 0..c {
                out.sum[j * c + ch] = l[k][ch] + r[k][ch];
                out.diff[j * c + ch] = l[k][ch] - tie[k][ch] - r[k][ch];
                out.diff_raw[j * c + ch] = l[k][ch] - r[k][ch];
                out.moment[j * c + ch] = gl[k][ch] + gr[k][ch];
            }
        }
    }
    out
}

#[test]
fn engine_sweeps_match_dense_reference() {
    let mut rng = Lcg(5);
    for &(n, m, c, lam) in &[
        (1, 1, 1, (1.0, 0.0)),
        (5, 17, 3, (0.6, 0.0)),
        (33, 12, 8, (1.4, 2.2)),
        (60, 60, 2, (0.3, -1.0)),
    ] {
        for ties in [false, true] {
            let s = coords(&mut rng, n, 6.0, ties);
            let mut t = coords(&mut rng, m, 6.0, ties);
            if ties {
                for tj in t.iter_mut() {
                    if rng.uniform() < 0.5 {
                        *tj = s[rng.index(n)];
                    }
                }
            }
            let v = rng.tensor(&[n, c], -1.0, 1.0);
            let g_re = rng.tensor(&[m, c], -1.0, 1.0);
            let g_im = rng.tensor(&[m, c], -1.0, 1.0);
            let lam_c = C64::new(lam.0, lam.1);
            let ctx = format!("n={n} m={m} c={c} λ={lam:?} ties={ties}");

            // Forward: Y = L + R.
            let vals: Vec<C64> = v.data.iter().map(|&x| C64::new(x, 0.0)).collect();
            let fw = sweep(&s, &vals, &t, c, lam_c);
            let (yr, yi) = laplace_apply(&s, &t, &v, lam);
            let re: Vec<f64> = fw.sum.iter().map(|z| z.re).collect();
            let im: Vec<f64> = fw.sum.iter().map(|z| z.im).collect();
            assert_close(&re, &yr.data, 1e-12, 1e-12).unwrap_or_else(|e| panic!("Re Y {ctx}: {e}"));
            assert_close(&im, &yi.data, 1e-12, 1e-12).unwrap_or_else(|e| panic!("Im Y {ctx}: {e}"));

            let want = laplace_apply_grad(&s, &t, &v, lam, &g_re, Some(&g_im));
            let gc = |j: usize, ch: usize| C64::new(g_re.data[j * c + ch], -g_im.data[j * c + ch]);
            // λ̄: Q = −Σ conj(G)·moment, ā = Re Q, b̄ = −Im Q.
            let mut q = C64::default();
            // t̄_j = Re Σ_c conj(G)·(−λ)(L − T − R); the raw L − R adds the tied mass.
            let (mut t_bar, mut t_bar_raw, mut tie_term) =
                (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
            for j in 0..m {
                for ch in 0..c {
                    let k = j * c + ch;
                    q += -(gc(j, ch) * fw.moment[k]);
                    t_bar[j] += (gc(j, ch) * -(lam_c * fw.diff[k])).re;
                    t_bar_raw[j] += (gc(j, ch) * -(lam_c * fw.diff_raw[k])).re;
                    tie_term[j] += (gc(j, ch) * -(lam_c * (fw.diff_raw[k] - fw.diff[k]))).re;
                }
            }
            assert_rel(
                &format!("λ̄ sweep {ctx}"),
                &[q.re, -q.im],
                &[want.lambda_re, want.lambda_im],
                1e-12,
            );
            assert_rel(&format!("t̄ sweep {ctx}"), &t_bar, &want.t, 1e-12);
            // Without the tie correction the scan gives the one-sided sgn(0) = +1.
            let shifted: Vec<f64> = want.t.iter().zip(&tie_term).map(|(a, b)| a + b).collect();
            assert_rel(&format!("raw t̄ {ctx}"), &t_bar_raw, &shifted, 1e-12);
            if !ties {
                assert_rel(&format!("raw t̄ no ties {ctx}"), &t_bar_raw, &want.t, 1e-12);
            }

            // Swapped pass: targets carry conj(G); V̄ = Re(Lt + Rt), s̄ = Σ_c V Re(λ(Rt − Lt)).
            let gvals: Vec<C64> = (0..m * c).map(|k| gc(k / c, k % c)).collect();
            let bw = sweep(&t, &gvals, &s, c, lam_c);
            let v_bar: Vec<f64> = bw.sum.iter().map(|z| z.re).collect();
            assert_rel(&format!("V̄ sweep {ctx}"), &v_bar, &want.v.data, 1e-12);
            let s_bar: Vec<f64> = (0..n)
                .map(|i| {
                    (0..c)
                        .map(|ch| v.data[i * c + ch] * (-(lam_c * bw.diff[i * c + ch])).re)
                        .sum()
                })
                .collect();
            assert_rel(&format!("s̄ sweep {ctx}"), &s_bar, &want.s, 1e-12);
        }
    }
}

// ------------------------------------------------------------------ dense Cholesky

#[test]
fn cholesky_hand_values() {
    // A = [[4, 2], [2, 10]]: L = [[2, 0], [1, 3]]; det = 36; A⁻¹[1, 1]ᵀ = [8, 2]/36.
    let a = RefTensor::new(&[2, 2], vec![4.0, 2.0, 2.0, 10.0]);
    let l = cholesky(&a);
    assert_eq!(l.data, vec![2.0, 0.0, 1.0, 3.0]);
    assert_close(&[cholesky_logdet(&l)], &[36f64.ln()], 1e-15, 0.0).unwrap();
    assert_close(
        &cholesky_solve(&l, &[1.0, 1.0]),
        &[8.0 / 36.0, 2.0 / 36.0],
        1e-15,
        0.0,
    )
    .unwrap();
}

#[test]
#[should_panic(expected = "not positive definite")]
fn cholesky_rejects_indefinite() {
    let _ = cholesky(&RefTensor::new(&[2, 2], vec![1.0, 2.0, 2.0, 1.0]));
}

#[test]
fn cholesky_reconstructs_random_spd() {
    let mut rng = Lcg(6);
    let d = 30;
    let b = rng.tensor(&[d, d], -1.0, 1.0);
    let mut a = mm(&b, &transpose(&b, 0, 1));
    for i in 0..d {
        a.data[i * d + i] += 0.5;
    }
    let l = cholesky(&a);
    assert_close(&mm(&l, &transpose(&l, 0, 1)).data, &a.data, 1e-12, 1e-12).unwrap();
    let r = rng.vec(d, -1.0, 1.0);
    let x = cholesky_solve(&l, &r);
    assert_close(&matvec(&a, &x), &r, 1e-10, 1e-10).unwrap();
}

// ------------------------------------------------------------------ OU covariance

/// Dense `Σ⁻¹` from the dense Cholesky factor.
fn dense_inverse(a: &RefTensor) -> RefTensor {
    let d = a.shape[0];
    let l = cholesky(a);
    let mut inv = vec![0.0; d * d];
    for j in 0..d {
        let mut e = vec![0.0; d];
        e[j] = 1.0;
        for (i, x) in cholesky_solve(&l, &e).into_iter().enumerate() {
            inv[i * d + j] = x;
        }
    }
    RefTensor::new(&[d, d], inv)
}

/// Compares every O(d) OU form against dense Cholesky of `sigma_dense`.
fn check_ou_against(
    x: &[f64],
    lambda: f64,
    sigma: &[f64],
    sigma_dense: &RefTensor,
    r: &[f64],
    tol: f64,
) {
    let d = x.len();
    let l = cholesky(sigma_dense);
    let ctx = format!("d={d} λ={lambda}");
    assert_rel(
        &format!("logdet {ctx}"),
        &[ou_logdet(x, lambda, sigma)],
        &[cholesky_logdet(&l)],
        tol,
    );
    let y = cholesky_solve(&l, r);
    let maha: f64 = r.iter().zip(&y).map(|(a, b)| a * b).sum();
    assert_rel(
        &format!("maha {ctx}"),
        &[ou_mahalanobis(x, lambda, sigma, r)],
        &[maha],
        tol,
    );
    assert_rel(
        &format!("solve {ctx}"),
        &ou_solve(x, lambda, sigma, r),
        &y,
        tol,
    );
    let p = ou_precision_tridiag(x, lambda, sigma).to_dense();
    assert_rel(
        &format!("precision {ctx}"),
        &p.data,
        &dense_inverse(sigma_dense).data,
        tol,
    );
    assert_rel(
        &format!("P·Σ = I {ctx}"),
        &mm(&p, sigma_dense).data,
        &identity(d).data,
        tol,
    );
}

#[test]
fn ou_ar1_forms_match_dense() {
    let mut rng = Lcg(7);
    for &(d, lambda) in &[
        (1, 1.0),
        (2, 0.5),
        (5, 3.0),
        (20, 1.0),
        (60, 0.25),
        (60, 8.0),
    ] {
        // Unsorted coordinates, well separated (gaps ≥ 0.05).
        let mut x: Vec<f64> = (0..d)
            .map(|k| 0.1 * k as f64 + 0.05 * rng.uniform())
            .collect();
        for k in (1..d).rev() {
            x.swap(k, rng.index(k + 1));
        }
        let sigma = rng.vec(d, 0.5, 2.0);
        let r = rng.vec(d, -1.0, 1.0);
        check_ou_against(
            &x,
            lambda,
            &sigma,
            &ou_cov_dense(&x, lambda, &sigma),
            &r,
            1e-10,
        );
    }
}

#[test]
fn ou_hand_values() {
    // d = 2, x = (0, 1), λ = ln 2: ρ = ½, C = [[1, ½], [½, 1]], det C = ¾;
    // σ = (1, 2): log det Σ = ln 4 + ln ¾ = ln 3.
    let (x, sigma) = ([1.0, 0.0], [2.0, 1.0]);
    let lam = 2f64.ln();
    assert_close(&[ou_logdet(&x, lam, &sigma)], &[3f64.ln()], 1e-14, 0.0).unwrap();
    // C⁻¹ = (4/3)[[1, −½], [−½, 1]]; sorted order is (1, 0): diag (4/3)/σ², off −(2/3)/2.
    let p = ou_precision_tridiag(&x, lam, &sigma);
    assert_eq!(p.order, vec![1, 0]);
    assert_close(&p.diag, &[4.0 / 3.0, 1.0 / 3.0], 1e-14, 0.0).unwrap();
    assert_close(&p.offdiag, &[-1.0 / 3.0], 1e-14, 0.0).unwrap();
    // r = σ ⊙ (1, 1) in sorted order: z = (1, 1), e = (1, (1 − ½)/√¾) → 1 + 1/3.
    assert_close(
        &[ou_mahalanobis(&x, lam, &sigma, &[2.0, 1.0])],
        &[4.0 / 3.0],
        1e-14,
        0.0,
    )
    .unwrap();
    // d = 1: Σ = σ², no gaps.
    assert_close(&[ou_logdet(&[3.0], 1.0, &[2.0])], &[4f64.ln()], 1e-15, 0.0).unwrap();
    assert_eq!(ou_solve(&[3.0], 1.0, &[2.0], &[1.0]), vec![0.25]);
}

/// The dense covariance `σ_i σ_j Π ρ_k` of the floored AR(1) chain.
fn floored_chain_cov(x: &[f64], lambda: f64, sigma: &[f64]) -> RefTensor {
    let d = x.len();
    let ch = ou_chain(x, lambda);
    let mut pos = vec![0; d];
    for (k, &i) in ch.order.iter().enumerate() {
        pos[i] = k;
    }
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            let (lo, hi) = (pos[i].min(pos[j]), pos[i].max(pos[j]));
            out[i * d + j] = sigma[i] * sigma[j] * ch.rho[lo..hi].iter().product::<f64>();
        }
    }
    RefTensor::new(&[d, d], out)
}

#[test]
fn ou_ties_use_the_floor() {
    // Exact ties make the dense C singular; the O(d) forms stay finite and are the exact
    // formulas of the floored chain.
    let x = [0.3, 1.0, 0.3, 2.0, 1.0, 1.0, 0.1];
    let sigma = [1.0, 0.5, 2.0, 1.5, 1.0, 0.8, 1.2];
    let r = [0.2, -0.1, 0.25, 1.0, -0.3, 0.0, 0.5];
    let lambda = 1.5;
    let ch = ou_chain(&x, lambda);
    assert_eq!(ch.order, vec![6, 0, 2, 1, 4, 5, 3]);
    let floored =
        ch.q.iter()
            .filter(|&&q| q == OU_ONE_MINUS_RHO2_FLOOR)
            .count();
    assert_eq!(floored, 3);
    // Away from the ties the floored chain is the plain OU covariance.
    let c_floor = floored_chain_cov(&x, lambda, &sigma);
    let c_dense = ou_cov_dense(&x, lambda, &sigma);
    assert_close(&c_floor.data, &c_dense.data, 1e-7, 1e-7).unwrap();
    // Each floored gap contributes exactly ln(1e-8) to the log det.
    let logdet = ou_logdet(&x, lambda, &sigma);
    let want = 2.0 * sigma.iter().map(|s: &f64| s.ln()).sum::<f64>()
        + ch.q.iter().map(|q| q.ln()).sum::<f64>();
    assert!(logdet.is_finite());
    assert_close(&[logdet], &[want], 1e-14, 0.0).unwrap();
    // cond(C') ≈ 1e8, so dense Cholesky agrees to ≈ 1e-8 · 1e2.
    check_ou_against(&x, lambda, &sigma, &c_floor, &r, 1e-6);
}

#[test]
fn ou_sample_has_exact_covariance() {
    // v = D L ε is linear in ε: stacking the responses to unit draws gives M with
    // M Mᵀ = Cov(v) exactly.
    let mut rng = Lcg(8);
    for ties in [false, true] {
        let d = 25;
        let x = coords(&mut rng, d, 5.0, ties);
        let sigma = rng.vec(d, 0.5, 2.0);
        let mut m = vec![0.0; d * d];
        for k in 0..d {
            let mut e = vec![0.0; d];
            e[k] = 1.0;
            for (i, vi) in ou_sample(&x, 0.7, &sigma, &e).into_iter().enumerate() {
                m[i * d + k] = vi;
            }
        }
        let m = RefTensor::new(&[d, d], m);
        let cov = mm(&m, &transpose(&m, 0, 1));
        let want = floored_chain_cov(&x, 0.7, &sigma);
        assert_close(&cov.data, &want.data, 1e-12, 1e-12).unwrap();
        if !ties {
            assert_close(&cov.data, &ou_cov_dense(&x, 0.7, &sigma).data, 1e-12, 1e-12).unwrap();
        }
    }
}

// ------------------------------------------------------------------ REMIX covariance

struct Remix {
    u: Vec<f64>,
    w: Vec<f64>,
    a: Vec<f64>,
    lambda: f64,
}

fn remix_params(rng: &mut Lcg, d: usize, ties: bool) -> Remix {
    Remix {
        u: rng.vec(d, 0.3, 1.5),
        w: rng.vec(d, -1.0, 1.5),
        a: coords(rng, d, 3.0, ties),
        lambda: rng.range(0.5, 2.5),
    }
}

/// The Woodbury / tridiagonal forms of `laplace-methods.md` §0 with `M = K⁻¹ + diag(w²/u)`
/// (dense M here): `(log det Σ, Σ⁻¹ r, rᵀΣ⁻¹r)`.
fn woodbury(p: &Remix, r: &[f64]) -> (f64, Vec<f64>, f64) {
    let d = p.a.len();
    let ones = vec![1.0; d];
    let mut m = ou_precision_tridiag(&p.a, p.lambda, &ones).to_dense();
    for i in 0..d {
        m.data[i * d + i] += p.w[i] * p.w[i] / p.u[i];
    }
    let lm = cholesky(&m);
    let logdet = p.u.iter().map(|u| u.ln()).sum::<f64>()
        + ou_logdet(&p.a, p.lambda, &ones)
        + cholesky_logdet(&lm);
    let z: Vec<f64> = (0..d).map(|i| p.w[i] * r[i] / p.u[i]).collect();
    let mz = cholesky_solve(&lm, &z);
    let solve: Vec<f64> = (0..d)
        .map(|i| r[i] / p.u[i] - p.w[i] / p.u[i] * mz[i])
        .collect();
    let maha = (0..d).map(|i| r[i] * r[i] / p.u[i]).sum::<f64>()
        - z.iter().zip(&mz).map(|(a, b)| a * b).sum::<f64>();
    (logdet, solve, maha)
}

#[test]
fn remix_dense_matches_woodbury() {
    let mut rng = Lcg(9);
    for &d in &[1, 2, 7, 30, 60] {
        let mut p = remix_params(&mut rng, d, false);
        // Spread the anchors so no gap reaches the AR(1) floor.
        p.a = (0..d)
            .map(|k| k as f64 * 0.07 + 0.05 * rng.uniform())
            .collect();
        for k in (1..d).rev() {
            p.a.swap(k, rng.index(k + 1));
        }
        let r = rng.vec(d, -1.0, 1.0);
        let (logdet, solve, maha) = woodbury(&p, &r);
        let (u, w, a, l) = (&p.u, &p.w, &p.a, p.lambda);
        assert_rel("logdet", &[remix_logdet(u, w, a, l)], &[logdet], 1e-10);
        assert_rel("solve", &remix_solve(u, w, a, l, &r), &solve, 1e-10);
        assert_rel("maha", &[remix_mahalanobis(u, w, a, l, &r)], &[maha], 1e-10);
        let nll = 0.5 * (maha + logdet + d as f64 * (2.0 * std::f64::consts::PI).ln());
        assert_rel("nll", &[remix_nll(u, w, a, l, &r)], &[nll], 1e-10);
        // Σ (Σ⁻¹ r) = r.
        let sigma = remix_cov_dense(u, w, a, l);
        assert_rel(
            "Σ·solve",
            &matvec(&sigma, &remix_solve(u, w, a, l, &r)),
            &r,
            1e-12,
        );
    }
}

#[test]
fn remix_hand_values() {
    // d = 2, a = (0, 1), λ = ln 2 (K_01 = ½), u = (1, 1), w = (1, 2):
    // Σ = [[2, 1], [1, 5]], det 9; Σ⁻¹ (1, 0)ᵀ = (5, −1)/9; rᵀΣ⁻¹r = 5/9.
    let (u, w, a, l) = ([1.0, 1.0], [1.0, 2.0], [0.0, 1.0], 2f64.ln());
    assert_close(
        &remix_cov_dense(&u, &w, &a, l).data,
        &[2.0, 1.0, 1.0, 5.0],
        1e-15,
        0.0,
    )
    .unwrap();
    assert_close(&[remix_logdet(&u, &w, &a, l)], &[9f64.ln()], 1e-15, 0.0).unwrap();
    assert_close(
        &remix_solve(&u, &w, &a, l, &[1.0, 0.0]),
        &[5.0 / 9.0, -1.0 / 9.0],
        1e-15,
        1e-16,
    )
    .unwrap();
    let nll = 0.5 * (5.0 / 9.0 + 9f64.ln() + 2.0 * (2.0 * std::f64::consts::PI).ln());
    assert_close(&[remix_nll(&u, &w, &a, l, &[1.0, 0.0])], &[nll], 1e-15, 0.0).unwrap();
    // Frobenius against the identity: (2−1)² + 1 + 1 + (5−1)² = 19.
    assert_close(
        &[remix_frobenius_fit(&u, &w, &a, l, &identity(2))],
        &[19.0],
        1e-15,
        0.0,
    )
    .unwrap();
}

#[test]
fn remix_frobenius_batch_equals_dense_definition() {
    let mut rng = Lcg(10);
    for &(d, b, ties) in &[(1, 1, false), (6, 3, true), (40, 17, false), (50, 8, true)] {
        let p = remix_params(&mut rng, d, ties);
        let v = rng.tensor(&[b, d], -1.0, 1.0);
        let s = batch_second_moment(&v, b, d);
        let s_norm2: f64 = s.data.iter().map(|x| x * x).sum();
        let want = remix_frobenius_fit(&p.u, &p.w, &p.a, p.lambda, &s) - s_norm2;
        let got = remix_frobenius_batch(&p.u, &p.w, &p.a, p.lambda, &v);
        assert_rel(&format!("F d={d} B={b}"), &[got], &[want], 1e-12);
    }
}

/// Packs `θ = [u, w, a, λ, r]`.
fn pack(p: &Remix, r: &[f64]) -> Vec<f64> {
    let mut th = [p.u.clone(), p.w.clone(), p.a.clone()].concat();
    th.push(p.lambda);
    th.extend_from_slice(r);
    th
}

/// Splits `θ` back into `(u, w, a, λ, r)`.
fn unpack(th: &[f64], d: usize) -> (&[f64], &[f64], &[f64], f64, &[f64]) {
    (
        &th[..d],
        &th[d..2 * d],
        &th[2 * d..3 * d],
        th[3 * d],
        &th[3 * d + 1..],
    )
}

/// Checks each block of `g` against central differences of `f(θ)` with step `h`.
///
/// At tied anchors `f` is not C²: along `a_k` it behaves like
/// `f₀ + g·h + c|h| + e·h|h| + O(h²)` (the kink of `|a_k − a_j|` times a smooth odd part,
/// through the nonlinear log det / solve), so the central difference sees `g + e·h`
/// rather than `g + O(h²)`: the tie cases use a smaller step. (The Laplace operator is
/// linear in each kernel entry, each entry depends on one distance, and so its central
/// differences are exact at ties.)
fn check_remix_grad(
    name: &str,
    g: &RemixGrads,
    f: impl Fn(&[f64]) -> f64,
    th: &[f64],
    d: usize,
    has_r: bool,
    h: f64,
) {
    let fd = finite_diff(f, th, h);
    assert_rel(&format!("{name} ū"), &g.u, &fd[..d], GRAD_TOL);
    assert_rel(&format!("{name} w̄"), &g.w, &fd[d..2 * d], GRAD_TOL);
    assert_rel(&format!("{name} ā"), &g.a, &fd[2 * d..3 * d], GRAD_TOL);
    assert_rel(
        &format!("{name} λ̄"),
        &[g.lambda],
        &fd[3 * d..3 * d + 1],
        GRAD_TOL,
    );
    if has_r {
        assert_rel(&format!("{name} r̄"), &g.r, &fd[3 * d + 1..], GRAD_TOL);
    } else {
        assert!(g.r.is_empty());
        assert!(fd[3 * d + 1..].iter().all(|&x| x == 0.0));
    }
}

#[test]
fn remix_grads_vs_finite_differences() {
    let mut rng = Lcg(11);
    for &(d, ties) in &[(1, false), (2, true), (9, false), (24, true), (40, false)] {
        let p = remix_params(&mut rng, d, ties);
        let r = rng.vec(d, -1.0, 1.0);
        let gy = rng.vec(d, -1.0, 1.0);
        let target = rng.tensor(&[d, d], -0.5, 1.0);
        let b = 5;
        let batch = rng.tensor(&[b, d], -1.0, 1.0);
        let th = pack(&p, &r);
        let (u, w, a, l) = (&p.u[..], &p.w[..], &p.a[..], p.lambda);
        let tag = |s: &str| format!("{s} d={d} ties={ties}");
        let h = if ties { H_TIES } else { H };

        check_remix_grad(
            &tag("logdet"),
            &remix_logdet_grad(u, w, a, l),
            |t| {
                let (u, w, a, l, _) = unpack(t, d);
                remix_logdet(u, w, a, l)
            },
            &th,
            d,
            false,
            h,
        );
        check_remix_grad(
            &tag("solve"),
            &remix_solve_grad(u, w, a, l, &r, &gy),
            |t| {
                let (u, w, a, l, r) = unpack(t, d);
                remix_solve(u, w, a, l, r)
                    .iter()
                    .zip(&gy)
                    .map(|(y, g)| y * g)
                    .sum()
            },
            &th,
            d,
            true,
            h,
        );
        check_remix_grad(
            &tag("mahalanobis"),
            &remix_mahalanobis_grad(u, w, a, l, &r),
            |t| {
                let (u, w, a, l, r) = unpack(t, d);
                remix_mahalanobis(u, w, a, l, r)
            },
            &th,
            d,
            true,
            h,
        );
        check_remix_grad(
            &tag("nll"),
            &remix_nll_grad(u, w, a, l, &r),
            |t| {
                let (u, w, a, l, r) = unpack(t, d);
                remix_nll(u, w, a, l, r)
            },
            &th,
            d,
            true,
            h,
        );
        check_remix_grad(
            &tag("frobenius_fit"),
            &remix_frobenius_fit_grad(u, w, a, l, &target),
            |t| {
                let (u, w, a, l, _) = unpack(t, d);
                remix_frobenius_fit(u, w, a, l, &target)
            },
            &th,
            d,
            false,
            h,
        );
        check_remix_grad(
            &tag("frobenius_batch"),
            &remix_frobenius_batch_grad(u, w, a, l, &batch),
            |t| {
                let (u, w, a, l, _) = unpack(t, d);
                remix_frobenius_batch(u, w, a, l, &batch)
            },
            &th,
            d,
            false,
            h,
        );
    }
}

#[test]
fn remix_sample_has_exact_covariance() {
    // v = [diag(√u) | diag(w) L] [ε₁; ε₂]: stacking unit responses gives M with M Mᵀ = Σ.
    let mut rng = Lcg(12);
    let d = 20;
    let p = remix_params(&mut rng, d, false);
    let mut m = vec![0.0; d * 2 * d];
    for k in 0..2 * d {
        let mut e = vec![0.0; 2 * d];
        e[k] = 1.0;
        let v = remix_sample(&p.u, &p.w, &p.a, p.lambda, &e[..d], &e[d..]);
        for (i, vi) in v.into_iter().enumerate() {
            m[i * 2 * d + k] = vi;
        }
    }
    let m = RefTensor::new(&[d, 2 * d], m);
    let cov = mm(&m, &transpose(&m, 0, 1));
    let want = remix_cov_dense(&p.u, &p.w, &p.a, p.lambda);
    assert_close(&cov.data, &want.data, 1e-12, 1e-12).unwrap();
}

#[test]
#[should_panic(expected = "w has length 2 but d = 3")]
fn remix_rejects_length_mismatch() {
    let _ = remix_cov_dense(&[1.0; 3], &[1.0; 2], &[0.0, 1.0, 2.0], 1.0);
}

#[test]
#[should_panic(expected = "rate λ must be > 0")]
fn ou_rejects_nonpositive_rate() {
    let _ = ou_logdet(&[0.0, 1.0], -1.0, &[1.0, 1.0]);
}
