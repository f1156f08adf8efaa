//! Layers and the named parameter registry.
//!
//! Layers: [`Linear`], [`Embedding`], [`LayerNorm`], [`Dropout`], [`Mlp`],
//! [`MultiHeadAttention`] (optional causal mask), [`PatchEmbed`], [`LaplexLinear`] (the
//! LAPLEX layer: `n → m` through the Laplace operator with learnable anchors, rate and
//! phase) and [`SoftTopK`] (learnable k and temperature). Each layer registers its
//! parameters in a [`Params`] under a prefix at construction and keeps their typed
//! [`Param`] handles; its `forward` takes the [`ParamVars`] of [`Params::on_tape`] (one tape
//! per step) and looks its parameters up by handle, so a layer given another model's
//! parameters returns a typed error.
//!
//! [`Params`] holds a model's tensors under dotted names (`layer1.weight`), in insertion
//! order; layers register theirs with a prefix. Each training step puts them on a fresh
//! [`Tape`] ([`Params::on_tape`]), and the optimizers update them in the same order; the
//! registry saves to and loads from safetensors through [`crate::checkpoint`].

use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use lapis_ops::{DType, Device, LapisError, Result, Tensor};

use crate::var::{Tape, Var};

mod attention;
mod batchnorm;
mod laplex;
mod layers;

pub use attention::MultiHeadAttention;
pub use batchnorm::{BatchNorm1d, BnMode};
pub use laplex::{LaplexConfig, LaplexLinear};
pub use layers::{Activation, Dropout, Embedding, LayerNorm, Mlp, PatchEmbed, SoftTopK};

/// A typed handle to one parameter of one [`Params`] registry, returned by [`Params::add`].
///
/// Layers keep handles instead of bare indices: [`ParamVars::get`] and [`Params::get`]
/// check that the handle belongs to the registry they are asked about, so feeding a layer
/// another model's Vars is a typed error, not a wrong result or a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Param {
    registry: u64,
    index: usize,
}

impl Param {
    /// The parameter's position in its registry's order (the order [`Params::on_tape`],
    /// [`Params::tensors_mut`] and the optimizers use).
    pub fn index(self) -> usize {
        self.index
    }
}

/// A fresh registry id (ids are never reused in a process).
fn next_registry_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Named parameters, in registration order.
///
/// Each registry has an id; the [`Param`] handles it hands out and the [`ParamVars`] it
/// puts on a tape carry that id. A clone keeps the id (same names, same order).
#[derive(Clone)]
pub struct Params {
    id: u64,
    entries: Vec<(String, Tensor)>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            id: next_registry_id(),
            entries: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (n, t) in &self.entries {
            m.entry(n, &format_args!("{} {:?}", t.dtype().name(), t.shape()));
        }
        m.finish()
    }
}

impl Params {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `t` under `name` (unique) and returns its handle.
    pub fn add(&mut self, name: impl Into<String>, t: Tensor) -> Result<Param> {
        let name = name.into();
        if self.entries.iter().any(|(n, _)| *n == name) {
            return Err(LapisError::invalid(
                "Params::add",
                "name",
                name,
                "names must be unique",
            ));
        }
        self.entries.push((name, t));
        Ok(Param {
            registry: self.id,
            index: self.entries.len() - 1,
        })
    }

    fn check(&self, op: &'static str, p: Param) -> Result<usize> {
        if p.registry != self.id || p.index >= self.entries.len() {
            return Err(LapisError::invalid(
                op,
                "param",
                format!("{p:?}"),
                format!(
                    "the handle belongs to another registry (this one is #{} with {} parameters)",
                    self.id,
                    self.entries.len()
                ),
            ));
        }
        Ok(p.index)
    }

    /// Names in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Every handle, in registration order.
    pub fn handles(&self) -> Vec<Param> {
        (0..self.entries.len())
            .map(|index| Param {
                registry: self.id,
                index,
            })
            .collect()
    }

    /// The tensor of `p` (a typed error if `p` belongs to another registry).
    pub fn get(&self, p: Param) -> Result<&Tensor> {
        Ok(&self.entries[self.check("Params::get", p)?].1)
    }

    /// The tensor at registry position `index` (a typed error past the end): for code that
    /// walks the registry in order, like optimizers and checkpoints.
    pub fn at(&self, index: usize) -> Result<&Tensor> {
        self.entries.get(index).map(|(_, t)| t).ok_or_else(|| {
            LapisError::invalid(
                "Params::at",
                "index",
                index,
                format!("the registry has {} parameters", self.entries.len()),
            )
        })
    }

    /// The name of `p`.
    pub fn name(&self, p: Param) -> Result<&str> {
        Ok(&self.entries[self.check("Params::name", p)?].0)
    }

    /// The handle registered under `name`, if any.
    pub fn find(&self, name: &str) -> Option<Param> {
        self.entries
            .iter()
            .position(|(n, _)| n == name)
            .map(|index| Param {
                registry: self.id,
                index,
            })
    }

    /// Replaces the value of `p` with `t` of the same shape and dtype (typed error
    /// otherwise): for initialisation schemes and tests.
    pub fn set(&mut self, p: Param, t: Tensor) -> Result<()> {
        let i = self.check("Params::set", p)?;
        let old = &self.entries[i].1;
        if old.shape() != t.shape() || old.dtype() != t.dtype() {
            return Err(LapisError::invalid(
                "Params::set",
                "t",
                format!("{} {:?}", t.dtype().name(), t.shape()),
                format!(
                    "`{}` is {} {:?}",
                    self.entries[i].0,
                    old.dtype().name(),
                    old.shape()
                ),
            ));
        }
        self.entries[i].1 = t;
        Ok(())
    }

