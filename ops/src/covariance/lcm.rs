//! REMIX's Laplace covariance model (LCM, `specs/laplace-methods.md` §0):
//!
//! ```text
//! Σ(u, w, a; λ) = diag(u) + diag(w) K(a; λ) diag(w),   K_ij = e^{−λ|a_i − a_j|},
//! ```
//!
//! with every op O(d·c) after one sort of the anchors `a`, and every gradient (for `r`, `u`,
//! `w`, `a`, `λ`).
//!
//! **Algorithm: a Kalman filter.** On sorted anchors `K` is the covariance of the AR(1)
//! chain `ζ_k = ρ_{k−1} ζ_{k−1} + s_k ε_k` (`ρ_k = e^{−λ(a_{k+1} − a_k)}`,
//! `s_k² = 1 − ρ_{k−1}²`, engine spec §4), and `r_k = w_k ζ_k + √u_k η_k` has covariance
//! `Σ`. The filter gives, with `P⁻_0 = 1`, `m_{−1} = 0`:
//!
//! ```text
//! P⁻_k = s_k² + ρ_{k−1}² P_{k−1},  S_k = w_k² P⁻_k + u_k,  G_k = P⁻_k w_k / S_k,  P_k = P⁻_k u_k / S_k
//! m⁻_k = ρ_{k−1} m_{k−1},  v_k = r_k − w_k m⁻_k,  m_k = m⁻_k + G_k v_k = (ρ_{k−1} u_k/S_k) m_{k−1} + G_k r_k
//! log det Σ = Σ_k ln S_k,   rᵀ Σ⁻¹ r = Σ_k v_k² / S_k .
//! ```
//!
//! This is the same factorisation as the Woodbury form of the spec
//! (`M = K⁻¹ + diag(w²/u)`, tridiagonal) but every quantity stays bounded (`P ∈ [0, 1]`,
//! `S ∈ [u, u + w²]`), where `M` carries `1/(1 − ρ²)` entries that cost f32 its digits for
//! close anchors. The variance recursion (Riccati) is nonlinear and independent of the data: it
//! runs in one unit for `d ≤ 4096` (`lapis_kernels::covariance::lcm_riccati_kernel`), and
//! above that as a chunked scan of Möbius maps (`P_{k−1} ↦ P_k` is linear-fractional, so
//! chunks compose as 2 × 2 matrix products: compose per chunk, carry across chunks, rerun
//! per chunk — O(d) work, depth O(L + d/L) for chunks of L = ⌈√d⌉, i.e. ≈ 3·32 768 steps at
//! d = 2³⁰ instead of 2³⁰).
//! The mean recursion is a linear scan over the `c` columns.
//!
//! **Gradients: reverse mode through the filter, itself two linear scans.** For a loss
//! depending on `v` and `S`, with direct adjoints `v̄ᵈ`, `S̄ᵈ`:
//! `m̄⁻_k = (ρ_k u_k/S_k) m̄⁻_{k+1} − w_k v̄ᵈ_k` (reverse scan), `m̄_k = ρ_k m̄⁻_{k+1}`,
//! `r̄ = v̄ = v̄ᵈ + G m̄`; and the Riccati adjoint is linear:
//! `P̄⁻_k = (ρ_k u_k/S_k)² P̄⁻_{k+1} + Ḡ_k w_k u_k/S_k² + S̄ᵈ_k w_k²` (reverse scan),
//! from which `ū`, `w̄` and `∂/∂ρ` are elementwise, and `ρ = e^{−λΔ}` chains to `ā`, `λ̄`.
//! `Σ⁻¹ r` is `r̄` for `½ rᵀΣ⁻¹r`; the VJP of the solve uses the bilinear form
//! `ȳᵀ Σ⁻¹ r = Σ_k v_k(ȳ) v_k(r) / S_k`.
//!
//! **Guards.** Tied anchors give `ρ = 1`: `1 − ρ²` is floored at 1e-8 (as in
//! [`OuCovariance`](super::OuCovariance)), and no gradient flows through a floored gap; a
//! run of tied anchors shares its total anchor gradient equally (the derivative of moving
//! the run together; one anchor alone is not differentiable there). `u`
//! may be 0 (the pure OU case `u = 0, w = σ`, see [`LaplaceCovariance::ou`]) as long as
//! every `u_i + w_i² > 0`; then `S_k ≥ u_k + w_k²·1e-8 > 0`. A tiny `u` with a tiny `w`
//! makes `Σ` nearly singular, and `v²/S` large but finite until it overflows f32.
//!
//! **Frobenius fit** ([`lcm_frobenius`]): REMIX's matvec form of `‖Σ − VᵀV/B‖²_F` minus
//! the constant `‖VᵀV/B‖²_F`, with two Gram-mode Laplace matvecs (rates `2λ` and `λ`).
//!
//! **Device residency.** `λ` (an `f32` or a one-element tensor, [`Scalar`]) is kept as a
//! `[1]` device tensor, and `2λ` (the rate of the Riccati adjoint's scan and of the
//! Frobenius fit's first matvec) is formed from it on the device. The checks of the module
//! docs' assumptions (finite `a`, `w`; `u ≥ 0`; `u + w² > 0`; a tensor `λ` finite `> 0`)
//! are deferred device checks ([`crate::checks`]); a host `λ` is checked at once. log det,
//! the NLL, the Frobenius objective and `λ̄` ([`LcmGrads::lambda`]) are device tensors (`[1]`
//! for the scalars), and upstream gradients (e.g. [`LaplaceCovariance::logdet_backward`]'s
//! `g`) may be device tensors: no op here reads device data back to the host.

