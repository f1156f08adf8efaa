//! Model inversion of a frozen teacher (spec §3 E4): synthetic standardised digits `x̂`
//! from `N(0, I)`, optimised by Adam on
//! `CE(teacher(x̂), y) + Σ_l(‖μ̂_l − μ_l‖² + ‖σ̂_l² − σ_l²‖²) + α_frob·L_LCM + 0.01·TV(8×8)`.

use lapis_graph::optim::Adam;
use lapis_graph::{backward, Lcm, Tape, Var};
use lapis_ops::{self as ops, Device, Result, Tensor};

use super::lcm_fit::{LcmCorr, JITTER};
use super::net::{one_hot, Frozen, Net, D_IN};
use crate::data::SplitMix64;

/// What the inversion matches at one BatchNorm layer: the teacher's running statistics and,
/// for REMIX, its LCM `Σ_l = diag(σ_l) R_LCM diag(σ_l) + 1e-5·I`.
#[derive(Clone)]
pub struct LayerTarget {
    /// `μ_l` = running mean, `[1, C]`.
    pub mean: Tensor,
    /// Running variance, `[1, C]` (the BN-statistics term matches it).
    pub var: Tensor,
    /// The LCM `(a, u'', w'')`, each `[C]`.
    pub lcm: Option<[Tensor; 3]>,
    /// Host `μ_l` and `σ_l² = running_var + 1e-5` (f64) for the dense evaluations.
    pub host_mean: Vec<f64>,
    /// Host `σ_l²`.
    pub host_var: Vec<f64>,
}

/// The targets of both layers of `teacher`, with the LCMs `lcm` when given.
pub fn teacher_targets(
    dev: &Device,
    teacher: &Net,
    lcm: Option<&[LcmCorr; 2]>,
) -> Result<[LayerTarget; 2]> {
    let mk = |l: usize| -> Result<LayerTarget> {
        let bn = &teacher.bn[l];
        let c = bn.features();
        let m = bn.running_mean();
        let v = bn.running_var();
        let host_mean: Vec<f64> = m.to_vec::<f32>()?.iter().map(|&x| x as f64).collect();
        let host_var: Vec<f64> = v
            .to_vec::<f32>()?
            .iter()
            .map(|&x| x as f64 + JITTER)
            .collect();
        let lcm = match lcm {
            Some(fits) => {
                let (a, u, w) = fits[l].scaled(&host_var);
                Some([
                    Tensor::from_slice(dev, &[c], &a)?,
                    Tensor::from_slice(dev, &[c], &u)?,
                    Tensor::from_slice(dev, &[c], &w)?,
                ])
            }
            None => None,
        };
        Ok(LayerTarget {
            mean: m.reshape(&[1, c])?,
            var: v.reshape(&[1, c])?,
            lcm,
            host_mean,
            host_var,
        })
    };
    Ok([mk(0)?, mk(1)?])
}

/// `NLL_l = mean over the rows of h ½(C log 2π + log det Σ_l + (h−μ_l)ᵀΣ_l⁻¹(h−μ_l)) / C`
/// for `h [N, C]`, through [`Lcm::nll`] (exact O(C) per vector; gradients reach `h`).
/// `mean_full` is `μ_l` broadcast to `[N, C]`; `lcm = (a, u'', w'')` constants, λ = 1.
pub fn lcm_nll_term(h: &Var, mean_full: &Tensor, lcm: &[Tensor; 3]) -> Result<Var> {
    let c = h.shape()[1];
    let r = h
        .sub(&h.constant(mean_full.clone()))?
        .transpose(0, 1)?
        .copy()?;
    let a = h.constant(lcm[0].clone());
    let u = h.constant(lcm[1].clone());
    let w = h.constant(lcm[2].clone());
    let cov = Lcm::new(&a, 1.0f32, &u, &w)?;
    cov.nll(&r)?.mean_all()?.mul_scalar(1.0 / c as f32)
}

