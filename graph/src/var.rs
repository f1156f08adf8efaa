//! Tape-based reverse-mode autodiff.
//!
//! A [`Tape`] records, for every [`Var`] produced by an op, a backward closure mapping the
//! output's gradient `ȳ = ∂ℓ/∂y` to its inputs' gradients, the vector–Jacobian products
//! `x̄ = J_f(x)ᵀ ȳ`. Node ids grow in creation order, which is a topological order, so
//! [`backward`] walks the ids downwards, accumulates the gradients of Vars used more than
//! once (`x̄ = Σ_uses x̄_use`), and drops each closure (and the tensors it captured) as soon
//! as it has run; an interior node's gradient is dropped once its closure has consumed
//! it, so only the leaves' gradients are kept.
//!
//! Leaves made with [`Tape::leaf`] are tracked — parameters and inputs alike, so
//! `∂output/∂input` (what the attribution methods need) is an ordinary gradient.
//! [`Tape::constant`] and [`Var::detach`] are not tracked, no closure is recorded for an
//! op whose inputs are all untracked, and [`Tape::no_grad`] runs a region that records
//! nothing.
//!
//! The ops live in [`crate::ops`]: each records the forward of `lapis_ops` and, as its
//! closure, the matching `*_backward` function of `lapis_ops`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use lapis_ops::{LapisError, Result, Tensor};

/// A recorded VJP: the output's gradient in, one optional gradient per input out.
pub(crate) type Backward = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    parents: Vec<usize>,
    backward: Option<Backward>,
    retain: bool,
}

/// The record of one forward computation.
#[derive(Default)]
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
    paused: Cell<bool>,
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
            retain: false,
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

    /// Runs `f` with recording paused: every Var it produces is untracked (evaluation,
    /// teacher forward passes, target networks). Nests; the previous state is restored.
    pub fn no_grad<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = self.paused.replace(true);
        let out = f();
        self.paused.set(before);
        out
    }

    /// How many nodes the tape holds (for tests and memory accounting).
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether the tape holds no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many recorded closures (with the tensors they captured) are still alive:
    /// [`backward`] consumes those it passes.
    pub fn live_closures(&self) -> usize {
        self.nodes
            .borrow()
            .iter()
            .filter(|n| n.backward.is_some())
            .count()
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

pub use lapis_ops::sum_to_shape;

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

    /// Keeps this interior Var's gradient in [`Grads`] (by default only leaves keep
    /// theirs; interior gradients are freed as soon as they are consumed).
    pub fn retain_grad(&self) {
        if let Some(n) = self.tape.nodes.borrow_mut().get_mut(self.id) {
            n.retain = true;
        }
    }

    /// The tape this Var lives on.
    pub fn tape(&self) -> &Rc<Tape> {
        &self.tape
    }

    /// The shape of the value.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// An untracked constant on this Var's tape.
    pub fn constant(&self, value: Tensor) -> Var {
        self.tape.constant(value)
    }

    pub(crate) fn same_tape(&self, other: &Var, op: &'static str) -> Result<()> {
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
    pub(crate) fn record(&self, inputs: &[&Var], value: Tensor, bw: Backward) -> Var {
        let tracked = !self.tape.paused.get() && inputs.iter().any(|v| v.tracked);
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
        let node = &mut nodes[id];
        let Some(bw) = node.backward.take() else {
            continue; // a leaf: its gradient stays in the map
        };
        // An interior node: its gradient is consumed here and freed unless retained.
        let g = if node.retain {
            by_id.get(&id).cloned()
        } else {
            by_id.remove(&id)
        };
        let Some(g) = g else {
            continue; // does not reach the loss
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
