//! Elementwise ops: unary maps, binary maps with numpy broadcasting, scalar affine
//! maps and dtype casts.
//!
//! Broadcasting follows numpy: shapes are aligned on the right; along each axis the
//! sizes must be equal or one of them 1, and the output takes the larger. The kernel
//! reads each operand through strides that are 0 on its broadcast axes, after merging
//! adjacent axes that are contiguous in every operand (so `[B, n] + [B, n]` runs at rank 1
//! and `[B, n] + [n]` at rank 2).
//!
//! f16/bf16 tensors are computed in f32 inside the kernel and rounded once on store.

use lapis_kernels::elementwise as k;
use lapis_kernels::layout;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::kinds::{BinaryOp, UnaryOp};
use crate::launch_1d;
use crate::tensor::{arr, check_dtype_supported, meta_arr, Tensor};
use crate::validate;

fn unary_code(op: UnaryOp) -> u32 {
    use k::unary_code as c;
    match op {
        UnaryOp::Neg => c::NEG,
        UnaryOp::Exp => c::EXP,
        UnaryOp::Log => c::LOG,
        UnaryOp::Sqrt => c::SQRT,
        UnaryOp::Abs => c::ABS,
        UnaryOp::Relu => c::RELU,
        UnaryOp::Gelu => c::GELU,
        UnaryOp::Tanh => c::TANH,
        UnaryOp::Sigmoid => c::SIGMOID,
        UnaryOp::Sign => c::SIGN,
    }
}

fn binary_code(op: BinaryOp) -> u32 {
    use k::binary_code as c;
    match op {
        BinaryOp::Add => c::ADD,
        BinaryOp::Sub => c::SUB,
        BinaryOp::Mul => c::MUL,
        BinaryOp::Div => c::DIV,
        BinaryOp::Max => c::MAX,
        BinaryOp::Min => c::MIN,
        BinaryOp::Pow => c::POW,
    }
}

/// `y = op(x)` elementwise.
pub fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    let name = op.name();
    validate::float(name, x)?;
    let y = Tensor::empty(name, x.device(), x.shape(), x.dtype())?;
    let n = x.numel();
    let dt = x.dtype().storage_type();
    let code = unary_code(op);
    launch_1d!(x.device(), n, k::unary_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(&y),
        n as u32,
        code,
        dt,
    ));
    Ok(y)
}

macro_rules! unary_fns {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(x: &Tensor) -> Result<Tensor> {
            unary(UnaryOp::$op, x)
        }
    )*};
}

unary_fns! {
    /// `-x`
    neg => Neg,
    /// `e^x`
    exp => Exp,
    /// `ln x`
    log => Log,
    /// `√x`
    sqrt => Sqrt,
    /// `|x|`
    abs => Abs,
    /// `max(x, 0)`
    relu => Relu,
    /// GELU, tanh form.
    gelu => Gelu,
    /// `tanh x`
    tanh => Tanh,
    /// `1/(1+e^{-x})`
    sigmoid => Sigmoid,
    /// `sign x` ∈ {-1, 0, 1}
    sign => Sign,
}

/// `y = a·x + b` elementwise (scalar `a`, `b`; both must be finite).
pub fn affine(x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
    validate::float("affine", x)?;
    validate::finite("affine", "a", a)?;
    validate::finite("affine", "b", b)?;
    let y = Tensor::empty("affine", x.device(), x.shape(), x.dtype())?;
    let n = x.numel();
    let dt = x.dtype().storage_type();
    launch_1d!(x.device(), n, k::affine_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(&y),
        n as u32,
        a,
        b,
        dt,
    ));
    Ok(y)
}

/// `x · s`
pub fn mul_scalar(x: &Tensor, s: f32) -> Result<Tensor> {
    affine(x, s, 0.0)
}

/// `x + s`
pub fn add_scalar(x: &Tensor, s: f32) -> Result<Tensor> {
    affine(x, 1.0, s)
}

/// The numpy broadcast of two shapes, or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i < r - a.len() {
            1
        } else {
            a[i - (r - a.len())]
        };
        let db = if i < r - b.len() {
            1
        } else {
            b[i - (r - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides of `shape` read as a broadcast to `out` (right-aligned; 0 on broadcast axes).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let strides = crate::tensor::contiguous_strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                strides[i - off]
            }
        })
        .collect()
}

