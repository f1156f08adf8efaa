//! Anchored exponential-decay scans: the sweeps of the Laplace-kernel recursion
//! (`specs/laplace-engine.md` §2) and of LapSum's soft top-k, with every decay computed from
//! coordinates.
//!
//! On sorted coordinates `z [N]` cut into segments (rows of `seg_len`) with one rate per
//! segment, the forward scan returns
//!
//! ```text
//! h_k = Σ_{i ≤ k, same segment} f(z_k − z_i) u_i,           f(δ) = e^{−r δ}
//! g_k = Σ_{i ≤ k, same segment} (z_k − z_i) f(z_k − z_i) u_i   (with `moment`)
//! ```
//!
//! and the reverse scan the same over `i ≥ k` with distances `z_i − z_k`. The tie kind
//! uses `f(δ) = [δ = 0]` (the mass of the elements tied with `k`). The complex variant
//! ([`decay_scan_complex`]) takes a complex rate `a + ib`,
//! `f(δ) = e^{−aδ}(cos bδ − i sin bδ)`, and runs on the same kernels (a comptime flag).
//!
//! **Why not `linear_scan` with decays `d_k = e^{−rΔ_k}`.** The term of `u_i` in `h_k` is
//! then the product of `k − i` independently rounded exponentials: its relative error
//! grows like `(k − i)·ε` — 16 % at N = 2^22 for closely spaced anchors (issue 10). Here
//! the algorithm is hierarchical (chunks of 32, aggregated level by level; see
//! `lapis_kernels::decay_scan`) and a chunk's state moves to any later coordinate with
//! one `exp` of the distance, so each term sees at most 32 rounded local factors plus one
//! computed factor per level: the relative error, measured against the same scan of
//! `|u|`, is `O(32·⌈log₃₂ N⌉·ε)` (≈ 1e-6 in practice up to the largest sizes tested;
//! `tests/tests/ops/scale.rs`), flat in N and in how the gaps are spread.

use lapis_kernels::decay_scan as k;

use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::tensor::{arr, Tensor};
use crate::validate;

const CHUNK: usize = k::DSCAN_CHUNK as usize;

/// Longest segment scanned by one cube ([`k::dscan_cube_kernel()`]); longer segments go
/// level by level over the whole grid.
pub const ONE_CUBE_MAX_SEG: usize = 4096;

/// Most units of the one-cube kernel's cube.
const CUBE_UNITS: usize = 256;

/// Whether a level-0 scan of `n` elements in segments of `seg_len`, `c` channels, runs
/// in one cube per segment: segments of at most [`ONE_CUBE_MAX_SEG`] and at most 8 chunk
/// passes per unit (`⌈seg_len/32⌉·c ≤ 2048`), and more than one chunk in all (a single
/// chunk is one launch either way).
fn one_cube(n: usize, seg_len: usize, c: usize) -> bool {
    match SCAN_PATH.with(|p| p.get()) {
        ScanPath::Auto => {
            seg_len <= ONE_CUBE_MAX_SEG
                && seg_len.div_ceil(CHUNK) * c <= 8 * CUBE_UNITS
                && n > CHUNK
        }
        ScanPath::Levels => false,
        ScanPath::OneCube => seg_len <= k::DSCAN_CUBE_MAX_SEG as usize,
    }
}

/// Which kernels run the anchored scans (for cross-checks and benches; both compute the
/// same floating-point operations in the same order, so their outputs are bitwise equal).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanPath {
    /// One cube per segment for short segments, level by level otherwise.
    Auto,
    /// Always level by level over the whole grid.
    Levels,
    /// One cube per segment whenever segments are at most `DSCAN_CUBE_MAX_SEG` long.
    OneCube,
}

thread_local! {
    static SCAN_PATH: std::cell::Cell<ScanPath> = const { std::cell::Cell::new(ScanPath::Auto) };
}

/// Sets this thread's [`ScanPath`]; returns the previous one.
#[doc(hidden)]
pub fn set_scan_path(path: ScanPath) -> ScanPath {
    SCAN_PATH.with(|p| p.replace(path))
}