/// The `[64, 112]` matrix whose product with a row-major 8×8 image gives its 56 horizontal
/// and 56 vertical neighbour differences.
pub fn tv_matrix(dev: &Device) -> Result<Tensor> {
    let mut d = vec![0f32; 64 * 112];
    let mut k = 0;
    for i in 0..8 {
        for j in 0..7 {
            d[(i * 8 + j + 1) * 112 + k] = 1.0;
            d[(i * 8 + j) * 112 + k] = -1.0;
            k += 1;
        }
    }
    for i in 0..7 {
        for j in 0..8 {
            d[((i + 1) * 8 + j) * 112 + k] = 1.0;
            d[(i * 8 + j) * 112 + k] = -1.0;
            k += 1;
        }
    }
    Tensor::from_slice(dev, &[64, 112], &d)
}

/// Total variation of 8×8 images `x [N, 64]`: `(1/N) Σ_n Σ_{i,j} |x_{n,i,j+1} − x_{n,i,j}| +
/// |x_{n,i+1,j} − x_{n,i,j}|` (anisotropic, summed per image, averaged over images);
/// `tvd` = [`tv_matrix`].
pub fn tv8(x: &Var, tvd: &Tensor) -> Result<Var> {
    let n = x.shape()[0];
    x.matmul(&x.constant(tvd.clone()))?
        .abs()?
        .sum_all()?
        .mul_scalar(1.0 / n as f32)
}

/// Inversion settings.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct InvConfig {
    /// Adam steps (spec: 1 000).
    pub steps: usize,
    /// Adam learning rate (spec: 0.05).
    pub lr: f32,
    /// Samples per old class (spec: 150).
    pub per_class: usize,
    /// `α_frob` (0 = the baseline: diagonal BN statistics only).
    pub alpha: f32,
    /// TV weight (spec: 0.01).
    pub tv: f32,
}

/// One inversion problem: the frozen eval-mode teacher for a fixed batch of `N` rows with
/// labels `y`, its layer targets (pre-broadcast), α_frob and the TV weight.
pub struct InvProblem {
    frozen: Frozen,
    y: Tensor,
    targets: [LayerTarget; 2],
    mean_full: [Tensor; 2],
    tvd: Tensor,
    alpha: f32,
    tv: f32,
}

impl InvProblem {
    /// The problem for `y` (class positions `< n_old`, one per row).
    pub fn new(
        dev: &Device,
        teacher: &Net,
        targets: &[LayerTarget; 2],
        y: &[u32],
        n_old: usize,
        alpha: f32,
        tv: f32,
    ) -> Result<InvProblem> {
        let n = y.len();
        let full = |t: &Tensor| -> Result<Tensor> {
            let c = t.numel();
            ops::copy(&ops::broadcast_to(&t.reshape(&[1, c])?, &[n, c])?)
        };
        Ok(InvProblem {
            frozen: teacher.frozen(n, n_old)?,
            y: one_hot(dev, y, 0, n_old)?,
            mean_full: [full(&targets[0].mean)?, full(&targets[1].mean)?],
            targets: targets.clone(),
            tvd: tv_matrix(dev)?,
            alpha,
            tv,
        })
    }

