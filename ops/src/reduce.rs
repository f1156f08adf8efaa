//! Reductions through `cubek-reduce`: sum, mean, max, min and argmax along an axis, and
//! over all elements.
//!
//! Along an axis the output keeps the axis with length 1 (`[37, 1000]`, axis 1 →
//! `[37, 1]`); use [`Tensor::reshape`] to drop it. Accumulation is in f32 whatever the
//! storage dtype. Routine: one unit per output line when lines are short (≤ 256) or many,
//! one cube per line otherwise (plane reductions where the device has them, e.g. CUDA;
//! shared memory on lavapipe, which has no subgroup ops).
//!
//! NaN policy: sum and mean propagate NaN; max/min/argmax follow cubek (comparisons with
//! NaN are false, so a NaN may be skipped). Finite inputs are the tested contract.

use cubek::reduce::components::instructions::ReduceOperationConfig;
use cubek::reduce::launch::{RoutineStrategy, VectorizationStrategy};
use cubek::reduce::routines::{cube::CubeStrategy, unit::UnitStrategy, BlueprintStrategy};
use cubek::reduce::{ReduceDtypes, ReduceStrategy};

use crate::dispatch;
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::kinds::ReduceOp;
use crate::tensor::Tensor;
use crate::validate;

fn strategy(device: &crate::Device, line_len: usize, lines: usize) -> ReduceStrategy {
    let routine = if line_len <= 256 || lines >= 4096 {
        RoutineStrategy::Unit(BlueprintStrategy::Inferred(UnitStrategy))
    } else {
        RoutineStrategy::Cube(BlueprintStrategy::Inferred(CubeStrategy {
            use_planes: device.info().planes,
        }))
    };
    ReduceStrategy {
        routine,
        vectorization: VectorizationStrategy {
            parallel_output_vectorization: false,
        },
    }
}

/// Longest axis one cubek reduction is given. cubek-reduce 0.2 on lavapipe silently
/// returns a wrong value once an axis holds more than ≈ 2^22 scalars per reduction
/// (measured: `sum_all` of 4 194 303 ones-like values kept 3 % of the sum; of 2^22 values
/// vectorised by 4 it was right, of 2^24 + 1 wrong again). Longer axes are reduced in two
/// stages (blocks of 4096, then the block results), recursively.
pub const MAX_REDUCE_AXIS: usize = 1 << 20;

/// Block length of the first stage of a long-axis reduction.
const LONG_AXIS_BLOCK: usize = 4096;

fn launch(
    op_name: &'static str,
    x: &Tensor,
    axis: usize,
    op: ReduceOperationConfig,
    out_dtype: DType,
) -> Result<Tensor> {
    validate::float(op_name, x)?;
    validate::axis(op_name, x, axis)?;
    if x.shape()[axis] > MAX_REDUCE_AXIS {
        return long_axis(op_name, x, axis, op, out_dtype);
    }
    launch_direct(op_name, x, axis, op, out_dtype)
}