/// What a [`decay_scan`] computes.
#[derive(Clone, Copy, Debug)]
pub struct DecayScan<'a> {
    /// Rates `r`, f32 `[S]`: one per segment (`S = N / seg_len`), every `r ≥ 0`.
    pub rate: &'a Tensor,
    /// Segment (row) length: decays across a multiple of `seg_len` are 0. `N` for one row.
    pub seg_len: usize,
    /// Scan from the end (`i ≥ k`).
    pub reverse: bool,
    /// Also return the first moment `g`.
    pub moment: bool,
    /// `f(δ) = [δ = 0]` instead of `e^{−rδ}` (no moment).
    pub tie: bool,
    /// Low parts of split coordinates (`z + z_lo`, f32 `[N]`, see [`crate::split_f64`]):
    /// distances become `(z_k − z_i) + (lo_k − lo_i)`. `None`: plain f32 coordinates.
    pub coords_lo: Option<&'a Tensor>,
    /// Extra factors `q [N]` (f32): the decay into element k from its predecessor in scan
    /// order becomes `f(δ)·q_k` (see `lapis_kernels::decay_scan`). `None`: all 1.
    pub factors: Option<&'a Tensor>,
}

/// Real rates and segments of one level.
struct Level<'a> {
    z: &'a Tensor,
    /// Low parts of split coordinates.
    zlo: Option<&'a Tensor>,
    /// Extra factors of this level (`None`: none).
    q: Option<&'a Tensor>,
    /// Stored segment ids (levels above the first), else `⌊k / seg_len⌋`.
    seg: Option<&'a Tensor>,
}

/// The imaginary side of a phased scan level: the values' and moment inputs' imaginary
/// parts and the rates' (`b`, one per segment).
#[derive(Clone, Copy)]
struct Im<'a> {
    u: &'a Tensor,
    ug: Option<&'a Tensor>,
    rate_b: &'a Tensor,
}

/// A level's outputs: `h` and `g` (with `moment`), with their imaginary parts when phased.
pub(crate) struct Out {
    pub(crate) h: Tensor,
    pub(crate) h_im: Option<Tensor>,
    pub(crate) g: Option<Tensor>,
    pub(crate) g_im: Option<Tensor>,
}

