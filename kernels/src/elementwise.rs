//! Elementwise kernels.
//!
//! - Unary: `y_i = f(x_i)` for `f` in neg, exp, ln, √, |·|, relu, GELU (tanh form:
//!   `x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³)))`, Hendrycks & Gimpel 2016), tanh,
//!   sigmoid `1/(1+e^{-x})` and sign; plus the affine map `y = a·x + b`.
//! - Binary: `z_i = f(a_{σ_a(i)}, b_{σ_b(i)})` for add, sub, mul, div, max, min, pow,
//!   where `σ` maps the flat output index to each operand's flat index through its
//!   strides (0 on a broadcast axis): numpy broadcasting without materialising the
//!   expanded operands.
//!
//! Numerics: sigmoid is evaluated as `e^{x}/(1+e^{x})` for `x < 0` so that `e^{-x}` never
//! overflows to produce `inf/inf`; tanh is computed by the backend's `tanh`, clamped to
//! |x| ≤ 15 where `tanh` is ±1 in f32 (some backends compute it as a ratio of
//! exponentials that overflows).
//!
//! Cost: one read per operand and one write per element; O(rank) integer work per
//! element for broadcasting (skipped when the operands need none).

use cubecl::prelude::*;

/// Codes of the unary ops (kept in sync with `lapis_ops::kinds::UnaryOp`).
pub mod unary_code {
    /// `-x`
    pub const NEG: u32 = 0;
    /// `e^x`
    pub const EXP: u32 = 1;
    /// `ln x`
    pub const LOG: u32 = 2;
    /// `√x`
    pub const SQRT: u32 = 3;
    /// `|x|`
    pub const ABS: u32 = 4;
    /// `max(x, 0)`
    pub const RELU: u32 = 5;
    /// GELU (tanh form)
    pub const GELU: u32 = 6;
    /// `tanh x`
    pub const TANH: u32 = 7;
    /// `1/(1+e^{-x})`
    pub const SIGMOID: u32 = 8;
    /// `sign x`
    pub const SIGN: u32 = 9;
}

/// Codes of the binary ops (kept in sync with `lapis_ops::kinds::BinaryOp`).
pub mod binary_code {
    /// `a + b`
    pub const ADD: u32 = 0;
    /// `a - b`
    pub const SUB: u32 = 1;
    /// `a * b`
    pub const MUL: u32 = 2;
    /// `a / b`
    pub const DIV: u32 = 3;
    /// `max(a, b)`
    pub const MAX: u32 = 4;
    /// `min(a, b)`
    pub const MIN: u32 = 5;
    /// `a^b`
    pub const POW: u32 = 6;
}

/// `tanh` that stays finite on every backend: beyond |x| = 15, tanh(x) rounds to ±1 in f32.
#[cube]
pub fn safe_tanh(x: f32) -> f32 {
    let c = clamp(x, -15.0f32, 15.0f32);
    c.tanh()
}

/// Logistic sigmoid without overflow: `e^{x}/(1+e^{x})` for x < 0, `1/(1+e^{-x})` otherwise.
#[cube]
pub fn safe_sigmoid(x: f32) -> f32 {
    let e = (-x.abs()).exp();
    let pos = 1.0f32 / (1.0f32 + e);
    select(x >= 0.0f32, pos, e / (1.0f32 + e))
}

