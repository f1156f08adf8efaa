//! Layers and the named parameter registry.
//!
//! Layers: [`Linear`], [`Embedding`], [`LayerNorm`], [`Dropout`], [`Mlp`],
//! [`MultiHeadAttention`] (optional causal mask), [`PatchEmbed`], [`LaplexLinear`] (the
//! LAPLEX layer: `n → m` through the Laplace operator with learnable anchors, rate and
//! phase) and [`SoftTopK`] (learnable k and temperature). Each layer registers its
//! parameters in a [`Params`] under a prefix at construction, keeps their indices, and its
//! `forward` takes the Vars of [`Params::on_tape`] (one tape per step).
//!
//! [`Params`] holds a model's tensors under dotted names (`layer1.weight`), in insertion
//! order; layers register theirs with a prefix. Each training step puts them on a fresh
//! [`Tape`] ([`Params::on_tape`]), and the optimizers update them in the same order; the
//! registry saves to and loads from safetensors through [`crate::checkpoint`].

use std::path::Path;
use std::rc::Rc;

use lapis_ops::{DType, Device, LapisError, Result, Tensor};

use crate::var::{Tape, Var};

mod attention;
mod laplex;
mod layers;

pub use attention::MultiHeadAttention;
pub use laplex::LaplexLinear;
pub use layers::{Activation, Dropout, Embedding, LayerNorm, Mlp, PatchEmbed, SoftTopK};

/// Named parameters, in registration order.
#[derive(Default, Clone)]
pub struct Params {
    entries: Vec<(String, Tensor)>,
}

impl Params {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `t` under `name` (unique) and returns its index.
    pub fn add(&mut self, name: impl Into<String>, t: Tensor) -> Result<usize> {
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
        Ok(self.entries.len() - 1)
    }

    /// Names in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The tensor at `index`.
    pub fn get(&self, index: usize) -> &Tensor {
        &self.entries[index].1
    }

    /// Every parameter as a tracked leaf on `tape`, in order.
    pub fn on_tape(&self, tape: &Rc<Tape>) -> Vec<Var> {
        self.entries
            .iter()
            .map(|(_, t)| tape.leaf(t.clone()))
            .collect()
    }

    /// Indices of the parameters whose name contains `pat` (for per-group learning rates
    /// or weight-decay exclusions).
    pub fn matching(&self, pat: &str) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].0.contains(pat))
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

/// `y = x W + b`, `W [in, out]` ~ U(±1/√in) (PyTorch's default range), `b` zeros.
pub struct Linear {
    weight: usize,
    bias: Option<usize>,
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
    pub fn forward(&self, vars: &[Var], x: &Var) -> Result<Var> {
        let y = x.matmul(&vars[self.weight])?;
        match self.bias {
            Some(b) => y.add(&vars[b]),
            None => Ok(y),
        }
    }
}