fn scan_level(
    lv: Level<'_>,
    u: &Tensor,
    ug: Option<&Tensor>,
    c: usize,
    spec: &DecayScan<'_>,
    im: Option<Im<'_>>,
) -> Result<Out> {
    const OP: &str = "decay_scan";
    let dev = lv.z.device();
    let n = lv.z.numel();
    let p = n.div_ceil(CHUNK);
    let moment = spec.moment;
    let phased = im.is_some();
    if lv.seg.is_none() && one_cube(n, spec.seg_len, c) {
        // The whole hierarchy of each segment in one cube (one launch).
        let f = k::ScanFlags {
            reverse: spec.reverse,
            moment,
            tie: spec.tie,
            seg_from_len: true,
            ug_zero: ug.is_none(),
            with_q: lv.q.is_some(),
            with_lo: lv.zlo.is_some(),
            phased,
            single: true,
        };
        let passes = k::CubePasses {
            a: f,
            b: None,
            gather: false,
        };
        let rates = (spec.rate, im.map(|im| im.rate_b));
        let (mut outs, _) = cube_scans(
            lv,
            (u, im.map(|im| im.u)),
            rates,
            spec.seg_len,
            c,
            passes,
            None,
        )?;
        return Ok(outs.remove(0));
    }
    let mk = |on: bool, rows: usize| -> Result<Tensor> {
        if on {
            Tensor::empty(OP, dev, &[rows, c], DType::F32)
        } else {
            Tensor::empty(OP, dev, &[1], DType::F32)
        }
    };
    let out_h = mk(true, n)?;
    let out_hi = mk(phased, n)?;
    let out_g = mk(moment, n)?;
    let out_gi = mk(moment && phased, n)?;
    let dummy_seg;
    let (seg, seg_from_len) = match lv.seg {
        Some(s) => (s, false),
        None => {
            dummy_seg = Tensor::empty(OP, dev, &[1], DType::U32)?;
            (&dummy_seg, true)
        }
    };
    let ug_zero = ug.is_none();
    let ug_t = ug.unwrap_or(u);
    let (ui_t, ugi_t, rb_t) = match im {
        Some(im) => (im.u, im.ug.unwrap_or(im.u), im.rate_b),
        None => (u, u, spec.rate),
    };
    let with_q = lv.q.is_some();
    let q_t = lv.q.unwrap_or(lv.z);
    let with_lo = lv.zlo.is_some();
    let zlo_t = lv.zlo.unwrap_or(lv.z);
    let (n32, c32, p32, sl32) = (
        n as u32,
        c as u32,
        p as u32,
        spec.seg_len.min(u32::MAX as usize) as u32,
    );
    let f = k::ScanFlags {
        reverse: spec.reverse,
        moment,
        tie: spec.tie,
        seg_from_len,
        ug_zero,
        with_q,
        with_lo,
        phased,
        single: false,
    };
    let top = if p > 1 {
        let agg_z = Tensor::empty(OP, dev, &[p], DType::F32)?;
        let agg_zlo = Tensor::empty(OP, dev, &[if with_lo { p } else { 1 }], DType::F32)?;
        let agg_seg = Tensor::empty(OP, dev, &[p], DType::U32)?;
        let agg_q = Tensor::empty(OP, dev, &[if with_q { p } else { 1 }], DType::F32)?;
        let agg_h = mk(true, p)?;
        let agg_hi = mk(phased, p)?;
        let agg_g = mk(moment, p)?;
        let agg_gi = mk(moment && phased, p)?;
        launch_1d!(dev, p * c, k::dscan_aggregate_kernel, |client, R| (
            arr::<R>(lv.z),
            arr::<R>(zlo_t),
            arr::<R>(seg),
            arr::<R>(spec.rate),
            arr::<R>(rb_t),
            arr::<R>(q_t),
            arr::<R>(u),
            arr::<R>(ui_t),
            arr::<R>(ug_t),
            arr::<R>(ugi_t),
            arr::<R>(&agg_z),
            arr::<R>(&agg_zlo),
            arr::<R>(&agg_seg),
            arr::<R>(&agg_q),
            arr::<R>(&agg_h),
            arr::<R>(&agg_hi),
            arr::<R>(&agg_g),
            arr::<R>(&agg_gi),
            n32,
            c32,
            p32,
            sl32,
            f,
        ));
        let up = Level {
            z: &agg_z,
            zlo: with_lo.then_some(&agg_zlo),
            q: with_q.then_some(&agg_q),
            seg: Some(&agg_seg),
        };
        let up_im = im.map(|im| Im {
            u: &agg_hi,
            ug: moment.then_some(&agg_gi),
            rate_b: im.rate_b,
        });
        let top = scan_level(up, &agg_h, moment.then_some(&agg_g), c, spec, up_im)?;
        Some((agg_z, agg_zlo, agg_seg, top))
    } else {
        None
    };
    let (tz, tzlo, ts, th, thi, tg, tgi) = match &top {
        Some((z, zl, s, o)) => {
            let hi = o.h_im.as_ref().unwrap_or(&o.h);
            let g = o.g.as_ref().unwrap_or(&o.h);
            let gi = o.g_im.as_ref().unwrap_or(&o.h);
            (z, zl, s, &o.h, hi, g, gi)
        }
        None => (lv.z, zlo_t, seg, u, u, u, u),
    };
    launch_1d!(dev, p * c, k::dscan_apply_kernel, |client, R| (
        arr::<R>(lv.z),
        arr::<R>(zlo_t),
        arr::<R>(seg),
        arr::<R>(spec.rate),
        arr::<R>(rb_t),
        arr::<R>(q_t),
        arr::<R>(u),
        arr::<R>(ui_t),
        arr::<R>(ug_t),
        arr::<R>(ugi_t),
        arr::<R>(tz),
        arr::<R>(tzlo),
        arr::<R>(ts),
        arr::<R>(th),
        arr::<R>(thi),
        arr::<R>(tg),
        arr::<R>(tgi),
        arr::<R>(&out_h),
        arr::<R>(&out_hi),
        arr::<R>(&out_g),
        arr::<R>(&out_gi),
        n32,
        c32,
        p32,
        sl32,
        f,
    ));
    Ok(Out {
        h: out_h,
        h_im: phased.then_some(out_hi),
        g: moment.then_some(out_g),
        g_im: (moment && phased).then_some(out_gi),
    })
}

