//! The exact Laplace-kernel operator and its gradients (real rate λ > 0).
//!
//! `laplace_apply(s [n], t [m], V [n, c], λ)` computes
//! `Y[j, :] = Σ_i exp(−λ|t_j − s_i|) V[i, :]` in O((n+m) log(n+m)) without forming the
//! m×n kernel: one stable argsort of the merged anchors `[s; t]` (sources before targets at
//! ties), then two linear-recurrence sweeps (`specs/laplace-engine.md` §2; the recursion
//! behind LAPLEX and REMIX). Unsorted anchors are accepted; the sort runs every call
//! (anchors are learnable). [`laplace_gram`] is the square case `t = s`.
//!
//! Gradients ([`laplace_apply_backward`]), given `Ȳ = ∂ℓ/∂Y`:
//! - `V̄ = Kᵀ Ȳ`: the same operator with roles swapped (targets carry `Ȳ`);
//! - `t̄_j = −λ Σ_c Ȳ_jc Σ_i sign(t_j − s_i) K_ji V_ic`;
//! - `s̄_i = −λ Σ_c V_ic Σ_j sign(s_i − t_j) K_ji Ȳ_jc`;
//! - `λ̄ = −Σ_jc Ȳ_jc Σ_i |t_j − s_i| K_ji V_ic` (first-moment sweeps).
//!
//! Subgradient at ties: `sign(0) = 0`, so a source exactly at a target's coordinate adds
//! nothing to `t̄`/`s̄` (the signed sums take the sources strictly left of a target's
//! coordinate from the forward sweep before its run of ties; the sweep value at the target
//! itself would silently use `sign(0) = +1`). Numerics: every factor `e^{−λΔ}` is ≤ 1, so no sweep
//! overflows for any spread; far sources underflow to 0, which is the exact value in f32.
//! The backward recomputes the sweeps instead of saving them (memory O(N·c) either way).
//! Phased (complex) λ = a + i·b, `a > 0`: [`laplace_apply_phased`] and
//! [`laplace_apply_phased_backward`] (same sweeps in complex arithmetic; conventions there).
//!
//! **Scalar arguments and host reads.** Every rate (`λ`, `a`, `b`) is an
//! `impl Into<`[`Scalar`]`>`: an `f32` or a one-element f32 [`Tensor`] (a learnable rate's
//! value, say). A tensor rate stays on the device: the kernels read it there, and its
//! range (`λ > 0`, `a > 0`, `b` finite) is a deferred device check, as is the finiteness
//! of the coordinates ([`crate::checks`]: a failure surfaces as the typed error naming
//! the op and the argument at the next read of device data). A host `f32` is checked at
//! once and uploaded. A tensor with more than one element, or not f32, is a
//! [`LapisError::InvalidArgument`] at once. The rate gradients ([`LaplaceGrads::lambda`],
//! the phased frequency gradient) are `[1]` device tensors. No op here reads device data
//! back to the host; the host only needs the sizes.
//!
//! **Accuracy at scale.** The sweeps are anchored decay scans ([`crate::decay_scan()`]):
//! every long-range decay is one `exp` of a coordinate difference, never a product of
//! rounded per-gap decays, so the componentwise error `|Δy_j| / Σ_i |K_ji v_i|` is
//! O(32·⌈log₃₂ N⌉·ε) at any N (measured ≤ 4e-6 up to 2^24 + 2^24 anchors; the product chain
//! it replaced reached 1.6e-1 at 2^22). **Coordinates** are f32: the result is the operator
//! for the f32-rounded anchors; rounding moves an anchor by ≤ ε|z|, a relative change of
//! ≤ λ·ε·max|z| per kernel entry whatever n. Beyond ~2^23 anchors per binade, anchors
//! collide into exact ties, which are handled exactly (sources before targets,
//! `sign(0) = 0`). Center and scale coordinates so that λ·max|z| stays small, or pass
//! **split anchors** (two f32s per anchor, ≈ 48 bits: [`crate::split_f64`] and
//! [`laplace_apply_split`], forward only) when anchors must stay distinct beyond f32.
//!
//! **Launches.** Rows (one operator, or one head) of `n + m ≤ 4096` anchors take the short
//! path where the device sorts such rows in one workgroup (always for one row on a GPU;
//! rows ≤ 128 on CPU adapters, see [`crate::argsort_rows`]): one launch merges each row
//! (concatenation, finiteness check, bitonic sort, scatter of the values;
//! `lapis_kernels::laplace::laplace_merge_kernel`) and one launch runs the forward and
//! reverse sweeps of each row in one workgroup and gathers `Y`
//! (`lapis_kernels::decay_scan::dscan_cube_kernel`); the backward's three sweeps of each
//! orientation are one launch too. Longer rows take the grid-wide radix sort and the scans
//! level by level. Both paths compute the same floats (`one_cube_sweeps_are_bitwise_the_level_sweeps`).

use lapis_kernels::laplace as k;

use crate::checks::Accept;
use crate::decay_scan::{decay_scan, decay_scan_complex_on, DecayScan};
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::scalar::Scalar;
use crate::tensor::{arr, Tensor};

/// Gradients of `ℓ` w.r.t. the inputs of [`laplace_apply`].
#[derive(Debug, Clone)]
pub struct LaplaceGrads {
    /// `∂ℓ/∂V`, shape of `V`.
    pub values: Tensor,
    /// `∂ℓ/∂s`, `[n]` (`[H, n]` for the multi-head ops).
    pub sources: Tensor,
    /// `∂ℓ/∂t`, `[m]` (`[H, m]` for the multi-head ops).
    pub targets: Tensor,
    /// `∂ℓ/∂λ`, a `[1]` f32 tensor (`[H]`, one per head, for the multi-head ops; computed on
    /// the device: `.to_scalar()` reads it). For the phased ops, `∂ℓ/∂a`.
    pub lambda: Tensor,
}

