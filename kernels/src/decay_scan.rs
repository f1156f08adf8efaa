//! Anchored exponential-decay scans: the Laplace-kernel sweeps with every decay computed
//! from coordinates, so that no chain multiplies more than a chunk's worth of rounded
//! factors (`specs/laplace-engine.md` §2; issue 10, "accuracy at scale").
//!
//! On sorted coordinates `z_0 ≤ … ≤ z_{N−1}` cut into segments (rows) with one rate `r`
//! per segment, the forward scan is
//!
//! ```text
//! h_k = Σ_{i ≤ k, seg i = seg k} f(z_k − z_i) u_i,        f(δ) = e^{−r δ}   (or [δ = 0])
//! g_k = Σ_{i ≤ k, seg i = seg k} (z_k − z_i) f(z_k − z_i) u_i   (first moment, optional)
//! ```
//!
//! and the reverse scan mirrors it (`i ≥ k`, distance `z_i − z_k`). A state `(h, g)` held at
//! coordinate `z_p` moves to `z_k` (distance `δ ≥ 0`) as `(f h, f (g + δ h))`, so states at
//! any two coordinates combine with one `exp` of their distance.
//!
//! **Hierarchy.** A level cuts its sequence into chunks of `C` ([`DSCAN_CHUNK`]):
//! [`dscan_aggregate_kernel()`] scans each chunk locally and writes the state at the chunk's
//! last element (in scan order) together with that element's coordinate and segment — a new
//! sequence `P = ⌈N/C⌉` long, scanned recursively by the host in the same way; then
//! [`dscan_apply_kernel()`] rescans each chunk locally and adds the neighbouring chunk's
//! inclusive state moved by `f(|z_k − Z_q|)`. The old formulation multiplied up to `N`
//! independently rounded `e^{−rΔ}` (error ∝ N·ε); here every term reaches its output
//! through at most `C` local factors per level and one coordinate-computed factor per
//! level, so the relative error (to the scan of `|u|`) is `O(C · ⌈log_C N⌉ · ε)`: at
//! `C = 32`, ≲ 200 ε even at `N = 2^30`, and independent of how the gaps are spread.
//!
//! Segments: at level 0 `seg k = ⌊k / seg_len⌋` (rows of `seg_len`); above, the segment of
//! each aggregate is stored. Decays across a segment boundary are 0. Tie kind
//! (`tie = true`): `f(δ) = [δ = 0]` — the mass of the elements tied with k (no moment).
//!
//! Split coordinates (`with_lo`): each coordinate is `z + z_lo` (an f64 value as two f32s,
//! `lapis_ops::split_f64`); distances are `(z_k − z_i) + (lo_k − lo_i)`, so anchors closer
//! than the f32 spacing of their magnitude stay apart (10⁹ anchors in one range, or time
//! stamps far from 0).
//!
//! Extra factors (`with_q`): the decay into element k (from its predecessor in scan order)
//! is `f(δ)·q_k`, so the weight of `u_i` in `h_k` is `f(|z_k − z_i|)·Π q_j` over the
//! elements after i up to k. The coordinate part stays one `exp`; the `q` products are
//! formed per chunk (`agg_q`) and level by level, as in the generic scan (≤ 32 rounded
//! products per level). The Kalman filter of REMIX's covariance uses it with
//! `q = u/S`, so its `ρ = e^{−λΔ}` factors are never chained.
//!
//! Phased (`phased`): the rate of each segment is complex, `a + ib`, and
//! `f(δ) = e^{−aδ}(cos bδ − i sin bδ)`; values and states are complex (planar `*_im`
//! arrays), combined by one complex-multiply helper. The same two kernels serve the real
//! and the complex scans (a comptime flag compiles the imaginary parts out of the real
//! one), so the phased Laplace operator has every feature of the real one, segments
//! included.

//!
//! **One cube per segment.** For segments of at most [`DSCAN_CUBE_MAX_SEG`] elements,
//! [`dscan_cube_kernel()`] runs the whole hierarchy of one segment in one cube: the
//! aggregate passes up, the apply passes down, each level a loop over the cube's units,
//! with a storage barrier between levels and the levels above the first in a global
//! scratch buffer. It computes exactly what the level-by-level launches compute (the same
//! unit code, [`aggregate_unit()`] and [`apply_unit()`], on slices), in one launch instead of
//! `2·levels − 1`.

// Chunk counts are written `(x + C − 1) / C`: `u32::div_ceil` is not a function the cube
// macro expands.
#![allow(clippy::manual_div_ceil)]

