//! Optimizers over named parameters: SGD with momentum, Adam and AdamW (decoupled weight
//! decay, Loshchilov & Hutter), gradient clipping by global norm, and the linear-warmup +
//! cosine learning-rate schedule. An Adam step on f32 parameters is one fused launch per
//! tensor (`lapis_ops::adam_update`); other dtypes use elementwise device ops.
//!
//! - SGD: `v ← μv + g`, `θ ← θ − lr·v` (plain SGD for `μ = 0`).
//! - Adam (Kingma & Ba): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//!   `θ ← θ − lr·m̂/(√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`; AdamW adds
//!   `θ ← θ − lr·wd·θ` before the step.

use lapis_ops::{AdamStep, DType, Device, LapisError, Result, Tensor};

use crate::nn::Param;

/// What a training loop needs from an optimizer: a step over the parameters in registry
/// order, a learning rate it can schedule, and its state as named tensors so a checkpoint
/// can resume a run exactly (the same parameters, bit for bit, as an uninterrupted run).
pub trait Optimizer {
    /// One step: `params[i]` updated with `grads[i]` (same order every call).
    fn step(&mut self, params: &mut [&mut Tensor], grads: &[Tensor]) -> Result<()>;
    /// The base learning rate of the next step.
    fn lr(&self) -> f32;
    /// Sets the base learning rate (schedules call this before each step).
    fn set_lr(&mut self, lr: f32);
    /// The state (moments, step count) as named tensors, for checkpoints.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores a state written by [`Optimizer::state`] (typed error when a tensor is
    /// missing or malformed).
    fn load_state(&mut self, state: &[(String, Tensor)], dev: &Device) -> Result<()>;
}

fn state_err(msg: impl Into<String>) -> LapisError {
    LapisError::Format {
        what: "optimizer state".into(),
        msg: msg.into(),
    }
}

/// The tensors `{prefix}.{i}` of a saved state, in index order, each optional.
fn indexed(state: &[(String, Tensor)], prefix: &str) -> Result<Vec<Option<Tensor>>> {
    let mut out: Vec<Option<Tensor>> = Vec::new();
    for (name, t) in state {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let i: usize = rest
            .parse()
            .map_err(|_| state_err(format!("bad state tensor name `{name}`")))?;
        if out.len() <= i {
            out.resize(i + 1, None);
        }
        out[i] = Some(t.clone());
    }
    Ok(out)
}

fn step_count(state: &[(String, Tensor)], name: &str) -> Result<i32> {
    let t = state
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| state_err(format!("no `{name}` in the optimizer state")))?;
    let v = t.to_vec::<u32>()?;
    match v.as_slice() {
        [c] if *c <= i32::MAX as u32 => Ok(*c as i32),
        _ => Err(state_err(format!("`{name}` must be one u32, got {v:?}"))),
    }
}

/// Scales every gradient by `min(1, max_norm / ‖g‖₂)` (global norm over all of them) and
/// returns the norm before clipping as a `[1]` device tensor. Everything stays on the
/// device (no host read; read the norm when you log it).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f32) -> Result<Tensor> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(LapisError::invalid(
            "clip_grad_norm",
            "max_norm",
            max_norm,
            "must be finite and > 0",
        ));
    }
    let Some(first) = grads.first() else {
        return Err(LapisError::invalid(
            "clip_grad_norm",
            "grads",
            "an empty list",
            "needs at least one gradient",
        ));
    };
    let dev = first.device().clone();
    // Per-tensor sums of squares, then their sum: all on the device.
    let parts = grads
        .iter()
        .map(|g| lapis_ops::sum_all(&lapis_ops::mul(g, g)?)?.reshape(&[1]))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Tensor> = parts.iter().collect();
    let norm =
        lapis_ops::sqrt(&lapis_ops::sum_all(&lapis_ops::concat(&refs, 0)?)?)?.reshape(&[1])?;
    // s = min(1, c/‖g‖) (‖g‖ = 0 gives +∞ → 1).
    let c = lapis_ops::fill(&dev, &[1], max_norm, lapis_ops::DType::F32)?;
    let one = lapis_ops::ones(&dev, &[1], lapis_ops::DType::F32)?;
    let scale = lapis_ops::minimum(&lapis_ops::div(&c, &norm)?, &one)?;
    for g in grads.iter_mut() {
        *g = if g.dtype() == scale.dtype() {
            lapis_ops::mul(g, &scale)?
        } else {
            lapis_ops::mul(g, &lapis_ops::to_dtype(&scale, g.dtype())?)?
        };
    }
    Ok(norm)
}