/// Checks f32, 1-D anchors, `V` of `[n]` or `[n, c]` and sizes; returns `(n, m, c)`. (The
/// coordinates' finiteness is checked on the device by [`merge`].)
fn check(op: &'static str, s: &Tensor, t: &Tensor, v: &Tensor) -> Result<(usize, usize, usize)> {
    crate::validate::same_device(op, s, t)?;
    crate::validate::same_device(op, s, v)?;
    for x in [s, t, v] {
        if x.dtype() != DType::F32 {
            return Err(LapisError::DType {
                op,
                got: x.dtype(),
                msg: "the Laplace operator takes f32".into(),
            });
        }
    }
    if s.rank() != 1 || t.rank() != 1 {
        let bad = if s.rank() != 1 { s } else { t };
        return Err(LapisError::shape(op, bad.shape(), "anchors must be 1-D"));
    }
    let (n, m) = (s.numel(), t.numel());
    let c = match v.shape() {
        [a] if *a == n => 1,
        [a, c] if *a == n => *c,
        _ => {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: s.shape().to_vec(),
                rhs: v.shape().to_vec(),
            })
        }
    };
    let total = (n + m) as u64 * c as u64;
    if total > u32::MAX as u64 {
        return Err(LapisError::SizeOverLimit {
            op,
            name: "(n + m)·c",
            size: total,
            limit: u32::MAX as u64,
        });
    }
    Ok((n, m, c))
}

/// The rate `λ` (or `a`) as a checked `[1]` device tensor: finite and `> 0`.
fn rate_arg<'a>(
    op: &'static str,
    name: &'static str,
    x: impl Into<Scalar<'a>>,
    like: &Tensor,
) -> Result<Tensor> {
    x.into()
        .device_value(op, name, like, Accept::Positive, "must be finite and > 0")
}

/// The phase `b` as a checked `[1]` device tensor: finite.
fn phase_arg<'a>(op: &'static str, x: impl Into<Scalar<'a>>, like: &Tensor) -> Result<Tensor> {
    x.into()
        .device_value(op, "b", like, Accept::Finite, "the phase must be finite")
}

/// The output's shape for values `v`: `v`'s shape with the source axis (axis 0, or 1 with
/// heads) sized `m`.
fn out_shape(v: &Tensor, heads: bool, m: usize) -> Vec<usize> {
    let mut s = v.shape().to_vec();
    s[usize::from(heads)] = m;
    s
}