use cubecl::prelude::*;

use crate::complex::{cmul_im, cmul_re};

/// Chunk length of every level of the anchored scans.
pub const DSCAN_CHUNK: u32 = 32;

/// Longest segment [`dscan_cube_kernel()`] takes: three levels of [`DSCAN_CHUNK`].
pub const DSCAN_CUBE_MAX_SEG: u32 = DSCAN_CHUNK * DSCAN_CHUNK * DSCAN_CHUNK;

/// `seg_len` that puts every element of a (sliced) level in segment 0.
const ONE_SEGMENT: u32 = u32::MAX;

/// What a scan level computes (comptime: each combination is its own shader).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ScanFlags {
    /// Scan from the end (`i ≥ k`).
    pub reverse: bool,
    /// Also the first moment `g`.
    pub moment: bool,
    /// `f(δ) = [δ = 0]` (no moment).
    pub tie: bool,
    /// Segment of element `k` is `⌊k / seg_len⌋` (else stored in `seg`).
    pub seg_from_len: bool,
    /// The moment inputs `ug` are zero (level 0).
    pub ug_zero: bool,
    /// Extra factors `q`.
    pub with_q: bool,
    /// Split coordinates (`z + z_lo`).
    pub with_lo: bool,
    /// Complex rates and values.
    pub phased: bool,
    /// The one-cube view: the whole level is one segment, top segments included.
    pub single: bool,
}

/// One level's read-only sequence: coordinates, their low parts, stored segments, extra
/// factors, values and moment inputs (real and imaginary parts). Fields a level's flags
/// switch off are never read.
#[derive(CubeType, Clone, Copy)]
pub struct Seq {
    z: Slice<f32>,
    z_lo: Slice<f32>,
    seg: Slice<u32>,
    q: Slice<f32>,
    u: Slice<f32>,
    u_im: Slice<f32>,
    ug: Slice<f32>,
    ug_im: Slice<f32>,
}

/// Rates per segment: `a` (real part) and `b` (imaginary part, phased only).
#[derive(CubeType, Clone, Copy)]
pub struct Rates {
    a: Slice<f32>,
    b: Slice<f32>,
}

/// Written states `h`, `g` and their imaginary parts, `[·, c]`.
#[derive(CubeType, Clone, Copy)]
pub struct States {
    h: SliceMut<f32>,
    h_im: SliceMut<f32>,
    g: SliceMut<f32>,
    g_im: SliceMut<f32>,
}

/// Written per-chunk data of an aggregate pass: the coordinate (and low part) of each
/// chunk's last element in scan order, and the product of its extra factors.
#[derive(CubeType, Clone, Copy)]
pub struct Meta {
    z: SliceMut<f32>,
    z_lo: SliceMut<f32>,
    q: SliceMut<f32>,
}

/// The scanned level above: per chunk its coordinate, segment and inclusive states.
#[derive(CubeType, Clone, Copy)]
pub struct Top {
    z: Slice<f32>,
    z_lo: Slice<f32>,
    seg: Slice<u32>,
    h: Slice<f32>,
    h_im: Slice<f32>,
    g: Slice<f32>,
    g_im: Slice<f32>,
}

/// A state carried into a chunk from its neighbour: `(h, g)` (real, imaginary) held at
/// coordinate `(z, lo)` in segment `seg`; `has` is false when there is none.
#[derive(CubeType, Clone, Copy)]
struct Carry {
    h: f32,
    hi: f32,
    g: f32,
    gi: f32,
    z: f32,
    lo: f32,
    seg: u32,
    has: bool,
}

/// Segment of element `k` at this level.
#[cube]
fn seg_of(seg: &Slice<u32>, k: u32, seg_len: u32, #[comptime] seg_from_len: bool) -> u32 {
    if comptime![seg_from_len] {
        k / seg_len
    } else {
        seg[k as usize]
    }
}

/// `|z_k − z_p|` from (hi, lo) pairs (lo ignored without `with_lo`).
#[cube]
fn dist(zk: f32, lk: f32, zp: f32, lp: f32, #[comptime] with_lo: bool) -> f32 {
    if comptime![with_lo] {
        ((zk - zp) + (lk - lp)).abs()
    } else {
        (zk - zp).abs()
    }
}

