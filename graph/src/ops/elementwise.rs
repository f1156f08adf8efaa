//! Elementwise ops on the tape, each forward next to its VJP.
//!
//! Binary ops broadcast with numpy rules; their input gradients are summed back to each
//! input's shape ([`sum_to_shape`]). Derivatives used (ȳ the output gradient):
//!
//! | op | VJP |
//! |---|---|
//! | `a + b`, `a − b` | `ā = ȳ`, `b̄ = ±ȳ` |
//! | `a ⊙ b` | `ā = ȳ b`, `b̄ = ȳ a` |
//! | `a / b` | `ā = ȳ / b`, `b̄ = −ȳ a / b²` |
//! | `max(a, b)`, `min(a, b)` | `ȳ` to the winner, `ȳ/2` to each on a tie (as PyTorch) |
//! | `a^b` | `ā = ȳ b a^{b−1}`, `b̄ = ȳ aᵇ ln a` where `a > 0`, else 0 |
//! | `eˣ`, `ln x`, `√x` | `ȳ y`, `ȳ / x`, `ȳ / (2y)` |
//! | `|x|`, `relu`, `sign` | `ȳ sign(x)`, `ȳ [x > 0]`, `0` |
//! | `tanh`, `σ` | `ȳ (1 − y²)`, `ȳ y (1 − y)` |
//! | `gelu` (tanh form) | `ȳ (½(1 + tanh u) + ½ x (1 − tanh² u) c (1 + 3·0.044715 x²))`, `u = c(x + 0.044715x³)`, `c = √(2/π)` |

use lapis_ops::{self as ops, BinaryOp, DType, Result, Tensor, UnaryOp};

use crate::var::{sum_to_shape, Var};

/// `(1 + sign(a − b)) / 2`: 1 where `a > b`, ½ on ties, 0 where `a < b`.
fn win_mask(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    ops::affine(&ops::sign(&ops::sub(a, b)?)?, 0.5, 0.5)
}