/// The unary op `op` applied to `x` (in f32).
#[cube]
pub fn unary_math(x: f32, #[comptime] op: u32) -> f32 {
    let mut y = x;
    if comptime![op == unary_code::NEG] {
        y = -x;
    } else if comptime![op == unary_code::EXP] {
        y = x.exp();
    } else if comptime![op == unary_code::LOG] {
        y = x.ln();
    } else if comptime![op == unary_code::SQRT] {
        y = x.sqrt();
    } else if comptime![op == unary_code::ABS] {
        y = x.abs();
    } else if comptime![op == unary_code::RELU] {
        y = select(x > 0.0f32, x, 0.0f32);
    } else if comptime![op == unary_code::GELU] {
        // sqrt(2/pi)
        let inner = 0.797_884_6f32 * (x + 0.044715f32 * x * x * x);
        y = 0.5f32 * x * (1.0f32 + safe_tanh(inner));
    } else if comptime![op == unary_code::TANH] {
        y = safe_tanh(x);
    } else if comptime![op == unary_code::SIGMOID] {
        y = safe_sigmoid(x);
    } else if comptime![op == unary_code::SIGN] {
        let pos = select(x > 0.0f32, 1.0f32, 0.0f32);
        let neg = select(x < 0.0f32, 1.0f32, 0.0f32);
        // NaN compares false both ways: pass it through explicitly.
        y = select(x.is_nan(), x, pos - neg);
    }
    y
}

/// `z`, unless `a` or `b` is NaN, in which case that NaN.
#[cube]
pub fn propagate_nan(a: f32, b: f32, z: f32) -> f32 {
    select(a.is_nan(), a, select(b.is_nan(), b, z))
}

/// The binary op `op` applied to `(a, b)` (in f32).
#[cube]
pub fn binary_math(a: f32, b: f32, #[comptime] op: u32) -> f32 {
    let mut z = a;
    if comptime![op == binary_code::ADD] {
        z = a + b;
    } else if comptime![op == binary_code::SUB] {
        z = a - b;
    } else if comptime![op == binary_code::MUL] {
        z = a * b;
    } else if comptime![op == binary_code::DIV] {
        z = a / b;
    } else if comptime![op == binary_code::MAX] {
        // NaN in either operand gives NaN, as numpy's maximum.
        z = propagate_nan(a, b, select(a >= b, a, b));
    } else if comptime![op == binary_code::MIN] {
        z = propagate_nan(a, b, select(a <= b, a, b));
    } else if comptime![op == binary_code::POW] {
        z = a.powf(b);
    }
    z
}

/// `y[i] = op(x[i])` for `i < n`.
#[cube(launch)]
pub fn unary_kernel<F: Float>(
    x: &Array<F>,
    y: &mut Array<F>,
    n: u32,
    #[comptime] op: u32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    y[i] = F::cast_from(unary_math(f32::cast_from(x[i]), op));
}

/// `y[i] = a·x[i] + b` for `i < n` (scalar scale and shift).
#[cube(launch)]
pub fn affine_kernel<F: Float>(
    x: &Array<F>,
    y: &mut Array<F>,
    n: u32,
    a: f32,
    b: f32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    y[i] = F::cast_from(a * f32::cast_from(x[i]) + b);
}

/// `out[i] = op(a[σ_a(i)], b[σ_b(i)])` for `i < n`.
///
/// `meta` holds `[shape(rank), a_strides(rank), b_strides(rank)]` of the (collapsed)
/// output; a stride is 0 on an axis the operand broadcasts along.
#[cube(launch)]
pub fn binary_kernel<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    meta: &Array<u32>,
    n: u32,
    rank: u32,
    #[comptime] op: u32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    let mut rem = i as u32;
    let mut ia = 0u32;
    let mut ib = 0u32;
    // Walk the axes from the innermost outwards, peeling one coordinate each.
    for k in 0..rank {
        let d = rank - 1 - k;
        let size = meta[d as usize];
        let coord = rem % size;
        rem /= size;
        ia += coord * meta[(rank + d) as usize];
        ib += coord * meta[(2 * rank + d) as usize];
    }
    let va = f32::cast_from(a[ia as usize]);
    let vb = f32::cast_from(b[ib as usize]);
    out[i] = F::cast_from(binary_math(va, vb, op));
}

/// `out[i] = op(a[i], b[i])` for `i < n`: the same-shape fast path of [`binary_kernel()`].
#[cube(launch)]
pub fn binary_same_kernel<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    n: u32,
    #[comptime] op: u32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    out[i] = F::cast_from(binary_math(f32::cast_from(a[i]), f32::cast_from(b[i]), op));
}
