//! Elementwise ops on the tape. The VJPs are [`lapis_ops::unary_backward`] and
//! [`lapis_ops::binary_backward`] (their docs give every derivative); binary ops broadcast
//! with numpy rules and their input gradients are summed back to each input's shape.
//! Softplus (a composite, not an ops kernel) has its VJP `σ(x)` here.

use lapis_ops::{self as ops, BinaryOp, DType, Result, Tensor, UnaryOp};

use crate::var::Var;

impl Var {
    /// Records the unary op `op` (forward already computed as `y`).
    fn unary_rec(&self, op: UnaryOp, y: Tensor) -> Var {
        let (x, yy) = (self.value().clone(), y.clone());
        self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::unary_backward(op, &x, &yy, g)?)])),
        )
    }

    /// Records the binary op `op` between `self` and `rhs` (broadcasting).
    fn binary_rec(&self, op: BinaryOp, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, op.name())?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = ops::binary(op, &a, &b)?;
        let yy = y.clone();
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let (ga, gb) = ops::binary_backward(op, &a, &b, &yy, g)?;
                Ok(vec![Some(ga), Some(gb)])
            }),
        ))
    }

    /// The unary op `op` (as [`lapis_ops::unary`]); `sign` is untracked (zero gradient).
    pub fn unary(&self, op: UnaryOp) -> Result<Var> {
        let y = ops::unary(op, self.value())?;
        if op == UnaryOp::Sign {
            return Ok(self.constant(y));
        }
        Ok(self.unary_rec(op, y))
    }

    /// The binary op `op` with broadcasting (as [`lapis_ops::binary`]).
    pub fn binary(&self, op: BinaryOp, rhs: &Var) -> Result<Var> {
        self.binary_rec(op, rhs)
    }

    /// `self + rhs` (broadcasting).
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Add, rhs)
    }

    /// `self − rhs` (broadcasting).
    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Sub, rhs)
    }

    /// `self ⊙ rhs` (broadcasting).
    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Mul, rhs)
    }

    /// `self / rhs` (broadcasting).
    pub fn div(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Div, rhs)
    }

    /// Elementwise maximum (broadcasting); ties send half the gradient to each side.
    pub fn maximum(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Max, rhs)
    }

    /// Elementwise minimum (broadcasting); ties send half the gradient to each side.
    pub fn minimum(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Min, rhs)
    }

    /// `self ^ rhs` (broadcasting). The exponent's gradient `aᵇ ln a` is taken where
    /// `a > 0` and is 0 elsewhere (a negative base has no real log).
    pub fn pow(&self, rhs: &Var) -> Result<Var> {
        self.binary_rec(BinaryOp::Pow, rhs)
    }

    /// `−x`.
    pub fn neg(&self) -> Result<Var> {
        self.unary(UnaryOp::Neg)
    }

    /// `eˣ`.
    pub fn exp(&self) -> Result<Var> {
        self.unary(UnaryOp::Exp)
    }

    /// `ln x`.
    pub fn log(&self) -> Result<Var> {
        self.unary(UnaryOp::Log)
    }

    /// `√x`.
    pub fn sqrt(&self) -> Result<Var> {
        self.unary(UnaryOp::Sqrt)
    }

    /// `|x|` (gradient `sign(x)`, 0 at 0).
    pub fn abs(&self) -> Result<Var> {
        self.unary(UnaryOp::Abs)
    }

    /// `max(x, 0)` (gradient 0 at 0).
    pub fn relu(&self) -> Result<Var> {
        self.unary(UnaryOp::Relu)
    }

    /// `sign(x)`: piecewise constant, so its gradient is 0 (the result is untracked).
    pub fn sign(&self) -> Result<Var> {
        self.unary(UnaryOp::Sign)
    }

    /// `tanh x`.
    pub fn tanh(&self) -> Result<Var> {
        self.unary(UnaryOp::Tanh)
    }

    /// The logistic sigmoid `1 / (1 + e^{−x})`.
    pub fn sigmoid(&self) -> Result<Var> {
        self.unary(UnaryOp::Sigmoid)
    }

    /// GELU, tanh form (as the forward op).
    pub fn gelu(&self) -> Result<Var> {
        self.unary(UnaryOp::Gelu)
    }

    /// Softplus `ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^{−|x|})` (no overflow);
    /// gradient `σ(x)`.
    pub fn softplus(&self) -> Result<Var> {
        let x = self.value().clone();
        let y = ops::add(
            &ops::relu(&x)?,
            &ops::log(&ops::add_scalar(
                &ops::exp(&ops::neg(&ops::abs(&x)?)?)?,
                1.0,
            )?)?,
        )?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::mul(g, &ops::sigmoid(&x)?)?)])),
        ))
    }

    /// `a·x + b` for scalars.
    pub fn affine(&self, a: f32, b: f32) -> Result<Var> {
        let y = ops::affine(self.value(), a, b)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::mul_scalar(g, a)?)])),
        ))
    }

    /// `s·x`.
    pub fn mul_scalar(&self, s: f32) -> Result<Var> {
        self.affine(s, 0.0)
    }

    /// `x + s`.
    pub fn add_scalar(&self, s: f32) -> Result<Var> {
        self.affine(1.0, s)
    }

    /// The value cast to `dtype` (float dtypes); the gradient is cast back.
    pub fn to_dtype(&self, dtype: DType) -> Result<Var> {
        let from = self.value().dtype();
        let y = ops::to_dtype(self.value(), dtype)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::to_dtype(g, from)?)])),
        ))
    }
}