use lapis_kernels::{covariance as k, sort as sk};

use super::{lambda_arg, shift1};
use crate::checks::{check_f32, Accept};
use crate::dtype::DType;
use crate::error::{LapisError, Result};
use crate::launch_1d;
use crate::scalar::Scalar;
use crate::tensor::{arr, Tensor};

/// Gradients of a scalar LCM objective, in the caller's (unsorted) order.
#[derive(Debug, Clone)]
pub struct LcmGrads {
    /// `∂ℓ/∂r` (shape of `r`), `None` for objectives without `r`.
    pub r: Option<Tensor>,
    /// `∂ℓ/∂u`, `[d]`.
    pub u: Tensor,
    /// `∂ℓ/∂w`, `[d]`.
    pub w: Tensor,
    /// `∂ℓ/∂a`, `[d]` (0 across floored ties).
    pub a: Tensor,
    /// `∂ℓ/∂λ`, a `[1]` device tensor (`.to_scalar()` reads it).
    pub lambda: Tensor,
}

/// REMIX's covariance `diag(u) + diag(w) K(a; λ) diag(w)`, factored once (anchors sorted
/// inside, Kalman variance recursion run).
pub struct LaplaceCovariance {
    xs: Tensor,
    /// `λ`, `[1]` (device).
    lambda: Tensor,
    /// `2λ`, `[1]` (device): the rate of the variance adjoint's scan.
    lambda2: Tensor,
    perm: Tensor,
    inv: Tensor,
    rho: Tensor,
    rho_prev: Tensor,
    om: Tensor,
    u: Tensor,
    w: Tensor,
    pminus: Tensor,
    s: Tensor,
    p: Tensor,
    gain: Tensor,
    d: usize,
}

/// Forward filter state for `c` columns (sorted order, `[d, c]`).
struct Filter {
    /// `m_{k−1}` (0 at k = 0).
    mprev: Tensor,
    /// `m⁻_k = ρ_{k−1} m_{k−1}`.
    mminus: Tensor,
    /// Innovations `v`.
    v: Tensor,
    /// `v / S`.
    vs: Tensor,
}

/// Parameter adjoints accumulated in sorted order.
struct Adj {
    u: Tensor,
    w: Tensor,
    /// `∂ℓ/∂ρ_{k−1}` stored at k.
    rho: Tensor,
}

fn col(t: &Tensor, d: usize) -> Result<Tensor> {
    t.reshape(&[d, 1])
}

fn check_vec(op: &'static str, name: &'static str, t: &Tensor, d: usize) -> Result<()> {
    if t.shape() != [d] || t.dtype() != DType::F32 {
        return Err(LapisError::shape(
            op,
            t.shape(),
            format!("`{name}` must be f32 [{d}] like the anchors"),
        ));
    }
    Ok(())
}

/// Chains up to this long run the Riccati recursion in one unit (one launch); longer ones
/// use the chunked Möbius-product form (three launches, depth `O(L + d/L)`).
const RICCATI_ONE_UNIT_MAX: usize = 4096;

/// The Riccati (variance) recursion on sorted positions: `(P⁻, S, P)`. One unit for short
/// chains (on wgpu in segments: llvmpipe's loop limit); otherwise the chunked Möbius scan of
/// `lapis_kernels::covariance::riccati_compose_kernel` with chunks of `L = ⌈√d⌉` (depth
/// ≈ 2√d; `chunk` forces `L`). Both loops stay far below llvmpipe's 65 535-iteration limit
/// for any `d < 4·10⁹`.
fn riccati(
    rho: &Tensor,
    om: &Tensor,
    u: &Tensor,
    w: &Tensor,
    d: usize,
    chunk: Option<usize>,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "laplace_covariance";
    let dev = rho.device();
    let pminus = Tensor::empty(OP, dev, &[d], DType::F32)?;
    let s = Tensor::empty(OP, dev, &[d], DType::F32)?;
    let p = Tensor::empty(OP, dev, &[d], DType::F32)?;
    if chunk.is_none() && d <= RICCATI_ONE_UNIT_MAX {
        let seg = match dev.kind() {
            crate::DeviceKind::Wgpu => k::SEQUENTIAL_SEGMENT as usize,
            _ => d,
        };
        for start in (0..d).step_by(seg) {
            let end = (start + seg).min(d);
            launch_1d!(dev, 1, k::lcm_riccati_kernel, |client, R| (
                arr::<R>(rho),
                arr::<R>(om),
                arr::<R>(u),
                arr::<R>(w),
                arr::<R>(&pminus),
                arr::<R>(&s),
                arr::<R>(&p),
                start as u32,
                end as u32,
            ));
        }
        return Ok((pminus, s, p));
    }
    // Chunks of ≈ √d balance the two sequential passes (each ≈ √d steps deep).
    let len = chunk
        .unwrap_or_else(|| ((d as f64).sqrt().ceil() as usize).max(32))
        .clamp(1, d.max(1));
    let chunks = d.div_ceil(len);
    let mats = Tensor::empty(OP, dev, &[4 * chunks], DType::F32)?;
    let entry = Tensor::empty(OP, dev, &[chunks], DType::F32)?;
    let (d32, l32, c32) = (d as u32, len as u32, chunks as u32);
    launch_1d!(dev, chunks, k::riccati_compose_kernel, |client, R| (
        arr::<R>(rho),
        arr::<R>(om),
        arr::<R>(u),
        arr::<R>(w),
        arr::<R>(&mats),
        d32,
        l32,
        c32,
    ));
    launch_1d!(dev, 1, k::riccati_carry_kernel, |client, R| (
        arr::<R>(&mats),
        arr::<R>(&entry),
        c32,
    ));
    launch_1d!(dev, chunks, k::riccati_chunk_kernel, |client, R| (
        arr::<R>(rho),
        arr::<R>(om),
        arr::<R>(u),
        arr::<R>(w),
        arr::<R>(&entry),
        arr::<R>(&pminus),
        arr::<R>(&s),
        arr::<R>(&p),
        d32,
        l32,
        c32,
    ));
    Ok((pminus, s, p))
}

