//! LapSum soft top-k, its truncated (sparse) variant and soft rank ("LapSum — One Method
//! to Differentiate Them All: Ranking, Sorting and Top-k Selection", Struski, Bednarczyk,
//! Podolak, Tabor, ICML 2025; `specs/softtopk-engine.md`).
//!
//! For a row `x ∈ Rⁿ`, `k ∈ (0, n)` and `α > 0`: `p_i = F((x_i − b)/α)` with the Laplace CDF
//! `F` and the unique `b` such that `Σ_i p_i = k`. After one row sort, two exponential-decay
//! scans (every factor ≤ 1: scaled sums, never a raw `e^{x/α}`) give `S(o_j)` at every
//! sorted point, a row reduction finds the bracketing interval and `b` has a closed form
//! (`lapis_kernels::softtopk`), polished by two safeguarded Newton steps on the row sums
//! (the f32 scans lose digits when very many points lie within a few α). Backward (implicit differentiation of `S(b) = k`), with
//! `f_i = F'((x_i − b)/α)`, `ḡ = Σ f_i g_i / Σ f_i`:
//! `∂x_i = (f_i/α)(g_i − ḡ)`, `∂k = ḡ`,
//! `∂α = (1/α)[(Σ g f)(Σ f z)/Σ f − Σ g f z]` (`z = (x − b)/α`); the row sums use `f`
//! rescaled by `e^{min|z|}` so they never underflow to 0/0.
//!
//! Soft rank: `rank_i = ½ + Σ_j F((x_i − x_j)/α)`, on sorted order `j + 1 + ½(Q_j − P_j)`.
//! Soft sort: output i is the `b` with `Σ_j F((b − x_j)/α) = i + ½` (LapSum's definition),
//! the threshold for `k = n − i − ½`.
//!
//! **Policies.** Rows are `[B, n]` (or `[n]`, one row); `k` and `α` are
//! `impl Into<`[`Scalar`]`>` (the type of every scalar argument of the ops, formerly
//! [`RowParam`] here): an `f32`, a one-element f32 tensor (shared by every row), or a
//! per-row f32 `[B]` tensor. Any other tensor is a typed error naming the op and the
//! argument. Non-finite entries of `x` (NaN has no place in an order), `k ∉ (0, n)` and
//! `α ≤ 0` or non-finite are typed errors too: an `f32` is checked at once; device data
//! (`x`, tensor `k` and `α`) by deferred device checks ([`crate::checks`]: the error
//! surfaces at the next read of device data), so no op here reads back to the host — except
//! [`soft_topk_truncated`] with a tensor `k`, whose output width `⌈c·max k⌉` is an
//! allocation size and costs one read. Results are finite
//! for finite input of any magnitude (tested with |x| up to 1e30) and α from 1e-6 to 1e6
//! relative to the spread. Rows are sorted by [`argsort_rows`](crate::argsort_rows).
//!
//! **Backward.** [`SoftTopK::backward`] reuses a forward's threshold (no second sort);
//! [`soft_topk_backward`] takes the forward's arguments and recomputes it, like
//! [`soft_rank_backward`] and [`soft_sort_backward`].

use lapis_kernels::softtopk as k;

use crate::checks::Accept;
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::scalar::Scalar;
use crate::tensor::{arr, Tensor};

/// The former name of [`Scalar`] in this module (`k` or `α`: one value for every row, or a
/// `[B]` tensor with one per row). The variants are now [`Scalar::Value`] (was
/// `RowParam::Scalar`) and [`Scalar::Tensor`] (was `RowParam::PerRow`); `.into()` from an
/// `f32` or a `&Tensor` works as before.
pub type RowParam<'a> = Scalar<'a>;

/// Gradients of a soft top-k (or truncated) output.
#[derive(Debug, Clone)]
pub struct SoftTopKGrads {
    /// `∂ℓ/∂x`, shape of `x`.
    pub x: Tensor,
    /// `∂ℓ/∂k` per row, `[B]` (sum it for a shared scalar `k`).
    pub k: Tensor,
    /// `∂ℓ/∂α` per row, `[B]` (sum it for a shared scalar `α`).
    pub alpha: Tensor,
}

/// A soft top-k result, with what its backward needs.
#[derive(Debug, Clone)]
pub struct SoftTopK {
    /// `p`, shape of `x`; each row sums to its `k`.
    pub p: Tensor,
    /// The threshold `b` per row, `[B]`.
    pub threshold: Tensor,
    x: Tensor,
    alpha: Tensor,
    shape: Vec<usize>,
}

