//! Batched argsort of short rows: one cube (workgroup) sorts one row in shared memory.
//!
//! **Algorithm.** Row `b` of the encoded keys (`u32`, unsigned order = float order, see
//! [`encode_f32_kernel`](fn@crate::sort::encode_f32_kernel)) is loaded into shared memory as
//! pairs `(key, column)`, padded to `L = 2^⌈log₂ n⌉` with `(u32::MAX, u32::MAX)` sentinels,
//! and sorted by a bitonic sorting network: for block sizes `s = 2, 4, …, L` and distances
//! `d = s/2, …, 1`, element `i` (with bit `d` of `i` clear) is compare-exchanged with
//! `i + d`, ascending when bit `s` of `i` is clear and descending otherwise. Each of the
//! `log₂L·(log₂L+1)/2` stages has `L/2` independent compare-exchanges, shared by the
//! cube's `U` units (`U` a power of two, see [`row_sort_cube_dim`]): work `O(n log² n)`
//! per row; each key is read once from and written once to global memory.
//!
//! **Barriers.** A stage with `d` larger than `per = max(L/(2U), 1)` (the compare-exchanges
//! per unit) spreads its pairs over the units with a stride of `U` (consecutive units touch
//! consecutive words) and ends with `sync_cube()`. A stage with `d ≤ per` gives unit `u` the
//! pairs `[u·per, (u+1)·per)`, whose elements all lie in `[2u·per, 2(u+1)·per)`: no unit
//! reads another's elements, so a run of such stages needs a single barrier at its end.
//! For `L = 1024`: 46 barriers with `U = 256`, 31 with `U = 64`, instead of 55.
//!
//! **Stability.** A sorting network is not stable by itself, but the pairs are compared
//! lexicographically, key first and then column index. The columns of a row are distinct,
//! so no two pairs compare equal: the network's output is the *unique* ascending order of
//! the pairs, which is exactly the stable order of the keys (equal keys ordered by input
//! position). The sentinel `(u32::MAX, u32::MAX)` is greater than every real pair — even a
//! NaN, encoded as `u32::MAX`, has a column `< n ≤ u32::MAX` — so padding ends up last and
//! the first `n` slots are the sorted row.
//!
//! **Limits.** Rows of `2 ≤ n ≤` [`MAX_ROW_LEN`] (= 4096) keys. Shared memory holds
//! `2 × 4096` u32 (keys and columns) = 32 KiB per cube whatever `n`, so that one compiled
//! shader per cube size serves every row length (the padded length is a runtime value);
//! the caller must check that the device offers 32 KiB of shared memory per cube (lavapipe
//! offers exactly that) and [`ROW_SORT_MIN_UNITS`] units. The grid has one cube per row,
//! spread over the grid axes (see [`row_sort_cube_count`]); cubes past the last row exit at
//! once. One row per cube: rows shorter than 64 keys leave most of the 32 units idle.

use cubecl::prelude::*;

/// Longest row the kernel sorts: the shared-memory capacity in pairs.
pub const MAX_ROW_LEN: usize = 4096;

const _: () = assert!(
    MAX_ROW_LEN == 4096,
    "update the shared memory sizes in the kernel"
);

/// Most units per cube [`row_sort_cube_dim`] asks for.
pub const ROW_SORT_UNITS: u32 = 256;

/// Fewest units per cube [`row_sort_cube_dim`] asks for (a warp on NVIDIA).
pub const ROW_SORT_MIN_UNITS: u32 = 32;

/// Shared memory the kernel allocates per cube, in bytes (keys and columns).
pub const ROW_SORT_SHARED_BYTES: usize = 2 * MAX_ROW_LEN * 4;

/// The cube dimension for [`bitonic_sort_rows_kernel`](fn@bitonic_sort_rows_kernel) on
/// rows padded to `len` (a power of two): one unit per compare-exchange of a stage
/// (`len/2`), clamped to `[ROW_SORT_MIN_UNITS, max_units]` with `max_units` first clamped
/// to `[ROW_SORT_MIN_UNITS, ROW_SORT_UNITS]` and rounded down to a power of two (the
/// kernel needs a power of two). At most four cube sizes (32, 64, 128, 256), so at most
/// four compiled shaders.
pub fn row_sort_cube_dim(len: usize, max_units: u32) -> CubeDim {
    let max_units = 1u32 << max_units.clamp(ROW_SORT_MIN_UNITS, ROW_SORT_UNITS).ilog2();
    CubeDim::new_1d((len as u32 / 2).clamp(ROW_SORT_MIN_UNITS, max_units))
}

