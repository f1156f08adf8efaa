//! The SoftMoE layer and the char-level transformer built from it (module docs of
//! [`super`] carry the math).

use std::rc::Rc;

use lapis_graph::nn::{LayerNorm, MultiHeadAttention, Param, ParamVars, Params};
use lapis_graph::{Tape, Var};
use lapis_ops::{self as ops, DType, Device, LapisError, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How a layer picks its experts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Routing {
    /// Switch/GShard: the `k` largest entries of `softmax(r)`, not renormalised.
    TopK {
        /// Experts per token.
        k: usize,
    },
    /// SoftMoE: truncated LapSum soft top-k of the logits (§1.1).
    Soft {
        /// `k` of every layer (SoftMoE*), or `None` for the learned allocation (§1.2).
        k: Option<f32>,
        /// The global budget `K = Σ_ℓ k_ℓ` of the learned allocation.
        budget: f32,
        /// Temperature α of the soft top-k.
        alpha: f32,
        /// Capacity factor: at most `⌈c_cap·k⌉` experts per token.
        c_cap: f32,
        /// Threshold factor: keep `p_i ≥ τ = clamp(c_τ·k/E, p_(m), p_(1))`.
        c_tau: f32,
    },
}

/// The char LM's configuration (§1.4 defaults from [`LmConfig::spec`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    /// Vocabulary (256 bytes).
    pub vocab: usize,
    /// Context length.
    pub context: usize,
    /// Model width.
    pub dim: usize,
    /// Transformer blocks (each with one MoE layer).
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Experts per MoE layer.
    pub experts: usize,
    /// Expert hidden width.
    pub hidden: usize,
    /// Routing of every MoE layer.
    pub routing: Routing,
    /// Router initialisation standard deviation.
    pub router_std: f32,
    /// Seed of every initial value.
    pub seed: u64,
}

impl LmConfig {
    /// §1.4: bytes, context 64, d = 96, 4 layers, 4 heads, E = 8 experts of 96→192→96,
    /// router init N(0, 0.02²).
    pub fn spec(routing: Routing, seed: u64) -> LmConfig {
        LmConfig {
            vocab: 256,
            context: 64,
            dim: 96,
            layers: 4,
            heads: 4,
            experts: 8,
            hidden: 192,
            routing,
            router_std: 0.02,
            seed,
        }
    }