/// Linear warmup over `warmup` steps to `peak`, then cosine decay to `floor·peak` at
/// `total` steps (constant afterwards). `step` counts from 0.
pub fn warmup_cosine(step: usize, warmup: usize, total: usize, peak: f32, floor: f32) -> f32 {
    if step < warmup {
        return peak * (step + 1) as f32 / warmup as f32;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((step - warmup) as f32 / span as f32).min(1.0);
    let cos = 0.5 * (1.0 + (std::f32::consts::PI * t).cos());
    peak * (floor + (1.0 - floor) * cos)
}

/// SGD with momentum.
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum `μ`.
    pub momentum: f32,
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    /// A new optimizer.
    pub fn new(lr: f32, momentum: f32) -> Self {
        Sgd {
            lr,
            momentum,
            velocity: Vec::new(),
        }
    }

    /// One step: `params[i]` updated with `grads[i]` (same order every call).
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: &[Tensor]) -> Result<()> {
        check_len(params.len(), grads.len())?;
        self.velocity.resize(params.len(), None);
        for ((p, g), v) in params.iter_mut().zip(grads).zip(self.velocity.iter_mut()) {
            let nv = match v.take() {
                Some(prev) if self.momentum != 0.0 => {
                    lapis_ops::add(&lapis_ops::affine(&prev, self.momentum, 0.0)?, g)?
                }
                _ => g.clone(),
            };
            **p = lapis_ops::sub(p, &lapis_ops::affine(&nv, self.lr, 0.0)?)?;
            *v = Some(nv);
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [&mut Tensor], grads: &[Tensor]) -> Result<()> {
        Sgd::step(self, params, grads)
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    /// `sgd.velocity.{i}` for every parameter that has one.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .velocity
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (format!("sgd.velocity.{i}"), v.clone())))
            .collect())
    }
    fn load_state(&mut self, state: &[(String, Tensor)], _dev: &Device) -> Result<()> {
        self.velocity = indexed(state, "sgd.velocity")?;
        Ok(())
    }
}

/// Adam, or AdamW when `weight_decay > 0`.
pub struct Adam {
    /// Learning rate (may be changed between steps, e.g. by [`warmup_cosine`]).
    pub lr: f32,
    /// `β₁` (f64 so the bias corrections `1 − βᵗ` keep their digits: `1 − 0.999` in f32
    /// is off by 1.3e-5 relative).
    pub beta1: f64,
    /// `β₂`.
    pub beta2: f64,
    /// `ε`.
    pub eps: f32,
    /// Decoupled weight decay (AdamW); 0 for Adam.
    pub weight_decay: f32,
    t: i32,
    state: Vec<Option<(Tensor, Tensor)>>,
    /// Per-parameter `(learning-rate factor, weight decay on)`; absent entries are
    /// `(1, true)`.
    groups: Vec<(f32, bool)>,
}

impl Adam {
    /// Adam with the usual defaults `β = (0.9, 0.999)`, `ε = 1e-8`.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            t: 0,
            state: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// AdamW: Adam with decoupled weight decay `wd`.
    pub fn adamw(lr: f32, wd: f32) -> Self {
        Adam {
            weight_decay: wd,
            ..Adam::new(lr)
        }
    }

    fn group(&mut self, i: usize) -> &mut (f32, bool) {
        if self.groups.len() <= i {
            self.groups.resize(i + 1, (1.0, true));
        }
        &mut self.groups[i]
    }

