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
    matmul_t(a, b, false, false)
}

/// The last two axes of `t`'s shape, swapped when `trans`: `(rows, cols)` of `op(t)`.
fn logical(t: &Tensor, trans: bool) -> (usize, usize) {
    let (r, c) = (t.shape()[t.rank() - 2], t.shape()[t.rank() - 1]);
    if trans {
        (c, r)
    } else {
        (r, c)
    }
}

/// `op(a) @ op(b)` with `op(x) = xᵀ` (the last two axes swapped) where `ta`/`tb` is set,
/// else `x`; batch axes broadcast as in [`matmul`]. A transposed operand is never copied:
/// cubek reads it through column-major strides. This is how [`matmul_backward`] forms
/// `Ȳ Bᵀ` and `Aᵀ Ȳ`, and how attention forms `Q Kᵀ`.
pub fn matmul_t(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
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
    let (m, ka) = logical(a, ta);
    let (kb, n) = logical(b, tb);
    if ka != kb {
        return Err(LapisError::ShapeMismatch {
            op: "matmul",
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        });
    }
    if b.rank() == 2 && a.rank() > 2 && !ta {
        // A shared rank-2 `b` (a Linear layer's weight): fold a's batch axes into its rows,
        // `[B…·m, k] @ [k, n]`, instead of broadcasting `b` to every batch (a copy of
        // B… × k × n elements per call).
        let rows = a.numel() / ka;
        let mut out_shape = a.shape()[..a.rank() - 1].to_vec();
        out_shape.push(n);
        return matmul_t(&a.reshape(&[rows, ka])?, b, false, tb)?.reshape(&out_shape);
    }
    if ka > MAX_INNER && (ta || tb) {
        // The blocked long-inner path slices along k: give it row-major operands.
        let mt = |x: &Tensor, t: bool| -> Result<Tensor> {
            if t {
                crate::transpose(x, x.rank() - 2, x.rank() - 1)
            } else {
                Ok(x.clone())
            }
        };
        return matmul_t(&mt(a, ta)?, &mt(b, tb)?, false, false);
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
    let phys = |t: &Tensor| (t.shape()[t.rank() - 2], t.shape()[t.rank() - 1]);
    let (ar, ac) = phys(a);
    let (br, bc) = phys(b);
    let a3 = full(a, ar, ac)?;
    let b3 = full(b, br, bc)?;
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
                false,
                false,
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
    launch_3d(&a3, &b3, ta, tb)?.reshape(&out_shape)
}

/// Longest inner dimension one cubek matmul is given. cubek-matmul 0.2 on lavapipe silently
/// drops the tail of longer dot products (measured: `[1, 2^20] @ [2^20, 1]` kept 25 % of the
/// sum, at 2^18 + 3 the error was 3.7e-5 against ≤ 2.4e-6 at 2^17 + 1 — llvmpipe stops a loop
/// after 65 535 iterations); longer ones are split in blocks of this and summed.
pub const MAX_INNER: usize = 1 << 16;

/// One cubek matmul of `op(a3) @ op(b3)` for contiguous `[nb, r, c]` operands (one dtype),
/// `op` a transpose of the last two axes where `ta`/`tb` is set: the transposed operand is
/// handed to cubek as a `[nb, c, r]` view with strides `[r·c, 1, c]` (column-major).
fn launch_3d(a3: &Tensor, b3: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
    let nb = a3.shape()[0];
    let m = if ta { a3.shape()[2] } else { a3.shape()[1] };
    let n = if tb { b3.shape()[1] } else { b3.shape()[2] };
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
        let ht = |t: &Tensor, trans: bool| {
            if trans {
                let (b, r, c) = (t.shape()[0], t.shape()[1], t.shape()[2]);
                TensorHandle::<R>::new(t.handle().clone(), vec![b, c, r], vec![r * c, 1, c], dt)
            } else {
                h(t)
            }
        };
        let mut elems = MatmulElems::from_single_dtype(a.dtype().cube_type());
        // Accumulate in f32 registers whatever the storage dtype.
        elems.acc_register = crate::DType::F32.storage_type();
        launch_ref(
            &Strategy::Auto,
            client,
            InputBinding::new(ht(a3, ta).binding(), dt),
            InputBinding::new(ht(b3, tb).binding(), dt),
            h(&out).binding(),
            &mut elems,
        )
    });
    crate::counters::profile_end(a.device(), "cubek::matmul", prof);
    res.map_err(|e| LapisError::kernel("matmul", format!("{e:?}")))?;
    Ok(out)
}

/// The VJP of [`matmul`]: `Ā = Ȳ Bᵀ`, `B̄ = Aᵀ Ȳ` (transposes of the last two axes, read
/// through strides, never copied), each summed over the batch axes its operand was
/// broadcast along.
pub fn matmul_backward(a: &Tensor, b: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor)> {
    matmul_t_backward(a, b, false, false, g)
}

/// The VJP of [`matmul_t`] (`Y = op(A) op(B)`): `(Ā, B̄)` in the shapes of `a` and `b`. With
/// `Ȳ = G`: `∂op(A) = G op(B)ᵀ`, `∂op(B) = op(A)ᵀ G`, transposed back where `op` transposes;
/// every product is one [`matmul_t`] (no transposed copies).
pub fn matmul_t_backward(
    a: &Tensor,
    b: &Tensor,
    ta: bool,
    tb: bool,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
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
    // Ā: op(A) = A  → G op(B)ᵀ;  op(A) = Aᵀ → (G op(B)ᵀ)ᵀ = op(B) Gᵀ.
    let ga = if ta {
        matmul_t(b, g, tb, true)?
    } else {
        matmul_t(g, b, false, !tb)?
    };
    if b.rank() == 2 && a.rank() > 2 && g.rank() == a.rank() && !ta {
        // Shared rank-2 `b`: `Σ_batch op(A)ᵀ Ȳ` with the batch axes folded into the rows
        // (one product over M = B…·m rows, no batched product to sum).
        let k = a.shape()[a.rank() - 1];
        let rows = a.numel() / k;
        let n = g.shape()[g.rank() - 1];
        if g.numel() == rows * n {
            let (a2, g2) = (a.reshape(&[rows, k])?, g.reshape(&[rows, n])?);
            // B̄ = A2ᵀ G2, or for op(B) = Bᵀ: B̄ = (A2ᵀ G2)ᵀ = G2ᵀ A2.
            let gb = if tb {
                matmul_t(&g2, &a2, true, false)?
            } else {
                matmul_t(&a2, &g2, true, false)?
            };
            return Ok((crate::elementwise::sum_to_shape(&ga, a.shape())?, gb));
        }
    }
    // B̄: op(B) = B → op(A)ᵀ G;  op(B) = Bᵀ → (op(A)ᵀ G)ᵀ = Gᵀ op(A).
    let gb = if tb {
        matmul_t(g, a, true, ta)?
    } else {
        matmul_t(a, g, !ta, false)?
    };
    Ok((
        crate::elementwise::sum_to_shape(&ga, a.shape())?,
        crate::elementwise::sum_to_shape(&gb, b.shape())?,
    ))
}