/// `f(δ)` for rate `r` (0 for `δ = +∞` or an overflowing `r δ`).
#[cube]
fn decay(delta: f32, r: f32, #[comptime] tie: bool) -> f32 {
    if comptime![tie] {
        select(delta == 0.0f32, 1.0f32, 0.0f32)
    } else {
        let f = (-(r * delta)).exp();
        // r·δ = 0·∞ gives NaN, which fails `f ≥ 0`: treat it as far away.
        select(f >= 0.0f32, f, 0.0f32)
    }
}

/// One level's local pass over the chunk `[start, end)`, channel `ch`: the state after
/// each element, starting from nothing at the chunk's first element (in scan order). With
/// `write`, stores every state plus the carried-in neighbour state at its element;
/// otherwise only the last state, at `last_at`. With `phased` the rate of segment `s` is
/// complex, `a[s] + i·b[s]`, and so is every state (`*_im` the imaginary parts),
/// `f(δ) = e^{−rδ}(cos bδ − i sin bδ)`; without it the `*_im` slices are never touched.
#[cube]
#[allow(clippy::too_many_arguments)]
fn local_pass(
    sq: &Seq,
    rates: &Rates,
    out: &mut States,
    start: u32,
    end: u32,
    ch: u32,
    c: u32,
    seg_len: u32,
    carry: &Carry,
    last_at: u32,
    #[comptime] f: ScanFlags,
    #[comptime] write: bool,
) {
    let mut h = 0.0f32;
    let mut hi = 0.0f32;
    let mut g = 0.0f32;
    let mut gi = 0.0f32;
    let mut zp = 0.0f32;
    let mut lp = 0.0f32;
    let mut sp = 0u32;
    // Running product of the extra factors from the chunk's first element to k.
    let mut qq = 1.0f32;
    let len = end - start;
    for i in 0..len {
        let mut k = start + i;
        if comptime![f.reverse] {
            k = end - 1 - i;
        }
        let zk = sq.z[k as usize];
        let mut lk = 0.0f32;
        if comptime![f.with_lo] {
            lk = sq.z_lo[k as usize];
        }
        let sk = seg_of(&sq.seg, k, seg_len, f.seg_from_len);
        let r = rates.a[sk as usize];
        let mut rb = 0.0f32;
        if comptime![f.phased] {
            rb = rates.b[sk as usize];
        }
        let q = (k * c + ch) as usize;
        let uk = sq.u[q];
        let mut uik = 0.0f32;
        if comptime![f.phased] {
            uik = sq.u_im[q];
        }
        let mut ugk = 0.0f32;
        let mut ugik = 0.0f32;
        if comptime![f.moment && !f.ug_zero] {
            ugk = sq.ug[q];
            if comptime![f.phased] {
                ugik = sq.ug_im[q];
            }
        }
        let mut qk = 1.0f32;
        if comptime![f.with_q] {
            qk = sq.q[k as usize];
            qq *= qk;
        }
        if i == 0 || sk != sp {
            h = uk;
            hi = uik;
            g = ugk;
            gi = ugik;
        } else {
            let delta = dist(zk, lk, zp, lp, f.with_lo);
            let m = decay(delta, r, f.tie) * qk;
            if comptime![f.phased] {
                let fr = m * (rb * delta).cos();
                let fi = -m * (rb * delta).sin();
                if comptime![f.moment] {
                    // f · (g + δ h)
                    let yr = g + delta * h;
                    let yi = gi + delta * hi;
                    let live = m > 0.0f32;
                    g = select(live, cmul_re(fr, fi, yr, yi), 0.0f32) + ugk;
                    gi = select(live, cmul_im(fr, fi, yr, yi), 0.0f32) + ugik;
                }
                let nh = cmul_re(fr, fi, h, hi) + uk;
                hi = cmul_im(fr, fi, h, hi) + uik;
                h = nh;
            } else {
                if comptime![f.moment] {
                    let moved = select(m > 0.0f32, m * (g + delta * h), 0.0f32);
                    g = moved + ugk;
                }
                h = m * h + uk;
            }
        }
        zp = zk;
        lp = lk;
        sp = sk;
        if comptime![write] {
            let mut oh = h;
            let mut ohi = hi;
            let mut og = g;
            let mut ogi = gi;
            if carry.has && sk == carry.seg {
                let delta = dist(zk, lk, carry.z, carry.lo, f.with_lo);
                let m = decay(delta, r, f.tie) * qq;
                if comptime![f.phased] {
                    let fr = m * (rb * delta).cos();
                    let fi = -m * (rb * delta).sin();
                    oh += cmul_re(fr, fi, carry.h, carry.hi);
                    ohi += cmul_im(fr, fi, carry.h, carry.hi);
                    if comptime![f.moment] {
                        let yr = carry.g + delta * carry.h;
                        let yi = carry.gi + delta * carry.hi;
                        let live = m > 0.0f32;
                        og += select(live, cmul_re(fr, fi, yr, yi), 0.0f32);
                        ogi += select(live, cmul_im(fr, fi, yr, yi), 0.0f32);
                    }
                } else {
                    oh += m * carry.h;
                    if comptime![f.moment] {
                        og += select(m > 0.0f32, m * (carry.g + delta * carry.h), 0.0f32);
                    }
                }
            }
            out.h[q] = oh;
            if comptime![f.phased] {
                out.h_im[q] = ohi;
            }
            if comptime![f.moment] {
                out.g[q] = og;
                if comptime![f.phased] {
                    out.g_im[q] = ogi;
                }
            }
        }
    }
    if comptime![!write] {
        out.h[last_at as usize] = h;
        if comptime![f.phased] {
            out.h_im[last_at as usize] = hi;
        }
        if comptime![f.moment] {
            out.g[last_at as usize] = g;
            if comptime![f.phased] {
                out.g_im[last_at as usize] = gi;
            }
        }
    }
}

