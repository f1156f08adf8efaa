//! Sorting: stable argsort of f32 keys, for one long array and for many rows.
//!
//! [`argsort`] returns the sorted keys and the permutation `perm` with
//! `sorted[i] = keys[perm[i]]`; equal keys keep their input order (stable).
//! [`argsort_rows`] sorts each row of a `[B, n]` tensor independently. Two paths:
//! - **short rows, `2 ≤ n ≤ 4096` (≤ 128 on CPU adapters, where the radix path is faster
//!   beyond):** one cube per row sorts `(key, column)` pairs in shared
//!   memory with a bitonic network (`lapis_kernels::sort_rows`; lexicographic comparison
//!   makes it stable). Three launches (encode, sort, decode) whatever `B` and `n`; cubes
//!   of `n/2` units clamped to 32…256 (…64 on CPU adapters such as lavapipe). Used when the
//!   device offers 32 KiB of shared memory per cube (lavapipe, NVIDIA, AMD and Apple GPUs do;
//!   Vulkan only guarantees 16 KiB); otherwise the radix path below.
//! - **long rows (`n > 4096`) and `n = 1`:** a stable radix sort of all `B·n` keys followed
//!   by a stable sort by row index (`⌈log₁₆ B⌉` more radix passes), so each row ends up
//!   sorted and contiguous.
//!
//! **NaN policy:** every NaN sorts after +∞, in input order; −0.0 sorts before +0.0.
//! Sizes: up to `u32::MAX` elements (checked before launch). The radix kernel is the
//! portable LSD radix sort of `lapis_kernels::sort` (8 passes of 4-bit digits).

use lapis_kernels::sort as k;
use lapis_kernels::sort_rows as kr;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::tensor::{arr, Tensor};
use crate::Device;
use crate::{dispatch, launch_1d};

fn chunk_len(dev: &crate::Device, n: usize) -> usize {
    crate::tensor::sequential_chunk_len(dev, n)
}

fn iota(dev: &Device, n: usize) -> Result<Tensor> {
    let out = Tensor::empty("iota", dev, &[n], DType::U32)?;
    launch_1d!(dev, n, k::iota_kernel, |client, R| (
        arr::<R>(&out),
        n as u32
    ));
    Ok(out)
}

/// Stable sort of u32 keys below `2^bits_used` (radix passes over those bits only):
/// `(sorted keys, permutation)`. The keys are copied (the radix passes reuse their input).
pub(crate) fn sort_u32(keys: &Tensor, bits_used: u32) -> Result<(Tensor, Tensor)> {
    radix_pairs(
        crate::copy(keys)?,
        iota(keys.device(), keys.numel())?,
        bits_used.clamp(4, 32).div_ceil(4) * 4,
    )
}

/// Stable radix sort of `(bits, payload)` pairs on digits `shift ∈ {0, 4, …}` below
/// `bits_used`; returns the sorted pair.
fn radix_pairs(bits: Tensor, payload: Tensor, bits_used: u32) -> Result<(Tensor, Tensor)> {
    const OP: &str = "sort";
    let dev = bits.device().clone();
    let n = bits.numel();
    let chunk = chunk_len(&dev, n);
    let p = n.div_ceil(chunk);
    let counts = Tensor::empty(OP, &dev, &[16 * p], DType::U32)?;
    let totals = Tensor::empty(OP, &dev, &[16], DType::U32)?;
    let (mut b_in, mut p_in) = (bits, payload);
    let mut b_out = Tensor::empty(OP, &dev, &[n], DType::U32)?;
    let mut p_out = Tensor::empty(OP, &dev, &[n], DType::U32)?;
    let (n32, c32, p32) = (n as u32, chunk as u32, p as u32);
    for shift in (0..bits_used).step_by(4) {
        launch_1d!(&dev, p, k::radix_count_kernel, |client, R| (
            arr::<R>(&b_in),
            arr::<R>(&counts),
            n32,
            c32,
            p32,
            shift,
        ));
        launch_1d!(&dev, 16, k::radix_offsets_kernel, |client, R| (
            arr::<R>(&counts),
            arr::<R>(&totals),
            p32,
        ));
        launch_1d!(&dev, p, k::radix_scatter_kernel, |client, R| (
            arr::<R>(&b_in),
            arr::<R>(&p_in),
            arr::<R>(&b_out),
            arr::<R>(&p_out),
            arr::<R>(&counts),
            arr::<R>(&totals),
            n32,
            c32,
            p32,
            shift,
        ));
        std::mem::swap(&mut b_in, &mut b_out);
        std::mem::swap(&mut p_in, &mut p_out);
    }
    Ok((b_in, p_in))
}

fn check_keys(op: &'static str, keys: &Tensor) -> Result<()> {
    if keys.dtype() != DType::F32 {
        return Err(LapisError::DType {
            op,
            got: keys.dtype(),
            msg: "sort keys must be f32".into(),
        });
    }
    Ok(())
}

