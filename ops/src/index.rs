//! Indexing ops along one axis: gather (torch.gather), index-select, scatter-add
//! (torch.scatter_add) and index-add (the adjoint of index-select).
//!
//! Indices are u32 tensors. Their range is checked on the device, without a read
//! ([`crate::checks`]): an index `≥ shape[axis]` makes the next read of device data (or
//! [`crate::Device::check`]) return [`LapisError::InvalidArgument`] naming the op and
//! `index`; the kernels clamp it meanwhile, so there is never an out-of-bounds access. Scatter-add is deterministic (see `lapis_kernels::index`).

use lapis_kernels::index as k;

use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

/// u32 indices, each `< len`: the range is a deferred device check (no read; see
/// [`crate::checks`]), and the kernels clamp an out-of-range index meanwhile.
fn check_indices(op: &'static str, idx: &Tensor, len: usize) -> Result<()> {
    validate::index(op, idx)?;
    crate::checks::check_index(op, "index", idx, len)
}

/// `idx` has `x`'s rank and, off `axis`, the same sizes (lapis requires equality where
/// torch allows ≤, so the `[outer, k, inner]` view is exact).
fn check_like(op: &'static str, x: &Tensor, idx: &Tensor, axis: usize) -> Result<()> {
    let ok = idx.rank() == x.rank()
        && (0..x.rank()).all(|d| d == axis || idx.shape()[d] == x.shape()[d]);
    if ok {
        Ok(())
    } else {
        Err(LapisError::ShapeMismatch {
            op,
            lhs: x.shape().to_vec(),
            rhs: idx.shape().to_vec(),
        })
    }
}

/// torch.gather: `out[.., j, ..] = x[.., idx[.., j, ..], ..]` along `axis`; `out` has `idx`'s shape.
pub fn gather(x: &Tensor, axis: usize, idx: &Tensor) -> Result<Tensor> {
    validate::axis("gather", x, axis)?;
    validate::same_device("gather", x, idx)?;
    check_like("gather", x, idx, axis)?;
    let (outer, len, inner) = validate::split_at_axis(x.shape(), axis);
    check_indices("gather", idx, len)?;
    let kk = idx.shape()[axis];
    let out = Tensor::empty("gather", x.device(), idx.shape(), x.dtype())?;
    let n = out.numel();
    let dt = x.dtype().storage_type();
    launch_1d!(x.device(), n, k::gather_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(idx),
        arr::<R>(&out),
        outer as u32,
        len as u32,
        kk as u32,
        inner as u32,
        dt,
    ));
    Ok(out)
}

/// torch.index_select: `out[.., j, ..] = x[.., idx[j], ..]`; `idx` is 1-D.
pub fn index_select(x: &Tensor, axis: usize, idx: &Tensor) -> Result<Tensor> {
    validate::axis("index_select", x, axis)?;
    validate::same_device("index_select", x, idx)?;
    if idx.rank() != 1 {
        return Err(LapisError::shape(
            "index_select",
            idx.shape(),
            "indices must be 1-D",
        ));
    }
    let (outer, len, inner) = validate::split_at_axis(x.shape(), axis);
    check_indices("index_select", idx, len)?;
    let kk = idx.numel();
    let mut out_shape = x.shape().to_vec();
    out_shape[axis] = kk;
    let out = Tensor::empty("index_select", x.device(), &out_shape, x.dtype())?;
    let n = out.numel();
    let dt = x.dtype().storage_type();
    launch_1d!(x.device(), n, k::index_select_kernel, |client, R| (
        arr::<R>(x),
        arr::<R>(idx),
        arr::<R>(&out),
        outer as u32,
        len as u32,
        kk as u32,
        inner as u32,
        dt,
    ));
    Ok(out)
}

/// Longest index loop one unit runs (llvmpipe stops a unit's loops after 65 535 iterations;
/// longer index lists are split and accumulated).
const MAX_INDEX_LOOP: usize = 32_768;

/// torch.scatter_add: `out = base`, then `out[.., idx[p], ..] += src[p]` for every position
/// `p` of `src` (`src` and `idx` share a shape, equal to `base`'s off `axis`).
pub fn scatter_add(base: &Tensor, axis: usize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
    validate::axis("scatter_add", base, axis)?;
    validate::float("scatter_add", base)?;
    validate::same_device("scatter_add", base, idx)?;
    validate::same_device("scatter_add", base, src)?;
    validate::same_dtype("scatter_add", base, src)?;
    check_like("scatter_add", base, idx, axis)?;
    if idx.shape() != src.shape() {
        return Err(LapisError::ShapeMismatch {
            op: "scatter_add",
            lhs: idx.shape().to_vec(),
            rhs: src.shape().to_vec(),
        });
    }
    let (outer, len, inner) = validate::split_at_axis(base.shape(), axis);
    check_indices("scatter_add", idx, len)?;
    let kk = idx.shape()[axis];
    if kk > MAX_INDEX_LOOP {
        // Each unit loops over k: split k so every loop stays short (llvmpipe's limit).
        let mut out = base.clone();
        for j0 in (0..kk).step_by(MAX_INDEX_LOOP) {
            let j1 = (j0 + MAX_INDEX_LOOP).min(kk);
            out = scatter_add(
                &out,
                axis,
                &crate::slice(idx, axis, j0, j1)?,
                &crate::slice(src, axis, j0, j1)?,
            )?;
        }
        return Ok(out);
    }
    let out = Tensor::empty("scatter_add", base.device(), base.shape(), base.dtype())?;
    let n = out.numel();
    let dt = base.dtype().storage_type();
    launch_1d!(base.device(), n, k::scatter_add_kernel, |client, R| (
        arr::<R>(base),
        arr::<R>(idx),
        arr::<R>(src),
        arr::<R>(&out),
        outer as u32,
        len as u32,
        kk as u32,
        inner as u32,
        dt,
    ));
    Ok(out)
}