impl Var {
    fn unary_vjp(
        &self,
        y: Tensor,
        dydx: impl FnOnce(&Tensor, &Tensor) -> Result<Tensor> + 'static,
    ) -> Var {
        let (x, yy) = (self.value().clone(), y.clone());
        self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::mul(g, &dydx(&x, &yy)?)?)])),
        )
    }

    /// The unary op `op` (dispatch to the methods below, as [`lapis_ops::unary`]).
    pub fn unary(&self, op: UnaryOp) -> Result<Var> {
        match op {
            UnaryOp::Neg => self.neg(),
            UnaryOp::Exp => self.exp(),
            UnaryOp::Log => self.log(),
            UnaryOp::Sqrt => self.sqrt(),
            UnaryOp::Abs => self.abs(),
            UnaryOp::Relu => self.relu(),
            UnaryOp::Gelu => self.gelu(),
            UnaryOp::Tanh => self.tanh(),
            UnaryOp::Sigmoid => self.sigmoid(),
            UnaryOp::Sign => self.sign(),
        }
    }

    /// The binary op `op` with broadcasting (dispatch, as [`lapis_ops::binary`]).
    pub fn binary(&self, op: BinaryOp, rhs: &Var) -> Result<Var> {
        match op {
            BinaryOp::Add => self.add(rhs),
            BinaryOp::Sub => self.sub(rhs),
            BinaryOp::Mul => self.mul(rhs),
            BinaryOp::Div => self.div(rhs),
            BinaryOp::Max => self.maximum(rhs),
            BinaryOp::Min => self.minimum(rhs),
            BinaryOp::Pow => self.pow(rhs),
        }
    }

    /// `self + rhs` (broadcasting).
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "add")?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let y = ops::add(self.value(), rhs.value())?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                Ok(vec![
                    Some(sum_to_shape(g, &sa)?),
                    Some(sum_to_shape(g, &sb)?),
                ])
            }),
        ))
    }

    /// `self − rhs` (broadcasting).
    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "sub")?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let y = ops::sub(self.value(), rhs.value())?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                Ok(vec![
                    Some(sum_to_shape(g, &sa)?),
                    Some(sum_to_shape(&ops::neg(g)?, &sb)?),
                ])
            }),
        ))
    }

    /// `self ⊙ rhs` (broadcasting).
    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "mul")?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = ops::mul(&a, &b)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                Ok(vec![
                    Some(sum_to_shape(&ops::mul(g, &b)?, a.shape())?),
                    Some(sum_to_shape(&ops::mul(g, &a)?, b.shape())?),
                ])
            }),
        ))
    }

    /// `self / rhs` (broadcasting).
    pub fn div(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "div")?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = ops::div(&a, &b)?;
        let yy = y.clone();
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let ga = ops::div(g, &b)?;
                // b̄ = −ȳ a / b² = −(ȳ / b) · y
                let gb = ops::neg(&ops::mul(&ga, &yy)?)?;
                Ok(vec![
                    Some(sum_to_shape(&ga, a.shape())?),
                    Some(sum_to_shape(&gb, b.shape())?),
                ])
            }),
        ))
    }

    /// Elementwise maximum (broadcasting); ties send half the gradient to each side.
    pub fn maximum(&self, rhs: &Var) -> Result<Var> {
        self.extremum(rhs, true)
    }

    /// Elementwise minimum (broadcasting); ties send half the gradient to each side.
    pub fn minimum(&self, rhs: &Var) -> Result<Var> {
        self.extremum(rhs, false)
    }

    fn extremum(&self, rhs: &Var, max: bool) -> Result<Var> {
        self.same_tape(rhs, if max { "maximum" } else { "minimum" })?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = if max {
            ops::maximum(&a, &b)?
        } else {
            ops::minimum(&a, &b)?
        };
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let wa = if max {
                    win_mask(&a, &b)?
                } else {
                    win_mask(&b, &a)?
                };
                let ga = ops::mul(g, &wa)?;
                let gb = ops::sub(g, &ga)?;
                Ok(vec![
                    Some(sum_to_shape(&ga, a.shape())?),
                    Some(sum_to_shape(&gb, b.shape())?),
                ])
            }),
        ))
    }

    /// `self ^ rhs` (broadcasting). The exponent's gradient `aᵇ ln a` is taken where
    /// `a > 0` and is 0 elsewhere (a negative base has no real log).
    pub fn pow(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "pow")?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = ops::pow(&a, &b)?;
        let yy = y.clone();
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let bm1 = ops::add_scalar(&b, -1.0)?;
                let ga = ops::mul(g, &ops::mul(&b, &ops::pow(&a, &bm1)?)?)?;
                let pos = ops::sign(&ops::relu(&a)?)?;
                let tiny = ops::fill(a.device(), &[1], f32::MIN_POSITIVE, DType::F32)?;
                let ln = ops::mul(&ops::log(&ops::maximum(&a, &tiny)?)?, &pos)?;
                let gb = ops::mul(g, &ops::mul(&yy, &ln)?)?;
                Ok(vec![
                    Some(sum_to_shape(&ga, a.shape())?),
                    Some(sum_to_shape(&gb, b.shape())?),
                ])
            }),
        ))
    }

    /// `−x`.
    pub fn neg(&self) -> Result<Var> {
        let y = ops::neg(self.value())?;
        Ok(self.record(&[self], y, Box::new(|g| Ok(vec![Some(ops::neg(g)?)]))))
    }

    /// `eˣ`.
    pub fn exp(&self) -> Result<Var> {
        let y = ops::exp(self.value())?;
        Ok(self.unary_vjp(y, |_, y| Ok(y.clone())))
    }

    /// `ln x`.
    pub fn log(&self) -> Result<Var> {
        let y = ops::log(self.value())?;
        Ok(self.unary_vjp(y, |x, _| {
            ops::div(&ops::ones(x.device(), &[1], DType::F32)?, x)
        }))
    }

    /// `√x`.
    pub fn sqrt(&self) -> Result<Var> {
        let y = ops::sqrt(self.value())?;
        Ok(self.unary_vjp(y, |_, y| {
            ops::div(&ops::fill(y.device(), &[1], 0.5, DType::F32)?, y)
        }))
    }

    /// `|x|` (gradient `sign(x)`, 0 at 0).
    pub fn abs(&self) -> Result<Var> {
        let y = ops::abs(self.value())?;
        Ok(self.unary_vjp(y, |x, _| ops::sign(x)))
    }

    /// `max(x, 0)` (gradient 0 at 0).
    pub fn relu(&self) -> Result<Var> {
        let y = ops::relu(self.value())?;
        Ok(self.unary_vjp(y, |_, y| ops::sign(y)))
    }

    /// `sign(x)`: piecewise constant, so its gradient is 0 (the result is untracked).
    pub fn sign(&self) -> Result<Var> {
        Ok(self.constant(ops::sign(self.value())?))
    }

    /// `tanh x`.
    pub fn tanh(&self) -> Result<Var> {
        let y = ops::tanh(self.value())?;
        Ok(self.unary_vjp(y, |_, y| ops::affine(&ops::mul(y, y)?, -1.0, 1.0)))
    }

    /// The logistic sigmoid `1 / (1 + e^{−x})`.
    pub fn sigmoid(&self) -> Result<Var> {
        let y = ops::sigmoid(self.value())?;
        Ok(self.unary_vjp(y, |_, y| ops::mul(y, &ops::affine(y, -1.0, 1.0)?)))
    }

    /// GELU, tanh form (as the forward op).
    pub fn gelu(&self) -> Result<Var> {
        let y = ops::gelu(self.value())?;
        Ok(self.unary_vjp(y, |x, _| {
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            let x2 = ops::mul(x, x)?;
            // u = c(x + 0.044715 x³)
            let u = ops::mul_scalar(&ops::mul(x, &ops::affine(&x2, 0.044715, 1.0)?)?, c)?;
            let th = ops::tanh(&u)?;
            let left = ops::affine(&th, 0.5, 0.5)?;
            let sech2 = ops::affine(&ops::mul(&th, &th)?, -1.0, 1.0)?;
            let du = ops::mul_scalar(&ops::affine(&x2, 3.0 * 0.044715, 1.0)?, c)?;
            let right = ops::mul_scalar(&ops::mul(x, &ops::mul(&sech2, &du)?)?, 0.5)?;
            ops::add(&left, &right)
        }))
    }

    /// Softplus `ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^{−|x|})` (no overflow);
    /// gradient `σ(x)`.
    pub fn softplus(&self) -> Result<Var> {
        let x = self.value();
        let y = ops::add(
            &ops::relu(x)?,
            &ops::log(&ops::add_scalar(
                &ops::exp(&ops::neg(&ops::abs(x)?)?)?,
                1.0,
            )?)?,
        )?;
        Ok(self.unary_vjp(y, |x, _| ops::sigmoid(x)))
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
