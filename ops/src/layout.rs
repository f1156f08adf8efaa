//! Layout ops: permute, transpose, slice, concat, broadcast-expand (all through one
//! strided-copy kernel), and `reshape` (free, see [`Tensor::reshape`]).
//!
//! lapis tensors are always contiguous, so a permute materialises the permuted copy:
//! `out[c] = x[c ∘ perm⁻¹]`, i.e. `out.shape[i] = x.shape[perm[i]]` (torch semantics).

use lapis_kernels::layout as k;

use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, contiguous_strides, meta_arr, Tensor};
use crate::validate;

/// Copies the `shape`-sized block of `src` starting at element `src_off` with strides
/// `src_strides` into `dst` at `dst_off` with strides `dst_strides`.
fn strided_copy(
    src: &Tensor,
    dst: &Tensor,
    shape: &[usize],
    src_off: usize,
    src_strides: &[usize],
    dst_off: usize,
    dst_strides: &[usize],
) {
    let (shape, st) =
        crate::elementwise::collapse(shape, &[src_strides.to_vec(), dst_strides.to_vec()]);
    let n: usize = shape.iter().product();
    let dt = src.dtype().storage_type();
    if shape.len() == 1 && st[0][0] == 1 && st[1][0] == 1 {
        // Contiguous on both sides: no index arithmetic, no metadata upload.
        let (so, dof) = (src_off as u32, dst_off as u32);
        launch_1d!(src.device(), n, k::copy_range_kernel, |client, R| (
            arr::<R>(src),
            arr::<R>(dst),
            so,
            dof,
            n as u32,
            dt,
        ));
        return;
    }
    let meta: Vec<u32> = [src_off, dst_off]
        .iter()
        .chain(&shape)
        .chain(&st[0])
        .chain(&st[1])
        .map(|&v| v as u32)
        .collect();
    let rank = shape.len() as u32;
    launch_1d!(src.device(), n, k::strided_copy_kernel, |client, R| (
        arr::<R>(src),
        arr::<R>(dst),
        meta_arr::<R>(client, &meta),
        n as u32,
        rank,
        dt,
    ));
}

/// Permutes axes: `out.shape[i] = x.shape[perm[i]]`. `perm` must be a permutation of `0..rank`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let r = x.rank();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(LapisError::invalid(
            "permute",
            "perm",
            perm,
            format!("must be a permutation of 0..{r}"),
        ));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let out = Tensor::empty("permute", x.device(), &out_shape, x.dtype())?;
    let xs = x.strides();
    let src_strides: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    strided_copy(
        x,
        &out,
        &out_shape,
        0,
        &src_strides,
        0,
        &contiguous_strides(&out_shape),
    );
    Ok(out)
}

/// Swaps axes `d0` and `d1`.
pub fn transpose(x: &Tensor, d0: usize, d1: usize) -> Result<Tensor> {
    validate::axis("transpose", x, d0)?;
    validate::axis("transpose", x, d1)?;
    let mut perm: Vec<usize> = (0..x.rank()).collect();
    perm.swap(d0, d1);
    permute(x, &perm)
}

/// Elements `start..end` of `x` along `axis` (`start < end ≤ shape[axis]`).
pub fn slice(x: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
    validate::axis("slice", x, axis)?;
    let len = x.shape()[axis];
    if start >= end || end > len {
        return Err(LapisError::invalid(
            "slice",
            "start..end",
            start..end,
            format!(
                "need start < end <= {len} (axis {axis} of shape {:?})",
                x.shape()
            ),
        ));
    }
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] = end - start;
    let out = Tensor::empty("slice", x.device(), &out_shape, x.dtype())?;
    let xs = x.strides();
    strided_copy(
        x,
        &out,
        &out_shape,
        start * xs[axis],
        &xs,
        0,
        &contiguous_strides(&out_shape),
    );
    Ok(out)
}