/// Rows sorted and scanned.
#[derive(Clone, Debug)]
struct Scanned {
    o: Tensor,
    perm: Tensor,
    /// `1/α` per row, `[B]`: the rates of the anchored scans.
    rate: Tensor,
    n: usize,
    dq: Tensor,
    p: Tensor,
    q: Tensor,
    /// The first moments `(ML, MR)` (see [`scan_rows`]), when asked for.
    moments: Option<(Tensor, Tensor)>,
}

impl Scanned {
    /// The anchored scan of `u [B·n]` along the sorted rows (`decay_scan`, rate `1/α`).
    fn scan(&self, u: &Tensor, reverse: bool) -> Result<Tensor> {
        let spec = crate::decay_scan::DecayScan {
            rate: &self.rate,
            seg_len: self.n,
            reverse,
            moment: false,
            tie: false,
            factors: None,
            coords_lo: None,
        };
        Ok(crate::decay_scan(&self.o, u, &spec)?.0)
    }
}

/// `x` as `[B, n]`.
fn rows(op: &'static str, x: &Tensor) -> Result<(Tensor, usize, usize)> {
    if x.dtype() != DType::F32 {
        return Err(LapisError::DType {
            op,
            got: x.dtype(),
            msg: "soft top-k takes f32 rows".into(),
        });
    }
    let (b, n) = match x.shape() {
        [n] => (1, *n),
        [b, n] => (*b, *n),
        _ => return Err(LapisError::shape(op, x.shape(), "x must be [n] or [B, n]")),
    };
    let msg = "entries must be finite (NaN/inf have no place in an order)";
    crate::checks::check_f32(op, "x", x, Accept::Finite, msg)?;
    Ok((x.reshape(&[b, n])?, b, n))
}

/// A [`Scalar`] as a `[B]` device tensor (see `Scalar::device_rows`).
fn per_row(
    op: &'static str,
    name: &'static str,
    v: Scalar<'_>,
    x: &Tensor,
    b: usize,
    accept: Accept,
    msg: &str,
) -> Result<(Tensor, Option<f32>)> {
    v.device_rows(op, name, x, b, accept, msg)
}

/// `α` per row: finite and `> 0`.
fn alpha_rows(op: &'static str, alpha: Scalar<'_>, x: &Tensor, b: usize) -> Result<Tensor> {
    Ok(per_row(
        op,
        "alpha",
        alpha,
        x,
        b,
        Accept::Positive,
        "must be finite and > 0",
    )?
    .0)
}

/// Sorts the rows of `x2 [B, n]` and runs the two scans.
fn scan_rows(x2: &Tensor, alpha: &Tensor, n: usize, moment: bool) -> Result<Scanned> {
    let dev = x2.device();
    let total = x2.numel();
    let (o, perm) = crate::argsort_rows(x2)?;
    let dq = Tensor::empty("soft_topk", dev, &[total], DType::F32)?;
    launch_1d!(dev, total, k::stk_prepare_kernel, |client, R| (
        arr::<R>(&o),
        arr::<R>(alpha),
        arr::<R>(&dq),
        n as u32,
        total as u32,
    ));
    let b = alpha.numel();
    let rate = crate::div(&crate::ones(dev, &[b], DType::F32)?, alpha)?;
    let o = o.reshape(&[total])?;
    let ones = crate::ones(dev, &[total], DType::F32)?;
    let spec = |reverse: bool| crate::decay_scan::DecayScan {
        rate: &rate,
        seg_len: n,
        reverse,
        moment,
        tie: false,
        factors: None,
        coords_lo: None,
    };
    let (p, ml) = crate::decay_scan(&o, &ones, &spec(false))?;
    let (q, mr) = crate::decay_scan(&o, &ones, &spec(true))?;
    // ML_j = Σ_{i≤j} e^{−(o_j−o_i)/α}(o_j − o_i)/α: the scans' moments times the rate 1/α.
    let per_row = |g: Tensor| -> Result<Tensor> {
        crate::mul(&g.reshape(&[b, n])?, &rate.reshape(&[b, 1])?)?.reshape(&[total])
    };
    let moments = match ml.zip(mr) {
        Some((ml, mr)) => Some((per_row(ml)?, per_row(mr)?)),
        None => None,
    };
    Ok(Scanned {
        o,
        perm,
        rate,
        n,
        dq,
        p,
        q,
        moments,
    })
}

/// The soft top-k threshold straight from the scans' closed form, before the Newton polish
/// (for tests of the scans' accuracy: `Σ_i F((x_i − b)/α)` should equal `k` to the scans'
/// accuracy without any repair). Returns `b [B]`.
#[doc(hidden)]
pub fn soft_topk_closed_form_threshold<'a>(
    x: &Tensor,
    k: impl Into<Scalar<'a>>,
    alpha: impl Into<Scalar<'a>>,
) -> Result<Tensor> {
    Ok(closed_form(x, k.into(), alpha.into())?.thr)
}

