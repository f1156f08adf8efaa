//! The LAPLEX layer (Struski, Blazhko, Kubaty, Tabor, "LAPLEX", arXiv 2605.24584;
//! parameterisation of `specs/laplace-methods.md` §1.2): a dense-equivalent `n → m` map
//! defined by learnable anchors, applied exactly in O((n + m) log(n + m)) per column.
//!
//! With `H` heads, head `h` having source anchors `s_h [n]` (one per input), target anchors
//! `t_h [m]` (one per output), input gains `α_h [n]`, output gains `γ_h [m]`, rate
//! `λ_h = softplus(ρ_h) + iω_h` and phase `φ_h`, and a bias `b [m]`:
//!
//! ```text
//! Y = b + Σ_h diag(γ_h) · Re( e^{iφ_h} K(t_h, s_h; λ_h) · diag(α_h) X ),
//! W_ji = Σ_h γ_hj α_hi e^{−Re λ_h |t_hj − s_hi|} cos(ω_h |t_hj − s_hi| − φ_h).
//! ```
//!
//! The real variant fixes `ω = φ = 0` (not trained). Parameters: `H(2n + 2m + 3) + m`
//! (real: `H(2n + 2m + 1) + m`) against `nm + m` for a dense layer.
//!
//! Init (§1.2): `s, t = linspace(0, 1)` plus `N(0, (0.1/N)²)` jitter, `N = max(n, m)`;
//! `Re λ_h` geometric in `[2, max(N/2, 2)]` across heads (global → local); `ω_h = 0`
//! (phased: `ω_h = Re λ_h`), `φ_h = 0`; `α ~ N(0, 1)`;
//! `γ_hj = (H · Σ_i e^{−2Re λ_h |t_hj − s_hi|})^{−1/2}` (one engine matvec at rate `2λ`), so
//! outputs start with unit variance for unit-variance inputs.
//!
//! The layer maps `x [B, n]` to `[B, m]`: the batch is the operator's channel axis.

use lapis_ops::{DType, Device, LapisError, Result, Tensor};

use super::{Param, ParamVars, Params};
use crate::var::Var;

struct Head {
    s: Param,
    t: Param,
    alpha: Param,
    gamma: Param,
    rho: Param,
    omega: Option<Param>,
    phi: Option<Param>,
}

/// The LAPLEX layer `n → m` (see the module docs).
pub struct LaplexLinear {
    heads: Vec<Head>,
    bias: Param,
    d_in: usize,
    d_out: usize,
}

/// `softplus⁻¹(y) = ln(e^y − 1)`, stable for large `y`.
fn softplus_inv(y: f64) -> f64 {
    if y > 20.0 {
        y
    } else {
        y.exp_m1().ln()
    }
}

