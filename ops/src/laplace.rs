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
//! nothing to `t̄`/`s̄` (a separate tie-mass sweep removes it; without it the sweep order
//! would silently use `sign(0) = +1`). Numerics: every factor `e^{−λΔ}` is ≤ 1, so no sweep
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
    /// `∂ℓ/∂s`, `[n]`.
    pub sources: Tensor,
    /// `∂ℓ/∂t`, `[m]`.
    pub targets: Tensor,
    /// `∂ℓ/∂λ`, a `[1]` f32 tensor (computed on the device; `.to_scalar()` reads it). For
    /// [`laplace_apply_phased_backward`], `∂ℓ/∂a`.
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

/// Checks upstream gradients: on `like`'s device, f32, of the output's shape (`[m]` for
/// `V [n]`, else `[m, c]`).
fn check_upstream(
    op: &'static str,
    like: &Tensor,
    v: &Tensor,
    m: usize,
    c: usize,
    gys: &[&Tensor],
) -> Result<()> {
    let want: Vec<usize> = if v.rank() == 1 { vec![m] } else { vec![m, c] };
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

/// The sweeps on the merged sorted sequence.
struct Sweeps {
    z: Tensor,
    perm: Tensor,
    /// `λ`, `[1]`.
    lambda: Tensor,
    l: Tensor,
    q: Tensor,
    /// Tie mass and first moments `(gL, gQ)` (gradients only).
    tie_mass: Option<Tensor>,
    moments: Option<(Tensor, Tensor)>,
}

/// Sorts the merged anchors and scatters the source values: `(z, perm, u [N, c])`. The
/// coordinates' finiteness is a deferred device check (one launch on the merged anchors).
fn merge(
    op: &'static str,
    src: &Tensor,
    tgt: &Tensor,
    vals: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let merged = crate::concat(&[src, tgt], 0)?;
    crate::checks::check_f32_split(
        op,
        ("sources", "targets"),
        &merged,
        src.numel(),
        Accept::Finite,
        "coordinates must be finite",
    )?;
    let (z, perm) = crate::argsort(&merged)?;
    let u = scatter_values(&perm, src.numel(), vals)?;
    Ok((z, perm, u))
}

/// `u [N, c]`: the source values in merged order (`perm[k] < n`), 0 at targets.
fn scatter_values(perm: &Tensor, n: usize, vals: &Tensor) -> Result<Tensor> {
    const OP: &str = "laplace_apply";
    let total = perm.numel();
    let c = vals.numel() / n;
    let dev = perm.device();
    let u = Tensor::empty(OP, dev, &[total, c], DType::F32)?;
    let (n32, t32, c32) = (n as u32, total as u32, c as u32);
    launch_1d!(dev, total * c, k::laplace_scatter_kernel, |client, R| (
        arr::<R>(perm),
        arr::<R>(vals),
        arr::<R>(&u),
        n32,
        t32,
        c32,
        t32,
    ));
    Ok(u)
}

fn sweeps(
    op: &'static str,
    src: &Tensor,
    tgt: &Tensor,
    vals: &Tensor,
    lambda: &Tensor,
    tie: bool,
    moment: bool,
) -> Result<Sweeps> {
    let (z, perm, u) = merge(op, src, tgt, vals)?;
    sorted_sweeps(z, perm, u, lambda, tie, moment)
}

/// The merge of the swapped operator (`K(s, t)` from `K(t, s)`'s sorted merge, no sort):
/// see [`k::laplace_swap_kernel`]. Coordinates come back negated.
fn swap_merge(sw: &Sweeps, n_src: usize) -> Result<(Tensor, Tensor)> {
    swap_perm(&sw.z, &sw.perm, n_src)
}

/// [`swap_merge`] from the sorted coordinates and permutation.
fn swap_perm(zs: &Tensor, ps: &Tensor, n_src: usize) -> Result<(Tensor, Tensor)> {
    let total = ps.numel();
    let dev = ps.device();
    let z = Tensor::empty("laplace_apply_backward", dev, &[total], DType::F32)?;
    let perm = Tensor::empty("laplace_apply_backward", dev, &[total], DType::U32)?;
    let (n32, t32) = (n_src as u32, total as u32);
    launch_1d!(dev, total, k::laplace_swap_kernel, |client, R| (
        arr::<R>(zs),
        arr::<R>(ps),
        arr::<R>(&z),
        arr::<R>(&perm),
        n32,
        t32,
    ));
    Ok((z, perm))
}

/// [`sweeps`] on an already sorted merge `(z, perm)` with the values `u` in merged order.
fn sorted_sweeps(
    z: Tensor,
    perm: Tensor,
    u: Tensor,
    lambda: &Tensor,
    tie: bool,
    moment: bool,
) -> Result<Sweeps> {
    let total = z.numel();
    let spec = |reverse: bool, tie: bool| DecayScan {
        rate: lambda,
        seg_len: total,
        reverse,
        moment: moment && !tie,
        tie,
        factors: None,
        coords_lo: None,
    };
    let (l, gl) = decay_scan(&z, &u, &spec(false, false))?;
    let (q, gq) = decay_scan(&z, &u, &spec(true, false))?;
    let tie_mass = if tie {
        Some(decay_scan(&z, &u, &spec(false, true))?.0)
    } else {
        None
    };
    Ok(Sweeps {
        z,
        perm,
        lambda: lambda.clone(),
        l,
        q,
        tie_mass,
        moments: gl.zip(gq),
    })
}

fn gather(sw: &Sweeps, n: usize, m: usize, c: usize, shape: &[usize]) -> Result<Tensor> {
    gather_lo(sw, None, n, m, c, shape)
}

/// [`gather`] with the low parts of split coordinates (sorted order) when given.
fn gather_lo(
    sw: &Sweeps,
    zlo: Option<&Tensor>,
    n: usize,
    m: usize,
    c: usize,
    shape: &[usize],
) -> Result<Tensor> {
    let total = n + m;
    let with_lo = zlo.is_some();
    let zlo = zlo.unwrap_or(&sw.z);
    let y = Tensor::empty("laplace_apply", sw.l.device(), shape, DType::F32)?;
    let (n32, t32, c32) = (n as u32, total as u32, c as u32);
    launch_1d!(
        sw.l.device(),
        total * c,
        k::laplace_gather_kernel,
        |client, R| (
            arr::<R>(&sw.z),
            arr::<R>(zlo),
            arr::<R>(&sw.perm),
            arr::<R>(&sw.l),
            arr::<R>(&sw.q),
            arr::<R>(&y),
            n32,
            t32,
            c32,
            arr::<R>(&sw.lambda),
            t32,
            with_lo,
        )
    );
    Ok(y)
}

/// Per target: `(scale·λ·Σ_c W·(L − T − R), Σ_c W·(gL + gQ))` (the second only with
/// moments).
fn weighted(
    sw: &Sweeps,
    w: &Tensor,
    n: usize,
    m: usize,
    c: usize,
    scale: f32,
) -> Result<(Tensor, Option<Tensor>)> {
    let dev = sw.l.device();
    let total = n + m;
    let signed = Tensor::empty("laplace_backward", dev, &[m], DType::F32)?;
    let moment = Tensor::empty("laplace_backward", dev, &[m], DType::F32)?;
    let t = sw
        .tie_mass
        .as_ref()
        .expect("backward sweeps carry the tie mass");
    let (gl, gq) = match &sw.moments {
        Some((a, b)) => (a, b),
        None => (t, t), // unread when `with_moment` is false
    };
    let with_moment = sw.moments.is_some();
    let (n32, t32, c32) = (n as u32, total as u32, c as u32);
    launch_1d!(dev, total, k::laplace_weighted_kernel, |client, R| (
        arr::<R>(&sw.z),
        arr::<R>(&sw.perm),
        arr::<R>(&sw.l),
        arr::<R>(&sw.q),
        arr::<R>(t),
        arr::<R>(gl),
        arr::<R>(gq),
        arr::<R>(w),
        arr::<R>(&signed),
        arr::<R>(&moment),
        n32,
        t32,
        c32,
        arr::<R>(&sw.lambda),
        scale,
        with_moment,
    ));
    Ok((signed, with_moment.then_some(moment)))
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
    let sw = sweeps(OP, s, t, v, &lambda, false, false)?;
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    gather(&sw, n, m, c, &shape)
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
    for (names, x) in [(("sources", "targets"), &hi), (("sources_lo", "targets_lo"), &lo)] {
        let msg = "coordinates must be finite";
        crate::checks::check_f32_split(OP, names, x, n, Accept::Finite, msg)?;
    }
    // Lexicographic (hi, lo) order: stable by lo, then stable by hi.
    let (_, p1) = crate::argsort(&lo)?;
    let (z, p2) = crate::argsort(&crate::index::take_rows_unchecked(&hi, &p1)?)?;
    let perm = crate::index::take_rows_unchecked(&p1, &p2)?;
    let zlo = crate::index::take_rows_unchecked(&lo, &perm)?;
    let u = scatter_values(&perm, n, v)?;
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
        lambda: lambda.clone(),
        l,
        q,
        tie_mass: None,
        moments: None,
    };
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    gather_lo(&sw, Some(&zlo), n, m, c, &shape)
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
    /// The rate of the forward, `[1]` device tensors: `(λ, None)` for the real operator,
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
        let n = self.n;
        let c = match v.shape() {
            [a] if *a == n => 1,
            [a, c] if *a == n => *c,
            _ => {
                return Err(LapisError::shape(
                    op,
                    v.shape(),
                    format!("the forward's values were [{n}] or [{n}, c]"),
                ))
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
    let sw = sweeps(OP, s, t, v, &lambda, false, false)?;
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    let y = gather(&sw, n, m, c, &shape)?;
    Ok((
        y,
        LaplaceSort {
            z: sw.z,
            perm: sw.perm,
            n,
            m,
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
    check_upstream(OP, &sort.z, v, m, c, &[gy])?;
    let u = scatter_values(&sort.perm, n, v)?;
    let sw = sorted_sweeps(sort.z.clone(), sort.perm.clone(), u, lambda, true, true)?;
    grads_from(sw, v, gy, n, m, c)
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
    check_upstream(OP, s, v, m, c, &[gy])?;
    // Original orientation: t̄ and λ̄.
    let sw = sweeps(OP, s, t, v, &lambda, true, true)?;
    grads_from(sw, v, gy, n, m, c)
}

/// Every gradient from the original orientation's backward sweeps (tie mass and moments);
/// the swapped orientation reuses their sort.
fn grads_from(
    sw: Sweeps,
    v: &Tensor,
    gy: &Tensor,
    n: usize,
    m: usize,
    c: usize,
) -> Result<LaplaceGrads> {
    let (targets, moment) = weighted(&sw, gy, n, m, c, -1.0)?;
    let lambda = sw.lambda.clone();
    let lam =
        crate::neg(&crate::sum_all(&moment.expect("moment sweeps requested"))?)?.reshape(&[1])?;
    // Swapped orientation (targets carry Ȳ): V̄ and s̄, on the same sort reversed with its
    // coordinates negated (one sort per backward instead of two); the signed sums change
    // sign with the coordinates, so s̄ = +λ·signed.
    let (zs, ps) = swap_merge(&sw, n)?;
    drop(sw);
    let us = scatter_values(&ps, m, gy)?;
    let sw = sorted_sweeps(zs, ps, us, &lambda, true, false)?;
    let values = gather(&sw, m, n, c, v.shape())?;
    let (sources, _) = weighted(&sw, v, m, n, c, 1.0)?;
    Ok(LaplaceGrads {
        values,
        sources,
        targets,
        lambda: lam,
    })
}

/// Planar complex tensor `(re, im)`.
type Cx = (Tensor, Tensor);

/// The phased sweeps on the merged sorted sequence.
struct PhasedSweeps {
    z: Tensor,
    perm: Tensor,
    /// `(a, b)`, `[1]` each.
    rate: (Tensor, Tensor),
    l: Cx,
    q: Cx,
    tie_mass: Option<Cx>,
    /// `gL + gQ` (gradients only).
    moment: Option<Cx>,
}

#[allow(clippy::too_many_arguments)]
fn phased_sweeps(
    op: &'static str,
    src: &Tensor,
    tgt: &Tensor,
    vr: &Tensor,
    vi: &Tensor,
    rate: (&Tensor, &Tensor),
    tie: bool,
    moment: bool,
) -> Result<PhasedSweeps> {
    let (z, perm, ur) = merge(op, src, tgt, vr)?;
    let ui = scatter_values(&perm, src.numel(), vi)?;
    sorted_phased_sweeps(z, perm, (ur, ui), rate, tie, moment)
}

/// [`phased_sweeps`] on an already sorted merge with the values in merged order.
fn sorted_phased_sweeps(
    z: Tensor,
    perm: Tensor,
    (ur, ui): Cx,
    (a, b): (&Tensor, &Tensor),
    tie: bool,
    moment: bool,
) -> Result<PhasedSweeps> {
    let total = z.numel();
    let (l, gl) = decay_scan_complex_on(&z, (&ur, &ui), (a, b), false, moment)?;
    let (q, gq) = decay_scan_complex_on(&z, (&ur, &ui), (a, b), true, moment)?;
    let tie_mass = if tie {
        // Tie decays are real (and ignore the rate): the real and imaginary parts scan
        // separately.
        let spec = DecayScan {
            rate: a,
            seg_len: total,
            reverse: false,
            moment: false,
            tie: true,
            factors: None,
            coords_lo: None,
        };
        Some((decay_scan(&z, &ur, &spec)?.0, decay_scan(&z, &ui, &spec)?.0))
    } else {
        None
    };
    let moment = match gl.zip(gq) {
        Some((gl, gq)) => Some((crate::add(&gl.0, &gq.0)?, crate::add(&gl.1, &gq.1)?)),
        None => None,
    };
    Ok(PhasedSweeps {
        z,
        perm,
        rate: (a.clone(), b.clone()),
        l,
        q,
        tie_mass,
        moment,
    })
}

fn phased_gather(sw: &PhasedSweeps, n: usize, m: usize, c: usize, shape: &[usize]) -> Result<Cx> {
    let dev = sw.perm.device();
    let total = n + m;
    let yr = Tensor::empty("laplace_apply_phased", dev, shape, DType::F32)?;
    let yi = Tensor::empty("laplace_apply_phased", dev, shape, DType::F32)?;
    let (n32, t32, c32) = (n as u32, total as u32, c as u32);
    launch_1d!(
        dev,
        total * c,
        k::laplace_gather_phased_kernel,
        |client, R| (
            arr::<R>(&sw.z),
            arr::<R>(&sw.perm),
            arr::<R>(&sw.l.0),
            arr::<R>(&sw.l.1),
            arr::<R>(&sw.q.0),
            arr::<R>(&sw.q.1),
            arr::<R>(&yr),
            arr::<R>(&yi),
            n32,
            t32,
            c32,
            arr::<R>(&sw.rate.0),
            arr::<R>(&sw.rate.1),
        )
    );
    Ok((yr, yi))
}

/// Per target: `scale·Re(λ·Σ_c w·(L − T − R))` (`[m]`) and (with moments) the complex
/// `Σ_c w·(gL + gQ)` (`[m, 2]`).
fn phased_weighted(
    sw: &PhasedSweeps,
    w: &Cx,
    n: usize,
    m: usize,
    c: usize,
    scale: f32,
) -> Result<(Tensor, Option<Tensor>)> {
    let dev = sw.perm.device();
    let total = n + m;
    let signed = Tensor::empty("laplace_backward", dev, &[m], DType::F32)?;
    let moment = Tensor::empty("laplace_backward", dev, &[m, 2], DType::F32)?;
    let t = sw
        .tie_mass
        .as_ref()
        .expect("backward sweeps carry the tie mass");
    let g = sw.moment.as_ref().unwrap_or(t); // unread without moments
    let with_moment = sw.moment.is_some();
    let (n32, t32, c32) = (n as u32, total as u32, c as u32);
    launch_1d!(
        dev,
        total,
        k::laplace_weighted_phased_kernel,
        |client, R| (
            arr::<R>(&sw.z),
            arr::<R>(&sw.perm),
            arr::<R>(&sw.l.0),
            arr::<R>(&sw.l.1),
            arr::<R>(&sw.q.0),
            arr::<R>(&sw.q.1),
            arr::<R>(&t.0),
            arr::<R>(&t.1),
            arr::<R>(&g.0),
            arr::<R>(&g.1),
            arr::<R>(&w.0),
            arr::<R>(&w.1),
            arr::<R>(&signed),
            arr::<R>(&moment),
            n32,
            t32,
            c32,
            arr::<R>(&sw.rate.0),
            arr::<R>(&sw.rate.1),
            scale,
            with_moment,
        )
    );
    Ok((signed, with_moment.then_some(moment)))
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
    let zero = crate::zeros(s.device(), v.shape(), DType::F32)?;
    let sw = phased_sweeps(op, s, t, v, &zero, (&a, &b), false, false)?;
    let shape = if v.rank() == 1 { vec![m] } else { vec![m, c] };
    let y = phased_gather(&sw, n, m, c, &shape)?;
    Ok((
        y,
        LaplaceSort {
            z: sw.z,
            perm: sw.perm,
            n,
            m,
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
    check_upstream(OP, &sort.z, v, m, c, &[gy_re, gy_im])?;
    let zero_v = crate::zeros(v.device(), v.shape(), DType::F32)?;
    let us = (
        scatter_values(&sort.perm, n, v)?,
        scatter_values(&sort.perm, n, &zero_v)?,
    );
    let b = sort.rate.1.as_ref().expect("a phased sort holds b");
    let rate = (&sort.rate.0, b);
    let sw = sorted_phased_sweeps(sort.z.clone(), sort.perm.clone(), us, rate, true, true)?;
    phased_grads_from(sw, v, zero_v, gy_re, gy_im, n, m, c)
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
    check_upstream(OP, s, v, m, c, &[gy_re, gy_im])?;
    // Original orientation: t̄, ā, b̄.
    let zero_v = crate::zeros(s.device(), v.shape(), DType::F32)?;
    let sw = phased_sweeps(OP, s, t, v, &zero_v, (&a, &b), true, true)?;
    phased_grads_from(sw, v, zero_v, gy_re, gy_im, n, m, c)
}

/// Every phased gradient from the original orientation's backward sweeps; the swapped
/// orientation reuses their sort.
#[allow(clippy::too_many_arguments)]
fn phased_grads_from(
    sw: PhasedSweeps,
    v: &Tensor,
    zero_v: Tensor,
    gy_re: &Tensor,
    gy_im: &Tensor,
    n: usize,
    m: usize,
    c: usize,
) -> Result<(LaplaceGrads, Tensor)> {
    let conj_g = (gy_re.clone(), crate::neg(gy_im)?);
    // t̄ = Re(−λ·S) for the signed sums S (the kernel applies −λ).
    let (targets, moment) = phased_weighted(&sw, &conj_g, n, m, c, -1.0)?;
    // The swapped orientation reuses this sort, reversed with negated coordinates
    // (see `swap_merge`): its signed sums come back negated.
    let (zs, ps) = swap_perm(&sw.z, &sw.perm, n)?;
    let rate = sw.rate.clone();
    drop(sw);
    // Σ over targets of the complex moment `[m, 2]`: ā = −Re, b̄ = +Im (on the device).
    let msum = crate::sum(&moment.expect("moments requested"), 0)?.reshape(&[2])?;
    let grad_a = crate::neg(&crate::slice(&msum, 0, 0, 1)?)?;
    let grad_b = crate::slice(&msum, 0, 1, 2)?;
    // Swapped orientation: the sweeps carry conj(G); V̄ = Re, s̄ from weights V.
    let us = (
        scatter_values(&ps, m, &conj_g.0)?,
        scatter_values(&ps, m, &conj_g.1)?,
    );
    let sw = sorted_phased_sweeps(zs, ps, us, (&rate.0, &rate.1), true, false)?;
    let (values, _) = phased_gather(&sw, m, n, c, v.shape())?;
    let (sources, _) = phased_weighted(&sw, &(v.clone(), zero_v), m, n, c, 1.0)?;
    Ok((
        LaplaceGrads {
            values,
            sources,
            targets,
            lambda: grad_a,
        },
        grad_b,
    ))
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

/// A phased head's real output `Re(e^{iφ}(Y_re + i·Y_im)) = cos φ·Y_re − sin φ·Y_im`, in one
/// launch (LAPLEX: `φ = −π/2` gives `Im Y`). `phi` is an `f32` or a one-element tensor
/// (kept on the device; checked finite there, see [`crate::checks`]).
pub fn phase_real<'a>(yr: &Tensor, yi: &Tensor, phi: impl Into<Scalar<'a>>) -> Result<Tensor> {
    const OP: &str = "phase_real";
    check_phase(OP, yr, &[yi])?;
    let phi = phi
        .into()
        .device_value(OP, "phi", yr, Accept::Finite, "must be finite")?;
    let y = Tensor::empty(OP, yr.device(), yr.shape(), DType::F32)?;
    let n = y.numel();
    launch_1d!(yr.device(), n, k::phase_real_kernel, |client, R| (
        arr::<R>(yr),
        arr::<R>(yi),
        arr::<R>(&phi),
        arr::<R>(&y),
        n as u32,
    ));
    Ok(y)
}

/// The VJP of [`phase_real`] for `ȳ = g`: `(Ȳ_re, Ȳ_im, φ̄)` with `Ȳ_re = cos φ·g`,
/// `Ȳ_im = −sin φ·g` and `φ̄ = Σ g·(−sin φ·Y_re − cos φ·Y_im)`, a `[1]` device tensor
/// (one launch and one reduction).
pub fn phase_real_backward<'a>(
    yr: &Tensor,
    yi: &Tensor,
    phi: impl Into<Scalar<'a>>,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "phase_real_backward";
    check_phase(OP, yr, &[yi, g])?;
    let phi = phi
        .into()
        .device_value(OP, "phi", yr, Accept::Finite, "must be finite")?;
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
    ));
    let gphi = crate::sum_all(&dphi)?.reshape(&[1])?;
    Ok((gre, gim, gphi))
}

/// `B` independent Laplace operators in one pass (rows): `Y[r] = K(t_r, s_r; λ_r) V[r]` for
/// `s [B, n]`, `t [B, m]`, `V [B, n, c]` and rates `λ [B]` (a device tensor, checked `> 0`
/// on the device). The merged anchors are sorted row by row ([`crate::argsort_rows`]: one
/// cube per row for short rows) and swept as `B` segments of one anchored scan, so the
/// launches do not grow with `B`. Forward only; used by [`crate::soft_sort_backward`].
pub(crate) fn laplace_apply_rows(
    op: &'static str,
    s: &Tensor,
    t: &Tensor,
    v: &Tensor,
    lambda: &Tensor,
) -> Result<Tensor> {
    let (b, n, m, c) = match (s.shape(), t.shape(), v.shape()) {
        ([b, n], [b2, m], [b3, n2, c]) if b == b2 && b == b3 && n == n2 => (*b, *n, *m, *c),
        _ => {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: s.shape().to_vec(),
                rhs: t.shape().to_vec(),
            })
        }
    };
    let seg = n + m;
    let total = b * seg;
    let merged = crate::concat(&[s, t], 1)?;
    crate::checks::check_f32(op, "anchors", &merged, Accept::Finite, "must be finite")?;
    crate::checks::check_f32(op, "lambda", lambda, Accept::Positive, "must be finite and > 0")?;
    let (z, perm) = crate::argsort_rows(&merged)?;
    let (z, perm) = (z.reshape(&[total])?, perm.reshape(&[total])?);
    let dev = s.device();
    let u = Tensor::empty(op, dev, &[total, c], DType::F32)?;
    let (n32, t32, c32, s32) = (n as u32, total as u32, c as u32, seg as u32);
    launch_1d!(dev, total * c, k::laplace_scatter_kernel, |client, R| (
        arr::<R>(&perm),
        arr::<R>(v),
        arr::<R>(&u),
        n32,
        t32,
        c32,
        s32,
    ));
    let spec = |reverse: bool| DecayScan {
        rate: lambda,
        seg_len: seg,
        reverse,
        moment: false,
        tie: false,
        factors: None,
        coords_lo: None,
    };
    let (l, _) = decay_scan(&z, &u, &spec(false))?;
    let (q, _) = decay_scan(&z, &u, &spec(true))?;
    let y = Tensor::empty(op, dev, &[b, m, c], DType::F32)?;
    launch_1d!(dev, total * c, k::laplace_gather_kernel, |client, R| (
        arr::<R>(&z),
        arr::<R>(&z),
        arr::<R>(&perm),
        arr::<R>(&l),
        arr::<R>(&q),
        arr::<R>(&y),
        n32,
        t32,
        c32,
        arr::<R>(lambda),
        s32,
        false,
    ));
    Ok(y)
}
