//! Embedding, LayerNorm, Dropout, MLP, patch embedding and the soft top-k layer.
//!
//! - [`Embedding`]: `E[ids]`, a row gather; `Ē` is the index-add of the output gradient.
//! - [`LayerNorm`] (Ba et al. 2016): over the last axis,
//!   `y = γ ⊙ (x − μ)/√(σ² + ε) + β`, `μ`, `σ²` the mean and biased variance.
//! - [`Dropout`] (Srivastava et al. 2014), inverted: in training
//!   `y = x ⊙ m/(1 − p)`, `m ~ Bernoulli(1 − p)`; identity in evaluation.
//! - [`Mlp`]: Linear layers with an activation between them (none after the last).
//! - [`PatchEmbed`] (ViT, Dosovitskiy et al. 2021): an image `[B, C, H, W]` cut into
//!   `p × p` patches, each flattened in `(c, y, x)` order and mapped by one Linear:
//!   `[B, (H/p)(W/p), D]`, patches in raster order.
//! - [`SoftTopK`] (LapSum, `specs/softtopk-engine.md`): soft top-k weights of each row with a
//!   learnable `k = n·σ(κ)` (so `k ∈ (0, n)` always) and temperature `α = e^{ℓ}`.

use lapis_ops::{DType, Device, LapisError, Result, Tensor};

use super::{Linear, Param, ParamVars, Params};
use crate::var::Var;

/// `[vocab, dim]` embeddings, initialised `N(0, 1)` (PyTorch's default).
pub struct Embedding {
    weight: Param,
    dim: usize,
}

impl Embedding {
    /// Registers `{prefix}.weight`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        vocab: usize,
        dim: usize,
        seed: u64,
    ) -> Result<Self> {
        let w = lapis_ops::normal(dev, &[vocab, dim], 0.0, 1.0, seed)?;
        Ok(Embedding {
            weight: params.add(format!("{prefix}.weight"), w)?,
            dim,
        })
    }

    /// `ids` (u32, any shape, each `< vocab`) → `[...ids.shape, dim]`.
    pub fn forward(&self, vars: &ParamVars, ids: &Tensor) -> Result<Var> {
        let flat = ids.reshape(&[ids.numel()])?;
        let rows = vars.get(self.weight)?.index_select(0, &flat)?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.dim);
        rows.reshape(&shape)
    }
}

/// Layer normalisation over the last axis, `γ = 1`, `β = 0` at init.
pub struct LayerNorm {
    gamma: Param,
    beta: Param,
    dim: usize,
    eps: f32,
}

impl LayerNorm {
    /// Registers `{prefix}.weight` (γ) and `{prefix}.bias` (β), both `[dim]`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        dim: usize,
        eps: f32,
    ) -> Result<Self> {
        if !(eps.is_finite() && eps > 0.0) {
            return Err(LapisError::invalid(
                "LayerNorm::new",
                "eps",
                eps,
                "must be finite and > 0",
            ));
        }
        Ok(LayerNorm {
            gamma: params.add(
                format!("{prefix}.weight"),
                lapis_ops::ones(dev, &[dim], DType::F32)?,
            )?,
            beta: params.add(
                format!("{prefix}.bias"),
                lapis_ops::zeros(dev, &[dim], DType::F32)?,
            )?,
            dim,
            eps,
        })
    }

    /// Normalises the last axis of `x [..., dim]`.
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        // Without this check a last axis of length 1 would broadcast against γ and β and
        // silently return `[..., dim]` (and rank 0 would underflow the axis).
        if x.shape().last() != Some(&self.dim) {
            return Err(LapisError::shape(
                "LayerNorm::forward",
                x.shape(),
                format!("need [..., {}]", self.dim),
            ));
        }
        let ax = x.shape().len() - 1;
        let mu = x.mean(ax)?;
        let xc = x.sub(&mu)?;
        let var = xc.mul(&xc)?.mean(ax)?;
        let inv = var.add_scalar(self.eps)?.sqrt()?;
        xc.div(&inv)?
            .mul(vars.get(self.gamma)?)?
            .add(vars.get(self.beta)?)
    }
}

/// Inverted dropout with drop probability `p ∈ [0, 1)`.
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// A dropout layer (no parameters).
    pub fn new(p: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(LapisError::invalid(
                "Dropout::new",
                "p",
                p,
                "must lie in [0, 1)",
            ));
        }
        Ok(Dropout { p })
    }

    /// In training, zeroes each entry with probability `p` (mask drawn from `seed`) and
    /// scales the rest by `1/(1 − p)`; in evaluation returns `x`.
    pub fn forward(&self, x: &Var, training: bool, seed: u64) -> Result<Var> {
        if !training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let dev = x.value().device();
        let u = lapis_ops::uniform(dev, x.shape(), 0.0, 1.0, seed)?;
        // keep = 1 where u ≥ p: sign(relu(u − p)) is 1 above p, 0 at or below.
        let keep = lapis_ops::sign(&lapis_ops::relu(&lapis_ops::add_scalar(&u, -self.p)?)?)?;
        let mask = lapis_ops::mul_scalar(&keep, 1.0 / (1.0 - self.p))?;
        x.mul(&x.constant(mask))
    }
}