/// Merges adjacent axes that are contiguous in every operand; drops size-1 axes.
/// Returns the collapsed shape and one stride list per operand.
pub(crate) fn collapse(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut s: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !s.is_empty()
            && strides
                .iter()
                .zip(&st)
                .all(|(op, acc)| *acc.last().unwrap_or(&0) == op[d] * shape[d]);
        if mergeable {
            *s.last_mut().expect("non-empty") *= shape[d];
            for (acc, op) in st.iter_mut().zip(strides) {
                *acc.last_mut().expect("non-empty") = op[d];
            }
        } else {
            s.push(shape[d]);
            for (acc, op) in st.iter_mut().zip(strides) {
                acc.push(op[d]);
            }
        }
    }
    if s.is_empty() {
        s.push(1);
        for acc in st.iter_mut() {
            acc.push(0);
        }
    }
    (s, st)
}

/// `z = op(a, b)` elementwise with numpy broadcasting.
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let name = op.name();
    validate::same_device(name, a, b)?;
    validate::float(name, a)?;
    validate::same_dtype(name, a, b)?;
    let out_shape =
        broadcast_shape(a.shape(), b.shape()).ok_or_else(|| LapisError::ShapeMismatch {
            op: name,
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        })?;
    let out = Tensor::empty(name, a.device(), &out_shape, a.dtype())?;
    let n = out.numel();
    let dt = a.dtype().storage_type();
    let code = binary_code(op);
    if a.shape() == b.shape() {
        launch_1d!(a.device(), n, k::binary_same_kernel, |client, R| (
            arr::<R>(a),
            arr::<R>(b),
            arr::<R>(&out),
            n as u32,
            code,
            dt,
        ));
        return Ok(out);
    }
    let sa = broadcast_strides(a.shape(), &out_shape);
    let sb = broadcast_strides(b.shape(), &out_shape);
    let (shape, st) = collapse(&out_shape, &[sa, sb]);
    let rank = shape.len();
    let meta: Vec<u32> = shape
        .iter()
        .chain(&st[0])
        .chain(&st[1])
        .map(|&v| v as u32)
        .collect();
    launch_1d!(a.device(), n, k::binary_kernel, |client, R| (
        arr::<R>(a),
        arr::<R>(b),
        arr::<R>(&out),
        meta_arr::<R>(client, &meta),
        n as u32,
        rank as u32,
        code,
        dt,
    ));
    Ok(out)
}

macro_rules! binary_fns {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(a: &Tensor, b: &Tensor) -> Result<Tensor> {
            binary(BinaryOp::$op, a, b)
        }
    )*};
}

binary_fns! {
    /// `a + b` (broadcasting)
    add => Add,
    /// `a - b` (broadcasting)
    sub => Sub,
    /// `a * b` (broadcasting)
    mul => Mul,
    /// `a / b` (broadcasting)
    div => Div,
    /// `max(a, b)` (broadcasting; NaN if either is NaN)
    maximum => Max,
    /// `min(a, b)` (broadcasting; NaN if either is NaN)
    minimum => Min,
    /// `a^b` (broadcasting)
    pow => Pow,
}

/// Converts `x` to `dtype` on the device (round to nearest). Float ↔ float or float ↔ u32.
pub fn to_dtype(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if dtype == x.dtype() {
        return Ok(x.clone());
    }
    check_dtype_supported("to_dtype", x.device(), dtype)?;
    let y = Tensor::empty("to_dtype", x.device(), x.shape(), dtype)?;
    let n = x.numel();
    let (di, dout) = (x.dtype().storage_type(), dtype.storage_type());
    launch_1d!(x.device(), n, layout::cast_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(&y),
        n as u32,
        di,
        dout,
    ));
    Ok(y)
}

// ------------------------------------------------------------------------------ backward

/// Sums `g` down to `shape`: the adjoint of numpy broadcasting from `shape` to `g`'s shape
/// (leading axes summed away, axes where `shape` has 1 summed and kept).
pub fn sum_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if broadcast_shape(shape, g.shape()).as_deref() != Some(g.shape()) {
        return Err(LapisError::ShapeMismatch {
            op: "sum_to_shape",
            lhs: g.shape().to_vec(),
            rhs: shape.to_vec(),
        });
    }
    let mut g = g.clone();
    while g.rank() > shape.len() {
        g = crate::sum(&g, 0)?;
        let s = g.shape()[1..].to_vec();
        g = g.reshape(&s)?;
    }
    for (axis, &want) in shape.iter().enumerate() {
        if want == 1 && g.shape()[axis] != 1 {
            g = crate::sum(&g, axis)?;
        }
    }
    g.reshape(shape)
}

/// `(1 + sign(a − b)) / 2`: 1 where `a > b`, ½ on ties, 0 where `a < b`.
fn win_mask(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    affine(&sign(&sub(a, b)?)?, 0.5, 0.5)
}

