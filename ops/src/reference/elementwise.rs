//! Elementwise references: [`unary`] and broadcasting [`binary`].
//!
//! Unary, `y_i = f(x_i)`:
//!
//! * `neg x = −x`, `exp x = e^x`, `log x = ln x` (NaN for `x < 0`, −∞ at 0),
//!   `sqrt x = √x` (NaN for `x < 0`), `abs x = |x|`, `tanh x`;
//! * `relu x = max(x, 0)`, NaN stays NaN;
//! * `gelu x = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))` (the tanh form);
//! * `sigmoid x = 1 / (1 + e^{−x})`;
//! * `sign x` = 1 for `x > 0`, −1 for `x < 0`, 0 for ±0, NaN for NaN.
//!
//! Binary, `z[p] = f(a[p↓a], b[p↓b])` over the numpy broadcast of the two shapes, where
//! `p↓t` drops `p`'s leading dims beyond `t`'s rank and zeroes the index along `t`'s
//! length-1 dims:
//!
//! * `add a + b`, `sub a − b`, `mul a · b`, `div a / b` (IEEE: ±∞ or NaN on `/ 0`);
//! * `max(a, b)`, `min(a, b)`: NaN if either operand is NaN;
//! * `pow a^b` = [`f64::powf`] (NaN for `a < 0` and non-integer `b`).

use super::tensor::{broadcast_shape, broadcast_source, numel_of, unravel, RefTensor};
use crate::kinds::{BinaryOp, UnaryOp};

/// `√(2/π)`, the GELU tanh-form scale.
fn sqrt_2_over_pi() -> f64 {
    (2.0 / std::f64::consts::PI).sqrt()
}

/// `op` applied to one value (see the module docs for each op's definition).
pub fn unary_scalar(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Relu => {
            if x.is_nan() || x > 0.0 {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Gelu => 0.5 * x * (1.0 + (sqrt_2_over_pi() * (x + 0.044715 * x * x * x)).tanh()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else if x == 0.0 {
                0.0
            } else {
                // Only NaN is neither > 0, < 0 nor == 0.
                f64::NAN
            }
        }
    }
}

/// `op` applied to one pair of values (see the module docs for each op's definition).
pub fn binary_scalar(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        }
        BinaryOp::Min => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        }
        BinaryOp::Pow => a.powf(b),
    }
}

/// `y_i = op(x_i)` elementwise; the output has `x`'s shape.
pub fn unary(op: UnaryOp, x: &RefTensor) -> RefTensor {
    RefTensor {
        shape: x.shape.clone(),
        data: x.data.iter().map(|&v| unary_scalar(op, v)).collect(),
    }
}

/// `z[p] = op(a[p↓a], b[p↓b])` with numpy broadcasting; the output has the broadcast
/// shape of `a` and `b`.
///
/// # Panics
///
/// If the shapes of `a` and `b` do not broadcast together.
pub fn binary(op: BinaryOp, a: &RefTensor, b: &RefTensor) -> RefTensor {
    let shape = broadcast_shape(&a.shape, &b.shape).unwrap_or_else(|| {
        panic!(
            "binary {}: shapes {:?} and {:?} do not broadcast",
            op.name(),
            a.shape,
            b.shape
        )
    });
    let data = (0..numel_of(&shape))
        .map(|flat| {
            let idx = unravel(flat, &shape);
            let av = a.data[broadcast_source(&idx, &a.shape)];
            let bv = b.data[broadcast_source(&idx, &b.shape)];
            binary_scalar(op, av, bv)
        })
        .collect();
    RefTensor { shape, data }
}
