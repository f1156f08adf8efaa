//! Batched matrix product on the tape: `Y = A B` for `A [..., m, k]`, `B [..., k, n]` with
//! broadcast batch dims. VJPs `Ā = Ȳ Bᵀ`, `B̄ = Aᵀ Ȳ`, each summed over the batch dims its
//! operand was broadcast along (a rank-2 weight shared by a batch gets the batch's sum).

use lapis_ops::{self as ops, Result, Tensor};

use crate::var::{sum_to_shape, Var};

/// Swaps the last two axes.
fn mt(x: &Tensor) -> Result<Tensor> {
    let r = x.rank();
    ops::transpose(x, r - 2, r - 1)
}

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
                let ga = ops::matmul(g, &mt(&b)?)?;
                let gb = ops::matmul(&mt(&a)?, g)?;
                Ok(vec![
                    Some(sum_to_shape(&ga, a.shape())?),
                    Some(sum_to_shape(&gb, b.shape())?),
                ])
            }),
        ))
    }
}
