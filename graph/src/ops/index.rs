//! Indexing ops on the tape. Index tensors are u32 constants (no gradient). The VJPs are
//! each op's adjoint (gather ↔ scatter-add, index-select ↔ index-add), from
//! `lapis_ops::{gather, index_select, scatter_add, index_add}_backward`.

use lapis_ops::{self as ops, Result, Tensor};

use crate::var::Var;

impl Var {
    /// torch.gather along `axis`: `out[.., j, ..] = x[.., idx[.., j, ..], ..]`.
    /// VJP: `x̄ = scatter_add(0, axis, idx, ȳ)`.
    pub fn gather(&self, axis: usize, idx: &Tensor) -> Result<Var> {
        let y = ops::gather(self.value(), axis, idx)?;
        let (shape, idx) = (self.shape().to_vec(), idx.clone());
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::gather_backward(g, &shape, axis, &idx)?)])),
        ))
    }

    /// Rows (slices) `idx` of `self` along `axis`. VJP: `x̄ = index_add(ȳ, axis, idx, len)`.
    pub fn index_select(&self, axis: usize, idx: &Tensor) -> Result<Var> {
        let y = ops::index_select(self.value(), axis, idx)?;
        let (len, idx) = (self.shape()[axis], idx.clone());
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::index_select_backward(g, axis, &idx, len)?)])),
        ))
    }

    /// torch.scatter_add with `self` the base: `out = base`, `out[.., idx[p], ..] += src[p]`.
    /// VJPs: `basē = ȳ`, `src̄ = gather(ȳ, axis, idx)`.
    pub fn scatter_add(&self, axis: usize, idx: &Tensor, src: &Var) -> Result<Var> {
        self.same_tape(src, "scatter_add")?;
        let y = ops::scatter_add(self.value(), axis, idx, src.value())?;
        let idx = idx.clone();
        Ok(self.record(
            &[self, src],
            y,
            Box::new(move |g| {
                let (gb, gs) = ops::scatter_add_backward(g, axis, &idx)?;
                Ok(vec![Some(gb), Some(gs)])
            }),
        ))
    }

    /// index-add with `self` the source: `out[.., r, ..] = Σ_{j: idx[j] = r} src[.., j, ..]`,
    /// `out.shape[axis] = len`. VJP: `src̄ = index_select(ȳ, axis, idx)`.
    pub fn index_add(&self, axis: usize, idx: &Tensor, len: usize) -> Result<Var> {
        let y = ops::index_add(self.value(), axis, idx, len)?;
        let idx = idx.clone();
        Ok(self.record(
            &[self],
            y,
            Box::new(move |g| Ok(vec![Some(ops::index_add_backward(g, axis, &idx)?)])),
        ))
    }
}

impl Var {
    /// A grouped linear map (see [`lapis_ops::grouped`]): `y_r = x_r W[g_r] + b[g_r]` for
    /// rows with `mask_r > 0`, else 0; `self = x [M, din]`, `w [E, din, dout]`,
    /// `b [E, dout]`, `group` u32 `[M]`, `mask` f32 `[M]` (constants, no gradient), and
    /// `order` the routing's [`lapis_ops::GroupOrder`] (from [`lapis_ops::group_order`],
    /// shared by every grouped map over the same routing). VJPs:
    /// [`lapis_ops::grouped_linear_backward`].
    pub fn grouped_linear(
        &self,
        w: &Var,
        b: &Var,
        group: &Tensor,
        mask: &Tensor,
        order: &std::rc::Rc<ops::GroupOrder>,
    ) -> Result<Var> {
        self.same_tape(w, "grouped_linear")?;
        self.same_tape(b, "grouped_linear")?;
        let y = ops::grouped_linear(self.value(), w.value(), b.value(), group, mask)?;
        let (x, wv) = (self.value().clone(), w.value().clone());
        let (group, mask, order) = (group.clone(), mask.clone(), order.clone());
        Ok(self.record(
            &[self, w, b],
            y,
            Box::new(move |g| {
                let gr = ops::grouped_linear_backward(g, &x, &wv, &group, &mask, &order)?;
                Ok(vec![Some(gr.x), Some(gr.w), Some(gr.b)])
            }),
        ))
    }
}