/// A grid with at least `rows` cubes (one per row), spread over the grid's axes when one
/// axis would exceed the device's per-axis limit.
pub fn row_sort_cube_count<R: Runtime>(client: &ComputeClient<R>, rows: usize) -> CubeCount {
    cubecl::calculate_cube_count_elemwise(client, rows, CubeDim::new_single())
}

/// Stable ascending sort of each row of `bits [rows, n]` (encoded keys): writes the sorted
/// keys to `sorted [rows, n]` and their column indices to `perm [rows, n]`.
/// `log_len = ⌈log₂ n⌉`; requires `2 ≤ n ≤ MAX_ROW_LEN` and one cube per row.
#[cube(launch)]
pub fn bitonic_sort_rows_kernel(
    bits: &Array<u32>,
    sorted: &mut Array<u32>,
    perm: &mut Array<u32>,
    rows: u32,
    n: u32,
    log_len: u32,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    // MAX_ROW_LEN pairs (a literal: the size must be known when the shader is built).
    let mut key = SharedMemory::<u32>::new(4096usize);
    let mut col = SharedMemory::<u32>::new(4096usize);
    let len = 1u32 << log_len;
    let base = row * n as usize;

    // Load the row, padding with sentinels that sort after every real pair.
    let mut i = UNIT_POS;
    while i < len {
        let mut k = 0xFFFF_FFFFu32;
        let mut c = 0xFFFF_FFFFu32;
        if i < n {
            k = bits[base + i as usize];
            c = i;
        }
        key[i as usize] = k;
        col[i as usize] = c;
        i += CUBE_DIM;
    }
    sync_cube();

    bitonic_network(&mut key, &mut col, len);

    // The first n slots are the sorted row.
    let mut j = UNIT_POS;
    while j < n {
        sorted[base + j as usize] = key[j as usize];
        perm[base + j as usize] = col[j as usize];
        j += CUBE_DIM;
    }
}

/// The bitonic network on `len` (a power of two) pairs `(key, col)` in shared memory,
/// ascending by `(key, col)`, by the cube's units (see the module docs); ends with a
/// barrier.
#[cube]
pub fn bitonic_network(key: &mut SharedMemory<u32>, col: &mut SharedMemory<u32>, len: u32) {
    let half = len >> 1u32;
    // Bitonic network: block size `size`, compare distance `d`. Unit u owns the pairs
    // [u·per, (u+1)·per) and so the elements [2u·per, 2(u+1)·per): a stage with d ≤ per
    // stays inside each unit's elements, so the runs of such stages need no barrier.
    let per = max(half / CUBE_DIM, 1u32);
    let first = UNIT_POS * per;
    let mut size = 2u32;
    while size <= len {
        let mut d = size >> 1u32;
        // Stages across units: pairs strided over the units, a barrier after each.
        while d > per {
            let mut t = UNIT_POS;
            while t < half {
                compare_exchange(key, col, t, d, size);
                t += CUBE_DIM;
            }
            sync_cube();
            d >>= 1u32;
        }
        // Stages inside each unit's elements, one barrier at the end.
        if first < half {
            while d > 0u32 {
                for r in 0..per {
                    compare_exchange(key, col, first + r, d, size);
                }
                d >>= 1u32;
            }
        }
        sync_cube();
        size <<= 1u32;
    }
}

/// Compare-exchange of pair `t` of the stage `(size, d)`: the t-th index `lo` with bit `d`
/// clear against `lo + d`, ordered ascending when bit `size` of `lo` is clear, descending
/// otherwise, by `(key, col)` lexicographically.
#[cube]
fn compare_exchange(
    key: &mut SharedMemory<u32>,
    col: &mut SharedMemory<u32>,
    t: u32,
    d: u32,
    size: u32,
) {
    let low_bits = t & (d - 1u32);
    let lo = ((t - low_bits) << 1u32) + low_bits;
    let ascending = (lo & size) == 0u32;
    let i = lo as usize;
    let j = (lo + d) as usize;
    let ka = key[i];
    let kb = key[j];
    let ca = col[i];
    let cb = col[j];
    let a_after_b = ka > kb || (ka == kb && ca > cb);
    if a_after_b == ascending {
        key[i] = kb;
        key[j] = ka;
        col[i] = cb;
        col[j] = ca;
    }
}
