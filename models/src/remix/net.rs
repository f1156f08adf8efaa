//! The E4 network (64 → 128 (BN1d, ReLU) → 128 (BN1d, ReLU) → linear head), the digits task
//! sequence, and the plain training and evaluation helpers the runs share.

use std::rc::Rc;

use lapis_graph::nn::{Param, ParamVars, Params};
use lapis_graph::optim::Adam;
use lapis_graph::{backward, Tape, Var};
use lapis_ops::{self as ops, DType, Device, LapisError, Result, Tensor};

use crate::data::{digits, stratified_split, SplitMix64, Standardizer};
use lapis_graph::nn::{BatchNorm1d, BnMode};

/// Input width (8×8 pixels).
pub const D_IN: usize = 64;
/// Hidden width = the channels `C` of both BatchNorm layers.
pub const HIDDEN: usize = 128;
/// Classes of digits.
pub const CLASSES: usize = 10;
/// Classes per task.
pub const PER_TASK: usize = 2;

/// Rows of standardised pixels with their labels as *positions* in the run's class order
/// (position `p` belongs to task `p / 2`).
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Row-major `[n, 64]`, standardised with the training statistics.
    pub x: Vec<f32>,
    /// Class position of each row.
    pub y: Vec<u32>,
}

impl Split {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The rows whose position is in `lo..hi`.
    pub fn classes(&self, lo: u32, hi: u32) -> Split {
        let mut out = Split::default();
        for (i, &y) in self.y.iter().enumerate() {
            if (lo..hi).contains(&y) {
                out.x.extend_from_slice(&self.x[i * D_IN..(i + 1) * D_IN]);
                out.y.push(y);
            }
        }
        out
    }

    /// Rows `rows` (in order).
    pub fn rows(&self, rows: &[usize]) -> Split {
        let mut out = Split::default();
        for &i in rows {
            out.x.extend_from_slice(&self.x[i * D_IN..(i + 1) * D_IN]);
            out.y.push(self.y[i]);
        }
        out
    }

    /// Concatenation of two splits.
    pub fn concat(&self, other: &Split) -> Split {
        let mut out = self.clone();
        out.x.extend_from_slice(&other.x);
        out.y.extend_from_slice(&other.y);
        out
    }
}

/// The class-incremental digits of one seed (spec §3 E4).
#[derive(Clone, Debug)]
pub struct TaskData {
    /// Training rows.
    pub train: Split,
    /// Held-out rows (the 30 % test side, or the validation side when selecting α).
    pub test: Split,
    /// `order[p]` = the digit at class position `p` (a per-seed permutation).
    pub order: Vec<u32>,
    /// The standardiser fitted on the training rows (pixels/16).
    pub standardizer: Standardizer,
}

/// Digits: pixels/16, stratified 70/30 split (1258/539) seeded by `seed`, standardised with
/// the train statistics, class order a permutation drawn from `seed`. With `validation`,
/// the 70 % side is split again 80/20 (stratified) and the 20 % plays the held-out side
/// (the α_frob selection).
pub fn task_data(seed: u64, validation: bool) -> Result<TaskData> {
    let ds = digits()?;
    let labels = ds.labels().unwrap_or_default().to_vec();
    let n = labels.len();
    let n_train = (0.7 * n as f64).round() as usize;
    let (mut tr, mut te) = stratified_split(&labels, CLASSES, n_train, seed)?;
    if validation {
        let sub: Vec<u32> = tr.iter().map(|&i| labels[i]).collect();
        let (a, b) = stratified_split(
            &sub,
            CLASSES,
            (0.8 * tr.len() as f64).round() as usize,
            seed ^ 0x7a1,
        )?;
        te = b.iter().map(|&k| tr[k]).collect();
        tr = a.iter().map(|&k| tr[k]).collect();
    }
    let mut order: Vec<u32> = (0..CLASSES as u32).collect();
    SplitMix64::stream(seed, 0x0de).shuffle(&mut order);
    let mut pos = [0u32; CLASSES];
    for (p, &c) in order.iter().enumerate() {
        pos[c as usize] = p as u32;
    }
    let feats = ds.features();
    let pick = |rows: &[usize]| -> Split {
        let mut s = Split::default();
        for &i in rows {
            s.x.extend(feats[i * D_IN..(i + 1) * D_IN].iter().map(|v| v / 16.0));
            s.y.push(pos[labels[i] as usize]);
        }
        s
    };
    let (mut train, mut test) = (pick(&tr), pick(&te));
    let st = Standardizer::fit(&train.x, D_IN)?;
    st.apply(&mut train.x)?;
    st.apply(&mut test.x)?;
    Ok(TaskData {
        train,
        test,
        order,
        standardizer: st,
    })
}