/// No carried state.
#[cube]
fn no_carry() -> Carry {
    Carry {
        h: 0.0f32,
        hi: 0.0f32,
        g: 0.0f32,
        gi: 0.0f32,
        z: 0.0f32,
        lo: 0.0f32,
        seg: 0u32,
        has: false,
    }
}

/// Aggregate pass of chunk `p`, channel `ch` of a level of `n` elements: the local scan's
/// final state at `p·c + ch` of `agg`, and (channel 0) the chunk's last coordinate in scan
/// order and the product of its extra factors in `meta` at `p`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn aggregate_unit(
    p: u32,
    ch: u32,
    n: u32,
    c: u32,
    seg_len: u32,
    sq: &Seq,
    rates: &Rates,
    agg: &mut States,
    meta: &mut Meta,
    #[comptime] f: ScanFlags,
) {
    let start = p * DSCAN_CHUNK;
    let end = min(start + DSCAN_CHUNK, n);
    let carry = no_carry();
    local_pass(
        sq,
        rates,
        agg,
        start,
        end,
        ch,
        c,
        seg_len,
        &carry,
        p * c + ch,
        f,
        false,
    );
    if ch == 0 {
        if comptime![f.with_q] {
            let mut prod = 1.0f32;
            for k in start..end {
                prod *= sq.q[k as usize];
            }
            meta.q[p as usize] = prod;
        }
        let mut last = end - 1;
        if comptime![f.reverse] {
            last = start;
        }
        meta.z[p as usize] = sq.z[last as usize];
        if comptime![f.with_lo] {
            meta.z_lo[p as usize] = sq.z_lo[last as usize];
        }
    }
}

/// Apply pass of chunk `p`, channel `ch` of a level of `n` elements in `num_chunks`
/// chunks: rescans the chunk and adds the inclusive state of the neighbouring chunk
/// (`p − 1` forward, `p + 1` reverse; from the scanned level above, `top`) moved to each
/// element by `f(|z_k − Z_q|)`. A level of one chunk has no level above.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn apply_unit(
    p: u32,
    ch: u32,
    n: u32,
    c: u32,
    num_chunks: u32,
    seg_len: u32,
    sq: &Seq,
    rates: &Rates,
    top: &Top,
    out: &mut States,
    #[comptime] f: ScanFlags,
) {
    let start = p * DSCAN_CHUNK;
    let end = min(start + DSCAN_CHUNK, n);
    let mut has = false;
    let mut ch_h = 0.0f32;
    let mut ch_hi = 0.0f32;
    let mut ch_g = 0.0f32;
    let mut ch_gi = 0.0f32;
    let mut ch_z = 0.0f32;
    let mut ch_lo = 0.0f32;
    let mut ch_s = 0u32;
    if num_chunks > 1 {
        let mut q = p;
        if comptime![f.reverse] {
            has = p + 1 < num_chunks;
            q = p + 1;
        } else {
            has = p > 0;
            if p > 0 {
                q = p - 1;
            }
        }
        if has {
            let o = (q * c + ch) as usize;
            ch_h = top.h[o];
            if comptime![f.phased] {
                ch_hi = top.h_im[o];
            }
            if comptime![f.moment] {
                ch_g = top.g[o];
                if comptime![f.phased] {
                    ch_gi = top.g_im[o];
                }
            }
            ch_z = top.z[q as usize];
            if comptime![f.with_lo] {
                ch_lo = top.z_lo[q as usize];
            }
            if comptime![!f.single] {
                ch_s = top.seg[q as usize];
            }
        }
    }
    let carry = Carry {
        h: ch_h,
        hi: ch_hi,
        g: ch_g,
        gi: ch_gi,
        z: ch_z,
        lo: ch_lo,
        seg: ch_s,
        has,
    };
    local_pass(
        sq, rates, out, start, end, ch, c, seg_len, &carry, 0u32, f, true,
    );
}