impl LaplaceCovariance {
    /// Factors `Σ = diag(u) + diag(w) e^{−λ|a_i − a_j|} diag(w)`: `a`, `u`, `w` f32 `[d]` on
    /// one device, finite, `u ≥ 0`, every `u_i + w_i² > 0`, `λ` finite and `> 0` (an `f32`,
    /// checked at once, or a one-element tensor, kept and checked on the device). Shapes
    /// are checked at once; the values of `a`, `u`, `w` (and of a tensor `λ`) by deferred
    /// device checks ([`crate::checks`]: the typed error naming the argument comes at the
    /// next read of device data). Nothing is read back.
    pub fn new<'a>(
        a: &Tensor,
        lambda: impl Into<Scalar<'a>>,
        u: &Tensor,
        w: &Tensor,
    ) -> Result<Self> {
        Self::with_riccati_chunk(a, lambda, u, w, None)
    }

    /// [`Self::new`] with the Riccati recursion's chunk length forced (`Some(L)`: the
    /// chunked Möbius path with chunks of `L`; `None`: the default choice). For tests.
    #[doc(hidden)]
    pub fn with_riccati_chunk<'a>(
        a: &Tensor,
        lambda: impl Into<Scalar<'a>>,
        u: &Tensor,
        w: &Tensor,
        chunk: Option<usize>,
    ) -> Result<Self> {
        const OP: &str = "laplace_covariance";
        crate::validate::same_device(OP, a, u)?;
        crate::validate::same_device(OP, a, w)?;
        if a.rank() != 1 || a.dtype() != DType::F32 {
            return Err(LapisError::shape(OP, a.shape(), "anchors must be f32 [d]"));
        }
        let d = a.numel();
        check_vec(OP, "u", u, d)?;
        check_vec(OP, "w", w, d)?;
        let lambda = lambda_arg(OP, lambda, a)?;
        // Deferred device checks (one launch each, no read).
        check_f32(OP, "a", a, Accept::Finite, "anchors must be finite")?;
        check_f32(
            OP,
            "u",
            u,
            Accept::NonNegative,
            "every u_i must be finite and ≥ 0",
        )?;
        check_f32(OP, "w", w, Accept::Finite, "must be finite")?;
        let floor = crate::add(u, &crate::mul(w, w)?)?;
        let msg = "every u_i + w_i² must be > 0 (Σ would be singular)";
        check_f32(OP, "u + w²", &floor, Accept::Positive, msg)?;
        drop(floor);
        Self::factor(a, lambda, u, w, chunk)
    }

    /// The factorisation proper, for arguments already checked (shapes on the host, values
    /// by the caller's device checks): `lambda` the `[1]` device rate.
    pub(super) fn factor(
        a: &Tensor,
        lambda: Tensor,
        u: &Tensor,
        w: &Tensor,
        chunk: Option<usize>,
    ) -> Result<Self> {
        const OP: &str = "laplace_covariance";
        let d = a.numel();
        let dev = a.device();
        let (xs, perm) = crate::argsort(a)?;
        let inv = Tensor::empty(OP, dev, &[d], DType::U32)?;
        launch_1d!(dev, d, sk::invert_perm_kernel, |client, R| (
            arr::<R>(&perm),
            arr::<R>(&inv),
            d as u32
        ));
        let u = crate::index::take_rows_unchecked(u, &perm)?;
        let w = crate::index::take_rows_unchecked(w, &perm)?;
        let rho = Tensor::empty(OP, dev, &[d], DType::F32)?;
        let om = Tensor::empty(OP, dev, &[d], DType::F32)?;
        launch_1d!(dev, d, k::ou_prepare_kernel, |client, R| (
            arr::<R>(&xs),
            arr::<R>(&lambda),
            arr::<R>(&rho),
            arr::<R>(&om),
            d as u32,
        ));
        let (pminus, s, p) = riccati(&rho, &om, &u, &w, d, chunk)?;
        let gain = crate::div(&crate::mul(&pminus, &w)?, &s)?;
        let rho_prev = shift1(&rho, true)?;
        let lambda2 = crate::affine(&lambda, 2.0, 0.0)?;
        Ok(LaplaceCovariance {
            xs,
            lambda,
            lambda2,
            perm,
            inv,
            rho,
            rho_prev,
            om,
            u,
            w,
            pminus,
            s,
            p,
            gain,
            d,
        })
    }

    /// The pure OU covariance `diag(σ) K(x; λ) diag(σ)` (`u = 0`, `w = σ`): the same ops and
    /// gradients as the general model, `∂/∂σ` in [`LcmGrads::w`]. `lambda` as in
    /// [`Self::new`].
    pub fn ou<'a>(x: &Tensor, lambda: impl Into<Scalar<'a>>, sigma: &Tensor) -> Result<Self> {
        let u = crate::zeros(x.device(), x.shape(), DType::F32)?;
        Self::new(x, lambda, &u, sigma)
    }

    /// The innovation variances `S_k` (sorted order): diagnostics.
    #[doc(hidden)]
    pub fn innovation_variances(&self) -> &Tensor {
        &self.s
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// `log det Σ = Σ_k ln S_k`, a `[1]` device tensor (`.to_scalar()` reads it).
    pub fn logdet(&self) -> Result<Tensor> {
        crate::sum_all(&crate::log(&self.s)?)?.reshape(&[1])
    }

    /// `r` is f32 `[d]` (→ 1 column) or `[d, c]` (→ c) on the covariance's device.
    pub(super) fn check_r(&self, op: &'static str, r: &Tensor) -> Result<usize> {
        crate::validate::same_device(op, &self.xs, r)?;
        match r.shape() {
            [a] if *a == self.d && r.dtype() == DType::F32 => Ok(1),
            [a, c] if *a == self.d && r.dtype() == DType::F32 => Ok(*c),
            _ => Err(LapisError::ShapeMismatch {
                op,
                lhs: vec![self.d],
                rhs: r.shape().to_vec(),
            }),
        }
    }

    /// `r` as sorted `[d, c]`.
    fn sorted(&self, r: &Tensor, c: usize) -> Result<Tensor> {
        crate::index::take_rows_unchecked(&r.reshape(&[self.d, c])?, &self.perm)
    }

    /// Back to the caller's order and shape.
    fn unsort(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        crate::index::take_rows_unchecked(t, &self.inv)?.reshape(shape)
    }

    /// The anchored scan of `x` (`[d]` or `[d, c]`, sorted order) with decays
    /// `e^{−rate·Δ}·q_k` into each element, `rate` the device tensor `λ` or `2λ`: the `ρ` part
    /// is computed from the anchors (one `exp` per distance, never a product of rounded
    /// `ρ`s; see [`crate::decay_scan()`]), the data-dependent part `q` is multiplied as in
    /// `linear_scan`.
    fn anchored(
        &self,
        rate: &Tensor,
        q: Option<&Tensor>,
        x: &Tensor,
        reverse: bool,
    ) -> Result<Tensor> {
        super::anchored_scan(&self.xs, rate, q, x, reverse)
    }

    fn filter(&self, rs: &Tensor) -> Result<Filter> {
        let d = self.d;
        let input = crate::mul(rs, &col(&self.gain, d)?)?;
        // m_k = ρ_{k−1} (u_k/S_k) m_{k−1} + G_k r_k
        let m = self.anchored(
            &self.lambda,
            Some(&crate::div(&self.u, &self.s)?),
            &input,
            false,
        )?;
        let mprev = shift1(&m, true)?;
        let mminus = crate::mul(&mprev, &col(&self.rho_prev, d)?)?;
        let v = crate::sub(rs, &crate::mul(&col(&self.w, d)?, &mminus)?)?;
        let vs = crate::div(&v, &col(&self.s, d)?)?;
        Ok(Filter {
            mprev,
            mminus,
            v,
            vs,
        })
    }

    /// Adjoint of the mean recursion for direct innovation adjoints `vd [d, c]`: returns
    /// `(r̄ = v̄, Ḡ [d], w̄ part [d], ρ̄ part [d])`.
    fn mean_adjoint(&self, f: &Filter, vd: &Tensor) -> Result<(Tensor, Tensor, Adj)> {
        let d = self.d;
        let input = crate::neg(&crate::mul(vd, &col(&self.w, d)?)?)?;
        // m̄⁻_k = ρ_k (u_k/S_k) m̄⁻_{k+1} − w_k v̄ᵈ_k
        let us = crate::div(&self.u, &self.s)?;
        let mbar_minus = self.anchored(&self.lambda, Some(&us), &input, true)?;
        let mbar = crate::mul(&shift1(&mbar_minus, false)?, &col(&self.rho, d)?)?;
        let vbar = crate::add(vd, &crate::mul(&col(&self.gain, d)?, &mbar)?)?;
        let gbar = crate::sum(&crate::mul(&mbar, &f.v)?, 1)?.reshape(&[d])?;
        let wbar = crate::neg(&crate::sum(&crate::mul(&vbar, &f.mminus)?, 1)?)?.reshape(&[d])?;
        let rhobar = crate::sum(&crate::mul(&mbar_minus, &f.mprev)?, 1)?.reshape(&[d])?;
        Ok((
            vbar,
            gbar,
            Adj {
                u: crate::zeros(self.xs.device(), &[d], DType::F32)?,
                w: wbar,
                rho: rhobar,
            },
        ))
    }

    /// Adjoint of the variance recursion for `Ḡ` and direct `S̄ᵈ` (both `[d]`).
    fn variance_adjoint(&self, gbar: &Tensor, sdir: &Tensor) -> Result<Adj> {
        let (s, u, w, p, pm, g) = (&self.s, &self.u, &self.w, &self.p, &self.pminus, &self.gain);
        let us = crate::div(u, s)?;
        // c_k = Ḡ w u / S² + S̄ᵈ w²
        let ck = crate::add(
            &crate::mul(&crate::mul(gbar, w)?, &crate::div(&us, s)?)?,
            &crate::mul(sdir, &crate::mul(w, w)?)?,
        )?;
        // P̄⁻_k = ρ_k² (u_k/S_k)² P̄⁻_{k+1} + c_k: rate 2λ, factors (u/S)².
        let pbar_minus = self.anchored(&self.lambda2, Some(&crate::mul(&us, &us)?), &ck, true)?;
        let rho2 = crate::mul(&self.rho, &self.rho)?;
        let pbar = crate::mul(&rho2, &shift1(&pbar_minus, false)?)?;
        // S̄ = S̄ᵈ − Ḡ G/S − P̄ P/S
        let sbar = crate::sub(
            sdir,
            &crate::div(
                &crate::add(&crate::mul(gbar, g)?, &crate::mul(&pbar, p)?)?,
                s,
            )?,
        )?;
        let ubar = crate::add(&sbar, &crate::div(&crate::mul(&pbar, pm)?, s)?)?;
        let wbar = crate::add(
            &crate::div(&crate::mul(gbar, pm)?, s)?,
            &crate::affine(&crate::mul(&crate::mul(&sbar, w)?, pm)?, 2.0, 0.0)?,
        )?;
        // ∂/∂ρ_{k−1} = −2 ρ_{k−1} (1 − P_{k−1}) P̄⁻_k
        let one_minus_pprev = crate::affine(&shift1(p, true)?, -1.0, 1.0)?;
        let rhobar = crate::mul(
            &crate::affine(&crate::mul(&self.rho_prev, &one_minus_pprev)?, -2.0, 0.0)?,
            &pbar_minus,
        )?;
        Ok(Adj {
            u: ubar,
            w: wbar,
            rho: rhobar,
        })
    }

    /// Sums adjoints, chains `ρ̄` to `ā`, `λ̄`, and unsorts.
    fn finish(&self, parts: &[Adj], r: Option<Tensor>) -> Result<LcmGrads> {
        let d = self.d;
        let mut acc = Adj {
            u: parts[0].u.clone(),
            w: parts[0].w.clone(),
            rho: parts[0].rho.clone(),
        };
        for p in &parts[1..] {
            acc.u = crate::add(&acc.u, &p.u)?;
            acc.w = crate::add(&acc.w, &p.w)?;
            acc.rho = crate::add(&acc.rho, &p.rho)?;
        }
        let dev = self.xs.device();
        let gdelta = Tensor::empty("laplace_covariance", dev, &[d], DType::F32)?;
        let glam = Tensor::empty("laplace_covariance", dev, &[d], DType::F32)?;
        launch_1d!(dev, d, k::rho_chain_kernel, |client, R| (
            arr::<R>(&self.xs),
            arr::<R>(&self.rho),
            arr::<R>(&self.om),
            arr::<R>(&acc.rho),
            arr::<R>(&self.lambda),
            arr::<R>(&gdelta),
            arr::<R>(&glam),
            d as u32,
        ));
        // x̄_k = Δ̄_k − Δ̄_{k+1} (Δ_k = x_k − x_{k−1})
        let a_sorted = tie_group_mean(&crate::sub(&gdelta, &shift1(&gdelta, false)?)?, &self.om)?;
        Ok(LcmGrads {
            r,
            u: self.unsort(&acc.u, &[d])?,
            w: self.unsort(&acc.w, &[d])?,
            a: self.unsort(&a_sorted, &[d])?,
            lambda: crate::sum_all(&glam)?.reshape(&[1])?,
        })
    }

    /// `rᵀ Σ⁻¹ r` per column: `[1]` for `r [d]`, `[1, c]` for `r [d, c]`.
    pub fn mahalanobis(&self, r: &Tensor) -> Result<Tensor> {
        let c = self.check_r("lcm_mahalanobis", r)?;
        let f = self.filter(&self.sorted(r, c)?)?;
        let m = crate::sum(&crate::mul(&f.v, &f.vs)?, 0)?;
        if r.rank() == 1 {
            m.reshape(&[1])
        } else {
            Ok(m)
        }
    }

    /// Gaussian negative log-likelihood `½(rᵀΣ⁻¹r + log det Σ + d ln 2π)` per column
    /// (shape as [`Self::mahalanobis`]), combined on the device.
    pub fn nll(&self, r: &Tensor) -> Result<Tensor> {
        let m = self.mahalanobis(r)?;
        super::nll_from(&m, &self.logdet()?, self.d)
    }

    /// `Σ⁻¹ r`, shape of `r`.
    pub fn solve(&self, r: &Tensor) -> Result<Tensor> {
        let c = self.check_r("lcm_solve", r)?;
        let f = self.filter(&self.sorted(r, c)?)?;
        let (y, _, _) = self.mean_adjoint(&f, &f.vs)?;
        self.unsort(&y, r.shape())
    }

    /// A draw `x = √u ⊙ ε_u + w ⊙ ζ` (zero mean, `Cov x = Σ`), `ζ` the AR(1) chain driven by
    /// `ε_w`; `eps_u`, `eps_w` standard normal of shape `[d]` or `[d, c]` (original order).
    pub fn sample(&self, eps_u: &Tensor, eps_w: &Tensor) -> Result<Tensor> {
        let (x, _) = self.sample_parts(eps_u, eps_w)?;
        Ok(x)
    }

    /// The sample and the sorted AR(1) chain `ζ [d, c]`.
    fn sample_parts(&self, eps_u: &Tensor, eps_w: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.check_r("lcm_sample", eps_u)?;
        if eps_w.shape() != eps_u.shape() {
            return Err(LapisError::ShapeMismatch {
                op: "lcm_sample",
                lhs: eps_u.shape().to_vec(),
                rhs: eps_w.shape().to_vec(),
            });
        }
        self.check_r("lcm_sample", eps_w)?;
        let d = self.d;
        let ew = self.sorted(eps_w, c)?;
        // ζ_k = ρ_{k−1} ζ_{k−1} + s_k ε_k
        let zeta = self.anchored(
            &self.lambda,
            None,
            &crate::mul(&ew, &col(&crate::sqrt(&self.om)?, d)?)?,
            false,
        )?;
        let eu = self.sorted(eps_u, c)?;
        let x = crate::add(
            &crate::mul(&eu, &col(&crate::sqrt(&self.u)?, d)?)?,
            &crate::mul(&zeta, &col(&self.w, d)?)?,
        )?;
        Ok((self.unsort(&x, eps_u.shape())?, zeta))
    }

    /// Gradients of `g · log det Σ`: `g` an `f32` or a one-element tensor (an upstream
    /// gradient, say; used on the device, never read back).
    pub fn logdet_backward<'a>(&self, g: impl Into<Scalar<'a>>) -> Result<LcmGrads> {
        const OP: &str = "lcm_logdet_backward";
        let dev = self.xs.device();
        let zero = crate::zeros(dev, &[self.d], DType::F32)?;
        // S̄ᵈ = g / S
        let sdir = match g.into() {
            Scalar::Value(g) => crate::affine(
                &crate::div(&crate::ones(dev, &[self.d], DType::F32)?, &self.s)?,
                g,
                0.0,
            )?,
            Scalar::Tensor(t) => {
                crate::scalar::check_one(OP, "g", t)?;
                crate::validate::same_device(OP, &self.xs, t)?;
                crate::div(&t.reshape(&[1])?, &self.s)?
            }
        };
        let adj = self.variance_adjoint(&zero, &sdir)?;
        self.finish(&[adj], None)
    }

    /// Gradients of `Σ_c α_c q_c + β log det Σ` (`q` the per-column Mahalanobis, `α` of
    /// the shape of [`Self::mahalanobis`]'s output, `β` a `[1]` tensor).
    fn quad_backward(&self, r: &Tensor, alpha: &Tensor, beta: Option<&Tensor>) -> Result<LcmGrads> {
        let op = "lcm_backward";
        let c = self.check_r(op, r)?;
        let want: &[usize] = if r.rank() == 1 { &[1] } else { &[1, c] };
        if alpha.shape() != want {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: want.to_vec(),
                rhs: alpha.shape().to_vec(),
            });
        }
        let d = self.d;
        let alpha = alpha.reshape(&[1, c])?;
        let f = self.filter(&self.sorted(r, c)?)?;
        // v̄ᵈ = 2α v/S,  S̄ᵈ = −Σ_c α v²/S² + β/S
        let avs = crate::mul(&f.vs, &alpha)?;
        let vd = crate::affine(&avs, 2.0, 0.0)?;
        let mut sdir = crate::neg(&crate::sum(&crate::mul(&avs, &f.vs)?, 1)?)?.reshape(&[d])?;
        if let Some(b) = beta {
            sdir = crate::add(&sdir, &crate::div(b, &self.s)?)?;
        }
        let (rbar, gbar, mean) = self.mean_adjoint(&f, &vd)?;
        let var = self.variance_adjoint(&gbar, &sdir)?;
        self.finish(&[mean, var], Some(self.unsort(&rbar, r.shape())?))
    }

    /// Gradients of `Σ_c g_c · (rᵀΣ⁻¹r)_c`, `g` shaped like [`Self::mahalanobis`]'s output.
    pub fn mahalanobis_backward(&self, r: &Tensor, g: &Tensor) -> Result<LcmGrads> {
        self.quad_backward(r, g, None)
    }

    /// Gradients of `Σ_c g_c · nll_c(r)`, `g` shaped like [`Self::nll`]'s output.
    pub fn nll_backward(&self, r: &Tensor, g: &Tensor) -> Result<LcmGrads> {
        let half = crate::affine(g, 0.5, 0.0)?;
        let beta = crate::sum_all(&half)?.reshape(&[1])?;
        self.quad_backward(r, &half, Some(&beta))
    }

    /// Gradients of `⟨gy, Σ⁻¹ r⟩` (the VJP of [`Self::solve`]): `r̄ = Σ⁻¹ gy`, and the
    /// parameters through the bilinear form `Σ_k v_k(gy) v_k(r) / S_k`.
    pub fn solve_backward(&self, r: &Tensor, gy: &Tensor) -> Result<LcmGrads> {
        let op = "lcm_solve_backward";
        let c = self.check_r(op, r)?;
        if gy.shape() != r.shape() {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: r.shape().to_vec(),
                rhs: gy.shape().to_vec(),
            });
        }
        self.check_r(op, gy)?;
        let d = self.d;
        let f1 = self.filter(&self.sorted(r, c)?)?;
        let f2 = self.filter(&self.sorted(gy, c)?)?;
        let sdir = crate::neg(&crate::sum(&crate::mul(&f1.vs, &f2.vs)?, 1)?)?.reshape(&[d])?;
        let (rbar, g1, m1) = self.mean_adjoint(&f1, &f2.vs)?;
        let (_, g2, m2) = self.mean_adjoint(&f2, &f1.vs)?;
        let var = self.variance_adjoint(&crate::add(&g1, &g2)?, &sdir)?;
        self.finish(&[m1, m2, var], Some(self.unsort(&rbar, r.shape())?))
    }

    /// Gradients of `⟨gx, sample(ε_u, ε_w)⟩` (reparameterisation): `ū`, `w̄`, `ā`, `λ̄`
    /// (`ū_i = 0` where `u_i = 0`).
    pub fn sample_backward(&self, eps_u: &Tensor, eps_w: &Tensor, gx: &Tensor) -> Result<LcmGrads> {
        let op = "lcm_sample_backward";
        let (_, zeta) = self.sample_parts(eps_u, eps_w)?;
        if gx.shape() != eps_u.shape() {
            return Err(LapisError::ShapeMismatch {
                op,
                lhs: eps_u.shape().to_vec(),
                rhs: gx.shape().to_vec(),
            });
        }
        let c = self.check_r(op, gx)?;
        let d = self.d;
        let dev = self.xs.device();
        let gs = self.sorted(gx, c)?;
        let eu = self.sorted(eps_u, c)?;
        let ew = self.sorted(eps_w, c)?;
        let ubar = Tensor::empty(op, dev, &[d], DType::F32)?;
        launch_1d!(dev, d, k::sqrt_nugget_grad_kernel, |client, R| (
            arr::<R>(&gs),
            arr::<R>(&eu),
            arr::<R>(&self.u),
            arr::<R>(&ubar),
            d as u32,
            c as u32,
        ));
        let wbar = crate::sum(&crate::mul(&gs, &zeta)?, 1)?.reshape(&[d])?;
        // ζ̄ total: h̄_k = gx_k w_k + ρ_k h̄_{k+1}; ∂/∂ρ_{k−1} = Σ_c h̄_k (ζ_{k−1} − ε_k ρ_{k−1}/s_k)
        let hbar = self.anchored(
            &self.lambda,
            None,
            &crate::mul(&gs, &col(&self.w, d)?)?,
            true,
        )?;
        let dsdrho = crate::div(&self.rho_prev, &crate::sqrt(&self.om)?)?;
        let inner = crate::sub(&shift1(&zeta, true)?, &crate::mul(&ew, &col(&dsdrho, d)?)?)?;
        let rhobar = crate::sum(&crate::mul(&hbar, &inner)?, 1)?.reshape(&[d])?;
        self.finish(
            &[Adj {
                u: ubar,
                w: wbar,
                rho: rhobar,
            }],
            None,
        )
    }
}