/// Two-stage reduction of an axis longer than [`MAX_REDUCE_AXIS`]: the axis is padded (zeros
/// for sums, copies of its last entry for max/min) to a multiple of [`LONG_AXIS_BLOCK`], viewed as
/// `[pre, P, block, post]`, reduced over the block (f32 partial results) and then over `P`
/// (itself split again if still too long). The mean is the sum scaled by `1/n`. `argmax`
/// over such an axis is refused with a typed error (no two-stage form here yet).
fn long_axis(
    op_name: &'static str,
    x: &Tensor,
    axis: usize,
    op: ReduceOperationConfig,
    out_dtype: DType,
) -> Result<Tensor> {
    let n = x.shape()[axis];
    // The padding: zeros for sums; copies of the last entry for max/min (no change).
    let (stage_op, zero_pad) = match op {
        ReduceOperationConfig::Sum | ReduceOperationConfig::Mean => {
            (ReduceOperationConfig::Sum, true)
        }
        ReduceOperationConfig::Max => (ReduceOperationConfig::Max, false),
        ReduceOperationConfig::Min => (ReduceOperationConfig::Min, false),
        _ => {
            return Err(LapisError::SizeOverLimit {
                op: op_name,
                name: "length of the reduced axis",
                size: n as u64,
                limit: MAX_REDUCE_AXIS as u64,
            })
        }
    };
    let shape = x.shape();
    let pre: usize = shape[..axis].iter().product();
    let post: usize = shape[axis + 1..].iter().product();
    let blocks = n.div_ceil(LONG_AXIS_BLOCK);
    let padded = blocks * LONG_AXIS_BLOCK;
    let x3 = x.reshape(&[pre, n, post])?;
    let xp = if padded > n {
        let pad_shape = [pre, padded - n, post];
        let fill = if zero_pad {
            crate::fill(x.device(), &pad_shape, 0.0, x.dtype())?
        } else {
            crate::broadcast_to(&crate::slice(&x3, 1, n - 1, n)?, &pad_shape)?
        };
        crate::concat(&[&x3, &fill], 1)?
    } else {
        x3
    };
    let x4 = xp.reshape(&[pre, blocks, LONG_AXIS_BLOCK, post])?;
    let part = launch(op_name, &x4, 2, stage_op, DType::F32)?.reshape(&[pre, blocks, post])?;
    let mut out = launch(op_name, &part, 1, stage_op, DType::F32)?;
    if matches!(op, ReduceOperationConfig::Mean) {
        out = crate::mul_scalar(&out, (1.0 / n as f64) as f32)?;
    }
    let mut out_shape = shape.to_vec();
    out_shape[axis] = 1;
    let out = out.reshape(&out_shape)?;
    if out_dtype == DType::F32 {
        Ok(out)
    } else {
        crate::to_dtype(&out, out_dtype)
    }
}

fn launch_direct(
    op_name: &'static str,
    x: &Tensor,
    axis: usize,
    op: ReduceOperationConfig,
    out_dtype: DType,
) -> Result<Tensor> {
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] = 1;
    let out = Tensor::empty(op_name, x.device(), &out_shape, out_dtype)?;
    let acc = DType::F32.storage_type();
    let dtypes = ReduceDtypes {
        input: x.dtype().storage_type(),
        output: out_dtype.storage_type(),
        accumulation: if out_dtype == DType::U32 {
            x.dtype().storage_type()
        } else {
            acc
        },
    };
    let strat = strategy(x.device(), x.shape()[axis], out.numel());
    crate::counters::count_launch(x.device());
    let prof = crate::counters::profile_start(x.device());
    let res = dispatch!(x.device(), |client, R| {
        let input = cubecl::std::tensor::TensorHandle::<R>::new_contiguous(
            x.shape().to_vec(),
            x.handle().clone(),
            x.dtype().storage_type(),
        );
        let output = cubecl::std::tensor::TensorHandle::<R>::new_contiguous(
            out_shape.clone(),
            out.handle().clone(),
            out_dtype.storage_type(),
        );
        cubek::reduce::reduce::<R>(
            client,
            input.binding(),
            output.binding(),
            axis,
            strat,
            op,
            dtypes,
        )
    });
    crate::counters::profile_end(x.device(), "cubek::reduce", prof);
    res.map_err(|e| LapisError::kernel(op_name, e))?;
    Ok(out)
}

fn config(op: ReduceOp) -> ReduceOperationConfig {
    match op {
        ReduceOp::Sum => ReduceOperationConfig::Sum,
        ReduceOp::Mean => ReduceOperationConfig::Mean,
        ReduceOp::Max => ReduceOperationConfig::Max,
        ReduceOp::Min => ReduceOperationConfig::Min,
    }
}

/// Reduces along `axis`, keeping it with length 1.
pub fn reduce(op: ReduceOp, x: &Tensor, axis: usize) -> Result<Tensor> {
    launch(op.name(), x, axis, config(op), x.dtype())
}

/// Reduces over every element; shape `[1]`.
pub fn reduce_all(op: ReduceOp, x: &Tensor) -> Result<Tensor> {
    reduce(op, &x.reshape(&[x.numel()])?, 0)
}