/// Runs the passes of one [`k::dscan_cube_kernel()`] launch on the level-0 sequence `lv`
/// (segments of `seg_len`, from their length) with values `u` (planar, `[N, c]`) and
/// rates `(a, b)` (`b` for phased passes); returns one [`Out`] per pass.
fn cube_scans(
    lv: Level<'_>,
    u: (&Tensor, Option<&Tensor>),
    rate: (&Tensor, Option<&Tensor>),
    seg_len: usize,
    c: usize,
    passes: k::CubePasses,
    gather: Option<(&Tensor, usize)>,
) -> Result<(Vec<Out>, Option<Gathered>)> {
    const OP: &str = "decay_scan";
    let dev = lv.z.device();
    let n = lv.z.numel();
    let segs = n / seg_len;
    let phased = passes.a.phased;
    let flags = [Some(passes.a), passes.b];
    let mk = |on: bool| -> Result<Tensor> {
        let shape = if on { vec![n, c] } else { vec![1] };
        Tensor::empty(OP, dev, &shape, DType::F32)
    };
    let mut outs = Vec::new();
    for f in flags {
        let on = f.is_some();
        let moment = f.is_some_and(|f| f.moment);
        outs.push(Out {
            h: mk(on)?,
            h_im: Some(mk(on && phased)?),
            g: Some(mk(moment)?),
            g_im: Some(mk(moment && phased)?),
        });
    }
    let words = k::dscan_cube_scratch(seg_len as u32, c as u32) as usize;
    let scratch = Tensor::empty(OP, dev, &[segs * words], DType::F32)?;
    let dummy_seg = Tensor::empty(OP, dev, &[1], DType::U32)?;
    let (perm, n_src) = gather.unwrap_or((&dummy_seg, 0));
    let ny = if gather.is_some() {
        segs * (seg_len - n_src) * c
    } else {
        1
    };
    let y = Tensor::empty(OP, dev, &[ny.max(1)], DType::F32)?;
    let y_im = Tensor::empty(OP, dev, &[if phased { ny.max(1) } else { 1 }], DType::F32)?;
    let zlo = lv.zlo.unwrap_or(lv.z);
    let q = lv.q.unwrap_or(lv.z);
    let ui = u.1.unwrap_or(u.0);
    let rb = rate.1.unwrap_or(rate.0);
    let units = (seg_len.div_ceil(CHUNK) * c)
        .next_power_of_two()
        .clamp(32, CUBE_UNITS) as u32;
    let o = |i: usize, which: usize| -> &Tensor {
        let x = &outs[i];
        match which {
            0 => &x.h,
            1 => x.h_im.as_ref().expect("allocated"),
            2 => x.g.as_ref().expect("allocated"),
            _ => x.g_im.as_ref().expect("allocated"),
        }
    };
    crate::counters::count_launch(dev);
    let prof = crate::counters::profile_start(dev);
    crate::dispatch!(dev, |client, R| k::dscan_cube_kernel::launch::<R>(
        client,
        lapis_kernels::sort_rows::row_sort_cube_count(client, segs),
        cubecl::prelude::CubeDim::new_1d(units),
        arr::<R>(lv.z),
        arr::<R>(zlo),
        arr::<R>(&dummy_seg),
        arr::<R>(rate.0),
        arr::<R>(rb),
        arr::<R>(q),
        arr::<R>(u.0),
        arr::<R>(ui),
        arr::<R>(&scratch),
        arr::<R>(o(0, 0)),
        arr::<R>(o(0, 1)),
        arr::<R>(o(0, 2)),
        arr::<R>(o(0, 3)),
        arr::<R>(o(1, 0)),
        arr::<R>(o(1, 1)),
        arr::<R>(o(1, 2)),
        arr::<R>(o(1, 3)),
        arr::<R>(perm),
        arr::<R>(&y),
        arr::<R>(&y_im),
        segs as u32,
        seg_len as u32,
        c as u32,
        n_src as u32,
        passes,
    ));
    crate::counters::profile_end(dev, "decay_scan::dscan_cube_kernel", prof);
    let mut res = Vec::new();
    for (x, f) in outs.into_iter().zip(flags) {
        if let Some(f) = f {
            res.push(Out {
                h: x.h,
                h_im: x.h_im.filter(|_| f.phased),
                g: x.g.filter(|_| f.moment),
                g_im: x.g_im.filter(|_| f.moment && f.phased),
            });
        }
    }
    let y = gather.map(|_| (y, phased.then_some(y_im)));
    Ok((res, y))
}

