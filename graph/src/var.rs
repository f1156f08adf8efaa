//! Tape-based reverse-mode autodiff (the first slice of issue 5).
//!
//! A [`Tape`] records, for every [`Var`] produced by an op, a backward closure mapping the
//! output's gradient to its inputs' gradients (vector–Jacobian products). Node ids grow in
//! creation order, which is a topological order, so [`backward`] walks the ids downwards,
//! accumulates gradients of Vars used more than once, and drops each closure (and the
//! tensors it captured) as soon as it has run. Leaves made with [`Tape::leaf`] are tracked;
//! [`Tape::constant`] and [`Var::detach`] are not, and no closure is recorded for an op
//! whose inputs are all untracked (a no-grad region is simply untracked inputs).
//!
//! Broadcasting ops reduce their gradients back to each input's shape (sums over the
//! broadcast axes). Every op here has its VJP next to its forward.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use lapis_ops::{LapisError, Result, Tensor};

type Backward = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    parents: Vec<usize>,
    backward: Option<Backward>,
}

/// The record of one forward computation.
#[derive(Default)]
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
}

/// A tensor with its place on a tape.
#[derive(Clone)]
pub struct Var {
    tape: Rc<Tape>,
    id: usize,
    value: Tensor,
    tracked: bool,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var#{}({:?}, tracked: {})",
            self.id, self.value, self.tracked
        )
    }
}

impl Tape {
    /// A new, empty tape.
    pub fn new() -> Rc<Tape> {
        Rc::new(Tape::default())
    }

    fn push(
        self: &Rc<Self>,
        value: Tensor,
        tracked: bool,
        parents: Vec<usize>,
        bw: Option<Backward>,
    ) -> Var {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            parents,
            backward: bw,
        });
        Var {
            tape: self.clone(),
            id: nodes.len() - 1,
            value,
            tracked,
        }
    }

    /// A tracked leaf (a parameter or an input whose gradient is wanted).
    pub fn leaf(self: &Rc<Self>, value: Tensor) -> Var {
        self.push(value, true, Vec::new(), None)
    }

    /// An untracked constant.
    pub fn constant(self: &Rc<Self>, value: Tensor) -> Var {
        self.push(value, false, Vec::new(), None)
    }
}

/// Gradients by Var, from [`backward`].
pub struct Grads {
    by_id: HashMap<usize, Tensor>,
}

impl Grads {
    /// `∂loss/∂v`, or `None` if `v` is untracked or does not reach the loss.
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.by_id.get(&v.id)
    }
}

/// Sums `g` down to `shape` (undoing numpy broadcasting).
pub fn sum_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let mut g = g.clone();
    while g.rank() > shape.len() {
        g = lapis_ops::sum(&g, 0)?;
        let s = g.shape()[1..].to_vec();
        g = g.reshape(&s)?;
    }
    for (axis, &want) in shape.iter().enumerate() {
        if want == 1 && g.shape()[axis] != 1 {
            g = lapis_ops::sum(&g, axis)?;
        }
    }
    g.reshape(shape)
}

impl Var {
    /// The value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// Whether gradients flow into this Var.
    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// The same value, untracked (gradients stop here).
    pub fn detach(&self) -> Var {
        self.tape.constant(self.value.clone())
    }

    fn same_tape(&self, other: &Var, op: &'static str) -> Result<()> {
        if Rc::ptr_eq(&self.tape, &other.tape) {
            Ok(())
        } else {
            Err(LapisError::invalid(
                op,
                "rhs",
                "a Var of another tape",
                "both Vars must share one tape",
            ))
        }
    }

    /// Records `value = f(inputs)` with VJP `bw` (called only if some input is tracked).
    fn record(&self, inputs: &[&Var], value: Tensor, bw: Backward) -> Var {
        let tracked = inputs.iter().any(|v| v.tracked);
        if tracked {
            let parents = inputs
                .iter()
                .map(|v| if v.tracked { v.id } else { usize::MAX })
                .collect();
            self.tape.push(value, true, parents, Some(bw))
        } else {
            self.tape.constant(value)
        }
    }