    /// Every parameter as a tracked leaf on `tape`, in order, tagged with this registry.
    pub fn on_tape(&self, tape: &Rc<Tape>) -> ParamVars {
        ParamVars {
            registry: self.id,
            vars: self
                .entries
                .iter()
                .map(|(_, t)| tape.leaf(t.clone()))
                .collect(),
        }
    }

    /// Every parameter as an untracked constant on `tape` (evaluation: no gradient is
    /// recorded for them).
    pub fn constants_on(&self, tape: &Rc<Tape>) -> ParamVars {
        ParamVars {
            registry: self.id,
            vars: self
                .entries
                .iter()
                .map(|(_, t)| tape.constant(t.clone()))
                .collect(),
        }
    }

    /// Stand-ins for this registry's parameters: `vars[i]` plays parameter `i` (same count
    /// and shapes, else a typed error). For gradient checks and for code that builds its own
    /// leaves (e.g. perturbed or shared weights) and runs this registry's layers on them.
    pub fn bind(&self, vars: &[Var]) -> Result<ParamVars> {
        if vars.len() != self.entries.len() {
            return Err(LapisError::invalid(
                "Params::bind",
                "vars",
                vars.len(),
                format!("the registry has {} parameters", self.entries.len()),
            ));
        }
        for ((name, t), v) in self.entries.iter().zip(vars) {
            if v.shape() != t.shape() {
                return Err(LapisError::invalid(
                    "Params::bind",
                    "vars",
                    format!("{:?}", v.shape()),
                    format!("`{name}` is {:?}", t.shape()),
                ));
            }
        }
        Ok(ParamVars {
            registry: self.id,
            vars: vars.to_vec(),
        })
    }

    /// Handles of the parameters whose name contains `pat` (for per-group learning rates
    /// or weight-decay exclusions).
    pub fn matching(&self, pat: &str) -> Vec<Param> {
        self.handles()
            .into_iter()
            .filter(|p| self.entries[p.index].0.contains(pat))
            .collect()
    }

    /// The number of parameters (scalars) in the registry.
    pub fn numel(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.numel()).sum()
    }

    /// The number of registered tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(name, tensor)` pairs in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Mutable references for an optimizer step, in order.
    pub fn tensors_mut(&mut self) -> Vec<&mut Tensor> {
        self.entries.iter_mut().map(|(_, t)| t).collect()
    }

    /// Saves every parameter to a safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let refs: Vec<(&str, &Tensor)> =
            self.entries.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::checkpoint::save(path, &refs)
    }

    /// Loads every parameter from a safetensors file (names, shapes and dtypes must match).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let mut refs: Vec<(&str, &mut Tensor)> = self
            .entries
            .iter_mut()
            .map(|(n, t)| (n.as_str(), t))
            .collect();
        crate::checkpoint::load_into(path, &mut refs)
    }
}

/// One registry's parameters on one tape ([`Params::on_tape`]): what a layer's `forward`
/// reads its parameters from, by [`Param`] handle.
#[derive(Clone)]
pub struct ParamVars {
    registry: u64,
    vars: Vec<Var>,
}

impl ParamVars {
    /// The Var of `p`; a typed error (not a panic, not another parameter) when `p` comes
    /// from another registry.
    pub fn get(&self, p: Param) -> Result<&Var> {
        if p.registry != self.registry || p.index >= self.vars.len() {
            return Err(LapisError::invalid(
                "ParamVars::get",
                "param",
                format!("{p:?}"),
                format!(
                    "these Vars come from registry #{} ({} parameters): a layer was given \
                     another model's parameters",
                    self.registry,
                    self.vars.len()
                ),
            ));
        }
        Ok(&self.vars[p.index])
    }

    /// Every Var, in registration order (the order of the optimizer's gradients).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The Vars in registration order.
    pub fn iter(&self) -> std::slice::Iter<'_, Var> {
        self.vars.iter()
    }

    /// The number of Vars.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

/// `y = x W + b`, `W [in, out]` ~ U(±1/√in) (PyTorch's default range), `b` zeros.
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
}

impl Linear {
    /// Registers `{prefix}.weight` and (if `bias`) `{prefix}.bias` in `params`.
    pub fn new(
        params: &mut Params,
        prefix: &str,
        dev: &Device,
        d_in: usize,
        d_out: usize,
        bias: bool,
        seed: u64,
    ) -> Result<Self> {
        let bound = 1.0 / (d_in as f32).sqrt();
        let w = lapis_ops::uniform(dev, &[d_in, d_out], -bound, bound, seed)?;
        let weight = params.add(format!("{prefix}.weight"), w)?;
        let bias = if bias {
            Some(params.add(
                format!("{prefix}.bias"),
                lapis_ops::zeros(dev, &[d_out], DType::F32)?,
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the layer to `x [B, in]` with the parameters' Vars from [`Params::on_tape`].
    pub fn forward(&self, vars: &ParamVars, x: &Var) -> Result<Var> {
        let y = x.matmul(vars.get(self.weight)?)?;
        match self.bias {
            Some(b) => y.add(vars.get(b)?),
            None => Ok(y),
        }
    }
}
