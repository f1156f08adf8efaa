//! Layout kernels: strided copy, fill, arange and dtype cast.
//!
//! One strided copy implements every data-movement op of the foundation:
//! for each multi-index `c` of `shape`,
//! `dst[d₀ + Σ_k c_k·dst_stride_k] = src[s₀ + Σ_k c_k·src_stride_k]`.
//! - permute/transpose: `src_stride` is the source strides permuted, `dst` contiguous;
//! - slice: `s₀ = start·stride(axis)`, shape shortened along the axis;
//! - concat: one copy per input into the output at offset `d₀`, with the output's strides;
//! - broadcast-expand: `src_stride = 0` on the expanded axes.
//!
//! Cost: one read and one write per element plus O(rank) integer work.

use cubecl::prelude::*;

/// Strided copy of `n = Π shape` elements.
///
/// `meta` = `[src_offset, dst_offset, shape(rank), src_strides(rank), dst_strides(rank)]`.
#[cube(launch)]
pub fn strided_copy_kernel<F: Numeric>(
    src: &Array<F>,
    dst: &mut Array<F>,
    meta: &Array<u32>,
    n: u32,
    rank: u32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    let mut rem = i as u32;
    let mut s = meta[0];
    let mut d = meta[1];
    for k in 0..rank {
        let ax = rank - 1 - k;
        let size = meta[(2 + ax) as usize];
        let coord = rem % size;
        rem /= size;
        s += coord * meta[(2 + rank + ax) as usize];
        d += coord * meta[(2 + 2 * rank + ax) as usize];
    }
    dst[d as usize] = src[s as usize];
}

/// `dst[dst_offset + i] = src[src_offset + i]` for `i < n`: the contiguous fast path of
/// [`strided_copy_kernel()`] (plain copies, slices and concats along the outermost axis).
#[cube(launch)]
pub fn copy_range_kernel<F: Numeric>(
    src: &Array<F>,
    dst: &mut Array<F>,
    src_offset: u32,
    dst_offset: u32,
    n: u32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    dst[dst_offset as usize + i] = src[src_offset as usize + i];
}

/// `out[i] = value` for `i < n`.
#[cube(launch)]
pub fn fill_kernel<F: Numeric>(
    out: &mut Array<F>,
    n: u32,
    value: f32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    out[i] = F::cast_from(value);
}

/// `out[i] = start + i·step` for `i < n`, computed in f32 from the index (no accumulation).
#[cube(launch)]
pub fn arange_kernel<F: Numeric>(
    out: &mut Array<F>,
    n: u32,
    start: f32,
    step: f32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    out[i] = F::cast_from(start + f32::cast_from(i as u32) * step);
}

/// `out[i] = O::cast(x[i])` for `i < n`: dtype conversion (round to nearest).
#[cube(launch)]
pub fn cast_kernel<I: Numeric, O: Numeric>(
    x: &Array<I>,
    out: &mut Array<O>,
    n: u32,
    #[define(I)] _in_dtype: StorageType,
    #[define(O)] _out_dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    out[i] = O::cast_from(x[i]);
}