/// The VJP of [`unary`]: `x̄ = ȳ ⊙ f'(x)`, from the input `x`, the output `y = f(x)` and
/// `g = ȳ`:
///
/// | op | `f'` |
/// |---|---|
/// | neg | `−1` |
/// | exp, log, sqrt | `y`, `1/x`, `1/(2y)` |
/// | abs, relu, sign | `sign(x)`, `[x > 0]` (0 at 0), `0` |
/// | tanh, sigmoid | `1 − y²`, `y(1 − y)` |
/// | gelu (tanh form) | `½(1 + tanh u) + ½x(1 − tanh²u)·c(1 + 3·0.044715x²)`, `u = c(x + 0.044715x³)`, `c = √(2/π)` |
pub fn unary_backward(op: UnaryOp, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    validate::same_shape("unary_backward", x, y)?;
    validate::same_shape("unary_backward", y, g)?;
    let one = |v: f32| crate::fill(x.device(), &[1], v, DType::F32);
    let d = match op {
        UnaryOp::Neg => return neg(g),
        UnaryOp::Sign => return crate::zeros(g.device(), g.shape(), g.dtype()),
        UnaryOp::Exp => y.clone(),
        UnaryOp::Log => div(&one(1.0)?, x)?,
        UnaryOp::Sqrt => div(&one(0.5)?, y)?,
        UnaryOp::Abs => sign(x)?,
        UnaryOp::Relu => sign(y)?,
        UnaryOp::Tanh => affine(&mul(y, y)?, -1.0, 1.0)?,
        UnaryOp::Sigmoid => mul(y, &affine(y, -1.0, 1.0)?)?,
        UnaryOp::Gelu => {
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            let x2 = mul(x, x)?;
            let u = mul_scalar(&mul(x, &affine(&x2, 0.044715, 1.0)?)?, c)?;
            let th = tanh(&u)?;
            let left = affine(&th, 0.5, 0.5)?;
            let sech2 = affine(&mul(&th, &th)?, -1.0, 1.0)?;
            let du = mul_scalar(&affine(&x2, 3.0 * 0.044715, 1.0)?, c)?;
            let right = mul_scalar(&mul(x, &mul(&sech2, &du)?)?, 0.5)?;
            add(&left, &right)?
        }
    };
    mul(g, &d)
}

/// The VJP of [`binary`]: `(ā, b̄)` from the operands, the output `y` and `g = ȳ`, each
/// summed back to its operand's shape ([`sum_to_shape`]):
///
/// | op | `ā` | `b̄` |
/// |---|---|---|
/// | add, sub | `ȳ` | `±ȳ` |
/// | mul | `ȳ b` | `ȳ a` |
/// | div | `ȳ / b` | `−(ȳ / b)·y` |
/// | max, min | `ȳ` where `a` wins, `ȳ/2` on a tie (as PyTorch) | the rest |
/// | pow | `ȳ b a^{b−1}` | `ȳ y ln a` where `a > 0`, else 0 (no real log) |
pub fn binary_backward(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    validate::same_shape("binary_backward", y, g)?;
    if broadcast_shape(a.shape(), b.shape()).as_deref() != Some(y.shape()) {
        return Err(LapisError::ShapeMismatch {
            op: "binary_backward",
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        });
    }
    let (ga, gb) = match op {
        BinaryOp::Add => (g.clone(), g.clone()),
        BinaryOp::Sub => (g.clone(), neg(g)?),
        BinaryOp::Mul => (mul(g, b)?, mul(g, a)?),
        BinaryOp::Div => {
            let ga = div(g, b)?;
            let gb = neg(&mul(&ga, y)?)?;
            (ga, gb)
        }
        BinaryOp::Max | BinaryOp::Min => {
            let wa = if op == BinaryOp::Max {
                win_mask(a, b)?
            } else {
                win_mask(b, a)?
            };
            let ga = mul(g, &wa)?;
            let gb = sub(g, &ga)?;
            (ga, gb)
        }
        BinaryOp::Pow => {
            let ga = mul(g, &mul(b, &pow(a, &add_scalar(b, -1.0)?)?)?)?;
            let pos = sign(&relu(a)?)?;
            let tiny = crate::fill(a.device(), &[1], f32::MIN_POSITIVE, DType::F32)?;
            let ln = mul(&log(&maximum(a, &tiny)?)?, &pos)?;
            (ga, mul(g, &mul(y, &ln)?)?)
        }
    };
    Ok((sum_to_shape(&ga, a.shape())?, sum_to_shape(&gb, b.shape())?))
}