/// The nonlinearity of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// GELU (tanh form).
    Gelu,
    /// `tanh`.
    Tanh,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// `Linear → act → … → Linear` through the widths `sizes` (`sizes.len() ≥ 2`).
pub struct Mlp {
    layers: Vec<Linear>,
    act: Activation,
}

impl Mlp {
    /// Registers `{prefix}.{i}.weight` / `.bias` for each layer `i`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        sizes: &[usize],
        act: Activation,
        seed: u64,
    ) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(LapisError::invalid(
                "Mlp::new",
                "sizes",
                format!("{sizes:?}"),
                "need at least two nonzero widths",
            ));
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Linear::new(
                    params,
                    &format!("{prefix}.{i}"),
                    dev,
                    w[0],
                    w[1],
                    true,
                    seed.wrapping_add(i as u64),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, act })
    }

    /// Applies the network to `x [..., sizes[0]]`.
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(vars, &h)?;
            if i + 1 < self.layers.len() {
                h = self.act.apply(&h)?;
            }
        }
        Ok(h)
    }
}

/// ViT patch embedding: `[B, C, H, W]` → `[B, (H/p)(W/p), dim]`.
pub struct PatchEmbed {
    proj: Linear,
    patch: usize,
    channels: usize,
}

impl PatchEmbed {
    /// Registers `{prefix}.proj.weight` `[C·p·p, dim]` and `.bias`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        channels: usize,
        patch: usize,
        dim: usize,
        seed: u64,
    ) -> Result<Self> {
        if patch == 0 || channels == 0 {
            return Err(LapisError::invalid(
                "PatchEmbed::new",
                "patch/channels",
                format!("{patch}/{channels}"),
                "must be > 0",
            ));
        }
        let proj = Linear::new(
            params,
            &format!("{prefix}.proj"),
            dev,
            channels * patch * patch,
            dim,
            true,
            seed,
        )?;
        Ok(PatchEmbed {
            proj,
            patch,
            channels,
        })
    }

    /// Cuts `x [B, C, H, W]` (H, W multiples of the patch) into patches and embeds them.
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        let p = self.patch;
        let (b, c, h, w) = match x.shape() {
            &[b, c, h, w] if c == self.channels && h % p == 0 && w % p == 0 => (b, c, h, w),
            s => {
                return Err(LapisError::shape(
                    "PatchEmbed::forward",
                    s,
                    format!(
                        "need [B, {}, H, W] with H and W multiples of {p}",
                        self.channels
                    ),
                ))
            }
        };
        let (gh, gw) = (h / p, w / p);
        let patches = x
            .reshape(&[b, c, gh, p, gw, p])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape(&[b, gh * gw, c * p * p])?;
        self.proj.forward(vars, &patches)
    }
}

/// Soft top-k weights with learnable `k = n·σ(κ)` and `α = e^{ℓ}` (one of each, shared by
/// the rows).
pub struct SoftTopK {
    kappa: Param,
    log_alpha: Param,
    n: usize,
}

impl SoftTopK {
    /// Registers `{prefix}.k_logit` and `{prefix}.log_alpha` for rows of length `n`, starting
    /// at `k0 ∈ (0, n)` and `alpha0 > 0`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        n: usize,
        k0: f32,
        alpha0: f32,
    ) -> Result<Self> {
        const OP: &str = "SoftTopK::new";
        if !(k0 > 0.0 && k0 < n as f32) {
            return Err(LapisError::invalid(
                OP,
                "k0",
                k0,
                format!("must lie in (0, {n})"),
            ));
        }
        if !(alpha0.is_finite() && alpha0 > 0.0) {
            return Err(LapisError::invalid(
                OP,
                "alpha0",
                alpha0,
                "must be finite and > 0",
            ));
        }
        let q = k0 / n as f32;
        let kappa = (q / (1.0 - q)).ln();
        Ok(SoftTopK {
            kappa: params.add(
                format!("{prefix}.k_logit"),
                Tensor::from_slice(dev, &[1], &[kappa])?,
            )?,
            log_alpha: params.add(
                format!("{prefix}.log_alpha"),
                Tensor::from_slice(dev, &[1], &[alpha0.ln()])?,
            )?,
            n,
        })
    }

    /// The current `k` as a Var `[1]`.
    pub fn k(&self, vars: &ParamVars) -> Result<Var> {
        vars.get(self.kappa)?.sigmoid()?.mul_scalar(self.n as f32)
    }

    /// Weights `p [B, n]` (each row sums to `k`) for scores `x [B, n]` (or `[n]`).
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        // `k = n·σ(κ)` is parametrised by this layer's `n`: rows of another length would
        // silently get a k range that is too narrow, or one that can leave (0, len).
        match x.shape() {
            &[n] | &[_, n] if n == self.n => {}
            s => {
                return Err(LapisError::shape(
                    "SoftTopK::forward",
                    s,
                    format!("need [B, {}] or [{}]", self.n, self.n),
                ))
            }
        }
        let alpha = vars.get(self.log_alpha)?.exp()?;
        x.soft_topk(&self.k(vars)?, &alpha)
    }
}