    /// Checks the sizes and the routing against each other.
    // `usize::is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    pub fn validate(&self) -> Result<()> {
        let bad = |arg: &'static str, v: String, msg: String| {
            Err(LapisError::invalid("softmoe", arg, v, msg))
        };
        if self.vocab == 0 || self.context == 0 || self.layers == 0 || self.hidden == 0 {
            return bad("config", format!("{self:?}"), "sizes must be ≥ 1".into());
        }
        if self.heads == 0 || self.dim % self.heads != 0 {
            return bad(
                "heads",
                self.heads.to_string(),
                format!("must divide dim = {}", self.dim),
            );
        }
        if self.experts < 2 {
            return bad("experts", self.experts.to_string(), "must be ≥ 2".into());
        }
        match self.routing {
            Routing::TopK { k } if k == 0 || k > self.experts => bad(
                "k",
                k.to_string(),
                format!("must lie in 1..={}", self.experts),
            ),
            Routing::Soft {
                k,
                budget,
                alpha,
                c_cap,
                c_tau,
            } => {
                if let Some(k) = k {
                    if !(k > 0.0 && k < self.experts as f32) {
                        return bad(
                            "k",
                            k.to_string(),
                            format!("must lie in (0, {})", self.experts),
                        );
                    }
                } else {
                    let l = self.layers as f32;
                    if !(budget >= l && budget - l + 1.0 < self.experts as f32) {
                        return bad(
                            "budget",
                            budget.to_string(),
                            format!(
                                "K must satisfy L ≤ K and K − L + 1 < E ({} layers, {} experts)",
                                self.layers, self.experts
                            ),
                        );
                    }
                }
                if !(alpha.is_finite() && alpha > 0.0) {
                    return bad("alpha", alpha.to_string(), "must be finite and > 0".into());
                }
                if !(c_cap.is_finite() && c_cap > 0.0 && c_tau.is_finite() && c_tau >= 0.0) {
                    return bad(
                        "c_cap/c_tau",
                        format!("{c_cap}/{c_tau}"),
                        "c_cap must be > 0 and c_τ ≥ 0".into(),
                    );
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The largest `k` a layer can have (sizes the routing slots without a host read).
    pub fn k_max(&self) -> f32 {
        match self.routing {
            Routing::TopK { k } => k as f32,
            Routing::Soft { k: Some(k), .. } => k,
            Routing::Soft {
                k: None, budget, ..
            } => budget - self.layers as f32 + 1.0,
        }
    }
}

/// One MoE layer: router `W_g [d, E]` and experts `E_e(x) = W2_e GELU(W1_e x + b1_e) + b2_e`.
pub struct MoeLayer {
    router: Param,
    w1: Param,
    b1: Param,
    w2: Param,
    b2: Param,
    experts: usize,
    dim: usize,
}

/// What a MoE layer returns.
pub struct MoeOutput {
    /// `y [N, d]`.
    pub y: Var,
    /// The Switch balance loss `L_aux = (E/AE) Σ_e P̄_e f_e` (`[1]`).
    pub aux: Var,
    /// Active experts per token, f32 `[N]` (no gradient).
    pub active: Tensor,
}

/// The routing of one batch: slot weights on the tape, expert indices and the mask.
struct Slots {
    values: Var,
    indices: Tensor,
    mask: Tensor,
}

impl MoeLayer {
    /// Registers `{prefix}.router`, `{prefix}.w1/b1/w2/b2` (experts: uniform ±1/√fan-in,
    /// biases 0; router N(0, router_std²)).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        dim: usize,
        hidden: usize,
        experts: usize,
        router_std: f32,
        seed: u64,
    ) -> Result<Self> {
        let u = |shape: &[usize], fan: usize, s: u64| {
            let b = 1.0 / (fan as f32).sqrt();
            ops::uniform(dev, shape, -b, b, s)
        };
        Ok(MoeLayer {
            router: params.add(
                format!("{prefix}.router"),
                ops::normal(dev, &[dim, experts], 0.0, router_std, seed)?,
            )?,
            w1: params.add(
                format!("{prefix}.w1"),
                u(&[experts, dim, hidden], dim, seed + 1)?,
            )?,
            b1: params.add(
                format!("{prefix}.b1"),
                ops::zeros(dev, &[experts, hidden], DType::F32)?,
            )?,
            w2: params.add(
                format!("{prefix}.w2"),
                u(&[experts, hidden, dim], hidden, seed + 2)?,
            )?,
            b2: params.add(
                format!("{prefix}.b2"),
                ops::zeros(dev, &[experts, dim], DType::F32)?,
            )?,
            experts,
            dim,
        })
    }

    /// Router logits `r = x W_g` for `x [N, d]`.
    pub fn logits(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        x.matmul(vars.get(self.router)?)
    }

    fn route(&self, r: &Var, routing: Routing, k: Option<&Var>, k_max: f32) -> Result<Slots> {
        match routing {
            Routing::TopK { k } => {
                let q = r.softmax(1)?;
                let (_, perm) = ops::argsort_rows(&ops::mul_scalar(q.value(), -1.0)?)?;
                let indices = ops::slice(&perm, 1, 0, k)?;
                let values = q.gather(1, &indices)?;
                let mask = ops::ones(r.value().device(), indices.shape(), DType::F32)?;
                Ok(Slots {
                    values,
                    indices,
                    mask,
                })
            }
            Routing::Soft {
                k: fixed,
                alpha,
                c_cap,
                c_tau,
                ..
            } => {
                let t = match (k, fixed) {
                    (Some(kv), _) => {
                        r.soft_topk_truncated_bounded(kv, alpha, c_cap, c_tau, k_max)?
                    }
                    (None, Some(kf)) => {
                        r.soft_topk_truncated_bounded(kf, alpha, c_cap, c_tau, kf)?
                    }
                    (None, None) => {
                        return Err(LapisError::invalid(
                            "MoeLayer::forward",
                            "k",
                            "none",
                            "the learned allocation passes each layer's k",
                        ))
                    }
                };
                Ok(Slots {
                    values: t.values,
                    indices: t.indices,
                    mask: t.mask,
                })
            }
        }
    }

    /// The layer on tokens `x [N, d]`: route, evaluate only the routed (token, expert)
    /// pairs ([`Var::grouped_linear`]), combine; `k` is this layer's `k_ℓ` (`[1]`) under
    /// the learned allocation, else `None`; `k_max` bounds it.
    pub fn forward(
        &self,
        vars: &ParamVars,
        x: &Var,
        routing: Routing,
        k: Option<&Var>,
        k_max: f32,
    ) -> Result<MoeOutput> {
        let r = self.logits(vars, x)?;
        let slots = self.route(&r, routing, k, k_max)?;
        let (n, cap) = (slots.indices.shape()[0], slots.indices.shape()[1]);
        let dev = x.value().device().clone();
        let m = n * cap;
        let group = slots.indices.reshape(&[m])?;
        let maskf = slots.mask.reshape(&[m])?;
        let order = Rc::new(ops::group_order(&group, &maskf, self.experts)?);
        let tok: Vec<u32> = (0..m).map(|i| (i / cap) as u32).collect();
        let tok = Tensor::from_slice(&dev, &[m], &tok)?;
        let xr = x.index_select(0, &tok)?;
        let h = xr
            .grouped_linear(
                vars.get(self.w1)?,
                vars.get(self.b1)?,
                &group,
                &maskf,
                &order,
            )?
            .gelu()?;
        let o = h.grouped_linear(
            vars.get(self.w2)?,
            vars.get(self.b2)?,
            &group,
            &maskf,
            &order,
        )?;
        let y = o
            .reshape(&[n, cap, self.dim])?
            .mul(&slots.values.reshape(&[n, cap, 1])?)?
            .sum(1)?
            .reshape(&[n, self.dim])?;
        let (aux, active) = self.balance(&r, &slots, routing)?;
        Ok(MoeOutput { y, aux, active })
    }

    /// The same layer with every expert evaluated on every token and the slot weights
    /// scattered to `[N, E]` (the dense path, for tests of the sparse one).
    pub fn forward_dense(
        &self,
        vars: &ParamVars,
        x: &Var,
        routing: Routing,
        k: Option<&Var>,
        k_max: f32,
    ) -> Result<Var> {
        let r = self.logits(vars, x)?;
        let slots = self.route(&r, routing, k, k_max)?;
        let n = x.shape()[0];
        let dev = x.value().device().clone();
        let zeros = x
            .tape()
            .constant(ops::zeros(&dev, &[n, self.experts], DType::F32)?);
        let p = zeros.scatter_add(1, &slots.indices, &slots.values)?;
        let (w1, b1, w2, b2) = (
            vars.get(self.w1)?,
            vars.get(self.b1)?,
            vars.get(self.w2)?,
            vars.get(self.b2)?,
        );
        let mut y: Option<Var> = None;
        for e in 0..self.experts {
            let sl = |v: &Var, shape: &[usize]| v.slice(0, e, e + 1)?.reshape(shape);
            let hidden = w1.shape()[2];
            let h = x
                .matmul(&sl(w1, &[self.dim, hidden])?)?
                .add(&sl(b1, &[hidden])?)?
                .gelu()?;
            let o = h
                .matmul(&sl(w2, &[hidden, self.dim])?)?
                .add(&sl(b2, &[self.dim])?)?;
            let term = o.mul(&p.slice(1, e, e + 1)?)?;
            y = Some(match y {
                None => term,
                Some(acc) => acc.add(&term)?,
            });
        }
        y.ok_or_else(|| LapisError::invalid("forward_dense", "experts", 0, "must be ≥ 1"))
    }

    /// Switch balance loss and the per-token active counts (both from the mask, which has
    /// no gradient; `P̄` carries the router's gradient).
    fn balance(&self, r: &Var, slots: &Slots, routing: Routing) -> Result<(Var, Tensor)> {
        let n = r.shape()[0];
        let dev = r.value().device().clone();
        let e = self.experts as f32;
        let active = ops::sum(&slots.mask, 1)?.reshape(&[n])?;
        let routed = ops::scatter_add(
            &ops::zeros(&dev, &[n, self.experts], DType::F32)?,
            1,
            &slots.indices,
            &slots.mask,
        )?;
        let f = ops::mean(&routed, 0)?; // [1, E]
                                        // (E / AE) f_e, with AE = mean active (realized; k for the hard baseline).
        let scaled = match routing {
            Routing::TopK { k } => ops::mul_scalar(&f, e / k as f32)?,
            Routing::Soft { .. } => {
                let ae = ops::mean(&active, 0)?; // [1]
                ops::div(&ops::mul_scalar(&f, e)?, &ae)?
            }
        };
        let pbar = r.softmax(1)?.mean(0)?; // [1, E]
        let aux = pbar.mul(&r.tape().constant(scaled))?.sum_all()?;
        Ok((aux, active))
    }
}

/// One pre-LN transformer block with a MoE feed-forward.
struct Block {
    ln1: LayerNorm,
    attn: MultiHeadAttention,
    ln2: LayerNorm,
    moe: MoeLayer,
}

/// The char-level transformer of §1.4 (tied embedding, learned positions, pre-LN).
pub struct CharLm {
    /// Its configuration.
    pub cfg: LmConfig,
    emb: Param,
    pos: Param,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    eta: Option<Param>,
}

/// What the LM returns for a batch.
pub struct LmOutput {
    /// Logits `[B·T, vocab]`.
    pub logits: Var,
    /// `Σ_ℓ L_aux,ℓ` (`[1]`).
    pub aux: Var,
    /// Active experts per token, per layer (`[B·T]` each).
    pub active: Vec<Tensor>,
    /// `k_ℓ` of every layer (`[L]`; on the tape under the learned allocation).
    pub k: Option<Var>,
}

impl CharLm {
    /// Registers every parameter in `params` (token and position embeddings
    /// N(0, 0.02²), our choice as in GPT-2; `eta [L]` = 0 under the learned allocation).
    pub fn new(params: &mut Params, dev: &Device, cfg: LmConfig) -> Result<CharLm> {
        cfg.validate()?;
        let s = cfg.seed;
        let emb = params.add(
            "emb",
            ops::normal(dev, &[cfg.vocab, cfg.dim], 0.0, 0.02, s)?,
        )?;
        let pos = params.add(
            "pos",
            ops::normal(dev, &[cfg.context, cfg.dim], 0.0, 0.02, s + 1)?,
        )?;
        let mut blocks = Vec::new();
        for l in 0..cfg.layers {
            let p = format!("block{l}");
            let bs = s + 100 * (l as u64 + 1);
            blocks.push(Block {
                ln1: LayerNorm::new(params, &format!("{p}.ln1"), dev, cfg.dim, 1e-5)?,
                attn: MultiHeadAttention::new(
                    params,
                    &format!("{p}.attn"),
                    dev,
                    cfg.dim,
                    cfg.heads,
                    true,
                    bs,
                )?,
                ln2: LayerNorm::new(params, &format!("{p}.ln2"), dev, cfg.dim, 1e-5)?,
                moe: MoeLayer::new(
                    params,
                    &format!("{p}.moe"),
                    dev,
                    cfg.dim,
                    cfg.hidden,
                    cfg.experts,
                    cfg.router_std,
                    bs + 10,
                )?,
            });
        }
        let ln_f = LayerNorm::new(params, "ln_f", dev, cfg.dim, 1e-5)?;
        let eta = match cfg.routing {
            Routing::Soft { k: None, .. } => {
                Some(params.add("eta", ops::zeros(dev, &[cfg.layers], DType::F32)?)?)
            }
            _ => None,
        };
        Ok(CharLm {
            cfg,
            emb,
            pos,
            blocks,
            ln_f,
            eta,
        })
    }

    /// `k_ℓ = 1 + (K − L)·softmax(η)_ℓ` (`[L]`), under the learned allocation.
    pub fn allocation(&self, vars: &ParamVars) -> Result<Option<Var>> {
        match (self.eta, self.cfg.routing) {
            (Some(eta), Routing::Soft { budget, .. }) => {
                let l = self.cfg.layers as f32;
                Ok(Some(vars.get(eta)?.softmax(0)?.affine(budget - l, 1.0)?))
            }
            _ => Ok(None),
        }
    }

    /// The MoE layers (for tests and diagnostics).
    pub fn moe_layers(&self) -> Vec<&MoeLayer> {
        self.blocks.iter().map(|b| &b.moe).collect()
    }

    /// Logits of byte ids `ids` (u32 `[B, T]`, `T ≤ context`).
    pub fn forward(&self, vars: &ParamVars, tape: &Rc<Tape>, ids: &Tensor) -> Result<LmOutput> {
        let (b, t) = match ids.shape() {
            [b, t] if *t >= 1 && *t <= self.cfg.context => (*b, *t),
            s => {
                return Err(LapisError::shape(
                    "CharLm::forward",
                    s,
                    format!("ids must be [B, T] with 1 ≤ T ≤ {}", self.cfg.context),
                ))
            }
        };
        let d = self.cfg.dim;
        let emb = vars.get(self.emb)?;
        let flat = ids.reshape(&[b * t])?;
        let pos = vars.get(self.pos)?.slice(0, 0, t)?;
        let mut x = emb.index_select(0, &flat)?.reshape(&[b, t, d])?.add(&pos)?;
        let k_all = self.allocation(vars)?;
        let k_max = self.cfg.k_max();
        let mut aux: Option<Var> = None;
        let mut active = Vec::new();
        for (l, blk) in self.blocks.iter().enumerate() {
            let a = blk.attn.forward(vars, &blk.ln1.forward(vars, &x)?)?;
            x = x.add(&a)?;
            let h = blk.ln2.forward(vars, &x)?.reshape(&[b * t, d])?;
            let kl = match &k_all {
                Some(k) => Some(k.slice(0, l, l + 1)?),
                None => None,
            };
            let out = blk
                .moe
                .forward(vars, &h, self.cfg.routing, kl.as_ref(), k_max)?;
            x = x.add(&out.y.reshape(&[b, t, d])?)?;
            aux = Some(match aux {
                None => out.aux,
                Some(s) => s.add(&out.aux)?,
            });
            active.push(out.active);
        }
        let h = self.ln_f.forward(vars, &x)?.reshape(&[b * t, d])?;
        let logits = h.matmul_t(emb, false, true)?;
        let aux = match aux {
            Some(a) => a,
            None => tape.constant(ops::zeros(ids.device(), &[1], DType::F32)?),
        };
        Ok(LmOutput {
            logits,
            aux,
            active,
            k: k_all,
        })
    }
}