fn encode(keys: &Tensor) -> Result<Tensor> {
    let n = keys.numel();
    let bits = Tensor::empty("sort", keys.device(), &[n], DType::U32)?;
    launch_1d!(keys.device(), n, k::encode_f32_kernel, |client, R| (
        arr::<R>(keys),
        arr::<R>(&bits),
        n as u32
    ));
    Ok(bits)
}

fn decode(bits: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let n = bits.numel();
    let keys = Tensor::empty("sort", bits.device(), shape, DType::F32)?;
    launch_1d!(bits.device(), n, k::decode_f32_kernel, |client, R| (
        arr::<R>(bits),
        arr::<R>(&keys),
        n as u32
    ));
    Ok(keys)
}

/// Stable ascending sort of 1-D f32 `keys`: `(sorted, perm)` with `sorted[i] = keys[perm[i]]`.
/// Up to 4096 keys (where the device has the shared memory) one cube sorts them in one
/// launch (the bitonic path of [`argsort_rows`]); longer inputs by the global radix sort.
pub fn argsort(keys: &Tensor) -> Result<(Tensor, Tensor)> {
    check_keys("argsort", keys)?;
    if keys.rank() != 1 {
        return Err(LapisError::shape(
            "argsort",
            keys.shape(),
            "keys must be 1-D; use argsort_rows for [B, n]",
        ));
    }
    let (dev, n) = (keys.device(), keys.numel());
    if bitonic_fits(dev, 1, n) {
        // Short keys: one cube sorts them in shared memory, one launch instead of the radix
        // sort's 24 (measured on lavapipe, one row: radix/bitonic time 10.8 at n = 128,
        // 8.1 at 512, 5.4 at 1024, 1.23 at 4096; `op_counts --sort-sizes`).
        let (z, perm) = bitonic_rows(&keys.reshape(&[1, n])?, 1, n, bitonic_max_units(dev))?;
        return Ok((z.reshape(&[n])?, perm.reshape(&[n])?));
    }
    let (bits, perm) = radix_pairs(encode(keys)?, iota(dev, n)?, 32)?;
    Ok((decode(&bits, keys.shape())?, perm))
}

/// `(B, n)` of a `[B, n]` f32 key tensor.
fn row_shape(op: &'static str, keys: &Tensor) -> Result<(usize, usize)> {
    check_keys(op, keys)?;
    match keys.shape() {
        [r, c] => Ok((*r, *c)),
        _ => Err(LapisError::shape(op, keys.shape(), "keys must be [B, n]")),
    }
}

/// Whether the bitonic path can sort rows of `cols` keys on `dev`.
fn bitonic_fits(dev: &Device, rows: usize, cols: usize) -> bool {
    let info = dev.info();
    rows > 0
        && (2..=kr::MAX_ROW_LEN).contains(&cols)
        && info.max_shared_memory_bytes >= kr::ROW_SORT_SHARED_BYTES
        && info.max_units_per_cube >= kr::ROW_SORT_MIN_UNITS
}

/// Most units per cube for the bitonic path on `dev`: [`kr::ROW_SORT_UNITS`] (256), but 64
/// on CPU adapters (lavapipe), which emulate a cube's barriers in software: there fewer,
/// busier units are faster (≈ 1.25× with 64 than with 256 units on `[256, 1024]` keys);
/// never more than the device allows.
fn bitonic_max_units(dev: &Device) -> u32 {
    let cap = if dev.info().device_type == "Cpu" {
        64
    } else {
        kr::ROW_SORT_UNITS
    };
    cap.min(dev.info().max_units_per_cube)
}

/// Longest rows [`argsort_rows`] sends to the bitonic path on `dev`: 4096 on GPUs, 128 on
/// CPU adapters (lavapipe), where the network's O(n log² n) work loses to the radix sort
/// from n ≈ 256 on (measured radix/bitonic time on `[256, n]`: 2.05 at n = 16, 1.76 at 64,
/// 0.91 at 256, 0.63 at 4096).
fn bitonic_default_max_len(dev: &Device) -> usize {
    if dev.info().device_type == "Cpu" {
        128
    } else {
        kr::MAX_ROW_LEN
    }
}

/// Stable ascending sort of each row of `keys [B, n]`: `(sorted [B, n], perm [B, n])` with
/// `sorted[b, i] = keys[b, perm[b, i]]` (`perm` holds column indices).
///
/// Rows of `2 ≤ n ≤ 4096` keys (≤ 128 on CPU adapters) are sorted one cube per row in
/// shared memory (bitonic network); longer rows and `n = 1` by the global radix sort (see
/// the module docs).
pub fn argsort_rows(keys: &Tensor) -> Result<(Tensor, Tensor)> {
    let (rows, cols) = row_shape("argsort_rows", keys)?;
    let dev = keys.device();
    match bitonic_units(dev, rows, cols) {
        Some(units) => bitonic_rows(keys, rows, cols, units),
        None => radix_rows(keys, rows, cols),
    }
}

/// The cube size when [`argsort_rows`] sorts `[rows, cols]` keys on the bitonic path
/// (one cube per row), `None` when it takes the radix path. One row is always faster on
/// the bitonic path where it fits (see `argsort`).
pub(crate) fn bitonic_units(dev: &Device, rows: usize, cols: usize) -> Option<u32> {
    (bitonic_fits(dev, rows, cols) && (rows == 1 || cols <= bitonic_default_max_len(dev)))
        .then(|| bitonic_max_units(dev))
}