    /// Parameter groups: the parameters `params` (handles from
    /// [`crate::nn::Params::matching`]; their registry positions are the positions in the
    /// `params` passed to [`Adam::step`]) step with `factor × lr` (LAPLEX trains anchors
    /// and rates at 10× the base rate).
    pub fn set_lr_scale(&mut self, params: &[Param], factor: f32) -> Result<()> {
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(LapisError::invalid(
                "Adam::set_lr_scale",
                "factor",
                factor,
                "must be finite and ≥ 0",
            ));
        }
        for p in params {
            self.group(p.index()).0 = factor;
        }
        Ok(())
    }

    /// Turns weight decay off for `params` (biases, norms, anchors).
    pub fn no_decay(&mut self, params: &[Param]) {
        for p in params {
            self.group(p.index()).1 = false;
        }
    }

    /// The number of steps taken (the `t` of the bias corrections).
    pub fn steps_taken(&self) -> i32 {
        self.t
    }

    /// One step: `params[i]` updated with `grads[i]` (same order every call).
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: &[Tensor]) -> Result<()> {
        check_len(params.len(), grads.len())?;
        self.state.resize(params.len(), None);
        if self.groups.len() < params.len() {
            self.groups.resize(params.len(), (1.0, true));
        }
        self.t += 1;
        let c1 = (1.0 - self.beta1.powi(self.t)) as f32;
        let c2 = (1.0 - self.beta2.powi(self.t)) as f32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let (o1, o2) = ((1.0 - self.beta1) as f32, (1.0 - self.beta2) as f32);
        for (((p, g), s), &(scale, decay)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.state.iter_mut())
            .zip(&self.groups)
        {
            let lr = self.lr * scale;
            let (m, v) = match s.take() {
                Some(mv) => mv,
                None => (
                    lapis_ops::affine(g, 0.0, 0.0)?,
                    lapis_ops::affine(g, 0.0, 0.0)?,
                ),
            };
            if [&**p, g].iter().all(|t| t.dtype() == DType::F32) {
                // One fused launch (lapis_ops::adam_update), the same rule.
                let (np, m, v) = lapis_ops::adam_update(
                    p,
                    g,
                    &m,
                    &v,
                    &AdamStep {
                        beta1: self.beta1,
                        beta2: self.beta2,
                        lr: lr as f64,
                        eps: self.eps as f64,
                        weight_decay: if decay { self.weight_decay as f64 } else { 0.0 },
                        t: self.t,
                    },
                )?;
                **p = np;
                *s = Some((m, v));
                continue;
            }
            let m = lapis_ops::add(
                &lapis_ops::affine(&m, b1, 0.0)?,
                &lapis_ops::affine(g, o1, 0.0)?,
            )?;
            let v = lapis_ops::add(
                &lapis_ops::affine(&v, b2, 0.0)?,
                &lapis_ops::affine(&lapis_ops::mul(g, g)?, o2, 0.0)?,
            )?;
            let denom = lapis_ops::affine(
                &lapis_ops::sqrt(&lapis_ops::affine(&v, 1.0 / c2, 0.0)?)?,
                1.0,
                self.eps,
            )?;
            let upd = lapis_ops::div(&lapis_ops::affine(&m, lr / c1, 0.0)?, &denom)?;
            let mut np: Tensor = (**p).clone();
            if self.weight_decay > 0.0 && decay {
                np = lapis_ops::affine(&np, 1.0 - lr * self.weight_decay, 0.0)?;
            }
            **p = lapis_ops::sub(&np, &upd)?;
            *s = Some((m, v));
        }
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [&mut Tensor], grads: &[Tensor]) -> Result<()> {
        Adam::step(self, params, grads)
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    /// `adam.t` (u32 `[1]`), and `adam.m.{i}`, `adam.v.{i}` for every parameter stepped.
    /// Groups and hyper-parameters are configuration, not state: rebuild them as at the start.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.state.len() + 1);
        for (i, s) in self.state.iter().enumerate() {
            if let Some((m, v)) = s {
                out.push((format!("adam.m.{i}"), m.clone()));
                out.push((format!("adam.v.{i}"), v.clone()));
            }
        }
        if let Some((m, _)) = self.state.iter().flatten().next() {
            out.push((
                "adam.t".into(),
                Tensor::from_slice(m.device(), &[1], &[self.t as u32])?,
            ));
        }
        Ok(out)
    }
    fn load_state(&mut self, state: &[(String, Tensor)], _dev: &Device) -> Result<()> {
        let m = indexed(state, "adam.m")?;
        let v = indexed(state, "adam.v")?;
        if m.len() != v.len() || m.iter().zip(&v).any(|(a, b)| a.is_some() != b.is_some()) {
            return Err(state_err("`adam.m.*` and `adam.v.*` do not pair up"));
        }
        let t = if m.iter().any(Option::is_some) {
            step_count(state, "adam.t")?
        } else {
            0
        };
        self.state = m.into_iter().zip(v).map(|(a, b)| a.zip(b)).collect();
        self.t = t;
        Ok(())
    }
}

fn check_len(p: usize, g: usize) -> Result<()> {
    if p != g {
        return Err(LapisError::invalid(
            "optimizer step",
            "grads",
            g,
            format!("one gradient per parameter ({p})"),
        ));
    }
    Ok(())
}