    /// `(total loss, L_LCM when α > 0)` of `x [N, 64]`:
    /// `CE + Σ_l(‖μ̂_l − μ_l‖² + ‖σ̂_l² − σ_l²‖²) + α·L_LCM + tv·TV`, with the batch variance
    /// `σ̂² = mean(h²) − μ̂²` (biased).
    pub fn loss(&self, x: &Var) -> Result<(Var, Option<Var>)> {
        let (h, z) = self.frozen.forward(x)?;
        let mut loss = crate::losses::soft_cross_entropy(&z, &self.y)?;
        let mut lcm_terms: Vec<Var> = Vec::new();
        for ((hl, t), mf) in h.iter().zip(&self.targets).zip(&self.mean_full) {
            let mu = hl.mean(0)?;
            let var = hl.mul(hl)?.mean(0)?.sub(&mu.mul(&mu)?)?;
            let dm = mu.sub(&x.constant(t.mean.clone()))?;
            let dv = var.sub(&x.constant(t.var.clone()))?;
            loss = loss
                .add(&dm.mul(&dm)?.sum_all()?)?
                .add(&dv.mul(&dv)?.sum_all()?)?;
            if self.alpha > 0.0 {
                if let Some(lc) = &t.lcm {
                    lcm_terms.push(lcm_nll_term(hl, mf, lc)?);
                }
            }
        }
        let l_lcm = match lcm_terms.len() {
            0 => None,
            k => {
                let mut s = lcm_terms[0].clone();
                for r in &lcm_terms[1..] {
                    s = s.add(r)?;
                }
                Some(s.mul_scalar(1.0 / k as f32)?)
            }
        };
        if let Some(l) = &l_lcm {
            loss = loss.add(&l.mul_scalar(self.alpha)?)?;
        }
        loss = loss.add(&tv8(x, &self.tvd)?.mul_scalar(self.tv)?)?;
        Ok((loss, l_lcm))
    }
}

/// A synthetic buffer.
#[derive(Clone, Debug, Default)]
pub struct Inverted {
    /// `x̂`, row-major `[N, 64]` (standardised pixel space).
    pub x: Vec<f32>,
    /// Class positions (uniform over the old classes, `per_class` each).
    pub y: Vec<u32>,
    /// Loss at the first step.
    pub loss_start: f64,
    /// Loss at the last step.
    pub loss_end: f64,
    /// The eval-mode teacher's accuracy on `(x̂, y)`.
    pub teacher_acc: f64,
}

/// Inverts `teacher` over its `n_old` classes: `per_class · n_old` samples in one
/// mixed-class batch, `x̂ ~ N(0, I)`, Adam (`cfg.lr`, `cfg.steps` steps) on
/// [`InvProblem::loss`]. `progress` is called once per step.
pub fn invert(
    dev: &Device,
    teacher: &Net,
    n_old: usize,
    targets: &[LayerTarget; 2],
    cfg: &InvConfig,
    seed: u64,
    mut progress: impl FnMut(),
) -> Result<Inverted> {
    let n = cfg.per_class * n_old;
    let y: Vec<u32> = (0..n).map(|i| (i % n_old) as u32).collect();
    let prob = InvProblem::new(dev, teacher, targets, &y, n_old, cfg.alpha, cfg.tv)?;
    let mut rng = SplitMix64::stream(seed, 0x1e7);
    let mut x = ops::normal(dev, &[n, D_IN], 0.0, 1.0, rng.next_u64())?;
    let mut opt = Adam::new(cfg.lr);
    let (mut loss_start, mut loss_end) = (f64::NAN, f64::NAN);
    for s in 0..cfg.steps {
        let tape = Tape::new();
        let xv = tape.leaf(x.clone());
        let (loss, _) = prob.loss(&xv)?;
        let g = backward(&loss)?;
        let gx = match g.get(&xv) {
            Some(t) => t.clone(),
            None => ops::zeros(dev, &[n, D_IN], ops::DType::F32)?,
        };
        if s == 0 {
            loss_start = loss.value().to_scalar()? as f64;
        }
        if s + 1 == cfg.steps {
            loss_end = loss.value().to_scalar()? as f64;
        }
        opt.step(&mut [&mut x], &[gx])?;
        progress();
    }
    let xh = x.to_vec::<f32>()?;
    let teacher_acc = teacher.eval_host(dev, &xh, n_old)?.accuracy(&y);
    Ok(Inverted {
        x: xh,
        y,
        loss_start,
        loss_end,
        teacher_acc,
    })
}
