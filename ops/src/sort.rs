//! Sorting: stable argsort of f32 keys, for one long array and for many rows.
//!
//! [`argsort`] returns the sorted keys and the permutation `perm` with
//! `sorted[i] = keys[perm[i]]`; equal keys keep their input order (stable).
//! [`argsort_rows`] sorts each row of a `[B, n]` tensor independently: a stable sort of all
//! `B·n` keys followed by a stable sort by row index (`⌈log₁₆ B⌉` more radix passes), so each
//! row ends up sorted and contiguous.
//!
//! **NaN policy:** every NaN sorts after +∞, in input order; −0.0 sorts before +0.0.
//! Sizes: up to `u32::MAX` elements (checked before launch). The kernel is the portable
//! LSD radix sort of `lapis_kernels::sort` (8 passes of 4-bit digits).

use lapis_kernels::sort as k;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::Device;

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
pub fn argsort(keys: &Tensor) -> Result<(Tensor, Tensor)> {
    check_keys("argsort", keys)?;
    if keys.rank() != 1 {
        return Err(LapisError::shape(
            "argsort",
            keys.shape(),
            "keys must be 1-D; use argsort_rows for [B, n]",
        ));
    }
    let (bits, perm) = radix_pairs(encode(keys)?, iota(keys.device(), keys.numel())?, 32)?;
    Ok((decode(&bits, keys.shape())?, perm))
}

/// Stable ascending sort of each row of `keys [B, n]`: `(sorted [B, n], perm [B, n])` with
/// `sorted[b, i] = keys[b, perm[b, i]]` (`perm` holds column indices).
pub fn argsort_rows(keys: &Tensor) -> Result<(Tensor, Tensor)> {
    check_keys("argsort_rows", keys)?;
    let (rows, cols) = match keys.shape() {
        [r, c] => (*r, *c),
        _ => {
            return Err(LapisError::shape(
                "argsort_rows",
                keys.shape(),
                "keys must be [B, n]",
            ))
        }
    };
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