/// The network: body `64 → 128 (BN, ReLU) → 128 (BN, ReLU)` and a linear head over all 10
/// class positions, of which a task-`t` model uses the first `2t` (the growing head: a
/// column starts to learn when its class arrives; Adam leaves unused columns untouched
/// since their gradients are 0). Linear weights `U(±1/√in)`, biases 0 (PyTorch ranges).
#[derive(Clone)]
pub struct Net {
    /// Body parameters (two linears and the BN affine parameters).
    pub body: Params,
    /// Head parameters `w3 [128, 10]`, `b3 [10]`.
    pub head: Params,
    w1: Param,
    b1: Param,
    w2: Param,
    b2: Param,
    w3: Param,
    b3: Param,
    /// The two BatchNorm layers (their running statistics travel with a clone).
    pub bn: [BatchNorm1d; 2],
}

/// The activations of one forward pass.
pub struct Fwd {
    /// BN inputs `h_l [B, 128]` of both layers.
    pub h: [Var; 2],
    /// Penultimate features `[B, 128]`.
    pub feat: Var,
}

fn linear(
    p: &mut Params,
    dev: &Device,
    name: &str,
    i: usize,
    o: usize,
    seed: u64,
) -> Result<(Param, Param)> {
    let bound = 1.0 / (i as f32).sqrt();
    let w = p.add(
        format!("{name}.weight"),
        ops::uniform(dev, &[i, o], -bound, bound, seed)?,
    )?;
    let b = p.add(format!("{name}.bias"), ops::zeros(dev, &[o], DType::F32)?)?;
    Ok((w, b))
}

impl Net {
    /// A fresh network.
    pub fn new(dev: &Device, seed: u64) -> Result<Net> {
        let mut rng = SplitMix64::stream(seed, 0x4e7);
        let mut body = Params::new();
        let (w1, b1) = linear(&mut body, dev, "l1", D_IN, HIDDEN, rng.next_u64())?;
        let bn1 = BatchNorm1d::new(&mut body, "bn1", dev, HIDDEN)?;
        let (w2, b2) = linear(&mut body, dev, "l2", HIDDEN, HIDDEN, rng.next_u64())?;
        let bn2 = BatchNorm1d::new(&mut body, "bn2", dev, HIDDEN)?;
        let mut head = Params::new();
        let (w3, b3) = linear(&mut head, dev, "head", HIDDEN, CLASSES, rng.next_u64())?;
        Ok(Net {
            body,
            head,
            w1,
            b1,
            w2,
            b2,
            w3,
            b3,
            bn: [bn1, bn2],
        })
    }

    /// The body on `x [B, 64]`.
    pub fn body_forward(&self, bv: &ParamVars, x: &Var, mode: BnMode) -> Result<Fwd> {
        let h1 = x.matmul(bv.get(self.w1)?)?.add(bv.get(self.b1)?)?;
        let a1 = self.bn[0].forward(bv, &h1, mode)?.relu()?;
        let h2 = a1.matmul(bv.get(self.w2)?)?.add(bv.get(self.b2)?)?;
        let feat = self.bn[1].forward(bv, &h2, mode)?.relu()?;
        Ok(Fwd { h: [h1, h2], feat })
    }

    /// Head logits over the first `n` class positions, `[B, n]`.
    pub fn head_forward(&self, hv: &ParamVars, feat: &Var, n: usize) -> Result<Var> {
        feat.matmul(hv.get(self.w3)?)?
            .add(hv.get(self.b3)?)?
            .slice(1, 0, n)
    }

