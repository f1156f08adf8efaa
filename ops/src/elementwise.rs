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