/// Checks upstream gradients: on `like`'s device, f32, of the output's shape (`[m]` for
/// `V [n]`, `[m, c]` for `[n, c]`; with heads `[H, m]` or `[H, m, c]`).
fn check_upstream(
    op: &'static str,
    like: &Tensor,
    v: &Tensor,
    heads: bool,
    m: usize,
    gys: &[&Tensor],
) -> Result<()> {
    let want = out_shape(v, heads, m);
    for g in gys {
        crate::validate::same_device(op, like, g)?;
        if g.shape() != want.as_slice() || g.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: want,
                rhs: g.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// Planar values: the real part and, for the phased operator, the imaginary part.
type Planar = (Tensor, Option<Tensor>);

/// The sweeps on the merged sorted sequence, real or phased: the imaginary parts
/// (`rate.1`, `l.1`, …) are there exactly for the phased operator, and one set of kernels
/// serves both (a comptime flag).
struct Sweeps {
    z: Tensor,
    perm: Tensor,
    /// `(a, b)`, one per row (head): `λ = a` (real) or `a + ib` (phased).
    rate: (Tensor, Option<Tensor>),
    l: Planar,
    q: Planar,
    /// First moments `(gL, gQ)` (gradients only).
    moments: Option<(Planar, Planar)>,
    /// The output at the targets, flat, when the one-cube sweeps gathered it already.
    y: Option<Planar>,
}

impl Sweeps {
    fn phased(&self) -> bool {
        self.rate.1.is_some()
    }
}

/// Sorts the merged anchors row by row and scatters the source values:
/// `(z [H·N], perm [H·N], u [H·N, c])` with `N = n + m` per row (head; one row for the
/// 1-D ops), `perm` holding indices within the row. The coordinates' finiteness is a
/// deferred device check (one launch on the merged anchors).
fn merge(
    op: &'static str,
    src: &Tensor,
    tgt: &Tensor,
    vals: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, m) = (
        *src.shape().last().unwrap_or(&0),
        *tgt.shape().last().unwrap_or(&0),
    );
    let h = src.numel() / n.max(1);
    let dev = src.device();
    if let Some(units) = crate::sort::bitonic_units(dev, h, n + m) {
        // Short rows: concatenation, finiteness check, sort and scatter in one launch.
        let seg = n + m;
        let c = vals.numel() / (h * n).max(1);
        let z = Tensor::empty(op, dev, &[h * seg], DType::F32)?;
        let perm = Tensor::empty(op, dev, &[h * seg], DType::U32)?;
        let u = Tensor::empty(op, dev, &[h * seg, c], DType::F32)?;
        let (flags, slot_s, slot_t) = crate::checks::reserve_pair(
            dev,
            op,
            ("sources", "targets"),
            Accept::Finite,
            "coordinates must be finite",
        )?;
        let len = seg.next_power_of_two();
        crate::counters::count_launch(dev);
        let prof = crate::counters::profile_start(dev);
        crate::dispatch!(dev, |client, R| k::laplace_merge_kernel::launch::<R>(
            client,
            lapis_kernels::sort_rows::row_sort_cube_count(client, h),
            lapis_kernels::sort_rows::row_sort_cube_dim(len, units),
            arr::<R>(src),
            arr::<R>(tgt),
            arr::<R>(vals),
            arr::<R>(&z),
            arr::<R>(&perm),
            arr::<R>(&u),
            arr::<R>(&flags),
            h as u32,
            n as u32,
            m as u32,
            c as u32,
            len.trailing_zeros(),
            slot_s,
            slot_t,
        ));
        crate::counters::profile_end(dev, "laplace::laplace_merge_kernel", prof);
        crate::checks::after(dev)?;
        return Ok((z, perm, u));
    }
    let merged = crate::concat(&[&src.reshape(&[h, n])?, &tgt.reshape(&[h, m])?], 1)?;
    crate::checks::check_f32_rows(
        op,
        ("sources", "targets"),
        &merged,
        n + m,
        n,
        Accept::Finite,
        "coordinates must be finite",
    )?;
    let (z, perm) = crate::argsort_rows(&merged)?;
    let (z, perm) = (z.reshape(&[h * (n + m)])?, perm.reshape(&[h * (n + m)])?);
    let u = scatter_values(&perm, n, n + m, vals)?;
    Ok((z, perm, u))
}

/// `u [H·N, c]`: the source values in merged order (`perm[k] < n`), 0 at targets; `vals`
/// holds `H·n·c` values (`[n]`, `[n, c]`, `[H, n]` or `[H, n, c]`).
fn scatter_values(perm: &Tensor, n: usize, seg: usize, vals: &Tensor) -> Result<Tensor> {
    const OP: &str = "laplace_apply";
    let total = perm.numel();
    let rows = total / seg.max(1);
    let c = vals.numel() / (rows * n).max(1);
    let dev = perm.device();
    let u = Tensor::empty(OP, dev, &[total, c], DType::F32)?;
    let (n32, t32, c32, s32) = (n as u32, total as u32, c as u32, seg as u32);
    launch_1d!(dev, total * c, k::laplace_scatter_kernel, |client, R| (
        arr::<R>(perm),
        arr::<R>(vals),
        arr::<R>(&u),
        n32,
        t32,
        c32,
        s32,
    ));
    Ok(u)
}

/// Merges, sorts and sweeps: real values `vals` (the phased operator's values are real
/// too: their imaginary part is 0) at rate `(a, b)` (`b` for the phased operator).
fn sweeps(
    op: &'static str,
    src: &Tensor,
    tgt: &Tensor,
    vals: &Tensor,
    rate: (&Tensor, Option<&Tensor>),
    backward: bool,
    moment: bool,
) -> Result<Sweeps> {
    let seg = src.shape().last().unwrap_or(&0) + tgt.shape().last().unwrap_or(&0);
    let (z, perm, ur) = merge(op, src, tgt, vals)?;
    let ui = match rate.1 {
        Some(_) => Some(crate::zeros(z.device(), ur.shape(), DType::F32)?),
        None => None,
    };
    let n_src = *src.shape().last().unwrap_or(&0);
    sorted_sweeps(z, perm, (ur, ui), rate, (n_src, seg), backward, moment)
}

/// The merge of the swapped operator (`K(s, t)` from `K(t, s)`'s sorted merge, no sort):
/// see [`k::laplace_swap_kernel`]. Coordinates come back negated.
fn swap_perm(zs: &Tensor, ps: &Tensor, n_src: usize, seg: usize) -> Result<(Tensor, Tensor)> {
    let total = ps.numel();
    let dev = ps.device();
    let z = Tensor::empty("laplace_apply_backward", dev, &[total], DType::F32)?;
    let perm = Tensor::empty("laplace_apply_backward", dev, &[total], DType::U32)?;
    let (n32, t32, s32) = (n_src as u32, total as u32, seg as u32);
    launch_1d!(dev, total, k::laplace_swap_kernel, |client, R| (
        arr::<R>(zs),
        arr::<R>(ps),
        arr::<R>(&z),
        arr::<R>(&perm),
        n32,
        t32,
        s32,
    ));
    Ok((z, perm))
}

/// [`sweeps`] on an already sorted merge `(z, perm)` with the values `u` in merged order
/// (complex, planar, for the phased operator). `backward`: the sweeps of a backward (no
/// gather of the output; with `moment`, the first moments too).
fn sorted_sweeps(
    z: Tensor,
    perm: Tensor,
    u: Planar,
    rate: (&Tensor, Option<&Tensor>),
    (n_src, seg): (usize, usize),
    backward: bool,
    moment: bool,
) -> Result<Sweeps> {
    // Short segments: forward and reverse sweeps in one launch (one cube per row); a
    // forward also gathers the output at the targets there.
    let gather = (!backward).then_some((&perm, n_src));
    if let Some((f, r, y)) = crate::decay_scan::laplace_sweeps_one_cube(
        &z,
        (&u.0, u.1.as_ref()),
        rate,
        seg,
        moment,
        gather,
    )? {
        let planar = |h: Tensor, hi: Option<Tensor>| -> Result<Planar> {
            Ok((
                h.reshape(u.0.shape())?,
                hi.map(|x| x.reshape(u.0.shape())).transpose()?,
            ))
        };
        let moments = match (f.g, r.g) {
            (Some(gl), Some(gq)) => Some((planar(gl, f.g_im)?, planar(gq, r.g_im)?)),
            _ => None,
        };
        return Ok(Sweeps {
            z,
            perm,
            rate: (rate.0.clone(), rate.1.cloned()),
            l: planar(f.h, f.h_im)?,
            q: planar(r.h, r.h_im)?,
            moments,
            y,
        });
    }
    let spec = |reverse: bool| DecayScan {
        rate: rate.0,
        seg_len: seg,
        reverse,
        moment,
        tie: false,
        factors: None,
        coords_lo: None,
    };
    type Scanned = (Planar, Option<Planar>);
    let scan = |reverse: bool| -> Result<Scanned> {
        match (rate.1, &u.1) {
            (Some(b), Some(ui)) => {
                let ((hr, hi), g) =
                    decay_scan_complex_on(&z, (&u.0, ui), (rate.0, b), seg, reverse, moment)?;
                Ok(((hr, Some(hi)), g.map(|(gr, gi)| (gr, Some(gi)))))
            }
            _ => {
                let (h, g) = decay_scan(&z, &u.0, &spec(reverse))?;
                Ok(((h, None), g.map(|g| (g, None))))
            }
        }
    };
    let (l, gl) = scan(false)?;
    let (q, gq) = scan(true)?;
    Ok(Sweeps {
        z,
        perm,
        rate: (rate.0.clone(), rate.1.cloned()),
        l,
        q,
        moments: gl.zip(gq),
        y: None,
    })
}

/// The real part, or a stand-in that the kernels never read (the real operator).
fn im_or(x: &Planar) -> &Tensor {
    x.1.as_ref().unwrap_or(&x.0)
}

fn gather(sw: &Sweeps, n: usize, m: usize, c: usize, shape: &[usize]) -> Result<Planar> {
    gather_lo(sw, None, n, m, c, shape)
}

/// `Y` at the targets (complex for the phased operator), with the low parts of split
/// coordinates (sorted order) when given.
fn gather_lo(
    sw: &Sweeps,
    zlo: Option<&Tensor>,
    n: usize,
    m: usize,
    c: usize,
    shape: &[usize],
) -> Result<Planar> {
    const OP: &str = "laplace_apply";
    if let (Some((y, yi)), None) = (&sw.y, zlo) {
        // Gathered by the one-cube sweeps.
        let yi = yi.as_ref().map(|t| t.reshape(shape)).transpose()?;
        return Ok((y.reshape(shape)?, yi));
    }
    let (seg, total) = (n + m, sw.z.numel());
    let with_lo = zlo.is_some();
    let zlo = zlo.unwrap_or(&sw.z);
    let phased = sw.phased();
    let dev = sw.z.device();
    let y = Tensor::empty(OP, dev, shape, DType::F32)?;
    let yi = Tensor::empty(OP, dev, if phased { shape } else { &[1] }, DType::F32)?;
    let rb = sw.rate.1.as_ref().unwrap_or(&sw.rate.0);
    let (n32, t32, c32, s32) = (n as u32, total as u32, c as u32, seg as u32);
    launch_1d!(dev, total * c, k::laplace_gather_kernel, |client, R| (
        arr::<R>(&sw.z),
        arr::<R>(zlo),
        arr::<R>(&sw.perm),
        arr::<R>(&sw.l.0),
        arr::<R>(im_or(&sw.l)),
        arr::<R>(&sw.q.0),
        arr::<R>(im_or(&sw.q)),
        arr::<R>(&y),
        arr::<R>(&yi),
        n32,
        t32,
        c32,
        arr::<R>(&sw.rate.0),
        arr::<R>(rb),
        s32,
        with_lo,
        phased,
    ));
    Ok((y, phased.then_some(yi)))
}

/// Per target: `scale·Re(λ·Σ_c W·(L^< − R))` (`[rows·m]`; `L^<` holds the sources strictly
/// left of the target, see `lapis_kernels::laplace`) and, with moments, `Σ_c W·(gL + gQ)`
/// (`[rows·m]`, or `[rows·m, 2]` complex for the phased operator).
fn weighted(
    sw: &Sweeps,
    w: (&Tensor, Option<&Tensor>),
    n: usize,
    m: usize,
    c: usize,
    scale: f32,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "laplace_backward";
    let dev = sw.z.device();
    let (seg, total) = (n + m, sw.z.numel());
    let rows_m = total / seg * m;
    let phased = sw.phased();
    let with_moment = sw.moments.is_some();
    let signed = Tensor::empty(OP, dev, &[rows_m], DType::F32)?;
    let mshape: &[usize] = match (with_moment, phased) {
        (false, _) => &[1],
        (true, false) => &[rows_m],
        (true, true) => &[rows_m, 2],
    };
    let moment = Tensor::empty(OP, dev, mshape, DType::F32)?;
    let (gl, gq) = match &sw.moments {
        Some((a, b)) => (a, b),
        None => (&sw.l, &sw.l), // unread without moments
    };
    let wi = w.1.unwrap_or(w.0);
    let rb = sw.rate.1.as_ref().unwrap_or(&sw.rate.0);
    let (n32, t32, c32, s32) = (n as u32, total as u32, c as u32, seg as u32);
    launch_1d!(dev, total, k::laplace_weighted_kernel, |client, R| (
        arr::<R>(&sw.z),
        arr::<R>(&sw.perm),
        arr::<R>(&sw.l.0),
        arr::<R>(im_or(&sw.l)),
        arr::<R>(&sw.q.0),
        arr::<R>(im_or(&sw.q)),
        arr::<R>(&gl.0),
        arr::<R>(im_or(gl)),
        arr::<R>(&gq.0),
        arr::<R>(im_or(gq)),
        arr::<R>(w.0),
        arr::<R>(wi),
        arr::<R>(&signed),
        arr::<R>(&moment),
        n32,
        t32,
        c32,
        arr::<R>(&sw.rate.0),
        arr::<R>(rb),
        scale,
        s32,
        with_moment,
        phased,
    ));
    Ok((signed, with_moment.then_some(moment)))
}

/// Every gradient from the original orientation's backward sweeps (with first
/// moments); the swapped orientation reuses their sort. `gy = (Ḡr, Ḡi)` (`Ḡi` for the
/// phased operator, whose loss is `Σ Ḡr·Re Y + Σ Ḡi·Im Y`: the sweeps then carry
/// `conj(G)`). Returns the gradients and, for the phased operator, `b̄`.
fn grads_from(
    sw: Sweeps,
    v: &Tensor,
    gy: (&Tensor, Option<&Tensor>),
    n: usize,
    m: usize,
    c: usize,
) -> Result<(LaplaceGrads, Option<Tensor>)> {
    let phased = sw.phased();
    let conj_im = gy.1.map(crate::neg).transpose()?;
    // t̄ = Re(−λ·S) for the signed sums S (the kernel applies −λ).
    let (targets, moment) = weighted(&sw, (gy.0, conj_im.as_ref()), n, m, c, -1.0)?;
    // The swapped orientation (targets carry the weights): V̄ and s̄, on the same sort
    // reversed with its coordinates negated (one sort per backward instead of two); the
    // signed sums change sign with the coordinates, so s̄ = +Re(λ·signed).
    let (zs, ps) = swap_perm(&sw.z, &sw.perm, n, n + m)?;
    let rate = sw.rate.clone();
    let h = sw.z.numel() / (n + m);
    drop(sw);
    // Rate gradients per row (head), from the moment sums over its targets: λ̄ = −Σ, or for
    // the phased operator ā = −Re Σ, b̄ = +Im Σ; all on the device.
    let moment = moment.expect("moment sweeps requested");
    let (lam, grad_b) = if phased {
        let msum = crate::sum(&moment.reshape(&[h, m, 2])?, 1)?.reshape(&[h, 2])?;
        let a = crate::neg(&crate::slice(&msum, 1, 0, 1)?)?.reshape(&[h])?;
        (a, Some(crate::slice(&msum, 1, 1, 2)?.reshape(&[h])?))
    } else {
        let a = crate::neg(&crate::sum(&moment.reshape(&[h, m])?, 1)?)?.reshape(&[h])?;
        (a, None)
    };
    let us = (
        scatter_values(&ps, m, n + m, gy.0)?,
        match &conj_im {
            Some(g) => Some(scatter_values(&ps, m, n + m, g)?),
            None => None,
        },
    );
    // Not a backward's sweeps: V̄ is this orientation's output (gathered in the same
    // launch on the short path); s̄ needs no moments.
    let sw = sorted_sweeps(
        zs,
        ps,
        us,
        (&rate.0, rate.1.as_ref()),
        (m, n + m),
        false,
        false,
    )?;
    let values = gather(&sw, m, n, c, v.shape())?.0;
    let zero_v = if phased {
        Some(crate::zeros(v.device(), v.shape(), DType::F32)?)
    } else {
        None
    };
    let (sources, _) = weighted(&sw, (v, zero_v.as_ref()), m, n, c, 1.0)?;
    let grads = LaplaceGrads {
        values,
        sources,
        targets,
        lambda: lam,
    };
    Ok((grads, grad_b))
}

/// `Y[j, :] = Σ_i exp(−λ|t_j − s_i|) V[i, :]`: `s [n]`, `t [m]`, `V [n]` or `[n, c]` (f32),
/// `λ > 0` (an `f32` or a one-element f32 tensor, see [`Scalar`]; kept on the device);
/// returns `[m]` or `[m, c]` like `V`.
pub fn laplace_apply<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
) -> Result<Tensor> {
    const OP: &str = "laplace_apply";
    let (n, m, c) = check(OP, s, t, v)?;
    let lambda = rate_arg(OP, "lambda", lambda, s)?;
    let sw = sweeps(OP, s, t, v, (&lambda, None), false, false)?;
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    Ok(gather(&sw, n, m, c, &shape)?.0)
}