    /// The eval-mode network frozen for `rows`-row batches over the first `n` classes, with
    /// every per-column constant pre-broadcast to `[rows, ·]` (one launch per elementwise
    /// op, no broadcasting on the hot path of the inversion) and each BN folded into
    /// `h·(γ/√(v+ε)) + (β − m·γ/√(v+ε))` (exactly the eval-mode BN).
    pub fn frozen(&self, rows: usize, n: usize) -> Result<Frozen> {
        let full = |t: &Tensor, c: usize| -> Result<Tensor> {
            ops::copy(&ops::broadcast_to(&t.reshape(&[1, c])?, &[rows, c])?)
        };
        let g = |p: Param, reg: &Params| -> Result<Tensor> { Ok(reg.get(p)?.clone()) };
        let mut bn = Vec::new();
        for (l, b) in self.bn.iter().enumerate() {
            let (gamma, beta) = {
                let names = [format!("bn{}.weight", l + 1), format!("bn{}.bias", l + 1)];
                let find = |nm: &str| {
                    self.body.find(nm).ok_or_else(|| {
                        LapisError::invalid("Net::frozen", "params", nm.to_string(), "missing")
                    })
                };
                (
                    g(find(&names[0])?, &self.body)?,
                    g(find(&names[1])?, &self.body)?,
                )
            };
            let inv = ops::div(
                &gamma,
                &ops::sqrt(&ops::add_scalar(&b.running_var(), b.eps())?)?,
            )?;
            let shift = ops::sub(&beta, &ops::mul(&b.running_mean(), &inv)?)?;
            bn.push((full(&inv, HIDDEN)?, full(&shift, HIDDEN)?));
        }
        let w3 = ops::copy(&ops::slice(&g(self.w3, &self.head)?, 1, 0, n)?)?;
        let b3 = ops::slice(&g(self.b3, &self.head)?, 0, 0, n)?;
        Ok(Frozen {
            w1: g(self.w1, &self.body)?,
            b1: full(&g(self.b1, &self.body)?, HIDDEN)?,
            w2: g(self.w2, &self.body)?,
            b2: full(&g(self.b2, &self.body)?, HIDDEN)?,
            bn: [bn[0].clone(), bn[1].clone()],
            w3,
            b3: full(&ops::copy(&b3)?, n)?,
        })
    }

    /// Eval-mode forward of host rows (no gradient): BN inputs, features and logits over the
    /// first `n` positions, read back to the host.
    pub fn eval_host(&self, dev: &Device, x: &[f32], n: usize) -> Result<EvalOut> {
        let rows = x.len() / D_IN;
        let tape = Tape::new();
        let bv = self.body.constants_on(&tape);
        let hv = self.head.constants_on(&tape);
        let xv = tape.constant(Tensor::from_slice(dev, &[rows, D_IN], x)?);
        let f = self.body_forward(&bv, &xv, BnMode::Eval)?;
        let logits = self.head_forward(&hv, &f.feat, n)?;
        Ok(EvalOut {
            rows,
            h: [f.h[0].value().to_vec()?, f.h[1].value().to_vec()?],
            logits: logits.value().to_vec()?,
            classes: n,
        })
    }

    /// Accuracy (fraction) of the eval-mode model on `s`, over the first `n` positions.
    pub fn accuracy(&self, dev: &Device, s: &Split, n: usize) -> Result<f64> {
        if s.is_empty() {
            return Ok(f64::NAN);
        }
        let out = self.eval_host(dev, &s.x, n)?;
        Ok(out.accuracy(&s.y))
    }
}

/// An eval-mode network with its constants pre-broadcast to a fixed batch ([`Net::frozen`]).
pub struct Frozen {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    bn: [(Tensor, Tensor); 2],
    w3: Tensor,
    b3: Tensor,
}

impl Frozen {
    /// `(BN inputs h_1, h_2, logits)` of `x [rows, 64]` (a tracked or constant Var).
    pub fn forward(&self, x: &Var) -> Result<([Var; 2], Var)> {
        let c = |t: &Tensor| x.constant(t.clone());
        let h1 = x.matmul(&c(&self.w1))?.add(&c(&self.b1))?;
        let a1 = h1.mul(&c(&self.bn[0].0))?.add(&c(&self.bn[0].1))?.relu()?;
        let h2 = a1.matmul(&c(&self.w2))?.add(&c(&self.b2))?;
        let a2 = h2.mul(&c(&self.bn[1].0))?.add(&c(&self.bn[1].1))?.relu()?;
        let z = a2.matmul(&c(&self.w3))?.add(&c(&self.b3))?;
        Ok(([h1, h2], z))
    }
}

/// Host copies of an eval-mode forward pass.
pub struct EvalOut {
    /// Rows.
    pub rows: usize,
    /// BN inputs of both layers, row-major `[rows, 128]`.
    pub h: [Vec<f32>; 2],
    /// Logits `[rows, classes]`.
    pub logits: Vec<f32>,
    /// Logit columns.
    pub classes: usize,
}

impl EvalOut {
    /// Fraction of rows whose argmax is the label.
    pub fn accuracy(&self, y: &[u32]) -> f64 {
        let c = self.classes;
        let hit = y
            .iter()
            .enumerate()
            .filter(|(i, &yi)| {
                let row = &self.logits[i * c..(i + 1) * c];
                let am = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                    )
                    .0;
                am as u32 == yi
            })
            .count();
        hit as f64 / y.len().max(1) as f64
    }
}