/// index-add, the adjoint of [`index_select`]: `out` has `src`'s shape with
/// `shape[axis] = len`, and `out[.., r, ..] = Σ_{j : idx[j] = r} src[.., j, ..]`.
pub fn index_add(src: &Tensor, axis: usize, idx: &Tensor, len: usize) -> Result<Tensor> {
    validate::axis("index_add", src, axis)?;
    validate::float("index_add", src)?;
    validate::same_device("index_add", src, idx)?;
    if idx.rank() != 1 || idx.numel() != src.shape()[axis] {
        return Err(LapisError::ShapeMismatch {
            op: "index_add",
            lhs: src.shape().to_vec(),
            rhs: idx.shape().to_vec(),
        });
    }
    check_indices("index_add", idx, len)?;
    let mut out_shape = src.shape().to_vec();
    out_shape[axis] = len;
    let (outer, kk, inner) = validate::split_at_axis(src.shape(), axis);
    if kk > MAX_INDEX_LOOP {
        let mut out: Option<Tensor> = None;
        for j0 in (0..kk).step_by(MAX_INDEX_LOOP) {
            let j1 = (j0 + MAX_INDEX_LOOP).min(kk);
            let part = index_add(
                &crate::slice(src, axis, j0, j1)?,
                axis,
                &crate::slice(idx, 0, j0, j1)?,
                len,
            )?;
            out = Some(match out {
                Some(o) => crate::add(&o, &part)?,
                None => part,
            });
        }
        return Ok(out.expect("kk > 0"));
    }
    let out = Tensor::empty("index_add", src.device(), &out_shape, src.dtype())?;
    let n = out.numel();
    let dt = src.dtype().storage_type();
    if kk <= 8 {
        // A few indices: scanning them all per output element is cheaper than a sort.
        launch_1d!(src.device(), n, k::index_add_kernel, |client, R| (
            arr::<R>(idx),
            arr::<R>(src),
            arr::<R>(&out),
            outer as u32,
            len as u32,
            kk as u32,
            inner as u32,
            dt,
        ));
        return Ok(out);
    }
    // Sort the indices once (stable radix over the bits of `len`), then each output element
    // sums only the run of its row.
    let bits = usize::BITS - (len.max(2) - 1).leading_zeros();
    let (sorted, perm) = crate::sort::sort_u32(idx, bits)?;
    launch_1d!(src.device(), n, k::index_add_sorted_kernel, |client, R| (
        arr::<R>(&sorted),
        arr::<R>(&perm),
        arr::<R>(src),
        arr::<R>(&out),
        outer as u32,
        len as u32,
        kk as u32,
        inner as u32,
        dt,
    ));
    Ok(out)
}

/// `out[k, :] = x[idx[k], :]` over the leading axis, for indices built inside lapis (a
/// permutation from a sort): valid by construction, so no host-side check as in the public
/// [`index_select`]. `out` has `x`'s shape with the leading axis `idx.numel()`.
pub(crate) fn take_rows_unchecked(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let len = x.shape()[0];
    let rows = idx.numel();
    let inner = x.numel() / len;
    let mut shape = x.shape().to_vec();
    shape[0] = rows;
    let out = Tensor::empty("take_rows", x.device(), &shape, x.dtype())?;
    let dt = x.dtype().storage_type();
    launch_1d!(
        x.device(),
        rows * inner,
        k::index_select_kernel,
        |client, R| (
            arr::<R>(x),
            arr::<R>(idx),
            arr::<R>(&out),
            1u32,
            len as u32,
            rows as u32,
            inner as u32,
            dt,
        )
    );
    Ok(out)
}

// ------------------------------------------------------------------------------ backward

/// The VJP of [`gather`]`(x, axis, idx)` for `x` of shape `x_shape`:
/// `x̄ = scatter_add(0, axis, idx, ȳ)`.
pub fn gather_backward(g: &Tensor, x_shape: &[usize], axis: usize, idx: &Tensor) -> Result<Tensor> {
    let zero = crate::zeros(g.device(), x_shape, g.dtype())?;
    scatter_add(&zero, axis, idx, g)
}

/// The VJP of [`index_select`]`(x, axis, idx)` with `x.shape[axis] = len`:
/// `x̄ = index_add(ȳ, axis, idx, len)`.
pub fn index_select_backward(g: &Tensor, axis: usize, idx: &Tensor, len: usize) -> Result<Tensor> {
    index_add(g, axis, idx, len)
}

/// The VJP of [`scatter_add`]`(base, axis, idx, src)`: `(basē, src̄) = (ȳ, gather(ȳ, axis, idx))`.
pub fn scatter_add_backward(g: &Tensor, axis: usize, idx: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((g.clone(), gather(g, axis, idx)?))
}

/// The VJP of [`index_add`]`(src, axis, idx, ·)`: `src̄ = index_select(ȳ, axis, idx)`.
pub fn index_add_backward(g: &Tensor, axis: usize, idx: &Tensor) -> Result<Tensor> {
    index_select(g, axis, idx)
}