/// What [`closed_form`] gives: `x [B, n]`, `k [B]`, `α [B]`, the threshold `b [B]`, the
/// sizes, and the rows' stable ascending sort `(o, perm)` (sorted values, column indices).
struct Closed {
    x2: Tensor,
    kt: Tensor,
    at: Tensor,
    thr: Tensor,
    b: usize,
    n: usize,
    o: Tensor,
    perm: Tensor,
}

/// Checks, sorts, scans and solves for the threshold in closed form.
fn closed_form(x: &Tensor, k: Scalar<'_>, alpha: Scalar<'_>) -> Result<Closed> {
    const OP: &str = "soft_topk";
    let (x2, b, n) = rows(OP, x)?;
    let k_ok = Accept::Between(0.0, n as f32);
    let k_msg = format!("every k must lie in (0, n) = (0, {n})");
    let (kt, _) = per_row(OP, "k", k, x, b, k_ok, &k_msg)?;
    let at = alpha_rows(OP, alpha, x, b)?;
    let dev = x.device();
    let total = b * n;
    let s = scan_rows(&x2, &at, n, false)?;
    let ind = Tensor::empty(OP, dev, &[total], DType::F32)?;
    launch_1d!(dev, total, k::stk_count_kernel, |client, R| (
        arr::<R>(&s.p),
        arr::<R>(&s.q),
        arr::<R>(&s.dq),
        arr::<R>(&kt),
        arr::<R>(&ind),
        n as u32,
        total as u32,
    ));
    let cnt = crate::sum(&ind.reshape(&[b, n])?, 1)?;
    let thr = Tensor::empty(OP, dev, &[b], DType::F32)?;
    launch_1d!(dev, b, k::stk_threshold_kernel, |client, R| (
        arr::<R>(&s.o),
        arr::<R>(&s.p),
        arr::<R>(&s.q),
        arr::<R>(&s.dq),
        arr::<R>(&kt),
        arr::<R>(&at),
        arr::<R>(&cnt),
        arr::<R>(&thr),
        n as u32,
        b as u32,
    ));
    Ok(Closed {
        x2,
        kt,
        at,
        thr,
        b,
        n,
        o: s.o,
        perm: s.perm,
    })
}

/// Soft top-k of each row of `x` (`[n]` or `[B, n]`): `p` with `Σ_i p_i = k` per row.
/// `k` and `alpha` are each an `f32`, a one-element f32 tensor or a per-row `[B]` tensor
/// (see [`Scalar`]). See the module docs for the math and the policies; gradients by
/// [`SoftTopK::backward`] (reusing this forward) or [`soft_topk_backward`].
pub fn soft_topk<'a>(
    x: &Tensor,
    k: impl Into<Scalar<'a>>,
    alpha: impl Into<Scalar<'a>>,
) -> Result<SoftTopK> {
    Ok(soft_topk_impl(x, k.into(), alpha.into())?.0)
}

/// [`soft_topk`] with the rows' stable ascending sort `(o, perm)` (for the truncated
/// variant, which needs the descending order: no second sort).
fn soft_topk_impl(
    x: &Tensor,
    k: Scalar<'_>,
    alpha: Scalar<'_>,
) -> Result<(SoftTopK, Tensor, Tensor)> {
    let c = closed_form(x, k, alpha)?;
    let p = refine_threshold(&c.x2, &c.kt, &c.at, &c.thr, c.b, c.n)?;
    let out = SoftTopK {
        p: p.reshape(x.shape())?,
        threshold: c.thr,
        x: c.x2,
        alpha: c.at,
        shape: x.shape().to_vec(),
    };
    Ok((out, c.o, c.perm))
}

/// `p` and `f` at the threshold, and their row sums.
fn eval_at(x2: &Tensor, at: &Tensor, thr: &Tensor, b: usize, n: usize) -> Result<[Tensor; 3]> {
    let dev = x2.device();
    let total = b * n;
    let p = Tensor::empty("soft_topk", dev, &[b, n], DType::F32)?;
    let f = Tensor::empty("soft_topk", dev, &[b, n], DType::F32)?;
    launch_1d!(dev, total, k::stk_prob_density_kernel, |client, R| (
        arr::<R>(x2),
        arr::<R>(thr),
        arr::<R>(at),
        arr::<R>(&p),
        arr::<R>(&f),
        n as u32,
        total as u32,
    ));
    let psum = crate::sum(&p, 1)?.reshape(&[b])?;
    let fsum = crate::sum(&f, 1)?.reshape(&[b])?;
    Ok([p, psum, fsum])
}