/// Level pass 1: for each (chunk `p`, channel) the local scan's final state, stored at
/// `p·c + ch` in `agg_h` (`agg_g` with `moment`; the `*_im` parts with `phased`), and
/// (channel 0) the coordinate and the segment of the chunk's last element in scan order
/// (`agg_z[p]`, `agg_seg[p]`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn dscan_aggregate_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    rate_b: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    u_im: &Array<f32>,
    ug: &Array<f32>,
    ug_im: &Array<f32>,
    agg_z: &mut Array<f32>,
    agg_zlo: &mut Array<f32>,
    agg_seg: &mut Array<u32>,
    agg_q: &mut Array<f32>,
    agg_h: &mut Array<f32>,
    agg_h_im: &mut Array<f32>,
    agg_g: &mut Array<f32>,
    agg_g_im: &mut Array<f32>,
    n: u32,
    c: u32,
    num_chunks: u32,
    seg_len: u32,
    #[comptime] f: ScanFlags,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let p = unit / c;
    let ch = unit % c;
    let sq = Seq {
        z: z.to_slice(),
        z_lo: z_lo.to_slice(),
        seg: seg.to_slice(),
        q: q_in.to_slice(),
        u: u.to_slice(),
        u_im: u_im.to_slice(),
        ug: ug.to_slice(),
        ug_im: ug_im.to_slice(),
    };
    let rates = Rates {
        a: rate.to_slice(),
        b: rate_b.to_slice(),
    };
    let mut agg = States {
        h: agg_h.to_slice_mut(),
        h_im: agg_h_im.to_slice_mut(),
        g: agg_g.to_slice_mut(),
        g_im: agg_g_im.to_slice_mut(),
    };
    let mut meta = Meta {
        z: agg_z.to_slice_mut(),
        z_lo: agg_zlo.to_slice_mut(),
        q: agg_q.to_slice_mut(),
    };
    aggregate_unit(p, ch, n, c, seg_len, &sq, &rates, &mut agg, &mut meta, f);
    if ch == 0 {
        let start = p * DSCAN_CHUNK;
        let mut last = min(start + DSCAN_CHUNK, n) - 1;
        if comptime![f.reverse] {
            last = start;
        }
        agg_seg[p as usize] = seg_of(&sq.seg, last, seg_len, f.seg_from_len);
    }
}

/// Level pass 2: rescans each chunk and adds the inclusive state of the neighbouring chunk
/// (`p − 1` forward, `p + 1` reverse; from the scanned aggregates `top_*`) moved to each
/// element by `f(|z_k − Z_q|)`. A level of one chunk (`num_chunks = 1`) has no level above.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn dscan_apply_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    rate_b: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    u_im: &Array<f32>,
    ug: &Array<f32>,
    ug_im: &Array<f32>,
    top_z: &Array<f32>,
    top_zlo: &Array<f32>,
    top_seg: &Array<u32>,
    top_h: &Array<f32>,
    top_h_im: &Array<f32>,
    top_g: &Array<f32>,
    top_g_im: &Array<f32>,
    out_h: &mut Array<f32>,
    out_h_im: &mut Array<f32>,
    out_g: &mut Array<f32>,
    out_g_im: &mut Array<f32>,
    n: u32,
    c: u32,
    num_chunks: u32,
    seg_len: u32,
    #[comptime] f: ScanFlags,
) {
    let unit = ABSOLUTE_POS as u32;
    if unit >= num_chunks * c {
        terminate!();
    }
    let sq = Seq {
        z: z.to_slice(),
        z_lo: z_lo.to_slice(),
        seg: seg.to_slice(),
        q: q_in.to_slice(),
        u: u.to_slice(),
        u_im: u_im.to_slice(),
        ug: ug.to_slice(),
        ug_im: ug_im.to_slice(),
    };
    let rates = Rates {
        a: rate.to_slice(),
        b: rate_b.to_slice(),
    };
    let top = Top {
        z: top_z.to_slice(),
        z_lo: top_zlo.to_slice(),
        seg: top_seg.to_slice(),
        h: top_h.to_slice(),
        h_im: top_h_im.to_slice(),
        g: top_g.to_slice(),
        g_im: top_g_im.to_slice(),
    };
    let mut out = States {
        h: out_h.to_slice_mut(),
        h_im: out_h_im.to_slice_mut(),
        g: out_g.to_slice_mut(),
        g_im: out_g_im.to_slice_mut(),
    };
    apply_unit(
        unit / c,
        unit % c,
        n,
        c,
        num_chunks,
        seg_len,
        &sq,
        &rates,
        &top,
        &mut out,
        f,
    );
}

