//! Batch normalisation over a feature axis (Ioffe & Szegedy, "Batch Normalization:
//! Accelerating Deep Network Training by Reducing Internal Covariate Shift", 2015), as
//! REMIX's base network uses it (`specs/laplace-methods.md` §3 E4).
//!
//! For `x [B, C]`, in training mode each feature `c` is normalised by the batch's mean and
//! biased variance,
//!
//! ```text
//! μ_c = (1/B) Σ_b x_bc,   σ²_c = (1/B) Σ_b (x_bc − μ_c)²,
//! y_bc = γ_c (x_bc − μ_c) / √(σ²_c + ε) + β_c,
//! ```
//!
//! (the gradient flows through `μ` and `σ²`), and the running statistics move towards the
//! batch's, with the unbiased variance (PyTorch's `BatchNorm1d` convention):
//!
//! ```text
//! m_c ← (1 − η) m_c + η μ_c,   v_c ← (1 − η) v_c + η σ²_c · B/(B − 1),   η = momentum.
//! ```
//!
//! In evaluation mode `y_bc = γ_c (x_bc − m_c)/√(v_c + ε) + β_c` with the running statistics
//! as constants. The running statistics start at `m = 0`, `v = 1`, live on the device and are
//! updated there (no host read); they are not parameters (no gradient), so checkpoints save
//! them beside the parameters through [`BatchNorm1d::running_mean`] /
//! [`BatchNorm1d::set_running`].

use std::cell::RefCell;

use lapis_ops::{self as ops, BinaryOp, DType, Device, LapisError, Result, Tensor};

use super::{Param, ParamVars, Params};
use crate::var::Var;

/// Training or evaluation behaviour of [`BatchNorm1d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    /// Batch statistics; the running statistics are updated.
    Train,
    /// Running statistics; nothing is updated.
    Eval,
}

/// Batch normalisation of `x [B, C]` over the batch axis, with learnable scale `γ` and shift
/// `β` and running statistics (see the module docs). A clone holds its own copy of the
/// running statistics (later updates of one do not reach the other).
#[derive(Clone, Debug)]
pub struct BatchNorm1d {
    gamma: Param,
    beta: Param,
    features: usize,
    eps: f32,
    momentum: f32,
    running: RefCell<(Tensor, Tensor)>,
}

impl BatchNorm1d {
    /// Registers `{prefix}.weight` (`γ`, ones) and `{prefix}.bias` (`β`, zeros), both
    /// `[features]`; `ε = 10⁻⁵`, momentum `0.1`; running mean 0 and variance 1.
    pub fn new(params: &mut Params, prefix: &str, dev: &Device, features: usize) -> Result<Self> {
        if features == 0 {
            return Err(LapisError::invalid(
                "BatchNorm1d::new",
                "features",
                features,
                "must be ≥ 1",
            ));
        }
        Ok(BatchNorm1d {
            gamma: params.add(
                format!("{prefix}.weight"),
                ops::ones(dev, &[features], DType::F32)?,
            )?,
            beta: params.add(
                format!("{prefix}.bias"),
                ops::zeros(dev, &[features], DType::F32)?,
            )?,
            features,
            eps: 1e-5,
            momentum: 0.1,
            running: RefCell::new((
                ops::zeros(dev, &[features], DType::F32)?,
                ops::ones(dev, &[features], DType::F32)?,
            )),
        })
    }

    /// The same layer with `ε = eps` (finite, > 0).
    pub fn with_eps(mut self, eps: f32) -> Result<Self> {
        if !(eps.is_finite() && eps > 0.0) {
            return Err(LapisError::invalid(
                "BatchNorm1d::with_eps",
                "eps",
                eps,
                "must be finite and > 0",
            ));
        }
        self.eps = eps;
        Ok(self)
    }

    /// The same layer with running-statistics momentum `η ∈ [0, 1]`.
    pub fn with_momentum(mut self, momentum: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(LapisError::invalid(
                "BatchNorm1d::with_momentum",
                "momentum",
                momentum,
                "must be in [0, 1]",
            ));
        }
        self.momentum = momentum;
        Ok(self)
    }

    /// Features `C`.
    pub fn features(&self) -> usize {
        self.features
    }

    /// `ε`.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// The momentum `η`.
    pub fn momentum(&self) -> f32 {
        self.momentum
    }

    /// The running mean `m [C]` (a device tensor).
    pub fn running_mean(&self) -> Tensor {
        self.running.borrow().0.clone()
    }

    /// The running variance `v [C]` (a device tensor).
    pub fn running_var(&self) -> Tensor {
        self.running.borrow().1.clone()
    }

    /// Replaces the running statistics (e.g. from a checkpoint); both `[C]` f32.
    pub fn set_running(&self, mean: Tensor, var: Tensor) -> Result<()> {
        for (name, t) in [("mean", &mean), ("var", &var)] {
            if t.shape() != [self.features] || t.dtype() != DType::F32 {
                return Err(LapisError::invalid(
                    "BatchNorm1d::set_running",
                    name,
                    format!("{:?} {:?}", t.shape(), t.dtype()),
                    format!("must be [{}] f32", self.features),
                ));
            }
        }
        *self.running.borrow_mut() = (mean, var);
        Ok(())
    }

    /// Normalises `x [B, C]` (see the module docs); `Train` needs `B ≥ 2` and updates the
    /// running statistics.
    pub fn forward(&self, vars: &ParamVars, x: &Var, mode: BnMode) -> Result<Var> {
        let shape = x.shape().to_vec();
        if shape.len() != 2 || shape[1] != self.features {
            return Err(LapisError::shape(
                "BatchNorm1d::forward",
                &shape,
                format!("need [B, {}]", self.features),
            ));
        }
        let b = shape[0];
        let (gamma, beta) = (vars.get(self.gamma)?, vars.get(self.beta)?);
        match mode {
            BnMode::Train => {
                if b < 2 {
                    return Err(LapisError::invalid(
                        "BatchNorm1d::forward",
                        "x",
                        format!("{shape:?}"),
                        "training mode needs a batch of at least 2 rows",
                    ));
                }
                let mu = x.mean(0)?;
                let xc = x.sub(&mu)?;
                let var = xc.mul(&xc)?.mean(0)?;
                let y = xc
                    .div(&var.add_scalar(self.eps)?.sqrt()?)?
                    .mul(gamma)?
                    .add(beta)?;
                // Running statistics, on the device.
                let eta = self.momentum;
                let c = [self.features];
                let bmean = mu.value().reshape(&c)?;
                let bvar = ops::mul_scalar(&var.value().reshape(&c)?, b as f32 / (b - 1) as f32)?;
                let mut run = self.running.borrow_mut();
                let m = ops::binary(
                    BinaryOp::Add,
                    &ops::mul_scalar(&run.0, 1.0 - eta)?,
                    &ops::mul_scalar(&bmean, eta)?,
                )?;
                let v = ops::binary(
                    BinaryOp::Add,
                    &ops::mul_scalar(&run.1, 1.0 - eta)?,
                    &ops::mul_scalar(&bvar, eta)?,
                )?;
                *run = (m, v);
                Ok(y)
            }
            BnMode::Eval => {
                let (m, v) = self.running.borrow().clone();
                let m = x.constant(m);
                let inv = x.constant(ops::unary(
                    ops::UnaryOp::Sqrt,
                    &ops::add_scalar(&v, self.eps)?,
                )?);
                x.sub(&m)?.div(&inv)?.mul(gamma)?.add(beta)
            }
        }
    }
}