/// Concatenates `xs` along `axis`; every other dimension must agree.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| LapisError::invalid("concat", "xs", "[]", "need at least one tensor"))?;
    validate::axis("concat", first, axis)?;
    let mut total = 0;
    for t in xs {
        validate::same_device("concat", first, t)?;
        validate::same_dtype("concat", first, t)?;
        let same_rest = t.rank() == first.rank()
            && (0..t.rank()).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
        if !same_rest {
            return Err(LapisError::ShapeMismatch {
                op: "concat",
                lhs: first.shape().to_vec(),
                rhs: t.shape().to_vec(),
            });
        }
        total += t.shape()[axis];
    }
    let mut out_shape = first.shape().to_vec();
    out_shape[axis] = total;
    let out = Tensor::empty("concat", first.device(), &out_shape, first.dtype())?;
    let os = contiguous_strides(&out_shape);
    let mut at = 0;
    for t in xs {
        strided_copy(t, &out, t.shape(), 0, &t.strides(), at * os[axis], &os);
        at += t.shape()[axis];
    }
    Ok(out)
}

/// Broadcasts `x` to `shape` (numpy rules), materialising the copy.
pub fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    match crate::elementwise::broadcast_shape(x.shape(), shape) {
        Some(s) if s == shape => {}
        _ => {
            return Err(LapisError::ShapeMismatch {
                op: "broadcast_to",
                lhs: x.shape().to_vec(),
                rhs: shape.to_vec(),
            })
        }
    }
    let out = Tensor::empty("broadcast_to", x.device(), shape, x.dtype())?;
    let src = crate::elementwise::broadcast_strides(x.shape(), shape);
    strided_copy(x, &out, shape, 0, &src, 0, &contiguous_strides(shape));
    Ok(out)
}

/// A contiguous copy of `x` (a new buffer).
pub fn copy(x: &Tensor) -> Result<Tensor> {
    let out = Tensor::empty("copy", x.device(), x.shape(), x.dtype())?;
    strided_copy(x, &out, x.shape(), 0, &x.strides(), 0, &x.strides());
    Ok(out)
}

// ------------------------------------------------------------------------------ backward

/// The VJP of [`permute`]: `ȳ` permuted back by the inverse permutation.
pub fn permute_backward(g: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let mut inv = vec![usize::MAX; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        if p >= perm.len() || inv[p] != usize::MAX {
            return Err(LapisError::invalid(
                "permute_backward",
                "perm",
                format!("{perm:?}"),
                "must be a permutation",
            ));
        }
        inv[p] = i;
    }
    permute(g, &inv)
}

/// The VJP of [`slice`](fn@slice)`(x, axis, start, ·)` for an input of shape `x_shape`: `ȳ` placed
/// at `start` along `axis` in zeros.
pub fn slice_backward(g: &Tensor, x_shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
    validate::axis("slice_backward", g, axis)?;
    let end = start + g.shape()[axis];
    if x_shape.len() != g.rank() || end > x_shape[axis] {
        return Err(LapisError::ShapeMismatch {
            op: "slice_backward",
            lhs: x_shape.to_vec(),
            rhs: g.shape().to_vec(),
        });
    }
    let side = |len: usize| -> Result<Option<Tensor>> {
        if len == 0 {
            return Ok(None);
        }
        let mut s = x_shape.to_vec();
        s[axis] = len;
        crate::zeros(g.device(), &s, g.dtype()).map(Some)
    };
    let (lo, hi) = (side(start)?, side(x_shape[axis] - end)?);
    let parts: Vec<&Tensor> = [lo.as_ref(), Some(g), hi.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    concat(&parts, axis)
}

/// The VJP of [`concat`](fn@concat) of inputs with lengths `lens` along `axis`: `ȳ` split back.
pub fn concat_backward(g: &Tensor, lens: &[usize], axis: usize) -> Result<Vec<Tensor>> {
    let mut at = 0;
    lens.iter()
        .map(|&l| {
            let part = slice(g, axis, at, at + l)?;
            at += l;
            Ok(part)
        })
        .collect()
}

/// The VJP of [`broadcast_to`] from `x_shape`: `ȳ` summed over the broadcast axes.
pub fn broadcast_to_backward(g: &Tensor, x_shape: &[usize]) -> Result<Tensor> {
    crate::elementwise::sum_to_shape(g, x_shape)
}