/// One-hot `[rows, n]` of positions `y − offset` (device tensor; no host read later).
pub fn one_hot(dev: &Device, y: &[u32], offset: u32, n: usize) -> Result<Tensor> {
    let mut v = vec![0f32; y.len() * n];
    for (i, &l) in y.iter().enumerate() {
        let k = l
            .checked_sub(offset)
            .map(|k| k as usize)
            .filter(|&k| k < n)
            .ok_or_else(|| {
                LapisError::invalid(
                    "remix::one_hot",
                    "label",
                    l,
                    format!("outside {offset}..{}", offset as usize + n),
                )
            })?;
        v[i * n + k] = 1.0;
    }
    Tensor::from_slice(dev, &[y.len(), n], &v)
}

/// Optimiser state of a network: one Adam per registry.
pub struct Opt {
    /// Body optimiser.
    pub body: Adam,
    /// Head optimiser.
    pub head: Adam,
}

impl Opt {
    /// Two Adams at `lr`.
    pub fn new(lr: f32) -> Opt {
        Opt {
            body: Adam::new(lr),
            head: Adam::new(lr),
        }
    }
}

fn grads_for(g: &lapis_graph::Grads, vars: &ParamVars, p: &Params) -> Result<Vec<Tensor>> {
    vars.iter()
        .zip(p.iter())
        .map(|(v, (_, t))| match g.get(v) {
            Some(t) => Ok(t.clone()),
            None => ops::zeros(t.device(), t.shape(), DType::F32),
        })
        .collect()
}

/// One optimiser step of `net` on the loss `f(body vars, head vars, tape)`; with
/// `head_only` the body is put on the tape as constants and not stepped. Returns the loss
/// (a device Var: read it only when logging).
pub fn step(
    net: &mut Net,
    opt: &mut Opt,
    head_only: bool,
    f: impl FnOnce(&Net, &ParamVars, &ParamVars, &Rc<Tape>) -> Result<Var>,
) -> Result<Var> {
    let tape = Tape::new();
    let bv = if head_only {
        net.body.constants_on(&tape)
    } else {
        net.body.on_tape(&tape)
    };
    let hv = net.head.on_tape(&tape);
    let loss = f(net, &bv, &hv, &tape)?;
    let g = backward(&loss)?;
    if !head_only {
        let gb = grads_for(&g, &bv, &net.body)?;
        opt.body.step(&mut net.body.tensors_mut(), &gb)?;
    }
    let gh = grads_for(&g, &hv, &net.head)?;
    opt.head.step(&mut net.head.tensors_mut(), &gh)?;
    Ok(loss)
}

/// Mini-batches of `n` rows (batch `b`, shuffled per epoch from `seed`); a last batch of
/// one row is dropped (a BatchNorm batch needs two rows).
pub fn epoch_batches(n: usize, b: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::stream(seed, epoch);
    let mut idx: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut idx);
    idx.chunks(b)
        .filter(|c| c.len() >= 2)
        .map(|c| c.to_vec())
        .collect()
}

/// Plain training: `epochs` epochs of cross-entropy over the first `n_seen` positions on
/// `data` (task 1; fine-tuning without replay; joint training), batch `batch`.
#[allow(clippy::too_many_arguments)]
pub fn train_ce(
    dev: &Device,
    net: &mut Net,
    opt: &mut Opt,
    data: &Split,
    n_seen: usize,
    epochs: usize,
    batch: usize,
    seed: u64,
) -> Result<f64> {
    let mut last = f64::NAN;
    for e in 0..epochs {
        let batches = epoch_batches(data.len(), batch, seed, e as u64);
        let nb = batches.len();
        for (k, rows) in batches.into_iter().enumerate() {
            let s = data.rows(&rows);
            let x = Tensor::from_slice(dev, &[rows.len(), D_IN], &s.x)?;
            let y = one_hot(dev, &s.y, 0, n_seen)?;
            let loss = step(net, opt, false, |net, bv, hv, tape| {
                let f = net.body_forward(bv, &tape.constant(x), BnMode::Train)?;
                let z = net.head_forward(hv, &f.feat, n_seen)?;
                crate::losses::soft_cross_entropy(&z, &y)
            })?;
            if e + 1 == epochs && k + 1 == nb {
                last = loss.value().to_scalar()? as f64;
            }
        }
    }
    Ok(last)
}