/// Replaces each run of tied anchors (sorted neighbours joined by a floored gap,
/// `1 − ρ² = 1e-8`, exactly the gaps the gradient does not flow through) by the run's mean
/// gradient. At a tie `Σ` is not differentiable in one
/// anchor alone; the run's total (moving the tied anchors together, which is smooth) is
/// what the chain computes exactly, and it is shared equally, independent of the order the
/// sort gave the tied anchors. Two scans with decay 1 inside a run and 0 across its ends.
fn tie_group_mean(g: &Tensor, om: &Tensor) -> Result<Tensor> {
    let d = g.numel();
    // tie_k = 1 if sorted k is tied to k − 1 (om on its floor), else 0. (A wider margin,
    // 1.5× the floor, once merged close but distinct anchors into runs and averaged their
    // gradients: 22 % off at d = 2^20, issue 10.)
    let margin = k::TIE_ONE_MINUS_RHO2;
    let tie = crate::relu(&crate::sign(&crate::affine(om, -1.0, margin)?)?)?;
    // Run totals of g and of 1, scanned separately ([d] buffers: a [d, 2] one would not
    // fit the device's largest buffer at the largest d).
    let back = shift1(&tie, false)?;
    let run_total = |x: &Tensor| -> Result<Tensor> {
        let fwd = crate::linear_scan(&tie, x, false)?;
        let rev = crate::linear_scan(&back, x, true)?;
        crate::sub(&crate::add(&fwd, &rev)?, x)
    };
    let ones = crate::ones(g.device(), &[d], DType::F32)?;
    crate::div(&run_total(&g.reshape(&[d])?)?, &run_total(&ones)?)
}

