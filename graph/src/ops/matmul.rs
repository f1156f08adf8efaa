//! Batched matrix product on the tape: `Y = A B` for `A [..., m, k]`, `B [..., k, n]` with
//! broadcast batch dims. VJP [`lapis_ops::matmul_backward`]: `Ā = Ȳ Bᵀ`, `B̄ = Aᵀ Ȳ`, each
//! summed over the batch dims its operand was broadcast along.

use lapis_ops::{self as ops, Result};

use crate::var::Var;

impl Var {
    /// `self @ rhs` (batched, broadcasting the leading dims).
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        self.same_tape(rhs, "matmul")?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = ops::matmul(&a, &b)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let (ga, gb) = ops::matmul_backward(&a, &b, g)?;
                Ok(vec![Some(ga), Some(gb)])
            }),
        ))
    }

    /// `op(self) @ op(rhs)` with `op(x) = xᵀ` (last two axes) where `ta`/`tb` is set
    /// ([`lapis_ops::matmul_t`]: the transposes are read through strides, never copied, in
    /// the forward and in the VJP). Attention's `Q Kᵀ` is `q.matmul_t(&k, false, true)`.
    pub fn matmul_t(&self, rhs: &Var, ta: bool, tb: bool) -> Result<Var> {
        self.same_tape(rhs, "matmul_t")?;
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = ops::matmul_t(&a, &b, ta, tb)?;
        Ok(self.record(
            &[self, rhs],
            y,
            Box::new(move |g| {
                let (ga, gb) = ops::matmul_t_backward(&a, &b, ta, tb, g)?;
                Ok(vec![Some(ga), Some(gb)])
            }),
        ))
    }
}