/// [`laplace_apply`] for **split anchors**: each anchor is `hi + lo`, two f32 tensors of one
/// shape (from [`crate::split_f64`]: `hi` the f32 rounding of an f64 value, `lo` the rest),
/// so anchors closer than the f32 spacing of their magnitude stay distinct — ≈ 48 bits of
/// position instead of 24 (10⁹ anchors in one range; time stamps far from 0). The merged
/// anchors are sorted by `(hi, lo)` (two stable argsorts), and every distance is
/// `(hi_k − hi_i) + (lo_k − lo_i)`. Forward only (no gradients for split anchors yet).
///
/// `lo` must be the residual of round-to-nearest (`|lo| ≤ ½ ulp(hi)`, as `split_f64` gives);
/// other splits of the same value order wrongly. This is not checked on the device.
/// `lambda` as in [`laplace_apply`] (an `f32` or a one-element tensor, see [`Scalar`]).
pub fn laplace_apply_split<'a>(
    s: (&Tensor, &Tensor),
    t: (&Tensor, &Tensor),
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
) -> Result<Tensor> {
    const OP: &str = "laplace_apply_split";
    let (n, m, c) = check(OP, s.0, t.0, v)?;
    let lambda = rate_arg(OP, "lambda", lambda, s.0)?;
    for (hi, lo) in [s, t] {
        crate::validate::same_device(OP, hi, lo)?;
        if lo.shape() != hi.shape() || lo.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: hi.shape().to_vec(),
                rhs: lo.shape().to_vec(),
            });
        }
    }
    let hi = crate::concat(&[s.0, t.0], 0)?;
    let lo = crate::concat(&[s.1, t.1], 0)?;
    for (names, x) in [
        (("sources", "targets"), &hi),
        (("sources_lo", "targets_lo"), &lo),
    ] {
        let msg = "coordinates must be finite";
        crate::checks::check_f32_split(OP, names, x, n, Accept::Finite, msg)?;
    }
    // Lexicographic (hi, lo) order: stable by lo, then stable by hi.
    let (_, p1) = crate::argsort(&lo)?;
    let (z, p2) = crate::argsort(&crate::index::take_rows_unchecked(&hi, &p1)?)?;
    let perm = crate::index::take_rows_unchecked(&p1, &p2)?;
    let zlo = crate::index::take_rows_unchecked(&lo, &perm)?;
    let u = scatter_values(&perm, n, n + m, v)?;
    let spec = |reverse: bool| DecayScan {
        rate: &lambda,
        seg_len: n + m,
        reverse,
        moment: false,
        tie: false,
        factors: None,
        coords_lo: Some(&zlo),
    };
    let (l, _) = decay_scan(&z, &u, &spec(false))?;
    let (q, _) = decay_scan(&z, &u, &spec(true))?;
    let sw = Sweeps {
        z,
        perm,
        rate: (lambda.clone(), None),
        l: (l, None),
        q: (q, None),
        moments: None,
        y: None,
    };
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    Ok(gather_lo(&sw, Some(&zlo), n, m, c, &shape)?.0)
}