/// What [`laplace_sweeps_one_cube`] returns: forward and reverse sweeps and the gathered
/// output `(Y, Im Y)` (flat, `[rows·m·c]`) when asked.
pub(crate) type OneCubeSweeps = (Out, Out, Option<Gathered>);

/// The Laplace operator's output gathered by the one-cube sweeps: `(Y, Im Y)` (flat).
pub(crate) type Gathered = (Tensor, Option<Tensor>);

/// The Laplace operator's sweeps over sorted segments of `seg_len` in one launch, when
/// the segments are short enough for one cube each (see [`ONE_CUBE_MAX_SEG`]): the
/// forward and reverse scans (with first moments when `moment`) of the planar values `u`
/// at rates `(a, b)` (complex with `b`), and with `gather = (perm, n_src)` the operator's output at the targets. `None` when the
/// segments are too long (the caller scans level by level).
pub(crate) fn laplace_sweeps_one_cube(
    z: &Tensor,
    u: (&Tensor, Option<&Tensor>),
    rate: (&Tensor, Option<&Tensor>),
    seg_len: usize,
    moment: bool,
    gather: Option<(&Tensor, usize)>,
) -> Result<Option<OneCubeSweeps>> {
    let n = z.numel();
    let c = u.0.numel() / n.max(1);
    if n == 0 || c == 0 || !one_cube(n, seg_len, c) {
        return Ok(None);
    }
    let phased = rate.1.is_some();
    let base = k::ScanFlags {
        reverse: false,
        moment,
        tie: false,
        seg_from_len: true,
        ug_zero: true,
        with_q: false,
        with_lo: false,
        phased,
        single: true,
    };
    let passes = k::CubePasses {
        a: base,
        b: Some(k::ScanFlags {
            reverse: true,
            ..base
        }),
        gather: gather.is_some(),
    };
    let lv = Level {
        z,
        zlo: None,
        q: None,
        seg: None,
    };
    let u2 = (
        &u.0.reshape(&[n, c])?,
        u.1.map(|x| x.reshape(&[n, c])).transpose()?,
    );
    let (outs, y) = cube_scans(lv, (u2.0, u2.1.as_ref()), rate, seg_len, c, passes, gather)?;
    let mut outs = outs.into_iter();
    let fwd = outs.next().expect("pass a");
    let rev = outs.next().expect("pass b");
    Ok(Some((fwd, rev, y)))
}