/// Polishes the closed-form threshold (updated in place) with safeguarded Newton steps on
/// the row sums and returns `p` at the final threshold. The closed form reads `S(o_j)` from
/// f32 scans whose relative error grows with the number of points within a few α of each
/// other (≈ 1e-3 at n = 2^20, α = 0.3 on normal rows); the reductions are tree sums, so two
/// steps bring `Σp − k` to reduction accuracy. A step is kept only where it lowers
/// `|Σp − k|`, so flat rows (a threshold deep in a gap) are never pushed away.
fn refine_threshold(
    x2: &Tensor,
    kt: &Tensor,
    at: &Tensor,
    thr: &Tensor,
    b: usize,
    n: usize,
) -> Result<Tensor> {
    let dev = x2.device();
    let [mut p, mut psum, mut fsum] = eval_at(x2, at, thr, b, n)?;
    for _ in 0..2 {
        let cand = Tensor::empty("soft_topk", dev, &[b], DType::F32)?;
        let res = Tensor::empty("soft_topk", dev, &[b], DType::F32)?;
        launch_1d!(dev, b, k::stk_newton_kernel, |client, R| (
            arr::<R>(thr),
            arr::<R>(&psum),
            arr::<R>(&fsum),
            arr::<R>(kt),
            arr::<R>(at),
            arr::<R>(&cand),
            arr::<R>(&res),
            b as u32,
        ));
        let [_, psum1, _] = eval_at(x2, at, &cand, b, n)?;
        launch_1d!(dev, b, k::stk_pick_kernel, |client, R| (
            arr::<R>(thr),
            arr::<R>(&res),
            arr::<R>(&cand),
            arr::<R>(&psum1),
            arr::<R>(kt),
            b as u32,
        ));
        [p, psum, fsum] = eval_at(x2, at, thr, b, n)?;
    }
    Ok(p)
}

/// Gradients of `ℓ` given `g = ∂ℓ/∂p` (shape of `x`) for [`soft_topk`]`(x, k, alpha)`:
/// `∂x` (shape of `x`), `∂k` and `∂α` per row (`[B]`; sum them for a shared scalar).
///
/// Recomputes the forward (a row sort, the scans and the threshold), in the style of
/// [`soft_rank_backward`] and [`soft_sort_backward`]; when the forward is at hand, call
/// [`SoftTopK::backward`] on it instead (same result, O(B·n), no sort).
pub fn soft_topk_backward<'a>(
    x: &Tensor,
    k: impl Into<Scalar<'a>>,
    alpha: impl Into<Scalar<'a>>,
    g: &Tensor,
) -> Result<SoftTopKGrads> {
    const OP: &str = "soft_topk_backward";
    if g.shape() != x.shape() || g.dtype() != DType::F32 {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: g.shape().to_vec(),
        });
    }
    crate::validate::same_device(OP, x, g)?;
    soft_topk(x, k, alpha)?.backward(g)
}

impl SoftTopK {
    /// Gradients of `ℓ` given `g = ∂ℓ/∂p` (shape of `p`), O(B·n), no sort (see also
    /// [`soft_topk_backward`], which recomputes the forward).
    pub fn backward(&self, g: &Tensor) -> Result<SoftTopKGrads> {
        const OP: &str = "soft_topk_backward";
        if g.shape() != self.shape.as_slice() || g.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: self.shape.clone(),
                rhs: g.shape().to_vec(),
            });
        }
        crate::validate::same_device(OP, &self.x, g)?;
        let (b, _) = (self.x.shape()[0], self.x.shape()[1]);
        let g = g.reshape(self.x.shape())?;
        let alpha = self.alpha.reshape(&[b, 1])?;
        let z = crate::div(
            &crate::sub(&self.x, &self.threshold.reshape(&[b, 1])?)?,
            &alpha,
        )?;
        let az = crate::abs(&z)?;
        let zmin = crate::min(&az, 1)?;
        // f̃ = e^{min|z| − |z|} ∈ (0, 1], one entry per row equal to 1.
        let ft = crate::exp(&crate::sub(&zmin, &az)?)?;
        let fsum = crate::sum(&ft, 1)?;
        let gft = crate::mul(&g, &ft)?;
        let gf = crate::sum(&gft, 1)?;
        let gbar = crate::div(&gf, &fsum)?;
        let f = crate::affine(&crate::exp(&crate::neg(&az)?)?, 0.5, 0.0)?;
        let dx = crate::mul(&crate::div(&f, &alpha)?, &crate::sub(&g, &gbar)?)?;
        let fz = crate::sum(&crate::mul(&ft, &z)?, 1)?;
        let gfz = crate::sum(&crate::mul(&gft, &z)?, 1)?;
        let scale = crate::div(
            &crate::affine(&crate::exp(&crate::neg(&zmin)?)?, 0.5, 0.0)?,
            &alpha,
        )?;
        let da = crate::mul(
            &scale,
            &crate::sub(&crate::div(&crate::mul(&gf, &fz)?, &fsum)?, &gfz)?,
        )?;
        Ok(SoftTopKGrads {
            x: dx.reshape(&self.shape)?,
            k: gbar.reshape(&[b])?,
            alpha: da.reshape(&[b])?,
        })
    }
}