/// The sorted merge of a Laplace operator's anchors (`[s; t]` stably sorted, sources before
/// targets at ties): kept by [`laplace_apply_sorted`] so that
/// [`laplace_apply_backward_sorted`] does not sort again. Holds two `n + m` buffers.
#[derive(Clone, Debug)]
pub struct LaplaceSort {
    z: Tensor,
    perm: Tensor,
    n: usize,
    m: usize,
    /// Heads (rows): 1 for the 1-D ops.
    h: usize,
    /// Whether the values carry a head axis (the multi-head ops).
    heads: bool,
    /// The rate of the forward, `[h]` device tensors: `(λ, None)` for the real operator,
    /// `(a, Some(b))` for the phased one.
    rate: (Tensor, Option<Tensor>),
}

impl LaplaceSort {
    /// Refuses a sort from the other kind of forward (real vs phased).
    fn expect(&self, op: &'static str, phased: bool) -> Result<()> {
        let is_phased = self.rate.1.is_some();
        if is_phased != phased {
            return Err(LapisError::invalid(
                op,
                "sort",
                if is_phased { "phased" } else { "real" },
                "comes from the other kind of forward (real vs phased)",
            ));
        }
        Ok(())
    }

    /// Checks `v` against the forward's sizes; returns `c`.
    fn channels(&self, op: &'static str, v: &Tensor) -> Result<usize> {
        crate::validate::same_device(op, &self.z, v)?;
        let (n, h) = (self.n, self.h);
        let c = match (self.heads, v.shape()) {
            (false, [a]) if *a == n => 1,
            (false, [a, c]) if *a == n => *c,
            (true, [g, a]) if *g == h && *a == n => 1,
            (true, [g, a, c]) if *g == h && *a == n => *c,
            _ => {
                let want = if self.heads {
                    format!("[{h}, {n}] or [{h}, {n}, c]")
                } else {
                    format!("[{n}] or [{n}, c]")
                };
                return Err(LapisError::shape(
                    op,
                    v.shape(),
                    format!("the forward's values were {want}"),
                ));
            }
        };
        if v.dtype() != DType::F32 {
            return Err(LapisError::DType {
                op,
                got: v.dtype(),
                msg: "the Laplace operator takes f32".into(),
            });
        }
        Ok(c)
    }
}