/// Checks `z [N]` and `u [N]`/`[N, c]` (f32, same device); returns `c`.
fn check_zu(op: &'static str, z: &Tensor, u: &Tensor) -> Result<usize> {
    validate::same_device(op, z, u)?;
    for t in [z, u] {
        if t.dtype() != DType::F32 {
            return Err(LapisError::DType {
                op,
                got: t.dtype(),
                msg: "the decay scan takes f32".into(),
            });
        }
    }
    if z.rank() != 1 {
        return Err(LapisError::shape(
            op,
            z.shape(),
            "coordinates must be 1-D [N]",
        ));
    }
    let n = z.numel();
    let c = match u.shape() {
        [m] if *m == n => 1,
        [m, c] if *m == n => *c,
        _ => {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: z.shape().to_vec(),
                rhs: u.shape().to_vec(),
            })
        }
    };
    let total = n as u64 * c.max(1) as u64;
    if total > u32::MAX as u64 {
        return Err(LapisError::SizeOverLimit {
            op,
            name: "N·c",
            size: total,
            limit: u32::MAX as u64,
        });
    }
    Ok(c)
}

/// The anchored scan of the module docs: `z [N]` sorted ascending within each segment,
/// `u [N]` or `[N, c]` (f32); returns `h` (shape of `u`) and, with `spec.moment`, `g`.
///
/// Rates are not read back (they stay on the device): a negative or NaN rate gives
/// meaningless output, so callers validate them. Unsorted `z` gives the scan with decays
/// `f(|z_k − z_{k−1}|)`, not an error.
pub fn decay_scan(
    z: &Tensor,
    u: &Tensor,
    spec: &DecayScan<'_>,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "decay_scan";
    let c = check_zu(OP, z, u)?;
    validate::same_device(OP, z, spec.rate)?;
    let n = z.numel();
    if spec.seg_len == 0 || (n > 0 && !n.is_multiple_of(spec.seg_len)) {
        return Err(LapisError::invalid(
            OP,
            "seg_len",
            spec.seg_len,
            format!("must be ≥ 1 and divide N = {n}"),
        ));
    }
    let segs = n / spec.seg_len;
    if spec.rate.dtype() != DType::F32 || spec.rate.rank() != 1 || spec.rate.numel() < segs.max(1) {
        return Err(LapisError::shape(
            OP,
            spec.rate.shape(),
            format!("rates must be f32 [{}] (one per segment)", segs.max(1)),
        ));
    }
    if spec.tie && spec.moment {
        return Err(LapisError::invalid(
            OP,
            "moment",
            true,
            "the tie kind has no moment",
        ));
    }
    if n == 0 || c == 0 {
        let e = Tensor::empty(OP, z.device(), u.shape(), DType::F32)?;
        return Ok((e.clone(), spec.moment.then_some(e)));
    }
    if let Some(q) = spec.factors {
        validate::same_device(OP, z, q)?;
        if q.dtype() != DType::F32 || q.shape() != z.shape() {
            return Err(LapisError::shape(
                OP,
                q.shape(),
                format!("factors must be f32 [{n}] like the coordinates"),
            ));
        }
    }
    if let Some(lo) = spec.coords_lo {
        validate::same_device(OP, z, lo)?;
        if lo.dtype() != DType::F32 || lo.shape() != z.shape() {
            return Err(LapisError::shape(
                OP,
                lo.shape(),
                format!("low coordinate parts must be f32 [{n}] like the coordinates"),
            ));
        }
    }
    let level = Level {
        z,
        zlo: spec.coords_lo,
        q: spec.factors,
        seg: None,
    };
    let o = scan_level(level, &u.reshape(&[n, c])?, None, c, spec, None)?;
    Ok((
        o.h.reshape(u.shape())?,
        o.g.map(|g| g.reshape(u.shape())).transpose()?,
    ))
}

/// Planar complex tensor `(re, im)`.
pub type Complex = (Tensor, Tensor);

