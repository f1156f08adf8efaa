//! Host f64 linear algebra for CEDAR's initial and baseline bases (one-off, `d ≤ a few
//! thousand`): a cyclic Jacobi eigensolver for the PCA basis, seeded random orthogonal
//! matrices, a Newton–Schulz polish in f64 and the orthogonality error of a basis.
//!
//! All matrices are row-major `d × d` `Vec<f64>`; a *basis* stores its axes as rows (the
//! `Q` of `z = Q u`).

use lapis_ops::{LapisError, Result};

use crate::data::SplitMix64;

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations.
///
/// Returns `(values, vectors)`, sorted by decreasing eigenvalue, `vectors` row-major with
/// eigenvector `i` in row `i` (so `vectors` is the PCA basis `Q` when `a` is a covariance).
/// Sweeps stop when the off-diagonal mass is below `1e-24` of the total (f64 rounding), or
/// after 60 sweeps (Jacobi converges quadratically; 384-d covariances take ~8).
///
/// Errors: `a.len() != d²`, a non-finite entry, or an asymmetric input
/// (`|a_ij − a_ji| > 1e-9·max|a|`).
pub fn symmetric_eigen(a: &[f64], d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    const OP: &str = "cedar::symmetric_eigen";
    if d == 0 || a.len() != d * d {
        return Err(LapisError::invalid(
            OP,
            "a",
            a.len(),
            format!("must hold d² = {} entries (d = {d} ≥ 1)", d * d),
        ));
    }
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if !scale.is_finite() {
        return Err(LapisError::invalid(
            OP,
            "a",
            "non-finite",
            "entries must be finite",
        ));
    }
    for i in 0..d {
        for j in 0..i {
            if (a[i * d + j] - a[j * d + i]).abs() > 1e-9 * scale.max(1e-300) {
                return Err(LapisError::invalid(OP, "a", (i, j), "must be symmetric"));
            }
        }
    }
    let mut m = a.to_vec();
    // vt: row i = eigenvector i (the transpose of the usual V), so updates touch rows.
    let mut vt = vec![0.0f64; d * d];
    for i in 0..d {
        vt[i * d + i] = 1.0;
    }
    let total: f64 = m.iter().map(|v| v * v).sum();
    for _sweep in 0..60 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * d + j] * m[i * d + j])
            .sum();
        if off <= 1e-24 * total || total == 0.0 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * d + p], m[q * d + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rows p and q of Jᵀ M J (off the 2×2 block), then the block, then the
                // columns by symmetry.
                for r in 0..d {
                    if r == p || r == q {
                        continue;
                    }
                    let (mpr, mqr) = (m[p * d + r], m[q * d + r]);
                    let np = c * mpr - s * mqr;
                    let nq = s * mpr + c * mqr;
                    m[p * d + r] = np;
                    m[q * d + r] = nq;
                    m[r * d + p] = np;
                    m[r * d + q] = nq;
                }
                m[p * d + p] = app - t * apq;
                m[q * d + q] = aqq + t * apq;
                m[p * d + q] = 0.0;
                m[q * d + p] = 0.0;
                for r in 0..d {
                    let (vp, vq) = (vt[p * d + r], vt[q * d + r]);
                    vt[p * d + r] = c * vp - s * vq;
                    vt[q * d + r] = s * vp + c * vq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| m[j * d + j].total_cmp(&m[i * d + i]));
    let values = order.iter().map(|&i| m[i * d + i]).collect();
    let mut vectors = Vec::with_capacity(d * d);
    for &i in &order {
        vectors.extend_from_slice(&vt[i * d..(i + 1) * d]);
    }
    Ok((values, vectors))
}