/// [`laplace_apply`] that also returns its sort, for [`laplace_apply_backward_sorted`] (what
/// the tape does: one sort per forward and backward pair instead of two).
pub fn laplace_apply_sorted<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
) -> Result<(Tensor, LaplaceSort)> {
    const OP: &str = "laplace_apply";
    let (n, m, c) = check(OP, s, t, v)?;
    let lambda = rate_arg(OP, "lambda", lambda, s)?;
    let sw = sweeps(OP, s, t, v, (&lambda, None), false, false)?;
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    let y = gather(&sw, n, m, c, &shape)?.0;
    Ok((
        y,
        LaplaceSort {
            z: sw.z,
            perm: sw.perm,
            n,
            m,
            h: 1,
            heads: false,
            rate: (lambda, None),
        },
    ))
}

/// [`laplace_apply_backward`] on the sort of the forward ([`laplace_apply_sorted`]): the
/// same gradients (bitwise: the same sorted sequence, the same kernels), without sorting
/// the anchors again or re-checking them (the forward did). `v` must be the forward's
/// values and `gy` of the forward's output shape.
pub fn laplace_apply_backward_sorted(
    sort: &LaplaceSort,
    v: &Tensor,
    gy: &Tensor,
) -> Result<LaplaceGrads> {
    const OP: &str = "laplace_apply_backward";
    sort.expect(OP, false)?;
    let (n, m, lambda) = (sort.n, sort.m, &sort.rate.0);
    let c = sort.channels(OP, v)?;
    check_upstream(OP, &sort.z, v, sort.heads, m, &[gy])?;
    let u = scatter_values(&sort.perm, n, n + m, v)?;
    let (z, perm) = (sort.z.clone(), sort.perm.clone());
    let sw = sorted_sweeps(z, perm, (u, None), (lambda, None), (n, n + m), true, true)?;
    let g = grads_from(sw, v, (gy, None), n, m, c)?.0;
    if sort.heads {
        Ok(LaplaceGrads {
            sources: g.sources.reshape(&[sort.h, n])?,
            targets: g.targets.reshape(&[sort.h, m])?,
            ..g
        })
    } else {
        Ok(g)
    }
}

/// Gram mode `y = K(x, x) v` (`lambda` as in [`laplace_apply`]).
pub fn laplace_gram<'a>(x: &Tensor, v: &Tensor, lambda: impl Into<Scalar<'a>>) -> Result<Tensor> {
    laplace_apply(x, x, v, lambda)
}

/// Gradients of `ℓ` given `gy = ∂ℓ/∂Y` (shape of `Y`) for [`laplace_apply`] (`lambda` an
/// `f32` or a one-element tensor, see [`Scalar`]); `λ̄` is a `[1]` device tensor.
pub fn laplace_apply_backward<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
    gy: &Tensor,
) -> Result<LaplaceGrads> {
    const OP: &str = "laplace_apply_backward";
    let (n, m, c) = check(OP, s, t, v)?;
    let lambda = rate_arg(OP, "lambda", lambda, s)?;
    check_upstream(OP, s, v, false, m, &[gy])?;
    // Original orientation: t̄ and λ̄.
    let sw = sweeps(OP, s, t, v, (&lambda, None), true, true)?;
    Ok(grads_from(sw, v, (gy, None), n, m, c)?.0)
}

/// Phased operator, `λ = a + i·b` with `a > 0`: `(Re Y, Im Y)` for real `V` (`[n]` or
/// `[n, c]`), `Y[j, :] = Σ_i e^{−λ|t_j − s_i|} V[i, :]`. Decays have modulus `e^{−aΔ} ≤ 1`.
/// `a` and `b` are each an `f32` or a one-element f32 tensor (see [`Scalar`]).
pub fn laplace_apply_phased<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    a: impl Into<Scalar<'a>>,
    b: impl Into<Scalar<'a>>,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "laplace_apply_phased";
    Ok(laplace_apply_phased_sorted_op(OP, s, t, v, a.into(), b.into())?.0)
}

/// The phased forward with its sort (shared by [`laplace_apply_phased`] and
/// [`laplace_apply_phased_sorted`]).
fn laplace_apply_phased_sorted_op(
    op: &'static str,
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    a: Scalar<'_>,
    b: Scalar<'_>,
) -> Result<((Tensor, Tensor), LaplaceSort)> {
    let (n, m, c) = check(op, s, t, v)?;
    let a = rate_arg(op, "a", a, s)?;
    let b = phase_arg(op, b, s)?;
    let sw = sweeps(op, s, t, v, (&a, Some(&b)), false, false)?;
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    let (yr, yi) = gather(&sw, n, m, c, &shape)?;
    let y = (yr, yi.expect("phased"));
    Ok((
        y,
        LaplaceSort {
            z: sw.z,
            perm: sw.perm,
            n,
            m,
            h: 1,
            heads: false,
            rate: (a, Some(b)),
        },
    ))
}