    /// `self + rhs` (broadcasting).
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "add")?;
        let (sa, sb) = (self.value.shape().to_vec(), rhs.value.shape().to_vec());
        let y = lapis_ops::add(&self.value, &rhs.value)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                Ok(vec![
                    Some(sum_to_shape(g, &sa)?),
                    Some(sum_to_shape(g, &sb)?),
                ])
            }),
        ))
    }

    /// `self − rhs` (broadcasting).
    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "sub")?;
        let (sa, sb) = (self.value.shape().to_vec(), rhs.value.shape().to_vec());
        let y = lapis_ops::sub(&self.value, &rhs.value)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                Ok(vec![
                    Some(sum_to_shape(g, &sa)?),
                    Some(sum_to_shape(&lapis_ops::neg(g)?, &sb)?),
                ])
            }),
        ))
    }

    /// `self ⊙ rhs` (broadcasting).
    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "mul")?;
        let (a, b) = (self.value.clone(), rhs.value.clone());
        let y = lapis_ops::mul(&a, &b)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                Ok(vec![
                    Some(sum_to_shape(&lapis_ops::mul(g, &b)?, a.shape())?),
                    Some(sum_to_shape(&lapis_ops::mul(g, &a)?, b.shape())?),
                ])
            }),
        ))
    }

    /// `self · rhs` for 2-D operands (`[m, k] · [k, n]`).
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "matmul")?;
        let (a, b) = (self.value.clone(), rhs.value.clone());
        let y = lapis_ops::matmul(&a, &b)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let bt = lapis_ops::transpose(&b, 0, 1)?;
                let at = lapis_ops::transpose(&a, 0, 1)?;
                Ok(vec![
                    Some(lapis_ops::matmul(g, &bt)?),
                    Some(lapis_ops::matmul(&at, g)?),
                ])
            }),
        ))
    }

    /// `max(x, 0)`; gradient 0 at 0.
    pub fn relu(&self) -> Result<Var> {
        let y = lapis_ops::relu(&self.value)?;
        let mask = lapis_ops::sign(&y)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(lapis_ops::mul(g, &mask)?)])),
        ))
    }

    /// `log_softmax` along `axis`: VJP `g − softmax · Σ g`.
    pub fn log_softmax(&self, axis: usize) -> Result<Var> {
        let y = lapis_ops::log_softmax(&self.value, axis)?;
        let p = lapis_ops::exp(&y)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                let s = lapis_ops::sum(g, axis)?;
                Ok(vec![Some(lapis_ops::sub(g, &lapis_ops::mul(&p, &s)?)?)])
            }),
        ))
    }

    /// The sum of all entries, shape `[1]`.
    pub fn sum_all(&self) -> Result<Var> {
        let shape = self.value.shape().to_vec();
        let y = lapis_ops::sum_all(&self.value)?.reshape(&[1])?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| {
                Ok(vec![Some(lapis_ops::broadcast_to(
                    &g.reshape(&vec![1; shape.len()])?,
                    &shape,
                )?)])
            }),
        ))
    }

    /// `a·x + b` for scalars.
    pub fn affine(&self, a: f32, b: f32) -> Result<Var> {
        let y = lapis_ops::affine(&self.value, a, b)?;
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(lapis_ops::affine(g, a, 0.0)?)])),
        ))
    }
}

impl Var {
    /// LapSum soft top-k of each row of `self [B, n]` with per-row `k [B]` and `alpha [B]`
    /// (both may be tracked: learnable k and temperature). VJP from
    /// [`lapis_ops::SoftTopK::backward`].
    pub fn soft_topk(&self, k: &Var, alpha: &Var) -> Result<Var> {
        self.same_tape(k, "soft_topk")?;
        self.same_tape(alpha, "soft_topk")?;
        let out = lapis_ops::soft_topk(&self.value, &k.value, &alpha.value)?;
        let y = out.p.clone();
        Ok(self.record(
            &[self, k, alpha],
            y,
            Box::new(move |g| {
                let gr = out.backward(g)?;
                Ok(vec![Some(gr.x), Some(gr.k), Some(gr.alpha)])
            }),
        ))
    }

    /// The exact Laplace operator `Y = K(t, s; λ) V` with `self` the values `V [n, c]`,
    /// anchors `s [n]`, `t [m]` and the rate `lambda [1]` (read on the host; all four may be
    /// tracked). VJP from [`lapis_ops::laplace_apply_backward`].
    pub fn laplace_apply(&self, s: &Var, t: &Var, lambda: &Var) -> Result<Var> {
        for o in [s, t, lambda] {
            self.same_tape(o, "laplace_apply")?;
        }
        let lam = lambda.value.to_scalar()?;
        let (sv, tv, vv) = (s.value.clone(), t.value.clone(), self.value.clone());
        let y = lapis_ops::laplace_apply(&sv, &tv, &vv, lam)?;
        Ok(self.record(
            &[self, s, t, lambda],
            y,
            Box::new(move |g| {
                let gr = lapis_ops::laplace_apply_backward(&sv, &tv, &vv, lam, g)?;
                let gl = Tensor::from_slice(sv.device(), &[1], &[gr.lambda])?;
                Ok(vec![
                    Some(gr.values),
                    Some(gr.sources),
                    Some(gr.targets),
                    Some(gl),
                ])
            }),
        ))
    }
}

/// Reverse-mode sweep from a scalar `loss` (one element): gradients of every tracked Var
/// that reaches it. Closures are consumed (and their buffers freed) as the sweep passes.
pub fn backward(loss: &Var) -> Result<Grads> {
    if loss.value.numel() != 1 {
        return Err(LapisError::shape(
            "backward",
            loss.value.shape(),
            "the loss must have one element",
        ));
    }
    let mut by_id: HashMap<usize, Tensor> = HashMap::new();
    if !loss.tracked {
        return Ok(Grads { by_id });
    }
    by_id.insert(
        loss.id,
        lapis_ops::ones(
            loss.value.device(),
            loss.value.shape(),
            lapis_ops::DType::F32,
        )?,
    );
    let mut nodes = loss.tape.nodes.borrow_mut();
    for id in (0..=loss.id).rev() {
        let Some(g) = by_id.get(&id).cloned() else {
            continue;
        };
        let node = &mut nodes[id];
        let Some(bw) = node.backward.take() else {
            continue;
        };
        let parents = std::mem::take(&mut node.parents);
        for (p, gp) in parents.into_iter().zip(bw(&g)?) {
            let (Some(gp), true) = (gp, p != usize::MAX) else {
                continue;
            };
            let acc = match by_id.remove(&p) {
                Some(prev) => lapis_ops::add(&prev, &gp)?,
                None => gp,
            };
            by_id.insert(p, acc);
        }
    }
    Ok(Grads { by_id })
}