/// Scratch `f32` words per segment of [`dscan_cube_kernel()`] for segments of `seg_len`
/// and `c` channels: for each of the two levels above the first (`P₁ = ⌈seg_len/32⌉`,
/// `P₂ = ⌈P₁/32⌉` chunks), three per-chunk words (coordinate, low part, factor product)
/// and eight per-chunk-and-channel words (aggregate and scanned `h`, `g`, real and
/// imaginary).
pub fn dscan_cube_scratch(seg_len: u32, c: u32) -> u32 {
    let p1 = seg_len.div_ceil(DSCAN_CHUNK);
    let p2 = p1.div_ceil(DSCAN_CHUNK);
    (p1 + p2) * (3 + 8 * c)
}

/// Offsets of one level's scratch regions (see [`dscan_cube_scratch()`]).
#[derive(CubeType, Clone, Copy)]
struct Region {
    z: u32,
    lo: u32,
    q: u32,
    h: u32,
    s: u32,
    end: u32,
}

#[cube]
fn region(base: u32, p: u32, c: u32) -> Region {
    let pc = p * c;
    let h = base + 3 * p;
    let s = h + 4 * pc;
    Region {
        z: base,
        lo: base + p,
        q: base + 2 * p,
        h,
        s,
        end: s + 4 * pc,
    }
}

/// `States` over `[at, at + 4·pc)` of the scratch: `h`, `h_im`, `g`, `g_im` in turn.
#[cube]
fn scratch_states(scratch: &mut Array<f32>, at: u32, pc: u32) -> States {
    let a = at as usize;
    let w = pc as usize;
    States {
        h: scratch.slice_mut(a, a + w),
        h_im: scratch.slice_mut(a + w, a + 2 * w),
        g: scratch.slice_mut(a + 2 * w, a + 3 * w),
        g_im: scratch.slice_mut(a + 3 * w, a + 4 * w),
    }
}

/// The level above stored in region `r` (`p` chunks): its per-chunk data as a sequence
/// whose values are the aggregate states.
#[cube]
fn scratch_seq(scratch: &Array<f32>, seg: &Array<u32>, r: &Region, p: u32, c: u32) -> Seq {
    let w = (p * c) as usize;
    let h = r.h as usize;
    Seq {
        z: scratch.slice(r.z as usize, (r.z + p) as usize),
        z_lo: scratch.slice(r.lo as usize, (r.lo + p) as usize),
        seg: seg.to_slice(),
        q: scratch.slice(r.q as usize, (r.q + p) as usize),
        u: scratch.slice(h, h + w),
        u_im: scratch.slice(h + w, h + 2 * w),
        ug: scratch.slice(h + 2 * w, h + 3 * w),
        ug_im: scratch.slice(h + 3 * w, h + 4 * w),
    }
}

/// The scanned level in region `r` (`p` chunks) as the top of the level below.
#[cube]
fn scratch_top(scratch: &Array<f32>, seg: &Array<u32>, r: &Region, p: u32, c: u32) -> Top {
    let w = (p * c) as usize;
    let s = r.s as usize;
    Top {
        z: scratch.slice(r.z as usize, (r.z + p) as usize),
        z_lo: scratch.slice(r.lo as usize, (r.lo + p) as usize),
        seg: seg.to_slice(),
        h: scratch.slice(s, s + w),
        h_im: scratch.slice(s + w, s + 2 * w),
        g: scratch.slice(s + 2 * w, s + 3 * w),
        g_im: scratch.slice(s + 3 * w, s + 4 * w),
    }
}

/// The flags of the levels above the first in the one-cube view: stored values carry
/// the moment inputs (`ug_zero = !moment`).
pub fn upper_flags(f: ScanFlags) -> ScanFlags {
    ScanFlags {
        seg_from_len: true,
        ug_zero: !f.moment,
        single: true,
        ..f
    }
}