/// [`laplace_apply_phased`] that also returns its sort, for
/// [`laplace_apply_phased_backward_sorted`] (one sort per forward and backward pair).
pub fn laplace_apply_phased_sorted<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    a: impl Into<Scalar<'a>>,
    b: impl Into<Scalar<'a>>,
) -> Result<((Tensor, Tensor), LaplaceSort)> {
    const OP: &str = "laplace_apply_phased";
    laplace_apply_phased_sorted_op(OP, s, t, v, a.into(), b.into())
}

/// [`laplace_apply_phased_backward`] on the forward's sort
/// ([`laplace_apply_phased_sorted`]): bitwise the same gradients, no second sort and no
/// re-check of the anchors.
pub fn laplace_apply_phased_backward_sorted(
    sort: &LaplaceSort,
    v: &Tensor,
    gy_re: &Tensor,
    gy_im: &Tensor,
) -> Result<(LaplaceGrads, Tensor)> {
    const OP: &str = "laplace_apply_phased_backward";
    sort.expect(OP, true)?;
    let (n, m) = (sort.n, sort.m);
    let c = sort.channels(OP, v)?;
    check_upstream(OP, &sort.z, v, sort.heads, m, &[gy_re, gy_im])?;
    let ur = scatter_values(&sort.perm, n, n + m, v)?;
    let ui = crate::zeros(v.device(), ur.shape(), DType::F32)?;
    let rate = (&sort.rate.0, sort.rate.1.as_ref());
    let (z, perm) = (sort.z.clone(), sort.perm.clone());
    let sw = sorted_sweeps(z, perm, (ur, Some(ui)), rate, (n, n + m), true, true)?;
    let (g, gb) = grads_from(sw, v, (gy_re, Some(gy_im)), n, m, c)?;
    let gb = gb.expect("phased");
    if sort.heads {
        let g = LaplaceGrads {
            sources: g.sources.reshape(&[sort.h, n])?,
            targets: g.targets.reshape(&[sort.h, m])?,
            ..g
        };
        Ok((g, gb))
    } else {
        Ok((g, gb))
    }
}

/// Gradients of the phased operator for real `V`, `s`, `t`, `a`, `b`, with the loss
/// `ℓ = Σ Ḡr·Re Y + Σ Ḡi·Im Y` (`gy_re`, `gy_im` of `Y`'s shape). With `G = Ḡr + iḠi`,
/// `∂ℓ/∂p = Re Σ conj(G) ∂Y/∂p` for every real `p`; [`LaplaceGrads::lambda`] holds `∂ℓ/∂a`
/// and the second value returned is `∂ℓ/∂b` (`ā + i·b̄` is PyTorch's complex `.grad`), both
/// `[1]` device tensors. `a` and `b` as in [`laplace_apply_phased`].
pub fn laplace_apply_phased_backward<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    a: impl Into<Scalar<'a>>,
    b: impl Into<Scalar<'a>>,
    gy_re: &Tensor,
    gy_im: &Tensor,
) -> Result<(LaplaceGrads, Tensor)> {
    const OP: &str = "laplace_apply_phased_backward";
    let (n, m, c) = check(OP, s, t, v)?;
    let a = rate_arg(OP, "a", a, s)?;
    let b = phase_arg(OP, b, s)?;
    check_upstream(OP, s, v, false, m, &[gy_re, gy_im])?;
    // Original orientation: t̄, ā, b̄.
    let sw = sweeps(OP, s, t, v, (&a, Some(&b)), true, true)?;
    let (g, gb) = grads_from(sw, v, (gy_re, Some(gy_im)), n, m, c)?;
    Ok((g, gb.expect("phased")))
}

/// Gradients of the Gram operator `y = K(x, x) v`: `(V̄, x̄, λ̄)` with `x̄ = s̄ + t̄` (the
/// anchors play both roles; ties between distinct points contribute 0, a point with itself
/// has `sign(0) = 0` too) and `λ̄` a `[1]` device tensor. `lambda` as in [`laplace_apply`].
pub fn laplace_gram_backward<'a>(
    x: &Tensor,
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
    gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let g = laplace_apply_backward(x, x, v, lambda, gy)?;
    Ok((g.values, crate::add(&g.sources, &g.targets)?, g.lambda))
}

/// Checks `yr`, `yi` (and `g`) share a shape and device, f32.
fn check_phase(op: &'static str, yr: &Tensor, others: &[&Tensor]) -> Result<()> {
    for x in others {
        crate::validate::same_device(op, yr, x)?;
        if x.shape() != yr.shape() || x.dtype() != DType::F32 || yr.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: yr.shape().to_vec(),
                rhs: x.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// `φ` as `[rows]` device values and the elements per row: one phase for all of `y`, or
/// one per index of `y`'s leading axis (a head).
fn phase_rows(op: &'static str, phi: Scalar<'_>, y: &Tensor) -> Result<(Tensor, usize)> {
    let n = y.numel().max(1);
    let rows = match phi {
        Scalar::Tensor(t) if t.numel() > 1 && y.rank() > 0 => y.shape()[0],
        _ => 1,
    };
    let (phi, _) = phi.device_rows(op, "phi", y, rows, Accept::Finite, "must be finite")?;
    Ok((phi, n / rows.max(1)))
}

/// A phased head's real output `Re(e^{iφ}(Y_re + i·Y_im)) = cos φ·Y_re − sin φ·Y_im`, in one
/// launch (LAPLEX: `φ = −π/2` gives `Im Y`). `phi` is an `f32`, a one-element tensor or,
/// for multi-head outputs `[H, …]`, one phase per head `[H]` (kept on the device; checked
/// finite there, see [`crate::checks`]).
pub fn phase_real<'a>(yr: &Tensor, yi: &Tensor, phi: impl Into<Scalar<'a>>) -> Result<Tensor> {
    const OP: &str = "phase_real";
    check_phase(OP, yr, &[yi])?;
    let (phi, seg) = phase_rows(OP, phi.into(), yr)?;
    let y = Tensor::empty(OP, yr.device(), yr.shape(), DType::F32)?;
    let n = y.numel();
    launch_1d!(yr.device(), n, k::phase_real_kernel, |client, R| (
        arr::<R>(yr),
        arr::<R>(yi),
        arr::<R>(&phi),
        arr::<R>(&y),
        n as u32,
        seg as u32,
    ));
    Ok(y)
}

/// The VJP of [`phase_real`] for `ȳ = g`: `(Ȳ_re, Ȳ_im, φ̄)` with `Ȳ_re = cos φ·g`,
/// `Ȳ_im = −sin φ·g` and `φ̄ = Σ g·(−sin φ·Y_re − cos φ·Y_im)`, a `[1]` device tensor (`[H]`
/// with one phase per head; one launch and one reduction).
pub fn phase_real_backward<'a>(
    yr: &Tensor,
    yi: &Tensor,
    phi: impl Into<Scalar<'a>>,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "phase_real_backward";
    check_phase(OP, yr, &[yi, g])?;
    let (phi, seg) = phase_rows(OP, phi.into(), yr)?;
    let dev = yr.device();
    let mk = || Tensor::empty(OP, dev, yr.shape(), DType::F32);
    let (gre, gim, dphi) = (mk()?, mk()?, mk()?);
    let n = g.numel();
    launch_1d!(dev, n, k::phase_real_backward_kernel, |client, R| (
        arr::<R>(g),
        arr::<R>(yr),
        arr::<R>(yi),
        arr::<R>(&phi),
        arr::<R>(&gre),
        arr::<R>(&gim),
        arr::<R>(&dphi),
        n as u32,
        seg as u32,
    ));
    let rows = n / seg;
    let gphi = crate::sum(&dphi.reshape(&[rows, seg])?, 1)?.reshape(&[rows])?;
    Ok((gre, gim, gphi))
}