/// The bitonic path of [`argsort_rows`] with cubes of at most `max_units` units (clamped
/// to 32…256), for tests of every cube size on any device. Errors when the path cannot
/// take `keys` (`n` outside `2..=4096`, or a device without 32 KiB of shared memory).
#[doc(hidden)]
pub fn argsort_rows_bitonic(keys: &Tensor, max_units: u32) -> Result<(Tensor, Tensor)> {
    const OP: &str = "argsort_rows";
    let (rows, cols) = row_shape(OP, keys)?;
    if !bitonic_fits(keys.device(), rows, cols) {
        return Err(LapisError::shape(
            OP,
            keys.shape(),
            "the bitonic path takes B ≥ 1 rows of 2..=4096 keys on a device with 32 KiB \
             of shared memory per cube",
        ));
    }
    let max_units = max_units.min(keys.device().info().max_units_per_cube);
    bitonic_rows(keys, rows, cols, max_units)
}

/// Bitonic path: encode, one cube per row sorts `(key, column)` pairs in shared memory
/// (`lapis_kernels::sort_rows`), decode. Needs [`bitonic_fits`].
fn bitonic_rows(
    keys: &Tensor,
    rows: usize,
    cols: usize,
    max_units: u32,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "argsort_rows";
    let dev = keys.device();
    let bits = encode(keys)?;
    let sorted_bits = Tensor::empty(OP, dev, &[rows * cols], DType::U32)?;
    let perm = Tensor::empty(OP, dev, keys.shape(), DType::U32)?;
    let len = cols.next_power_of_two();
    crate::counters::count_launch(dev);
    let prof = crate::counters::profile_start(dev);
    dispatch!(dev, |client, R| kr::bitonic_sort_rows_kernel::launch::<R>(
        client,
        kr::row_sort_cube_count(client, rows),
        kr::row_sort_cube_dim(len, max_units),
        arr::<R>(&bits),
        arr::<R>(&sorted_bits),
        arr::<R>(&perm),
        rows as u32,
        cols as u32,
        len.trailing_zeros(),
    ));
    crate::counters::profile_end(dev, "sort_rows::bitonic_sort_rows_kernel", prof);
    Ok((decode(&sorted_bits, keys.shape())?, perm))
}

/// [`argsort_rows`] by the global radix path whatever the row length (for benches and
/// cross-checks of the two paths).
#[doc(hidden)]
pub fn argsort_rows_radix(keys: &Tensor) -> Result<(Tensor, Tensor)> {
    let (rows, cols) = row_shape("argsort_rows", keys)?;
    radix_rows(keys, rows, cols)
}

/// Radix path of [`argsort_rows`]: all keys by value, then stably by row.
fn radix_rows(keys: &Tensor, rows: usize, cols: usize) -> Result<(Tensor, Tensor)> {
    let dev = keys.device();
    let n = rows * cols;
    // 1. All keys by value, payload = flat index.
    let (bits, flat) = radix_pairs(encode(&keys.reshape(&[n])?)?, iota(dev, n)?, 32)?;
    if rows == 1 {
        return Ok((decode(&bits, keys.shape())?, flat.reshape(keys.shape())?));
    }
    // 2. Stably by row: key = flat / cols, payload = position after step 1.
    let row = Tensor::empty("argsort_rows", dev, &[n], DType::U32)?;
    let col = Tensor::empty("argsort_rows", dev, &[n], DType::U32)?;
    let c32 = cols as u32;
    launch_1d!(dev, n, k::divmod_kernel, |client, R| (
        arr::<R>(&flat),
        arr::<R>(&row),
        arr::<R>(&col),
        c32,
        n as u32,
    ));
    let row_bits = 32 - ((rows - 1) as u32).leading_zeros();
    let (_, order) = radix_pairs(row, iota(dev, n)?, row_bits.div_ceil(4) * 4)?;
    let sorted_bits = crate::index::take_rows_unchecked(&bits, &order)?;
    let perm = crate::index::take_rows_unchecked(&col, &order)?;
    Ok((
        decode(&sorted_bits, keys.shape())?,
        perm.reshape(keys.shape())?,
    ))
}

/// The VJP of the sorted values of [`argsort`] (`sorted[i] = keys[perm[i]]`): each
/// gradient entry goes back to the key it came from, `keys̄[perm[i]] = ȳ[i]`. The sort is
/// not differentiable at ties; this is the gradient of the stable permutation chosen.
pub fn argsort_backward(g: &Tensor, perm: &Tensor) -> Result<Tensor> {
    crate::index_add(g, 0, perm, g.numel())
}

/// The VJP of the sorted values of [`argsort_rows`], row by row (see
/// [`argsort_backward`]).
pub fn argsort_rows_backward(g: &Tensor, perm: &Tensor) -> Result<Tensor> {
    let zero = crate::zeros(g.device(), g.shape(), g.dtype())?;
    crate::scatter_add(&zero, 1, perm, g)
}