/// `Σ` along `axis` (kept, length 1).
pub fn sum(x: &Tensor, axis: usize) -> Result<Tensor> {
    reduce(ReduceOp::Sum, x, axis)
}
/// Mean along `axis` (kept, length 1).
pub fn mean(x: &Tensor, axis: usize) -> Result<Tensor> {
    reduce(ReduceOp::Mean, x, axis)
}
/// Max along `axis` (kept, length 1).
pub fn max(x: &Tensor, axis: usize) -> Result<Tensor> {
    reduce(ReduceOp::Max, x, axis)
}
/// Min along `axis` (kept, length 1).
pub fn min(x: &Tensor, axis: usize) -> Result<Tensor> {
    reduce(ReduceOp::Min, x, axis)
}
/// `Σ` of every element, shape `[1]`.
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    reduce_all(ReduceOp::Sum, x)
}
/// Mean of every element, shape `[1]`.
pub fn mean_all(x: &Tensor) -> Result<Tensor> {
    reduce_all(ReduceOp::Mean, x)
}
/// Max of every element, shape `[1]`.
pub fn max_all(x: &Tensor) -> Result<Tensor> {
    reduce_all(ReduceOp::Max, x)
}
/// Min of every element, shape `[1]`.
pub fn min_all(x: &Tensor) -> Result<Tensor> {
    reduce_all(ReduceOp::Min, x)
}

/// Index of the maximum along `axis` (u32, axis kept with length 1).
pub fn argmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    launch("argmax", x, axis, ReduceOperationConfig::ArgMax, DType::U32)
}

// ------------------------------------------------------------------------------ backward

/// The VJP of [`reduce`] along `axis` (`Some`) or of [`reduce_all`] (`None`): `x̄` from the
/// input `x`, the output `y` and `g = ȳ` (both of `y`'s shape). `Σ` broadcasts `ȳ` back;
/// the mean broadcasts `ȳ/n`; max and min send `ȳ` to the entries equal to the extremum,
/// split equally between ties (a constant line's max gives `ȳ/n` to each entry, a valid
/// subgradient).
pub fn reduce_backward(
    op: ReduceOp,
    x: &Tensor,
    y: &Tensor,
    g: &Tensor,
    axis: Option<usize>,
) -> Result<Tensor> {
    crate::validate::same_shape("reduce_backward", y, g)?;
    let want: Vec<usize> = match axis {
        Some(a) => {
            crate::validate::axis("reduce_backward", x, a)?;
            let mut s = x.shape().to_vec();
            s[a] = 1;
            s
        }
        None => vec![1],
    };
    if y.shape() != want.as_slice() {
        return Err(LapisError::ShapeMismatch {
            op: "reduce_backward",
            lhs: want,
            rhs: y.shape().to_vec(),
        });
    }
    let ones = vec![1; x.rank()];
    // ȳ (and y) with every reduced axis kept as 1, so they broadcast against x.
    let (yb, gb) = match axis {
        Some(_) => (y.clone(), g.clone()),
        None => (y.reshape(&ones)?, g.reshape(&ones)?),
    };
    let n = match axis {
        Some(a) => x.shape()[a],
        None => x.numel(),
    } as f32;
    match op {
        ReduceOp::Sum => crate::broadcast_to(&gb, x.shape()),
        ReduceOp::Mean => crate::broadcast_to(&crate::mul_scalar(&gb, 1.0 / n)?, x.shape()),
        ReduceOp::Max | ReduceOp::Min => {
            // 1 where x == y: 1 − sign(|x − y|)
            let mask = crate::affine(&crate::sign(&crate::abs(&crate::sub(x, &yb)?)?)?, -1.0, 1.0)?;
            let count = match axis {
                Some(a) => sum(&mask, a)?,
                None => sum_all(&mask)?.reshape(&ones)?,
            };
            crate::mul(&mask, &crate::div(&gb, &count)?)
        }
    }
}