/// One level's aggregate pass by the units of the cube: `sq` (`n` elements, `p` chunks)
/// up into region `r` of the scratch.
#[cube]
#[allow(clippy::too_many_arguments)]
fn cube_aggregate(
    sq: &Seq,
    rates: &Rates,
    scratch: &mut Array<f32>,
    r: &Region,
    n: u32,
    p: u32,
    c: u32,
    #[comptime] f: ScanFlags,
) {
    let mut agg = scratch_states(scratch, r.h, p * c);
    let mut meta = Meta {
        z: scratch.slice_mut(r.z as usize, (r.z + p) as usize),
        z_lo: scratch.slice_mut(r.lo as usize, (r.lo + p) as usize),
        q: scratch.slice_mut(r.q as usize, (r.q + p) as usize),
    };
    for w in range_stepped(UNIT_POS, p * c, CUBE_DIM) {
        aggregate_unit(
            w / c,
            w % c,
            n,
            c,
            ONE_SEGMENT,
            sq,
            rates,
            &mut agg,
            &mut meta,
            f,
        );
    }
}

/// One level's apply pass by the units of the cube: `sq` (`n` elements, `p` chunks) with
/// the scanned level above `top` (read only when `p > 1`) into `out`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn cube_apply(
    sq: &Seq,
    rates: &Rates,
    top: &Top,
    out: &mut States,
    n: u32,
    p: u32,
    c: u32,
    #[comptime] f: ScanFlags,
) {
    for w in range_stepped(UNIT_POS, p * c, CUBE_DIM) {
        apply_unit(w / c, w % c, n, c, p, ONE_SEGMENT, sq, rates, top, out, f);
    }
}

/// The whole scan of one segment (`sq`, `seg_len ≤ DSCAN_CUBE_MAX_SEG` elements, `c`
/// channels) by the units of one cube: levels up by [`cube_aggregate`], down by
/// [`cube_apply`], a storage barrier between levels, the levels above the first in the
/// scratch regions `r1`, `r2` (`P₁ = ⌈seg_len/32⌉ ≤ 1024` and `P₂ = ⌈P₁/32⌉ ≤ 32` chunks,
/// so the third level is one chunk). `f0` are the first level's flags (with `single`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn cube_scan(
    sq: &Seq,
    rates: &Rates,
    out: &mut States,
    scratch: &mut Array<f32>,
    seg: &Array<u32>,
    seg_len: u32,
    c: u32,
    r1: &Region,
    r2: &Region,
    #[comptime] f0: ScanFlags,
) {
    let f1 = comptime![upper_flags(f0)];
    let p0 = (seg_len + DSCAN_CHUNK - 1) / DSCAN_CHUNK;
    let p1 = (p0 + DSCAN_CHUNK - 1) / DSCAN_CHUNK;
    if p0 > 1 {
        cube_aggregate(sq, rates, scratch, r1, seg_len, p0, c, f0);
        sync_storage();
        let sq1 = scratch_seq(scratch, seg, r1, p0, c);
        let top2 = scratch_top(scratch, seg, r2, p1, c);
        if p1 > 1 {
            cube_aggregate(&sq1, rates, scratch, r2, p0, p1, c, f1);
            sync_storage();
            // The third level is one chunk: no level above it (`top2` unread).
            let sq2 = scratch_seq(scratch, seg, r2, p1, c);
            let mut scanned2 = scratch_states(scratch, r2.s, p1 * c);
            cube_apply(&sq2, rates, &top2, &mut scanned2, p1, 1u32, c, f1);
            sync_storage();
        }
        let mut scanned1 = scratch_states(scratch, r1.s, p0 * c);
        cube_apply(&sq1, rates, &top2, &mut scanned1, p0, p1, c, f1);
        sync_storage();
    }
    // With one chunk (p0 = 1) the level above is not read.
    let top1 = scratch_top(scratch, seg, r1, p0, c);
    cube_apply(sq, rates, &top1, out, seg_len, p0, c, f0);
}

/// The passes of one [`dscan_cube_kernel()`] launch: `a` always, `b` when given (e.g. the
/// forward and reverse sweeps of the Laplace operator). They
/// share the coordinates, rates, values, factors and `phased`/`with_q`/`with_lo`; each has
/// its own direction, moment and tie kind. Set `single` and `seg_from_len` in each.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct CubePasses {
    /// The first pass.
    pub a: ScanFlags,
    /// A second pass (outputs `*_b`).
    pub b: Option<ScanFlags>,
    /// After the passes, the Laplace operator's gather from the forward (`a`) and reverse
    /// (`b`) sweeps into `y`, `y_im` (see [`crate::laplace::gather_unit()`]; `perm` and
    /// `n_src` are read only then).
    pub gather: bool,
}

