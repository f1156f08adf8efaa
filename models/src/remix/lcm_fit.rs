//! The per-layer LCM correlation model of REMIX (host f64): its dense correlation
//! `R_LCM = diag(u') + diag(w') K(a) diag(w')` (λ = 1), the Adam fit of `(a, w, ũ)` on
//! `mean((R_LCM − R)²)` with exact gradients, and the dense f64 Gaussian helpers the
//! claim-5 evaluation and the tests use (empirical correlation, Cholesky log-likelihood).

/// `ε` of `u = softplus(ũ) + ε` (\[C\] `lcm.py`).
pub const U_EPS: f64 = 1e-6;
/// The jitter of `Σ_l = diag(σ) R diag(σ) + 1e-5·I` and of `σ² = running_var + 1e-5`.
pub const JITTER: f64 = 1e-5;

/// An LCM over `C` channels in correlation form: anchors `a`, gains `w`, raw nugget `ũ`
/// (`u = softplus(ũ) + ε`); its correlation has `u'_i = u_i/(u_i + w_i²)`,
/// `w'_i = w_i/√(u_i + w_i²)`, so `R_ii = 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct LcmCorr {
    /// Anchors `a [C]`.
    pub a: Vec<f64>,
    /// Gains `w [C]`.
    pub w: Vec<f64>,
    /// Raw nugget `ũ [C]`.
    pub ut: Vec<f64>,
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// What a fit did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FitLog {
    /// `mean((R_LCM − R)²)` before the first step.
    pub mse_start: f64,
    /// After the last step.
    pub mse_end: f64,
    /// The diagonal model's (`R = I`) value, for scale.
    pub mse_diag: f64,
}

impl LcmCorr {
    /// \[C\]'s init: `ũ = 0`, `w = 0.1`, `a = linspace(−1, 1, C)`.
    pub fn init(c: usize) -> LcmCorr {
        let a = (0..c)
            .map(|i| {
                if c == 1 {
                    0.0
                } else {
                    -1.0 + 2.0 * i as f64 / (c - 1) as f64
                }
            })
            .collect();
        LcmCorr {
            a,
            w: vec![0.1; c],
            ut: vec![0.0; c],
        }
    }

    /// Channels.
    pub fn dim(&self) -> usize {
        self.a.len()
    }

    /// `(u', w')` of the correlation form.
    pub fn corr_params(&self) -> (Vec<f64>, Vec<f64>) {
        self.ut
            .iter()
            .zip(&self.w)
            .map(|(&ut, &w)| {
                let u = softplus(ut) + U_EPS;
                let s = u + w * w;
                (u / s, w / s.sqrt())
            })
            .unzip()
    }

    /// The dense correlation `R_LCM` (row-major `C×C`).
    pub fn corr(&self) -> Vec<f64> {
        let c = self.dim();
        let (u, w) = self.corr_params();
        let mut r = vec![0.0; c * c];
        for i in 0..c {
            for j in 0..c {
                r[i * c + j] = if i == j {
                    u[i] + w[i] * w[i]
                } else {
                    w[i] * w[j] * (-(self.a[i] - self.a[j]).abs()).exp()
                };
            }
        }
        r
    }

    /// `mean((R_LCM − R)²)` over all `C²` entries.
    pub fn mse(&self, target: &[f64]) -> f64 {
        let r = self.corr();
        r.iter()
            .zip(target)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / r.len().max(1) as f64
    }

    /// The MSE and its exact gradient w.r.t. `(a, w, ũ)`. The diagonal of `R_LCM` is 1 for
    /// every parameter value, so only off-diagonal entries carry gradient:
    /// `∂/∂w'_k = (4/C²) Σ_{j≠k} D_kj w'_j K_kj`,
    /// `∂/∂a_k = −(4/C²) Σ_{j≠k} D_kj w'_k w'_j K_kj sign(a_k − a_j)`, then
    /// `∂w'/∂w = u/(u+w²)^{3/2}`, `∂w'/∂u = −w/(2(u+w²)^{3/2})`, `∂u/∂ũ = σ(ũ)`.
    pub fn mse_grad(&self, target: &[f64]) -> (f64, [Vec<f64>; 3]) {
        let c = self.dim();
        let (_, wp) = self.corr_params();
        let r = self.corr();
        let n2 = (c * c) as f64;
        let mse = r
            .iter()
            .zip(target)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / n2;
        let (mut gwp, mut ga) = (vec![0.0; c], vec![0.0; c]);
        for k in 0..c {
            for j in 0..c {
                if j == k {
                    continue;
                }
                let kk = (-(self.a[k] - self.a[j]).abs()).exp();
                let d = r[k * c + j] - target[k * c + j];
                // symmetric target: D_kj and D_jk both count (use their mean for safety)
                let d = 0.5 * (d + r[j * c + k] - target[j * c + k]);
                gwp[k] += 4.0 / n2 * d * wp[j] * kk;
                let s = (self.a[k] - self.a[j]).signum();
                ga[k] -= 4.0 / n2 * d * wp[k] * wp[j] * kk * s;
            }
        }
        let mut gw = vec![0.0; c];
        let mut gu = vec![0.0; c];
        for k in 0..c {
            let u = softplus(self.ut[k]) + U_EPS;
            let w = self.w[k];
            let s = u + w * w;
            let s32 = s * s.sqrt();
            gw[k] = gwp[k] * u / s32;
            gu[k] = gwp[k] * (-w / (2.0 * s32)) * sigmoid(self.ut[k]);
        }
        (mse, [ga, gw, gu])
    }