/// A truncated soft top-k: `cap` slots per row.
#[derive(Debug, Clone)]
pub struct SoftTopKTruncated {
    /// Column indices `[B, cap]` (u32), by descending `p` (ties: lower index first).
    pub indices: Tensor,
    /// Kept values `[B, cap]`: `p` where kept, 0 in the slots past the kept entries.
    pub values: Tensor,
    /// 1 where a slot is kept, else 0, `[B, cap]`.
    pub mask: Tensor,
    /// The dense soft top-k it was cut from.
    pub dense: SoftTopK,
}

/// SoftMoE's truncated soft top-k (`specs/sparse-methods.md` §1.1): per row
/// `m = min(⌈c_cap·k⌉, n)`, `τ = clamp(c_τ·k/n, p_(m), p_(1))` (`p_(j)` the j-th largest),
/// keep `p_i ≥ τ` among the `m` largest — so 1 ≤ kept ≤ m, not renormalised
/// (`Σ kept ≤ k`). Output capacity `cap = min(⌈c_cap·max k⌉, n)`; slot `i` holds the i-th
/// largest entry's index and its value if kept, else 0. Defaults in SoftMoE:
/// `c_cap = 2`, `c_τ = 1.8`. Gradients ([`SoftTopKTruncated::backward`]) flow through kept
/// entries only (the mask is constant).
///
/// **Host read:** `cap` sizes the output, so a tensor `k` is read once (its maximum); pass
/// an `f32` `k` (or a tensor whose maximum is known, as an `f32`) to keep a step free of
/// reads.
pub fn soft_topk_truncated<'a>(
    x: &Tensor,
    k: impl Into<Scalar<'a>>,
    alpha: impl Into<Scalar<'a>>,
    c_cap: f32,
    c_tau: f32,
) -> Result<SoftTopKTruncated> {
    truncated(x, k.into(), alpha.into(), c_cap, c_tau, None)
}

/// [`soft_topk_truncated`] with a known bound `k_max ≥ k` of every row's `k` (e.g. SoftMoE's
/// learned allocation, `k_ℓ ≤ K − L + 1` by construction): the capacity is
/// `cap = min(⌈c_cap·k_max⌉, n)` and nothing is read back, whatever `k` is. A row whose
/// `k` exceeds `k_max` keeps at most `cap` entries.
pub fn soft_topk_truncated_bounded<'a>(
    x: &Tensor,
    k: impl Into<Scalar<'a>>,
    alpha: impl Into<Scalar<'a>>,
    c_cap: f32,
    c_tau: f32,
    k_max: f32,
) -> Result<SoftTopKTruncated> {
    if !(k_max.is_finite() && k_max > 0.0) {
        return Err(LapisError::invalid(
            "soft_topk_truncated_bounded",
            "k_max",
            k_max,
            "must be finite and > 0",
        ));
    }
    truncated(x, k.into(), alpha.into(), c_cap, c_tau, Some(k_max))
}

fn truncated(
    x: &Tensor,
    k: Scalar<'_>,
    alpha: Scalar<'_>,
    c_cap: f32,
    c_tau: f32,
    k_max: Option<f32>,
) -> Result<SoftTopKTruncated> {
    const OP: &str = "soft_topk_truncated";
    if !(c_cap.is_finite() && c_cap > 0.0) {
        return Err(LapisError::invalid(
            OP,
            "c_cap",
            c_cap,
            "must be finite and > 0",
        ));
    }
    if !(c_tau.is_finite() && c_tau >= 0.0) {
        return Err(LapisError::invalid(
            OP,
            "c_tau",
            c_tau,
            "must be finite and ≥ 0",
        ));
    }
    let (dense, o, perm_asc) = soft_topk_impl(x, k, alpha)?;
    let (b, n) = (dense.x.shape()[0], dense.x.shape()[1]);
    let dev = x.device();
    let k_ok = Accept::Between(0.0, n as f32);
    let (kt, k_host) = per_row(OP, "k", k, x, b, k_ok, "every k must lie in (0, n)")?;
    // The cap is an allocation size: a tensor k is read here (its row maximum, one host
    // read); an f32 k costs none.
    let khi = match (k_max, k_host) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => crate::max_all(&kt)?.to_scalar()?,
    };
    let cap = ((c_cap * khi).ceil() as usize).clamp(1, n);
    // Descending order of p = descending x, ties in index order: read from the forward's
    // ascending sort by the kernel (no second sort).
    let total = b * cap;
    let indices = Tensor::empty(OP, dev, &[b, cap], DType::U32)?;
    let values = Tensor::empty(OP, dev, &[b, cap], DType::F32)?;
    let mask = Tensor::empty(OP, dev, &[b, cap], DType::F32)?;
    let p2 = dense.p.reshape(&[b, n])?;
    launch_1d!(dev, total, k::stk_truncate_kernel, |client, R| (
        arr::<R>(&p2),
        arr::<R>(&o),
        arr::<R>(&perm_asc),
        arr::<R>(&kt),
        arr::<R>(&indices),
        arr::<R>(&values),
        arr::<R>(&mask),
        n as u32,
        cap as u32,
        total as u32,
        c_cap,
        c_tau,
    ));
    Ok(SoftTopKTruncated {
        indices,
        values,
        mask,
        dense,
    })
}

