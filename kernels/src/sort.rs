//! Stable LSD radix sort of 32-bit keys with a u32 payload (argsort).
//!
//! f32 keys are first mapped to u32 so that unsigned order is float order
//! ([`encode_f32_kernel()`]): positive floats get the sign bit set, negative floats have all
//! bits flipped, and every NaN becomes `u32::MAX` (so NaNs sort last, after +∞, in their
//! input order). Then 8 passes of 4-bit digits, each in three launches, portable because
//! no workgroup waits on another (lavapipe gives no forward-progress guarantee):
//! 1. [`radix_count_kernel()`]: one unit per chunk counts its digits into `counts[digit·P + p]`;
//! 2. [`radix_offsets_kernel()`]: one unit per digit turns its row of counts into exclusive
//!    offsets (chunk order) and writes the digit total;
//! 3. [`radix_scatter_kernel()`]: one unit per chunk walks its chunk in order and writes each
//!    element at `Σ_{b' < digit} total[b'] + offset[digit, p] + (rank within chunk)`;
//!    walking in order makes every pass stable, hence the whole sort.
//!
//! Work O(8·N), depth O(8·(C + P)) with `C ≈ max(32, N/65536)` elements per chunk and
//! `P ≤ 65 536` chunks. (A decoupled-look-back onesweep is the faster GPU variant; this
//! one is the portable baseline.)

use cubecl::prelude::*;

/// Number of distinct digits per pass (4-bit digits).
pub const RADIX: u32 = 16;

/// Order-preserving f32 → u32 map, NaN → `u32::MAX`.
#[cube(launch)]
pub fn encode_f32_kernel(keys: &Array<f32>, bits: &mut Array<u32>, n: u32) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    bits[i] = encode_key(keys[i]);
}

/// The order-preserving u32 of `x` (see [`encode_f32_kernel()`]).
#[cube]
pub fn encode_key(x: f32) -> u32 {
    let b = u32::reinterpret(x);
    let neg = (b >> 31) == 1u32;
    let enc = select(neg, b ^ 0xFFFF_FFFFu32, b | 0x8000_0000u32);
    select(x.is_nan(), 0xFFFF_FFFFu32, enc)
}

/// Inverse of [`encode_key()`] (NaN comes back as a quiet NaN).
#[cube]
pub fn decode_key(b: u32) -> f32 {
    let was_pos = (b >> 31) == 1u32;
    let raw = select(was_pos, b ^ 0x8000_0000u32, b ^ 0xFFFF_FFFFu32);
    f32::reinterpret(raw)
}

/// Inverse of [`encode_f32_kernel()`] (NaN comes back as a quiet NaN).
#[cube(launch)]
pub fn decode_f32_kernel(bits: &Array<u32>, keys: &mut Array<f32>, n: u32) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    keys[i] = decode_key(bits[i]);
}

/// `out[i] = i` for `i < n`.
#[cube(launch)]
pub fn iota_kernel(out: &mut Array<u32>, n: u32) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    out[i] = i as u32;
}

/// `q[i] = x[i] / d`, `r[i] = x[i] % d` for `i < n` (row and column of a flat index).
#[cube(launch)]
pub fn divmod_kernel(x: &Array<u32>, q: &mut Array<u32>, r: &mut Array<u32>, d: u32, n: u32) {
    let i = ABSOLUTE_POS;
    if i >= n as usize {
        terminate!();
    }
    q[i] = x[i] / d;
    r[i] = x[i] % d;
}

/// Phase 1: digit counts of each chunk, `counts[digit·P + p]`.
#[cube(launch)]
pub fn radix_count_kernel(
    bits: &Array<u32>,
    counts: &mut Array<u32>,
    n: u32,
    chunk: u32,
    num_chunks: u32,
    shift: u32,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= num_chunks {
        terminate!();
    }
    let mut local = Array::<u32>::new(16usize);
    #[unroll]
    for b in 0..16u32 {
        local[b as usize] = 0u32;
    }
    let start = p * chunk;
    let end = min(start + chunk, n);
    for k in start..end {
        let digit = (bits[k as usize] >> shift) & 15u32;
        local[digit as usize] += 1u32;
    }
    #[unroll]
    for b in 0..16u32 {
        counts[(b * num_chunks + p) as usize] = local[b as usize];
    }
}

/// Phase 2: exclusive offsets of each digit's counts over the chunks, and digit totals.
#[cube(launch)]
pub fn radix_offsets_kernel(counts: &mut Array<u32>, totals: &mut Array<u32>, num_chunks: u32) {
    let b = ABSOLUTE_POS as u32;
    if b >= 16u32 {
        terminate!();
    }
    let mut run = 0u32;
    for p in 0..num_chunks {
        let q = (b * num_chunks + p) as usize;
        let c = counts[q];
        counts[q] = run;
        run += c;
    }
    totals[b as usize] = run;
}

/// Phase 3: stable scatter of each chunk to its digit's slots.
#[cube(launch)]
pub fn radix_scatter_kernel(
    bits_in: &Array<u32>,
    payload_in: &Array<u32>,
    bits_out: &mut Array<u32>,
    payload_out: &mut Array<u32>,
    offsets: &Array<u32>,
    totals: &Array<u32>,
    n: u32,
    chunk: u32,
    num_chunks: u32,
    shift: u32,
) {
    let p = ABSOLUTE_POS as u32;
    if p >= num_chunks {
        terminate!();
    }
    let mut next = Array::<u32>::new(16usize);
    let mut base = 0u32;
    #[unroll]
    for b in 0..16u32 {
        next[b as usize] = base + offsets[(b * num_chunks + p) as usize];
        base += totals[b as usize];
    }
    let start = p * chunk;
    let end = min(start + chunk, n);
    for k in start..end {
        let v = bits_in[k as usize];
        let digit = (v >> shift) & 15u32;
        let pos = next[digit as usize];
        next[digit as usize] = pos + 1u32;
        bits_out[pos as usize] = v;
        payload_out[pos as usize] = payload_in[k as usize];
    }
}

/// Inverse permutation: `inv[perm[k]] = k` for `k < n` (`perm` a permutation of `0..n`).
#[cube(launch)]
pub fn invert_perm_kernel(perm: &Array<u32>, inv: &mut Array<u32>, n: u32) {
    let k = ABSOLUTE_POS;
    if k >= n as usize {
        terminate!();
    }
    let target = perm[k];
    inv[target as usize] = k as u32;
}