    /// Adam (β = (0.9, 0.999), ε = 1e-8) on `mean((R_LCM − R)²)` over `(a, w, ũ)`,
    /// `steps` steps at `lr` (REMIX: 200 at 0.01), from the current parameters.
    pub fn fit(&mut self, target: &[f64], steps: usize, lr: f64) -> FitLog {
        let c = self.dim();
        let mut log = FitLog {
            mse_start: self.mse(target),
            mse_diag: {
                let mut eye = vec![0.0; c * c];
                for i in 0..c {
                    eye[i * c + i] = 1.0;
                }
                eye.iter()
                    .zip(target)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    / (c * c).max(1) as f64
            },
            mse_end: 0.0,
        };
        let mut m = vec![vec![0.0; c]; 3];
        let mut v = vec![vec![0.0; c]; 3];
        for t in 1..=steps {
            let (_, g) = self.mse_grad(target);
            let c1 = 1.0 - 0.9f64.powi(t as i32);
            let c2 = 1.0 - 0.999f64.powi(t as i32);
            for (p, ((gp, mp), vp)) in g.iter().zip(m.iter_mut()).zip(v.iter_mut()).enumerate() {
                let theta = match p {
                    0 => &mut self.a,
                    1 => &mut self.w,
                    _ => &mut self.ut,
                };
                for k in 0..c {
                    mp[k] = 0.9 * mp[k] + 0.1 * gp[k];
                    vp[k] = 0.999 * vp[k] + 0.001 * gp[k] * gp[k];
                    theta[k] -= lr * (mp[k] / c1) / ((vp[k] / c2).sqrt() + 1e-8);
                }
            }
        }
        log.mse_end = self.mse(target);
        log
    }

    /// The parameters of `Σ = diag(σ) R_LCM diag(σ) + 1e-5·I` in the covariance family
    /// (spec §0): `u'' = σ²u' + 1e-5`, `w'' = σw'`, with `σ² = var` (already including
    /// its `+1e-5`). Returns `(a, u'', w'')` as f32.
    pub fn scaled(&self, var: &[f64]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (u, w) = self.corr_params();
        let a = self.a.iter().map(|&v| v as f32).collect();
        let uu = u
            .iter()
            .zip(var)
            .map(|(&u, &s2)| (s2 * u + JITTER) as f32)
            .collect();
        let ww = w
            .iter()
            .zip(var)
            .map(|(&w, &s2)| (s2.sqrt() * w) as f32)
            .collect();
        (a, uu, ww)
    }

    /// The dense covariance `diag(σ) R_LCM diag(σ) + 1e-5·I` for `σ² = var`.
    pub fn covariance(&self, var: &[f64]) -> Vec<f64> {
        let c = self.dim();
        let mut s = self.corr();
        for i in 0..c {
            for j in 0..c {
                s[i * c + j] *= (var[i] * var[j]).sqrt();
            }
            s[i * c + i] += JITTER;
        }
        s
    }
}

/// Empirical covariance `[C×C]` (divisor n) and mean of row-major `x [n, C]`.
pub fn covariance(x: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / c.max(1);
    let mut mu = vec![0.0; c];
    for r in x.chunks_exact(c) {
        for (m, &v) in mu.iter_mut().zip(r) {
            *m += v as f64 / n.max(1) as f64;
        }
    }
    let mut s = vec![0.0; c * c];
    let mut d = vec![0.0; c];
    for r in x.chunks_exact(c) {
        for (k, (&v, m)) in r.iter().zip(&mu).enumerate() {
            d[k] = v as f64 - m;
        }
        for i in 0..c {
            let di = d[i];
            for j in i..c {
                s[i * c + j] += di * d[j];
            }
        }
    }
    for i in 0..c {
        for j in i..c {
            let v = s[i * c + j] / n.max(1) as f64;
            s[i * c + j] = v;
            s[j * c + i] = v;
        }
    }
    (s, mu)
}

/// Empirical correlation of `x [n, C]`; a channel with (near-)zero variance gets a zero
/// row and column and a 1 on the diagonal.
pub fn correlation(x: &[f32], c: usize) -> Vec<f64> {
    let (s, _) = covariance(x, c);
    let sd: Vec<f64> = (0..c).map(|i| s[i * c + i].sqrt()).collect();
    let mut r = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..c {
            r[i * c + j] = if i == j {
                1.0
            } else if sd[i] > 1e-8 && sd[j] > 1e-8 {
                s[i * c + j] / (sd[i] * sd[j])
            } else {
                0.0
            };
        }
    }
    r
}

/// `‖A − B‖_F`.
pub fn frobenius_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Mean Gaussian log-likelihood per dimension (nats/dim) of the rows of `x [n, C]` under
/// `N(μ, Σ)` (dense `Σ`, f64 Cholesky): `mean_rows(−½(C log 2π + log det Σ + rᵀΣ⁻¹r))/C`.
/// `None` when `Σ` is not positive definite.
pub fn gaussian_ll_per_dim(x: &[f32], c: usize, mu: &[f64], sigma: &[f64]) -> Option<f64> {
    let l = cholesky(sigma, c)?;
    let logdet: f64 = 2.0 * (0..c).map(|i| l[i * c + i].ln()).sum::<f64>();
    let n = x.len() / c;
    let mut z = vec![0.0; c];
    let mut total = 0.0;
    for r in x.chunks_exact(c) {
        // forward substitution L z = r − μ
        for i in 0..c {
            let mut s = r[i] as f64 - mu[i];
            for k in 0..i {
                s -= l[i * c + k] * z[k];
            }
            z[i] = s / l[i * c + i];
        }
        let maha: f64 = z.iter().map(|v| v * v).sum();
        total += -0.5 * (c as f64 * (2.0 * std::f64::consts::PI).ln() + logdet + maha);
    }
    Some(total / n.max(1) as f64 / c as f64)
}

/// Lower Cholesky factor of a dense SPD matrix (row-major), `None` if not SPD.
pub fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}
