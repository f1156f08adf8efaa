//! Indexing references with torch semantics: [`gather`], [`index_select`] and
//! [`scatter_add`]. Indices are `u32`, as on the device.
//!
//! Writing `p[axis := j]` for the multi-index `p` with its `axis` component replaced
//! by `j`:
//!
//! * `gather(x, axis, idx)`: `y` has `idx`'s shape and `y[p] = x[p[axis := idx[p]]]`;
//!   `idx` has `x`'s rank and `idx.shape[d] ≤ x.shape[d]` for `d ≠ axis`.
//! * `index_select(x, axis, idx)`: `y.shape = x.shape[axis := idx.len()]` and
//!   `y[p] = x[p[axis := idx[p[axis]]]]`.
//! * `scatter_add(base, axis, idx, src)`: `y = base`, then for every position `p` of
//!   `idx`, in row-major order, `y[p[axis := idx[p]]] += src[p]`; repeated targets
//!   accumulate.

use super::tensor::{check_axis, numel_of, ravel, unravel, RefTensor};

/// Asserts that `idx` holds `numel(idx_shape)` entries and that `idx_shape` has the
/// same rank as `shape` with `idx_shape[d] <= shape[d]` for every `d != axis`.
fn check_index_shape(op: &str, shape: &[usize], axis: usize, idx_shape: &[usize], idx: &[u32]) {
    assert!(
        idx.len() == numel_of(idx_shape),
        "{op}: index shape {idx_shape:?} has {} elements but {} indices were given",
        numel_of(idx_shape),
        idx.len()
    );
    let fits = idx_shape.len() == shape.len()
        && idx_shape
            .iter()
            .zip(shape)
            .enumerate()
            .all(|(d, (&i, &s))| d == axis || i <= s);
    assert!(
        fits,
        "{op}: index shape {idx_shape:?} must have the rank of {shape:?} and no larger \
         dims outside axis {axis}"
    );
}

/// Converts index `j` to `usize`, asserting `j < len` (the length of `axis`).
fn checked_index(op: &str, j: u32, len: usize, axis: usize) -> usize {
    let j = j as usize;
    assert!(
        j < len,
        "{op}: index {j} is out of range for axis {axis} of length {len}"
    );
    j
}

/// torch.gather: the output has the index shape and
/// `out[p] = x[p with p[axis] replaced by idx[p]]`.
///
/// `idx` is given as its shape and its row-major `u32` entries; it must have `x`'s rank
/// with `idx_shape[d] <= x.shape[d]` for `d != axis` (any length along `axis`).
///
/// # Panics
///
/// If `axis` is not less than the rank of `x`, the index shape does not satisfy the
/// rule above, `idx.len()` is not the product of `idx_shape`, or an index is
/// `>= x.shape[axis]`.
pub fn gather(x: &RefTensor, axis: usize, idx_shape: &[usize], idx: &[u32]) -> RefTensor {
    check_axis("gather", &x.shape, axis);
    check_index_shape("gather", &x.shape, axis, idx_shape, idx);
    let data = idx
        .iter()
        .enumerate()
        .map(|(flat, &j)| {
            let mut p = unravel(flat, idx_shape);
            p[axis] = checked_index("gather", j, x.shape[axis], axis);
            x.data[ravel(&p, &x.shape)]
        })
        .collect();
    RefTensor::new(idx_shape, data)
}

/// torch.index_select: `out.shape` is `x.shape` with `shape[axis] = idx.len()`, and
/// `out[.., j, ..] = x[.., idx[j], ..]`.
///
/// # Panics
///
/// If `axis` is not less than the rank of `x` or an index is `>= x.shape[axis]`.
pub fn index_select(x: &RefTensor, axis: usize, idx: &[u32]) -> RefTensor {
    check_axis("index_select", &x.shape, axis);
    let mut shape = x.shape.clone();
    shape[axis] = idx.len();
    let data = (0..numel_of(&shape))
        .map(|flat| {
            let mut p = unravel(flat, &shape);
            p[axis] = checked_index("index_select", idx[p[axis]], x.shape[axis], axis);
            x.data[ravel(&p, &x.shape)]
        })
        .collect();
    RefTensor::new(&shape, data)
}

/// torch.Tensor.scatter_add: `out = base.clone()`; then for every position `p` of the
/// index (in row-major order), `out[p with p[axis] replaced by idx[p]] += src[p]`.
/// Repeated target positions accumulate.
///
/// `src` normally has the index's shape; as in torch it may be larger
/// (`idx_shape[d] <= src.shape[d]` for every `d`), in which case only the positions
/// covered by the index are read.
///
/// # Panics
///
/// If `axis` is not less than the rank of `base`; the index shape does not have the
/// rank of `base` and `src`, exceeds `src`'s dims, or exceeds `base`'s dims outside
/// `axis`; `idx.len()` is not the product of `idx_shape`; or an index is
/// `>= base.shape[axis]`.
pub fn scatter_add(
    base: &RefTensor,
    axis: usize,
    idx_shape: &[usize],
    idx: &[u32],
    src: &RefTensor,
) -> RefTensor {
    check_axis("scatter_add", &base.shape, axis);
    check_index_shape("scatter_add", &base.shape, axis, idx_shape, idx);
    assert!(
        idx_shape.len() == src.shape.len() && idx_shape.iter().zip(&src.shape).all(|(i, s)| i <= s),
        "scatter_add: index shape {idx_shape:?} does not fit in src shape {:?}",
        src.shape
    );
    let mut out = base.clone();
    for (flat, &j) in idx.iter().enumerate() {
        let p = unravel(flat, idx_shape);
        let value = src.data[ravel(&p, &src.shape)];
        let mut target = p;
        target[axis] = checked_index("scatter_add", j, base.shape[axis], axis);
        out.data[ravel(&target, &base.shape)] += value;
    }
    out
}

/// index-add, the adjoint of [`index_select`]: `out` has `src`'s shape with
/// `shape[axis] = len`, and `out[…, r, …] = Σ_{j : idx[j] = r} src[…, j, …]`.
///
/// # Panics
///
/// If `axis` is out of range, `idx.len() != src.shape[axis]`, or an index is `>= len`.
pub fn index_add(src: &RefTensor, axis: usize, idx: &[u32], len: usize) -> RefTensor {
    check_axis("index_add", &src.shape, axis);
    assert_eq!(
        idx.len(),
        src.shape[axis],
        "index_add: {} indices for axis of length {}",
        idx.len(),
        src.shape[axis]
    );
    let mut shape = src.shape.clone();
    shape[axis] = len;
    let mut out = RefTensor::new(&shape, vec![0.0; shape.iter().product()]);
    for flat in 0..src.data.len() {
        let mut p = unravel(flat, &src.shape);
        p[axis] = checked_index("index_add", idx[p[axis]], len, axis);
        out.data[ravel(&p, &shape)] += src.data[flat];
    }
    out
}