impl SoftTopKTruncated {
    /// The kept values scattered back to `[B, n]` (zeros elsewhere): for testing and dense
    /// paths.
    pub fn to_dense(&self) -> Result<Tensor> {
        self.scatter(&self.values)
    }

    fn scatter(&self, v: &Tensor) -> Result<Tensor> {
        let (b, cap) = (self.indices.shape()[0], self.indices.shape()[1]);
        let n = self.dense.x.shape()[1];
        let dev = self.indices.device();
        let out = crate::zeros(dev, &[b, n], DType::F32)?;
        let total = b * cap;
        launch_1d!(dev, total, k::stk_untruncate_kernel, |client, R| (
            arr::<R>(v),
            arr::<R>(&self.indices),
            arr::<R>(&self.mask),
            arr::<R>(&out),
            n as u32,
            cap as u32,
            total as u32,
        ));
        out.reshape(&self.dense.shape)
    }

    /// Gradients given `g = ∂ℓ/∂values` (`[B, cap]`): kept slots pass `g` into the soft
    /// top-k VJP, dropped ones contribute 0.
    pub fn backward(&self, g: &Tensor) -> Result<SoftTopKGrads> {
        if g.shape() != self.values.shape() || g.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op: "soft_topk_truncated_backward",
                lhs: self.values.shape().to_vec(),
                rhs: g.shape().to_vec(),
            });
        }
        self.dense.backward(&self.scatter(g)?)
    }
}

/// Soft rank of each row (ascending; `→` the 1-based hard rank as `α → 0`):
/// `rank_i = ½ + Σ_j F((x_i − x_j)/α)`; each row sums to `n(n+1)/2`.
pub fn soft_rank<'a>(x: &Tensor, alpha: impl Into<Scalar<'a>>) -> Result<Tensor> {
    const OP: &str = "soft_rank";
    let (x2, b, n) = rows(OP, x)?;
    let at = alpha_rows(OP, alpha.into(), x, b)?;
    let s = scan_rows(&x2, &at, n, false)?;
    rank_from(OP, &s, b, n)?.reshape(x.shape())
}

/// The ranks from the row scans, in the rows' original order.
fn rank_from(op: &'static str, s: &Scanned, b: usize, n: usize) -> Result<Tensor> {
    let total = b * n;
    let dev = s.o.device();
    let sorted = Tensor::empty(op, dev, &[total], DType::F32)?;
    launch_1d!(dev, total, k::stk_rank_kernel, |client, R| (
        arr::<R>(&s.p),
        arr::<R>(&s.q),
        arr::<R>(&sorted),
        n as u32,
        total as u32,
    ));
    unsort(&sorted, &s.perm, n)
}

/// A soft rank with what its backward needs (the rows' sort and scans, with moments), so
/// that [`SoftRank::backward`] neither sorts nor scans the rows again (what the tape uses).
#[derive(Clone, Debug)]
pub struct SoftRank {
    /// The soft ranks, shape of `x`.
    pub rank: Tensor,
    s: Scanned,
    alpha: Tensor,
    shape: Vec<usize>,
    b: usize,
}

/// [`soft_rank`] that keeps its sort and scans for [`SoftRank::backward`].
pub fn soft_rank_sorted<'a>(x: &Tensor, alpha: impl Into<Scalar<'a>>) -> Result<SoftRank> {
    const OP: &str = "soft_rank";
    let (x2, b, n) = rows(OP, x)?;
    let at = alpha_rows(OP, alpha.into(), x, b)?;
    let s = scan_rows(&x2, &at, n, true)?;
    Ok(SoftRank {
        rank: rank_from(OP, &s, b, n)?.reshape(x.shape())?,
        s,
        alpha: at,
        shape: x.shape().to_vec(),
        b,
    })
}