/// Checks the LCM parameters and the batch `v [B, d]` (shapes at once, a tensor `λ` on the
/// device); returns `(d, B, λ [1])`.
fn check_frobenius<'a>(
    op: &'static str,
    a: &Tensor,
    lambda: impl Into<Scalar<'a>>,
    u: &Tensor,
    w: &Tensor,
    v: &Tensor,
) -> Result<(usize, usize, Tensor)> {
    if a.rank() != 1 || a.dtype() != DType::F32 {
        return Err(LapisError::shape(op, a.shape(), "anchors must be f32 [d]"));
    }
    let d = a.numel();
    check_vec(op, "u", u, d)?;
    check_vec(op, "w", w, d)?;
    for t in [u, w, v] {
        crate::validate::same_device(op, a, t)?;
    }
    let b = match v.shape() {
        [b, dd] if *dd == d && v.dtype() == DType::F32 => *b,
        _ => {
            return Err(LapisError::shape(
                op,
                v.shape(),
                format!("the batch must be f32 [B, {d}]"),
            ))
        }
    };
    let lambda = lambda_arg(op, lambda, a)?;
    Ok((d, b, lambda))
}

/// REMIX's Frobenius objective for a centred batch `v [B, d]` (`laplace-methods.md` §0):
///
/// `F = Σu² + 2Σuw² + (w²)ᵀK(a;2λ)(w²) − (2/B)Σ_i u_i Σ_b V_bi² − (2/B)Σ_b (w⊙v_b)ᵀK(a;λ)(w⊙v_b)`,
///
/// which equals `‖Σ − VᵀV/B‖²_F − ‖VᵀV/B‖²_F`, in O(B·d log d) (two Gram-mode Laplace
/// matvecs, never `d × d`). `lambda` is an `f32` or a one-element tensor (kept on the
/// device); the result is a `[1]` device tensor, computed without a read-back.
pub fn lcm_frobenius<'a>(
    a: &Tensor,
    lambda: impl Into<Scalar<'a>>,
    u: &Tensor,
    w: &Tensor,
    v: &Tensor,
) -> Result<Tensor> {
    let (d, b, lambda) = check_frobenius("lcm_frobenius", a, lambda, u, w, v)?;
    let k2 = 2.0 / b as f32;
    let w2 = crate::mul(w, w)?;
    let s2 = crate::sum(&crate::mul(v, v)?, 0)?.reshape(&[d])?;
    let kq = crate::laplace_gram(a, &w2, &crate::affine(&lambda, 2.0, 0.0)?)?;
    // Per anchor: u_i (u_i + 2w_i² − (2/B) s2_i) + w_i² (K₂w²)_i, then one sum.
    let diag = crate::add(
        &crate::affine(&w2, 2.0, 0.0)?,
        &crate::affine(&s2, -k2, 0.0)?,
    )?;
    let first = crate::add(
        &crate::mul(u, &crate::add(u, &diag)?)?,
        &crate::mul(&kq, &w2)?,
    )?;
    let z = crate::mul(&crate::transpose(v, 0, 1)?, &col(w, d)?)?;
    let kz = crate::laplace_gram(a, &z, &lambda)?;
    let quad_z = crate::sum_all(&crate::mul(&kz, &z)?)?;
    crate::sub(&crate::sum_all(&first)?, &crate::affine(&quad_z, k2, 0.0)?)?.reshape(&[1])
}