/// The scans of segment `CUBE_POS` (of `seg_len ≤ DSCAN_CUBE_MAX_SEG` elements) in one
/// cube, one pass after another ([`CubePasses`]), each by `cube_scan` with the levels
/// above the first in `scratch` (`segs ×` [`dscan_cube_scratch()`] words, reused by each
/// pass after a barrier), then optionally the gather. The cube count may exceed `segs`
/// (cubes past it exit at once); `seg` is an unread stand-in.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn dscan_cube_kernel(
    z: &Array<f32>,
    z_lo: &Array<f32>,
    seg: &Array<u32>,
    rate: &Array<f32>,
    rate_b: &Array<f32>,
    q_in: &Array<f32>,
    u: &Array<f32>,
    u_im: &Array<f32>,
    scratch: &mut Array<f32>,
    h_a: &mut Array<f32>,
    h_a_im: &mut Array<f32>,
    g_a: &mut Array<f32>,
    g_a_im: &mut Array<f32>,
    h_b: &mut Array<f32>,
    h_b_im: &mut Array<f32>,
    g_b: &mut Array<f32>,
    g_b_im: &mut Array<f32>,
    perm: &Array<u32>,
    y: &mut Array<f32>,
    y_im: &mut Array<f32>,
    segs: u32,
    seg_len: u32,
    c: u32,
    n_src: u32,
    #[comptime] passes: CubePasses,
) {
    let s = CUBE_POS as u32;
    if s >= segs {
        terminate!();
    }
    let p0 = (seg_len + DSCAN_CHUNK - 1) / DSCAN_CHUNK;
    let p1 = (p0 + DSCAN_CHUNK - 1) / DSCAN_CHUNK;
    let a = (s * seg_len) as usize;
    let b = a + seg_len as usize;
    let ac = a * c as usize;
    let bc = b * c as usize;
    let sq = Seq {
        z: z.slice(a, b),
        z_lo: z_lo.slice(a, b),
        seg: seg.to_slice(),
        q: q_in.slice(a, b),
        u: u.slice(ac, bc),
        u_im: u_im.slice(ac, bc),
        ug: u.slice(ac, bc),
        ug_im: u.slice(ac, bc),
    };
    let si = s as usize;
    let rates = Rates {
        a: rate.slice(si, si + 1),
        b: rate_b.slice(si, si + 1),
    };
    let r1 = region(s * dscan_cube_scratch_words(seg_len, c), p0, c);
    let r2 = region(r1.end, p1, c);
    {
        let mut out = States {
            h: h_a.slice_mut(ac, bc),
            h_im: h_a_im.slice_mut(ac, bc),
            g: g_a.slice_mut(ac, bc),
            g_im: g_a_im.slice_mut(ac, bc),
        };
        cube_scan(
            &sq, &rates, &mut out, scratch, seg, seg_len, c, &r1, &r2, passes.a,
        );
    }
    if comptime![passes.b.is_some()] {
        sync_storage();
        let mut out = States {
            h: h_b.slice_mut(ac, bc),
            h_im: h_b_im.slice_mut(ac, bc),
            g: g_b.slice_mut(ac, bc),
            g_im: g_b_im.slice_mut(ac, bc),
        };
        let fb = comptime![passes.b.unwrap()];
        cube_scan(
            &sq, &rates, &mut out, scratch, seg, seg_len, c, &r1, &r2, fb,
        );
    }
    if comptime![passes.gather] {
        sync_storage();
        let base = s * seg_len * c;
        for w in range_stepped(UNIT_POS, seg_len * c, CUBE_DIM) {
            crate::laplace::gather_unit(
                z,
                z_lo,
                perm,
                h_a,
                h_a_im,
                h_b,
                h_b_im,
                y,
                y_im,
                base + w,
                n_src,
                c,
                rate,
                rate_b,
                seg_len,
                passes.a.with_lo,
                passes.a.phased,
            );
        }
    }
}

/// [`dscan_cube_scratch()`] inside a kernel.
#[cube]
fn dscan_cube_scratch_words(seg_len: u32, c: u32) -> u32 {
    let p1 = (seg_len + DSCAN_CHUNK - 1) / DSCAN_CHUNK;
    let p2 = (p1 + DSCAN_CHUNK - 1) / DSCAN_CHUNK;
    (p1 + p2) * (3 + 8 * c)
}