fn unsort(v: &Tensor, perm: &Tensor, n: usize) -> Result<Tensor> {
    let total = v.numel();
    let out = Tensor::empty("soft_rank", v.device(), &[total], DType::F32)?;
    launch_1d!(v.device(), total, k::row_scatter_kernel, |client, R| (
        arr::<R>(v),
        arr::<R>(perm),
        arr::<R>(&out),
        n as u32,
        total as u32,
    ));
    Ok(out)
}

/// Gradients of `ℓ` given `g = ∂ℓ/∂rank` for [`soft_rank`]: `(∂x, ∂α [B])`, O(B·n) after
/// the sort. With `f_ij = F'((x_i − x_j)/α)`:
/// `∂x_m = (1/α)(g_m Σ_j f_mj − Σ_i g_i f_im)` and
/// `∂α = −(1/α) Σ_i g_i Σ_j f_ij (x_i − x_j)/α`; the sums are the Laplace recursion with
/// values 1 and g, and its first moment.
pub fn soft_rank_backward<'a>(
    x: &Tensor,
    alpha: impl Into<Scalar<'a>>,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "soft_rank_backward";
    if g.shape() != x.shape() || g.dtype() != DType::F32 {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: g.shape().to_vec(),
        });
    }
    crate::validate::same_device(OP, x, g)?;
    soft_rank_sorted(x, alpha)?.backward(g)
}

impl SoftRank {
    /// The VJP of the soft rank for `g = ∂ℓ/∂rank` (shape of `x`): `(∂x, ∂α [B])`, from the
    /// forward's sort and scans (see [`soft_rank_backward`] for the math).
    pub fn backward(&self, g: &Tensor) -> Result<(Tensor, Tensor)> {
        const OP: &str = "soft_rank_backward";
        if g.shape() != self.shape.as_slice() || g.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: self.shape.clone(),
                rhs: g.shape().to_vec(),
            });
        }
        crate::validate::same_device(OP, &self.rank, g)?;
        let (s, b, n) = (&self.s, self.b, self.s.n);
        let at = &self.alpha;
        let dev = g.device();
        let total = b * n;
        let gs = Tensor::empty(OP, dev, &[total], DType::F32)?;
        launch_1d!(dev, total, k::row_gather_kernel, |client, R| (
            arr::<R>(g),
            arr::<R>(&s.perm),
            arr::<R>(&gs),
            n as u32,
            total as u32,
        ));
        // Σ_j f_mj = ½(P + Q − 1); Σ_i g_i f_im = ½(PG + QG − g).
        let pg = s.scan(&gs, false)?;
        let qg = s.scan(&gs, true)?;
        let fsum = crate::affine(&crate::add(&s.p, &s.q)?, 0.5, -0.5)?;
        let gfsum = crate::affine(&crate::sub(&crate::add(&pg, &qg)?, &gs)?, 0.5, 0.0)?;
        let arow = at.reshape(&[b, 1])?;
        let dxs = crate::div(
            &crate::sub(&crate::mul(&gs, &fsum)?, &gfsum)?.reshape(&[b, n])?,
            &arow,
        )?;
        // Σ_j f_ij (x_i − x_j)/α = ½(ML_i − MR_i).
        let (ml, mr) = s.moments.clone().expect("moments requested");
        let mom = crate::affine(&crate::sub(&ml, &mr)?, 0.5, 0.0)?;
        let da = crate::neg(&crate::div(
            &crate::sum(&crate::mul(&gs, &mom)?.reshape(&[b, n])?, 1)?,
            &arow,
        )?)?;
        let dx = unsort(&dxs.reshape(&[total])?, &s.perm, n)?;
        Ok((dx.reshape(&self.shape)?, da.reshape(&[b])?))
    }
}

/// Soft sort output with what its backward needs.
#[derive(Clone, Debug)]
struct SoftSorted {
    values: Tensor,
    fsum: Tensor,
    ratio: Tensor,
    x2: Tensor,
    alpha: Tensor,
    b: usize,
    n: usize,
}