/// Gradients of [`lcm_frobenius`] for `u`, `w`, `a`, `λ` (`r` is `None`; the batch gets
/// no gradient). `lambda` as in [`lcm_frobenius`]; `λ̄` is a `[1]` device tensor.
pub fn lcm_frobenius_backward<'a>(
    a: &Tensor,
    lambda: impl Into<Scalar<'a>>,
    u: &Tensor,
    w: &Tensor,
    v: &Tensor,
) -> Result<LcmGrads> {
    let (d, b, lambda) = check_frobenius("lcm_frobenius_backward", a, lambda, u, w, v)?;
    let k2 = 2.0 / b as f32;
    let w2 = crate::mul(w, w)?;
    let s2 = crate::sum(&crate::mul(v, v)?, 0)?.reshape(&[d])?;
    // ū = 2u + 2w² − (2/B) s2
    let ubar = crate::add(
        &crate::affine(&crate::add(u, &w2)?, 2.0, 0.0)?,
        &crate::affine(&s2, -k2, 0.0)?,
    )?;
    let lambda2 = crate::affine(&lambda, 2.0, 0.0)?;
    let (kq, aq, lq) = crate::laplace_gram_backward(a, &w2, &lambda2, &w2)?;
    let z = crate::mul(&crate::transpose(v, 0, 1)?, &col(w, d)?)?;
    let (kz, az, lz) = crate::laplace_gram_backward(a, &z, &lambda, &z)?;
    // w̄ = 4uw + 4w ⊙ K₂w² − (4/B) Σ_b V_bi (K₁Z)_ib
    let vkz = crate::sum(&crate::mul(&crate::transpose(v, 0, 1)?, &kz)?, 1)?.reshape(&[d])?;
    let wbar = crate::add(
        &crate::affine(&crate::mul(w, &crate::add(u, &kq)?)?, 4.0, 0.0)?,
        &crate::affine(&vkz, -2.0 * k2, 0.0)?,
    )?;
    let abar = crate::add(&aq, &crate::affine(&az, -k2, 0.0)?)?;
    Ok(LcmGrads {
        r: None,
        u: ubar,
        w: wbar,
        a: abar,
        // λ̄ = 2·λ̄(K₂) − (2/B)·λ̄(K₁), combined on the device.
        lambda: crate::sub(
            &crate::affine(&lq, 2.0, 0.0)?,
            &crate::affine(&lz, k2, 0.0)?,
        )?
        .reshape(&[1])?,
    })
}