/// splitmix64 normals (Box–Muller) for the anchor jitter.
fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut next =
        move || ((crate::rng::splitmix64(&mut s) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..n)
        .map(|_| {
            let (u1, u2) = (next(), next());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

/// `linspace(0, 1, len)` plus `N(0, sd²)` jitter.
fn anchors(len: usize, sd: f64, seed: u64) -> Vec<f32> {
    let jit = normals(len, seed);
    (0..len)
        .map(|i| {
            let base = if len == 1 {
                0.5
            } else {
                i as f64 / (len - 1) as f64
            };
            (base + sd * jit[i]) as f32
        })
        .collect()
}

/// The shape and options of a [`LaplexLinear`] layer: `LaplexConfig::new(n, m)` is one real
/// head with seed 0; chain [`heads`](Self::heads), [`phased`](Self::phased) and
/// [`seed`](Self::seed) to change them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaplexConfig {
    /// Inputs `n`.
    pub d_in: usize,
    /// Outputs `m`.
    pub d_out: usize,
    /// Heads `H` (≥ 1).
    pub heads: usize,
    /// Complex rate `λ_h = softplus(ρ_h) + iω_h` and phase `φ_h` (the phased variant);
    /// `false`: real rate, `ω = φ = 0`.
    pub phased: bool,
    /// Seed of the anchor jitter and the input gains.
    pub seed: u64,
}

impl LaplexConfig {
    /// `n → m`, one real head, seed 0.
    pub fn new(d_in: usize, d_out: usize) -> Self {
        LaplexConfig {
            d_in,
            d_out,
            heads: 1,
            phased: false,
            seed: 0,
        }
    }

    /// `H` heads.
    pub fn heads(mut self, heads: usize) -> Self {
        self.heads = heads;
        self
    }

    /// The phased variant (complex rate and a phase per head).
    pub fn phased(mut self) -> Self {
        self.phased = true;
        self
    }

    /// The init seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl LaplexLinear {
    /// Registers, for each head `h`, `{prefix}.{h}.{s,t,alpha,gamma,rho}` (and `omega`,
    /// `phi` if phased), and `{prefix}.bias`.
    ///
    /// ```no_run
    /// # use lapis_graph::nn::{LaplexConfig, LaplexLinear, Params};
    /// # let dev = lapis_graph::lapis_ops::Device::auto()?;
    /// let mut params = Params::new();
    /// let cfg = LaplexConfig::new(256, 10).heads(4).phased().seed(2);
    /// let head = LaplexLinear::new(&mut params, "head", &dev, &cfg)?;
    /// # Ok::<(), lapis_graph::lapis_ops::LapisError>(())
    /// ```
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        cfg: &LaplexConfig,
    ) -> Result<Self> {
        let LaplexConfig {
            d_in,
            d_out,
            heads,
            phased,
            seed,
        } = *cfg;
        const OP: &str = "LaplexLinear::new";
        if d_in == 0 || d_out == 0 {
            return Err(LapisError::invalid(
                OP,
                "d_in/d_out",
                format!("{d_in}/{d_out}"),
                "must be > 0",
            ));
        }
        if heads == 0 {
            return Err(LapisError::invalid(OP, "heads", heads, "must be > 0"));
        }
        let nmax = d_in.max(d_out);
        let sd = 0.1 / nmax as f64;
        let (lo, hi) = (2.0f64, (nmax as f64 / 2.0).max(2.0));
        let mut hs = Vec::with_capacity(heads);
        for h in 0..heads {
            let seed_h = seed.wrapping_mul(31).wrapping_add(h as u64 * 7919);
            let frac = if heads == 1 {
                0.0
            } else {
                h as f64 / (heads - 1) as f64
            };
            let lam = lo * (hi / lo).powf(frac);
            let s = anchors(d_in, sd, seed_h);
            let t = anchors(d_out, sd, seed_h ^ 0xA5A5);
            let st = Tensor::from_slice(dev, &[d_in], &s)?;
            let tt = Tensor::from_slice(dev, &[d_out], &t)?;
            // γ_j = (H Σ_i e^{−2λ|t_j − s_i|})^{−1/2}
            let ones = lapis_ops::ones(dev, &[d_in], DType::F32)?;
            let mass = lapis_ops::laplace_apply(&st, &tt, &ones, 2.0 * lam as f32)?;
            let gamma = lapis_ops::pow(
                &lapis_ops::mul_scalar(&mass, heads as f32)?,
                &lapis_ops::fill(dev, &[1], -0.5, DType::F32)?,
            )?;
            let alpha = lapis_ops::normal(dev, &[d_in], 0.0, 1.0, seed_h ^ 0x1234)?;
            let name = |p: &str| format!("{prefix}.{h}.{p}");
            let scalar = |v: f64| Tensor::from_slice(dev, &[1], &[v as f32]);
            hs.push(Head {
                s: params.add(name("s"), st)?,
                t: params.add(name("t"), tt)?,
                alpha: params.add(name("alpha"), alpha)?,
                gamma: params.add(name("gamma"), gamma)?,
                rho: params.add(name("rho"), scalar(softplus_inv(lam))?)?,
                omega: if phased {
                    Some(params.add(name("omega"), scalar(lam)?)?)
                } else {
                    None
                },
                phi: if phased {
                    Some(params.add(name("phi"), scalar(0.0)?)?)
                } else {
                    None
                },
            });
        }
        let bias = params.add(
            format!("{prefix}.bias"),
            lapis_ops::zeros(dev, &[d_out], DType::F32)?,
        )?;
        Ok(LaplexLinear {
            heads: hs,
            bias,
            d_in,
            d_out,
        })
    }

    /// `x [B, n]` → `[B, m]`.
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        let b = match x.shape() {
            &[b, n] if n == self.d_in => b,
            s => {
                return Err(LapisError::shape(
                    "LaplexLinear::forward",
                    s,
                    format!("need [B, {}]", self.d_in),
                ))
            }
        };
        // The heads run as one multi-head operator (one sort and one set of sweeps for
        // all of them): their parameters are stacked on the tape, [H, ·].
        let (n, m, nh) = (self.d_in, self.d_out, self.heads.len());
        let stack = |pick: &dyn Fn(&Head) -> Param, len: usize| -> Result<Var> {
            let vs = self
                .heads
                .iter()
                .map(|h| vars.get(pick(h))?.reshape(&[1, len]))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&Var> = vs.iter().collect();
            Var::concat(&refs, 0)
        };
        let s = stack(&|h| h.s, n)?;
        let t = stack(&|h| h.t, m)?;
        let alpha = stack(&|h| h.alpha, n)?.reshape(&[nh, n, 1])?;
        let gamma = stack(&|h| h.gamma, m)?.reshape(&[nh, m, 1])?;
        let a = stack(&|h| h.rho, 1)?.reshape(&[nh])?.softplus()?;
        // [1, n, B] · [H, n, 1]: the batch is the operator's channel axis.
        let v = x.transpose(0, 1)?.reshape(&[1, n, b])?.mul(&alpha)?;
        let y = match (self.heads[0].omega, self.heads[0].phi) {
            (Some(_), Some(_)) => {
                let om = stack(&|h| h.omega.expect("phased heads"), 1)?.reshape(&[nh])?;
                let ph = stack(&|h| h.phi.expect("phased heads"), 1)?.reshape(&[nh])?;
                v.laplace_apply_phased_heads(&s, &t, &a, &om, &ph)?
            }
            _ => v.laplace_apply_heads(&s, &t, &a)?,
        };
        // Σ_h diag(γ_h) Y_h: [H, m, B] → [m, B].
        let y = y.mul(&gamma)?.sum(0)?.reshape(&[m, b])?.transpose(0, 1)?;
        debug_assert_eq!(y.shape(), &[b, self.d_out]);
        y.add(vars.get(self.bias)?)
    }

    /// The dense weight `W [m, n]` the layer applies (`y = W x + b`), from the f32
    /// parameters on the host in f64: for tests and inspection (O(nm)).
    pub fn dense_weight(&self, params: &Params) -> Result<Vec<f64>> {
        let host = |i: Param| -> Result<Vec<f64>> {
            Ok(params
                .get(i)?
                .to_f32_vec()?
                .into_iter()
                .map(f64::from)
                .collect())
        };
        let (n, m) = (self.d_in, self.d_out);
        let mut w = vec![0.0; m * n];
        for h in &self.heads {
            let (s, t, al, ga) = (host(h.s)?, host(h.t)?, host(h.alpha)?, host(h.gamma)?);
            let rho = host(h.rho)?[0];
            let a = rho.max(0.0) + (-rho.abs()).exp().ln_1p(); // softplus, as on the device
            let om = match h.omega {
                Some(i) => host(i)?[0],
                None => 0.0,
            };
            let ph = match h.phi {
                Some(i) => host(i)?[0],
                None => 0.0,
            };
            for j in 0..m {
                for i in 0..n {
                    let d = (t[j] - s[i]).abs();
                    w[j * n + i] += ga[j] * al[i] * (-a * d).exp() * (om * d - ph).cos();
                }
            }
        }
        Ok(w)
    }
}
