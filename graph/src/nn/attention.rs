//! Multi-head scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You
//! Need"):
//!
//! ```text
//! Q = X W_q + b_q,  K = X W_k + b_k,  V = X W_v + b_v          X [B, T, D]
//! head h:  A_h = softmax(Q_h K_hᵀ / √d_h + M) V_h             d_h = D / H
//! Y = concat_h(A_h) W_o + b_o
//! ```
//!
//! with the optional causal mask `M_ij = −∞` for `j > i` (added as `−1e30`, so masked
//! weights are exactly 0 after the max-shifted softmax and no `−∞ − (−∞)` can arise).
//! Everything is composed from tape ops (batched matmul over `[B, H]`, softmax), so the
//! gradients are those ops' VJPs.

use lapis_ops::{Device, LapisError, Result, Tensor};

use super::{Linear, ParamVars, Params};
use crate::var::Var;

/// Multi-head self-attention over `[B, T, D]`.
pub struct MultiHeadAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    dim: usize,
    causal: bool,
}

impl MultiHeadAttention {
    /// Registers `{prefix}.{q,k,v,o}.weight` / `.bias` (`[D, D]`, `[D]`); `heads` must
    /// divide `dim`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        dim: usize,
        heads: usize,
        causal: bool,
        seed: u64,
    ) -> Result<Self> {
        // `usize::is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
        #[allow(clippy::manual_is_multiple_of)]
        let divides = heads > 0 && dim % heads == 0;
        if dim == 0 || !divides {
            return Err(LapisError::invalid(
                "MultiHeadAttention::new",
                "heads",
                heads,
                format!("must be > 0 and divide dim = {dim}"),
            ));
        }
        let mk = |params: &mut Params, name: &str, s: u64| {
            Linear::new(
                params,
                &format!("{prefix}.{name}"),
                dev,
                dim,
                dim,
                true,
                seed.wrapping_add(s),
            )
        };
        Ok(MultiHeadAttention {
            q: mk(params, "q", 0)?,
            k: mk(params, "k", 1)?,
            v: mk(params, "v", 2)?,
            o: mk(params, "o", 3)?,
            heads,
            dim,
            causal,
        })
    }

    /// `[T, T]` additive mask: 0 on and below the diagonal, −1e30 above.
    fn mask(dev: &Device, t: usize) -> Result<Tensor> {
        let m: Vec<f32> = (0..t * t)
            .map(|p| if p % t > p / t { -1e30 } else { 0.0 })
            .collect();
        Tensor::from_slice(dev, &[t, t], &m)
    }

    /// Self-attention of `x [B, T, D]`; returns `[B, T, D]`.
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        let (b, t) = match x.shape() {
            &[b, t, d] if d == self.dim => (b, t),
            s => {
                return Err(LapisError::shape(
                    "MultiHeadAttention::forward",
                    s,
                    format!("need [B, T, {}]", self.dim),
                ))
            }
        };
        let (h, dh) = (self.heads, self.dim / self.heads);
        // [B, T, D] → [B, H, T, dh]
        let split = |y: Var| -> Result<Var> { y.reshape(&[b, t, h, dh])?.permute(&[0, 2, 1, 3]) };
        let q = split(self.q.forward(vars, x)?)?;
        let k = split(self.k.forward(vars, x)?)?;
        let v = split(self.v.forward(vars, x)?)?;
        let mut scores = q
            .matmul_t(&k, false, true)?
            .mul_scalar(1.0 / (dh as f32).sqrt())?;
        if self.causal {
            scores = scores.add(&x.constant(Self::mask(x.value().device(), t)?))?;
        }
        let att = scores.softmax(3)?.matmul(&v)?; // [B, H, T, dh]
        let merged = att.permute(&[0, 2, 1, 3])?.reshape(&[b, t, self.dim])?;
        self.o.forward(vars, &merged)
    }
}
