//! Indexing kernels: gather, index-select and scatter-add along one axis.
//!
//! Tensors are viewed as `[outer, len, inner]` around the axis.
//! - gather (torch.gather): `out[o, j, i] = x[o, idx[o, j, i], i]`, `idx` of shape
//!   `[outer, k, inner]`;
//! - index-select: `out[o, j, i] = x[o, idx[j], i]`, `idx` of length `k`;
//! - scatter-add (torch.scatter_add): `out = base`, then `out[o, idx[o, j, i], i] += src[o, j, i]`.
//!   It is written as a gather over the source: unit `(o, r, i)` sums every `src[o, j, i]`
//!   whose index is `r`. That needs no float atomics (WGSL has none), is deterministic (same
//!   summation order on every device), and costs `O(len · k)` per `(o, i)` line.
//!
//! Indices are bounds-checked by `lapis-ops` before launch; the kernels also clamp reads
//! so that a bad index can never read out of bounds.

use cubecl::prelude::*;

/// torch.gather along the middle axis of `[outer, len, inner]`, output `[outer, k, inner]`.
#[cube(launch)]
pub fn gather_kernel<F: Numeric>(
    x: &Array<F>,
    idx: &Array<u32>,
    out: &mut Array<F>,
    outer: u32,
    len: u32,
    k: u32,
    inner: u32,
    #[define(F)] _dtype: StorageType,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= outer * k * inner {
        terminate!();
    }
    let i = p % inner;
    let o = p / (k * inner);
    let r = min(idx[p as usize], len - 1);
    out[p as usize] = x[((o * len + r) * inner + i) as usize];
}

/// index-select along the middle axis of `[outer, len, inner]`, output `[outer, k, inner]`.
#[cube(launch)]
pub fn index_select_kernel<F: Numeric>(
    x: &Array<F>,
    idx: &Array<u32>,
    out: &mut Array<F>,
    outer: u32,
    len: u32,
    k: u32,
    inner: u32,
    #[define(F)] _dtype: StorageType,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= outer * k * inner {
        terminate!();
    }
    let i = p % inner;
    let j = (p / inner) % k;
    let o = p / (k * inner);
    let r = min(idx[j as usize], len - 1);
    out[p as usize] = x[((o * len + r) * inner + i) as usize];
}

/// scatter-add: `out[o, r, i] = base[o, r, i] + Σ_{j : idx[o, j, i] = r} src[o, j, i]`,
/// `out`/`base` of shape `[outer, len, inner]`, `idx`/`src` of shape `[outer, k, inner]`.
#[cube(launch)]
pub fn scatter_add_kernel<F: Float>(
    base: &Array<F>,
    idx: &Array<u32>,
    src: &Array<F>,
    out: &mut Array<F>,
    outer: u32,
    len: u32,
    k: u32,
    inner: u32,
    #[define(F)] _dtype: StorageType,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= outer * len * inner {
        terminate!();
    }
    let i = p % inner;
    let r = (p / inner) % len;
    let o = p / (len * inner);
    let mut acc = f32::cast_from(base[p as usize]);
    for j in 0..k {
        let q = ((o * k + j) * inner + i) as usize;
        if idx[q] == r {
            acc += f32::cast_from(src[q]);
        }
    }
    out[p as usize] = F::cast_from(acc);
}

/// index-add (the adjoint of index-select): `out[o, r, i] = Σ_{j : idx[j] = r} src[o, j, i]`,
/// `out` of shape `[outer, len, inner]`, `src` `[outer, k, inner]`, `idx` of length `k`.
#[cube(launch)]
pub fn index_add_kernel<F: Float>(
    idx: &Array<u32>,
    src: &Array<F>,
    out: &mut Array<F>,
    outer: u32,
    len: u32,
    k: u32,
    inner: u32,
    #[define(F)] _dtype: StorageType,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= outer * len * inner {
        terminate!();
    }
    let i = p % inner;
    let r = (p / inner) % len;
    let o = p / (len * inner);
    let mut acc = 0.0f32;
    for j in 0..k {
        if idx[j as usize] == r {
            acc += f32::cast_from(src[((o * k + j) * inner + i) as usize]);
        }
    }
    out[p as usize] = F::cast_from(acc);
}

/// index-add on indices sorted once (stably) beforehand: `sorted` are the indices in
/// ascending order and `perm[q]` the position in `src` of the q-th of them. Each output
/// element finds the run of its row by two binary searches and sums that run only:
/// O(k·inner + len·inner·log k) work instead of O(len·k·inner). Within a run `perm` is
/// ascending (stable sort), so the sum is taken in the same order as [`index_add_kernel()`]'s.
#[cube(launch)]
pub fn index_add_sorted_kernel<F: Float>(
    sorted: &Array<u32>,
    perm: &Array<u32>,
    src: &Array<F>,
    out: &mut Array<F>,
    outer: u32,
    len: u32,
    k: u32,
    inner: u32,
    #[define(F)] _dtype: StorageType,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= outer * len * inner {
        terminate!();
    }
    let i = p % inner;
    let r = (p / inner) % len;
    let o = p / (len * inner);
    // lo = first q with sorted[q] >= r; hi = first q with sorted[q] > r.
    let mut lo = 0u32;
    let mut top = k;
    while lo < top {
        let mid = (lo + top) / 2;
        if sorted[mid as usize] < r {
            lo = mid + 1;
        } else {
            top = mid;
        }
    }
    let mut hi = lo;
    top = k;
    while hi < top {
        let mid = (hi + top) / 2;
        if sorted[mid as usize] <= r {
            hi = mid + 1;
        } else {
            top = mid;
        }
    }
    let mut acc = 0.0f32;
    for q in lo..hi {
        let j = perm[q as usize];
        acc += f32::cast_from(src[((o * k + j) * inner + i) as usize]);
    }
    out[p as usize] = F::cast_from(acc);
}