fn soft_sort_impl(op: &'static str, x: &Tensor, alpha: Scalar<'_>) -> Result<SoftSorted> {
    let (x2, b, n) = rows(op, x)?;
    let at = alpha_rows(op, alpha, x, b)?;
    let dev = x.device();
    let total = b * n;
    let s = scan_rows(&x2, &at, n, true)?;
    let (ml, mr) = s.moments.clone().expect("moments requested");
    let values = Tensor::empty(op, dev, &[b, n], DType::F32)?;
    let fsum = Tensor::empty(op, dev, &[b, n], DType::F32)?;
    let ratio = Tensor::empty(op, dev, &[b, n], DType::F32)?;
    launch_1d!(dev, total, k::stk_soft_sort_kernel, |client, R| (
        arr::<R>(&s.o),
        arr::<R>(&s.p),
        arr::<R>(&s.q),
        arr::<R>(&s.dq),
        arr::<R>(&ml),
        arr::<R>(&mr),
        arr::<R>(&at),
        arr::<R>(&values),
        arr::<R>(&fsum),
        arr::<R>(&ratio),
        n as u32,
        total as u32,
    ));
    Ok(SoftSorted {
        values,
        fsum,
        ratio,
        x2,
        alpha: at,
        b,
        n,
    })
}

/// LapSum's soft sort of each row (ascending): output `i` is the `b_i` with
/// `Σ_j F((b_i − x_j)/α) = i + ½` — the soft top-k threshold for `k = n − i − ½`, so it
/// tends to the i-th smallest value as `α → 0`. O(n log n) per row (one sort, four scans, a
/// binary search per output).
pub fn soft_sort<'a>(x: &Tensor, alpha: impl Into<Scalar<'a>>) -> Result<Tensor> {
    let s = soft_sort_impl("soft_sort", x, alpha.into())?;
    s.values.reshape(x.shape())
}

/// Gradients of `ℓ` given `g = ∂ℓ/∂soft_sort(x)`: `(∂x, ∂α [B])`, by implicit
/// differentiation of `Σ_j F((b_i − x_j)/α) = i + ½`: with `f_ij = F'((b_i − x_j)/α)` and
/// `F_i = Σ_j f_ij`, `∂x_j = Σ_i g_i f_ij / F_i` (a Laplace-kernel matvec per row, sources
/// `b`, targets `x`, rate `1/α`) and `∂α = Σ_i g_i Σ_j f_ij (b_i − x_j)/α / F_i`.
/// The matvecs of all rows run as one batched pass (rows as segments of one sweep).
pub fn soft_sort_backward<'a>(
    x: &Tensor,
    alpha: impl Into<Scalar<'a>>,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "soft_sort_backward";
    if g.shape() != x.shape() || g.dtype() != DType::F32 {
        return Err(LapisError::ShapeMismatch {
            op: OP,
            lhs: x.shape().to_vec(),
            rhs: g.shape().to_vec(),
        });
    }
    crate::validate::same_device(OP, x, g)?;
    soft_sort_sorted(x, alpha)?.backward(g)
}

/// A soft sort with what its backward needs (the thresholds, `F_i`, the moment ratios),
/// so that [`SoftSort::backward`] does not sort or scan the rows again (what the tape uses).
#[derive(Clone, Debug)]
pub struct SoftSort {
    /// The soft-sorted rows, shape of `x`.
    pub values: Tensor,
    s: SoftSorted,
    shape: Vec<usize>,
}

/// [`soft_sort`] that keeps what [`SoftSort::backward`] needs.
pub fn soft_sort_sorted<'a>(x: &Tensor, alpha: impl Into<Scalar<'a>>) -> Result<SoftSort> {
    let s = soft_sort_impl("soft_sort", x, alpha.into())?;
    Ok(SoftSort {
        values: s.values.reshape(x.shape())?,
        s,
        shape: x.shape().to_vec(),
    })
}

impl SoftSort {
    /// The VJP of the soft sort for `g` (shape of `x`): `(∂x, ∂α [B])` (see
    /// [`soft_sort_backward`] for the math); one batched Laplace pass over the rows.
    pub fn backward(&self, g: &Tensor) -> Result<(Tensor, Tensor)> {
        const OP: &str = "soft_sort_backward";
        if g.shape() != self.shape.as_slice() || g.dtype() != DType::F32 {
            return Err(LapisError::ShapeMismatch {
                op: OP,
                lhs: self.shape.clone(),
                rhs: g.shape().to_vec(),
            });
        }
        crate::validate::same_device(OP, &self.values, g)?;
        let s = &self.s;
        let (b, n) = (s.b, s.n);
        let g2 = g.reshape(&[b, n])?;
        let da = crate::sum(&crate::mul(&g2, &s.ratio)?, 1)?.reshape(&[b])?;
        let w = crate::div(&g2, &crate::affine(&s.fsum, 2.0, 0.0)?)?;
        // One batched Laplace pass over the rows (rate 1/α per row), no loop on the host.
        let rate = crate::div(&crate::ones(g.device(), &[b], DType::F32)?, &s.alpha)?;
        let w = w.reshape(&[b, n, 1])?;
        let dx = crate::laplace::laplace_apply_heads(&s.values, &s.x2, &w, &rate)?;
        Ok((dx.reshape(&self.shape)?, da))
    }
}
