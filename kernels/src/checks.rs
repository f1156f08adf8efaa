//! Device-side argument checks: kernels that raise a flag instead of returning a count.
//!
//! `lapis-ops` keeps one small u32 flag buffer per device and thread and gives each
//! deferred check a slot; a kernel here writes `1` into its slot when the check fails and
//! never writes otherwise. The host reads the buffer only at the next natural read of
//! device data (or an explicit `Device::check`), so a check costs one launch and no
//! host round-trip. Every thread that writes stores the same value (`1`), so concurrent
//! writers agree and no atomic is needed.

use cubecl::prelude::*;

/// Flags slot `slot_lo` when an entry `x[i]`, `i < split`, is not finite or lies outside
/// `[lo, hi]` (an end is excluded when `lo_open`/`hi_open` is 1), and slot `slot_hi` for
/// the entries from `split` on (two arguments checked in one launch, e.g. the sources and
/// targets of the Laplace operator, merged); with rows of `seg` entries, `split` counts
/// within each row. Bounds are runtime values: one compiled
/// shader serves every check.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn flag_f32_kernel(
    x: &Array<f32>,
    flags: &mut Array<u32>,
    split: u32,
    slot_lo: u32,
    slot_hi: u32,
    n: u32,
    lo: f32,
    hi: f32,
    lo_open: u32,
    hi_open: u32,
    seg: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i >= n {
        terminate!();
    }
    let v = x[i as usize];
    let bad = v.is_nan()
        || v.is_inf()
        || v < lo
        || v > hi
        || (lo_open == 1 && v == lo)
        || (hi_open == 1 && v == hi);
    if bad {
        let mut slot = slot_hi;
        if i % seg < split {
            slot = slot_lo;
        }
        flags[slot as usize] = 1u32;
    }
}

/// Flags `slot` when an index `idx[i] ≥ len`.
#[cube(launch)]
pub fn flag_index_kernel(idx: &Array<u32>, flags: &mut Array<u32>, len: u32, slot: u32, n: u32) {
    let i = ABSOLUTE_POS as u32;
    if i >= n {
        terminate!();
    }
    if idx[i as usize] >= len {
        flags[slot as usize] = 1u32;
    }
}