/// Checks the multi-head arguments `s [H, n]`, `t [H, m]`, `V [H, n]` or `[H, n, c]`;
/// returns `(H, n, m, c)`.
fn check_heads(
    op: &'static str,
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
) -> Result<(usize, usize, usize, usize)> {
    let bad = |x: &Tensor| LapisError::ShapeMismatch {
        op,
        lhs: s.shape().to_vec(),
        rhs: x.shape().to_vec(),
    };
    let (h, n) = match s.shape() {
        [h, n] if *h > 0 => (*h, *n),
        _ => return Err(LapisError::shape(op, s.shape(), "sources must be [H, n]")),
    };
    let m = match t.shape() {
        [g, m] if *g == h => *m,
        _ => return Err(bad(t)),
    };
    let v2 = match v.shape() {
        [g, a] if *g == h && *a == n => v.reshape(&[n * h])?,
        [g, a, c] if *g == h && *a == n => v.reshape(&[n * h, *c])?,
        _ => return Err(bad(v)),
    };
    let s1 = s.reshape(&[h * n])?;
    let (_, _, c) = check(op, &s1, &t.reshape(&[h * m])?, &v2)?;
    Ok((h, n, m, c))
}

/// `H` independent Laplace operators in one pass (LAPLEX's heads, or rows):
/// `Y[h] = K(t_h, s_h; λ_h) V[h]` for `s [H, n]`, `t [H, m]`, `V [H, n]` or `[H, n, c]`, and
/// `lambda` an `f32`, a one-element tensor or one rate per head `[H]` (kept on the device).
/// Each head's merged anchors are sorted in its own row ([`crate::argsort_rows`]: one cube
/// per row for short rows) and the heads are swept as segments of one anchored scan, so the
/// launches do not grow with `H`. Returns `Y [H, m]` or `[H, m, c]` and the sort for
/// [`laplace_apply_backward_sorted`] (whose gradients then carry the head axis: `s̄ [H, n]`,
/// `t̄ [H, m]`, `λ̄ [H]`).
pub fn laplace_apply_heads_sorted<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
) -> Result<(Tensor, LaplaceSort)> {
    const OP: &str = "laplace_apply_heads";
    let (h, n, m, c) = check_heads(OP, s, t, v)?;
    let msg = "must be finite and > 0";
    let (lambda, _) = lambda
        .into()
        .device_rows(OP, "lambda", s, h, Accept::Positive, msg)?;
    let sw = sweeps(OP, s, t, v, (&lambda, None), false, false)?;
    let y = gather(&sw, n, m, c, &out_shape(v, true, m))?.0;
    let sort = LaplaceSort {
        z: sw.z,
        perm: sw.perm,
        n,
        m,
        h,
        heads: true,
        rate: (lambda, None),
    };
    Ok((y, sort))
}

/// [`laplace_apply_heads_sorted`] without the sort (forward only).
pub fn laplace_apply_heads<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    lambda: impl Into<Scalar<'a>>,
) -> Result<Tensor> {
    Ok(laplace_apply_heads_sorted(s, t, v, lambda)?.0)
}

/// The phased operator for `H` heads in one pass (see [`laplace_apply_heads_sorted`] and
/// [`laplace_apply_phased`]): rates `a > 0` and `b` each an `f32`, a one-element tensor or
/// `[H]`; returns `(Re Y, Im Y)` of shape `[H, m]` or `[H, m, c]` and the sort for
/// [`laplace_apply_phased_backward_sorted`] (`ā`, `b̄` then `[H]`).
pub fn laplace_apply_phased_heads_sorted<'a>(
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    a: impl Into<Scalar<'a>>,
    b: impl Into<Scalar<'a>>,
) -> Result<((Tensor, Tensor), LaplaceSort)> {
    const OP: &str = "laplace_apply_phased_heads";
    let (h, n, m, c) = check_heads(OP, s, t, v)?;
    let (a, _) = a
        .into()
        .device_rows(OP, "a", s, h, Accept::Positive, "must be finite and > 0")?;
    let (b, _) = b
        .into()
        .device_rows(OP, "b", s, h, Accept::Finite, "the phase must be finite")?;
    let sw = sweeps(OP, s, t, v, (&a, Some(&b)), false, false)?;
    let (yr, yi) = gather(&sw, n, m, c, &out_shape(v, true, m))?;
    let y = (yr, yi.expect("phased"));
    let sort = LaplaceSort {
        z: sw.z,
        perm: sw.perm,
        n,
        m,
        h,
        heads: true,
        rate: (a, Some(b)),
    };
    Ok((y, sort))
}