/// Complex anchored scan, one segment, rate `a + ib` (`a ≥ 0`, `b` finite; each an `f32`
/// or a one-element f32 tensor, see [`Scalar`](crate::Scalar): a tensor rate stays on the
/// device and is checked there, see [`crate::checks`]): planar values `(ur, ui)` of one
/// shape `[N]` or `[N, c]`; returns `h` and, with `moment`, `g` (see the module docs).
pub fn decay_scan_complex<'a>(
    z: &Tensor,
    (ur, ui): (&Tensor, &Tensor),
    (a, b): (impl Into<crate::Scalar<'a>>, impl Into<crate::Scalar<'a>>),
    reverse: bool,
    moment: bool,
) -> Result<(Complex, Option<Complex>)> {
    const OP: &str = "decay_scan_complex";
    check_zu(OP, z, ur)?;
    check_zu(OP, z, ui)?;
    if ur.shape() != ui.shape() {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: ur.shape().to_vec(),
            rhs: ui.shape().to_vec(),
        });
    }
    use crate::checks::Accept;
    let a = a
        .into()
        .device_value(OP, "a", z, Accept::NonNegative, "must be finite and ≥ 0")?;
    let b = b
        .into()
        .device_value(OP, "b", z, Accept::Finite, "must be finite")?;
    decay_scan_complex_on(z, (ur, ui), (&a, &b), z.numel().max(1), reverse, moment)
}

/// [`decay_scan_complex`] with the rates as checked device tensors (no check here), over
/// segments of `seg_len` (one rate pair per segment: `a`, `b` of `[N / seg_len]`).
pub(crate) fn decay_scan_complex_on(
    z: &Tensor,
    (ur, ui): (&Tensor, &Tensor),
    (a, b): (&Tensor, &Tensor),
    seg_len: usize,
    reverse: bool,
    moment: bool,
) -> Result<(Complex, Option<Complex>)> {
    const OP: &str = "decay_scan_complex";
    let c = if ur.rank() == 2 { ur.shape()[1] } else { 1 };
    let n = z.numel();
    if n == 0 || c == 0 {
        let e = || Tensor::empty(OP, z.device(), ur.shape(), DType::F32);
        let g = if moment { Some((e()?, e()?)) } else { None };
        return Ok(((e()?, e()?), g));
    }
    let (r2, i2) = (ur.reshape(&[n, c])?, ui.reshape(&[n, c])?);
    let spec = DecayScan {
        rate: a,
        seg_len,
        reverse,
        moment,
        tie: false,
        coords_lo: None,
        factors: None,
    };
    let level = Level {
        z,
        zlo: None,
        q: None,
        seg: None,
    };
    let im = Im {
        u: &i2,
        ug: None,
        rate_b: b,
    };
    let o = scan_level(level, &r2, None, c, &spec, Some(im))?;
    let back = |t: Tensor| t.reshape(ur.shape());
    let h = (back(o.h)?, back(o.h_im.expect("phased"))?);
    let g = match (o.g, o.g_im) {
        (Some(g), Some(gi)) => Some((back(g)?, back(gi)?)),
        _ => None,
    };
    Ok((h, g))
}

/// Splits f64 values into two f32 tensors `(hi, lo)` with `hi = x as f32` and
/// `lo = (x − hi) as f32`, so that `hi + lo` carries ≈ 48 bits: coordinates closer than the
/// f32 spacing of their magnitude stay distinct (see [`crate::laplace_apply_split`]).
pub fn split_f64(dev: &crate::Device, x: &[f64]) -> Result<(Tensor, Tensor)> {
    if let Some(bad) = x
        .iter()
        .find(|v| !v.is_finite() || v.abs() > f32::MAX as f64)
    {
        return Err(LapisError::invalid(
            "split_f64",
            "x",
            bad,
            "must be finite and within the f32 range",
        ));
    }
    let hi: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let lo: Vec<f32> = x
        .iter()
        .zip(&hi)
        .map(|(&v, &h)| (v - h as f64) as f32)
        .collect();
    Ok((
        Tensor::from_slice(dev, &[x.len()], &hi)?,
        Tensor::from_slice(dev, &[x.len()], &lo)?,
    ))
}
