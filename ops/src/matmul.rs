//! Batched matrix product through `cubek-matmul`.
//!
//! `a [..., m, k] @ b [..., k, n] → [..., m, n]`; leading (batch) dims broadcast with
//! numpy rules (a rank-2 operand is shared by every batch). Accumulation is in f32.
//! `Strategy::Auto` picks a tensor-core/cmma kernel where the device has one and falls
//! back to a unit kernel (as on lavapipe).

use cubek::matmul::definition::MatmulElems;
use cubek::matmul::launch::{launch_ref, Strategy};
use cubek::std::InputBinding;

use crate::dispatch;
use crate::error::{LapisError, Result};
use crate::layout::broadcast_to;
use crate::tensor::Tensor;
use crate::validate;

/// `a @ b` with batch broadcasting.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    validate::same_device("matmul", a, b)?;
    validate::float("matmul", a)?;
    validate::same_dtype("matmul", a, b)?;
    if a.rank() < 2 || b.rank() < 2 {
        let bad = if a.rank() < 2 { a } else { b };
        return Err(LapisError::shape(
            "matmul",
            bad.shape(),
            "operands need rank >= 2 ([..., m, k] @ [..., k, n])",
        ));
    }
    let (m, ka) = (a.shape()[a.rank() - 2], a.shape()[a.rank() - 1]);
    let (kb, n) = (b.shape()[b.rank() - 2], b.shape()[b.rank() - 1]);
    if ka != kb {
        return Err(LapisError::ShapeMismatch {
            op: "matmul",
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        });
    }
    if b.rank() == 2 && a.rank() > 2 {
        // A shared rank-2 `b` (a Linear layer's weight): fold a's batch axes into its rows,
        // `[B…·m, k] @ [k, n]`, instead of broadcasting `b` to every batch (a copy of
        // B… × k × n elements per call).
        let rows = a.numel() / ka;
        let mut out_shape = a.shape()[..a.rank() - 1].to_vec();
        out_shape.push(n);
        return matmul(&a.reshape(&[rows, ka])?, b)?.reshape(&out_shape);
    }
    let (ba, bb) = (&a.shape()[..a.rank() - 2], &b.shape()[..b.rank() - 2]);
    let batch =
        crate::elementwise::broadcast_shape(ba, bb).ok_or_else(|| LapisError::ShapeMismatch {
            op: "matmul",
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        })?;
    let nb: usize = batch.iter().product();
    let full = |t: &Tensor, rows: usize, cols: usize| -> Result<Tensor> {
        let mut s = batch.clone();
        s.extend([rows, cols]);
        let t = if t.shape() == s.as_slice() {
            t.clone()
        } else {
            broadcast_to(t, &s)?
        };
        t.reshape(&[nb, rows, cols])
    };
    let a3 = full(a, m, ka)?;
    let b3 = full(b, ka, n)?;
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    if ka > MAX_INNER {
        // Inner dimension split in blocks (see `MAX_INNER`), partial products summed in f32.
        let mut acc: Option<Tensor> = None;
        for start in (0..ka).step_by(MAX_INNER) {
            let end = (start + MAX_INNER).min(ka);
            let f32_of = |t: Tensor| -> Result<Tensor> {
                if t.dtype() == crate::DType::F32 {
                    Ok(t)
                } else {
                    crate::to_dtype(&t, crate::DType::F32)
                }
            };
            let part = launch_3d(
                &f32_of(crate::slice(&a3, 2, start, end)?)?,
                &f32_of(crate::slice(&b3, 1, start, end)?)?,
            )?;
            acc = Some(match acc {
                None => part,
                Some(x) => crate::add(&x, &part)?,
            });
        }
        let out = acc.expect("ka ≥ 1 block");
        let out = if a.dtype() == crate::DType::F32 {
            out
        } else {
            crate::to_dtype(&out, a.dtype())?
        };
        return out.reshape(&out_shape);
    }
    launch_3d(&a3, &b3)?.reshape(&out_shape)
}

/// Longest inner dimension one cubek matmul is given. cubek-matmul 0.2 on lavapipe silently
/// drops the tail of longer dot products (measured: `[1, 2^20] @ [2^20, 1]` kept 25 % of the
/// sum, at 2^18 + 3 the error was 3.7e-5 against ≤ 2.4e-6 at 2^17 + 1 — llvmpipe stops a loop
/// after 65 535 iterations); longer ones are split in blocks of this and summed.
pub const MAX_INNER: usize = 1 << 16;

/// One cubek matmul of `[nb, m, k] @ [nb, k, n]` (one dtype).
fn launch_3d(a3: &Tensor, b3: &Tensor) -> Result<Tensor> {
    let (nb, m, n) = (a3.shape()[0], a3.shape()[1], b3.shape()[2]);
    let a = a3;
    let out = Tensor::empty("matmul", a.device(), &[nb, m, n], a.dtype())?;
    let dt = a.dtype().storage_type();
    crate::counters::count_launch(a.device());
    let prof = crate::counters::profile_start(a.device());
    let res = dispatch!(a.device(), |client, R| {
        use cubecl::std::tensor::TensorHandle;
        let h = |t: &Tensor| {
            TensorHandle::<R>::new_contiguous(t.shape().to_vec(), t.handle().clone(), dt)
        };
        let mut elems = MatmulElems::from_single_dtype(a.dtype().cube_type());
        // Accumulate in f32 registers whatever the storage dtype.
        elems.acc_register = crate::DType::F32.storage_type();
        launch_ref(
            &Strategy::Auto,
            client,
            InputBinding::new(h(a3).binding(), dt),
            InputBinding::new(h(b3).binding(), dt),
            h(&out).binding(),
            &mut elems,
        )
    });
    crate::counters::profile_end(a.device(), "cubek::matmul", prof);
    res.map_err(|e| LapisError::kernel("matmul", format!("{e:?}")))?;
    Ok(out)
}

/// The VJP of [`matmul`]: `Ā = Ȳ Bᵀ`, `B̄ = Aᵀ Ȳ` (transposes of the last two axes), each
/// summed over the batch axes its operand was broadcast along.
pub fn matmul_backward(a: &Tensor, b: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
    if a.rank() < 2 || b.rank() < 2 || g.rank() < 2 {
        return Err(LapisError::shape(
            "matmul_backward",
            if a.rank() < 2 {
                a.shape()
            } else if b.rank() < 2 {
                b.shape()
            } else {
                g.shape()
            },
            "operands and gradient need rank >= 2",
        ));
    }
    let mt = |x: &Tensor| {
        let r = x.rank();
        crate::transpose(x, r - 2, r - 1)
    };
    let ga = matmul(g, &mt(b)?)?;
    if b.rank() == 2 && a.rank() > 2 && g.rank() == a.rank() {
        // Shared rank-2 `b`: `B̄ = Σ_batch Aᵀ Ȳ = A_foldedᵀ Ȳ_folded` with the batch axes
        // folded into the rows (one `[k, M] @ [M, n]` product, no batched product to sum).
        let (k, n) = (b.shape()[0], b.shape()[1]);
        let rows = a.numel() / k;
        if g.numel() == rows * n {
            let gb = matmul(&mt(&a.reshape(&[rows, k])?)?, &g.reshape(&[rows, n])?)?;
            return Ok((crate::elementwise::sum_to_shape(&ga, a.shape())?, gb));
        }
    }
    let gb = matmul(&mt(a)?, g)?;
    Ok((
        crate::elementwise::sum_to_shape(&ga, a.shape())?,
        crate::elementwise::sum_to_shape(&gb, b.shape())?,
    ))
}