/// A seeded random orthogonal `d × d` matrix: Gaussian entries (SplitMix64, Box–Muller),
/// rows orthonormalized by modified Gram–Schmidt (run twice for f64 orthogonality), in f64.
pub fn random_orthogonal(d: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let mut g: Vec<f64> = (0..d * d)
        .map(|_| {
            let u1 = rng.next_f64().max(1e-300);
            let u2 = rng.next_f64();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect();
    for _pass in 0..2 {
        for i in 0..d {
            for j in 0..i {
                let dot: f64 = (0..d).map(|c| g[i * d + c] * g[j * d + c]).sum();
                for c in 0..d {
                    g[i * d + c] -= dot * g[j * d + c];
                }
            }
            let n = (0..d).map(|c| g[i * d + c].powi(2)).sum::<f64>().sqrt();
            for c in 0..d {
                g[i * d + c] /= n;
            }
        }
    }
    g
}

/// `c = a b` for row-major `d × d` matrices (f64, i-k-j loop order).
fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik == 0.0 {
                continue;
            }
            let (ci, bk) = (&mut c[i * d..(i + 1) * d], &b[k * d..(k + 1) * d]);
            for (cv, bv) in ci.iter_mut().zip(bk) {
                *cv += aik * bv;
            }
        }
    }
    c
}

/// `aᵀ a` (row-major `d × d`, f64).
fn gram_t(a: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; d * d];
    for r in 0..d {
        let row = &a[r * d..(r + 1) * d];
        for i in 0..d {
            let ri = row[i];
            if ri == 0.0 {
                continue;
            }
            for (cv, rj) in c[i * d..(i + 1) * d].iter_mut().zip(row) {
                *cv += ri * rj;
            }
        }
    }
    c
}

/// `iters` Newton–Schulz steps `W ← 1.5 W − 0.5 W WᵀW` in f64: the polar factor of a
/// nearly orthogonal `w` (converges quadratically when `‖WᵀW − I‖₂ < 1`).
pub fn newton_schulz_f64(w: &[f64], d: usize, iters: usize) -> Vec<f64> {
    let mut w = w.to_vec();
    for _ in 0..iters {
        let wtw = gram_t(&w, d);
        let wwtw = matmul(&w, &wtw, d);
        for (wv, cv) in w.iter_mut().zip(&wwtw) {
            *wv = 1.5 * *wv - 0.5 * cv;
        }
    }
    w
}

/// `max_ij |(QᵀQ − I)_ij|`, computed in f64 from the entries of `q` as stored.
pub fn orthogonality_error(q: &[f64], d: usize) -> f64 {
    let g = gram_t(q, d);
    let mut e = 0.0f64;
    for i in 0..d {
        for j in 0..d {
            let want = if i == j { 1.0 } else { 0.0 };
            e = e.max((g[i * d + j] - want).abs());
        }
    }
    e
}

/// The sample covariance `UᵀU / n` (f64) of the rows of `x` (`n × d`, f32) after
/// subtracting `mean`.
pub fn covariance(x: &[f32], d: usize, mean: &[f64]) -> Vec<f64> {
    let n = x.len() / d;
    let mut c = vec![0.0f64; d * d];
    let mut u = vec![0.0f64; d];
    for r in 0..n {
        for (j, uv) in u.iter_mut().enumerate() {
            *uv = f64::from(x[r * d + j]) - mean[j];
        }
        for i in 0..d {
            let ui = u[i];
            for (cv, uj) in c[i * d..(i + 1) * d].iter_mut().zip(&u) {
                *cv += ui * uj;
            }
        }
    }
    let inv = 1.0 / n.max(1) as f64;
    c.iter_mut().for_each(|v| *v *= inv);
    c
}

/// The column means (f64) of `x` (`n × d`).
pub fn column_mean(x: &[f32], d: usize) -> Vec<f64> {
    let n = x.len() / d;
    let mut m = vec![0.0f64; d];
    for r in 0..n {
        for (mv, xv) in m.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *mv += f64::from(*xv);
        }
    }
    m.iter_mut().for_each(|v| *v /= n.max(1) as f64);
    m
}
